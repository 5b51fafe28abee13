//! Why a whole file's text could not be parsed, in either layout.

use crate::format::number::ParseRowError;

/// Why a file's text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The header row does not match the schema's columns.
    #[error("header row {found:?} does not match schema `{schema}`")]
    Header {
        /// Schema name.
        schema: &'static str,
        /// The line found.
        found: String,
    },
    /// No header row.
    #[error("the file has no header row")]
    NoHeader,
    /// A data row is malformed.
    #[error("line {line}: {error}")]
    Row {
        /// One-based line number.
        line: usize,
        /// What is wrong.
        error: ParseRowError,
    },
    /// A line after the footer, or a malformed footer.
    #[error("line {line}: unexpected text after or in the footer")]
    Footer {
        /// One-based line number.
        line: usize,
    },
    /// A LabVIEW block is malformed.
    #[error("LabVIEW block {block}: {what}")]
    Labview {
        /// Zero-based block number.
        block: usize,
        /// What is wrong.
        what: String,
    },
    /// The file is not UTF-8 text.
    #[error("the file is not UTF-8 text")]
    NotText,
}
