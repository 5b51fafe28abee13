//! `verify`: checks a recording's data files against its sidecar (header, row shape,
//! counts, sizes, hashes) and lists every mismatch.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::format::csv::parse_csv;

use crate::format::footer::Footer;

use crate::format::labview::{LabviewLayout, parse_labview};

use crate::format::parse_error::ParseError;
use crate::format::schema::{EfieldSample, ImuRow, Schema, SchemaKind, StagePosition};
use crate::store::mcap::read_mcap;
use crate::store::parquet::{journal_path, read_parquet};
use crate::store::sidecar::{RecordingState, SIDECAR_VERSION, Sidecar, SidecarError, sidecar_path};

/// What one data file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartContents {
    /// Whole data rows (samples).
    pub samples: u64,
    /// The CSV footer, if present.
    pub footer: Option<Footer>,
    /// Bytes after the last newline.
    pub partial_tail: usize,
    /// LabVIEW block sizes.
    pub blocks: Vec<usize>,
    /// Time from the first to the last row, in µs (standard CSV; 0 otherwise).
    pub span_us: u64,
}

/// Why a recording could not be checked at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The sidecar is missing or unreadable.
    #[error("{0}; verify needs the recording's .meta.json next to the data file")]
    Sidecar(#[from] SidecarError),
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// The sidecar checked.
    pub sidecar: PathBuf,
    /// Samples found in the data files.
    pub samples: u64,
    /// Data files checked.
    pub parts: usize,
    /// Every mismatch found; empty means the recording is consistent.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The LabVIEW layout a sidecar describes (defaults if absent).
pub(crate) fn layout_of(sc: &Sidecar) -> Result<LabviewLayout, String> {
    let mut l = LabviewLayout::default();
    if let Some(m) = &sc.labview {
        l = l.with_block(m.block).map_err(|e| e.to_string())?;
        let c: Vec<&str> = m.constants.iter().map(String::as_str).collect();
        let c: [&str; 6] = c
            .try_into()
            .map_err(|_| "the sidecar's LabVIEW constants are not six values".to_owned())?;
        l = l.with_constants(c).map_err(|e| e.to_string())?;
    }
    Ok(l)
}

fn parse_part_as<S: Schema>(bytes: &[u8]) -> Result<PartContents, ParseError> {
    let p = parse_csv::<S>(bytes)?;
    let span_us = match (p.rows.first(), p.rows.last()) {
        (Some(a), Some(b)) => b.time_us().saturating_sub(a.time_us()),
        _ => 0,
    };
    Ok(PartContents {
        samples: p.rows.len() as u64,
        footer: p.footer,
        partial_tail: p.partial_tail,
        blocks: Vec::new(),
        span_us,
    })
}

/// Parses a data file as the sidecar's schema and layout.
pub(crate) fn parse_part(sc: &Sidecar, bytes: &[u8]) -> Result<PartContents, String> {
    let kind = SchemaKind::from_name(&sc.schema)
        .ok_or_else(|| format!("unknown schema {:?} in the sidecar", sc.schema))?;
    match sc.format.as_str() {
        "csv" => match kind {
            SchemaKind::Imu => parse_part_as::<ImuRow>(bytes),
            SchemaKind::Efield => parse_part_as::<EfieldSample>(bytes),
            SchemaKind::Stage => parse_part_as::<StagePosition>(bytes),
        }
        .map_err(|e| e.to_string()),
        "labview" => {
            if kind != SchemaKind::Efield {
                return Err(format!("LabVIEW layout with schema {}", sc.schema));
            }
            let layout = layout_of(sc)?;
            let p = parse_labview(bytes, &layout).map_err(|e| e.to_string())?;
            Ok(PartContents {
                samples: p.samples.len() as u64,
                footer: None,
                partial_tail: p.partial_tail,
                blocks: p.block_sizes,
                span_us: 0,
            })
        }
        other => Err(format!("unknown format {other:?} in the sidecar")),
    }
}

/// Reads a Parquet data file through the Parquet reader (footer and every page),
/// noting a leftover journal and metadata that disagrees with the sidecar.
fn parquet_part(
    sc: &Sidecar,
    file: &Path,
    problems: &mut Vec<String>,
) -> Result<PartContents, String> {
    if journal_path(file).exists() {
        problems.push(format!(
            "{}: its recovery journal is still there: the recorder died or is still running; run `kwik-record recover`",
            file.display()
        ));
    }
    let c = read_parquet(file)?;
    let session = c.metadata.iter().find(|(k, _)| k == "kwik.session_id");
    match session {
        Some((_, id)) if *id == sc.session_id => {}
        Some((_, id)) => problems.push(format!(
            "{}: metadata session {id} is not the sidecar's {}",
            file.display(),
            sc.session_id
        )),
        None => problems.push(format!("{}: no kwik.session_id metadata", file.display())),
    }
    Ok(PartContents {
        samples: c.rows,
        footer: None,
        partial_tail: 0,
        blocks: Vec::new(),
        span_us: 0,
    })
}

/// Reads an MCAP data file record by record (every chunk decompressed, every CRC
/// checked), noting a missing summary (the recorder died), a channel or metadata that
/// disagrees with the sidecar, and statistics that disagree with the messages.
fn mcap_part(
    sc: &Sidecar,
    file: &Path,
    problems: &mut Vec<String>,
) -> Result<PartContents, String> {
    let c = read_mcap(file)?;
    let name = file.display();
    if let Some(e) = &c.damage {
        problems.push(format!(
            "{name}: readable up to byte {} only ({e}): the recorder died or is still running; run `kwik-record recover`",
            c.good_bytes
        ));
    } else if !c.summary {
        problems.push(format!(
            "{name}: no summary section; run `kwik-record recover`"
        ));
    }
    let want = (format!("/{}", sc.stream), format!("kwik.{}", sc.schema));
    if c.channels != [want.clone()] {
        problems.push(format!(
            "{name}: channels {:?}, expected one, {want:?}",
            c.channels
        ));
    }
    match c.metadata.iter().find(|(k, _)| k == "session_id") {
        Some((_, id)) if *id == sc.session_id => {}
        Some((_, id)) => problems.push(format!(
            "{name}: metadata session {id} is not the sidecar's {}",
            sc.session_id
        )),
        None => problems.push(format!("{name}: no session_id metadata")),
    }
    if let Some(n) = c.summary_messages {
        if n != c.messages {
            problems.push(format!(
                "{name}: the summary counts {n} messages, the chunks hold {}",
                c.messages
            ));
        }
    }
    Ok(PartContents {
        samples: c.messages,
        footer: None,
        partial_tail: 0,
        blocks: Vec::new(),
        span_us: 0,
    })
}

/// Checks a recording, given its data file (any part) or its `.meta.json`.
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let sc_path = sidecar_path(path);
    let sc = Sidecar::read(&sc_path)?;
    let dir = sc_path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    if sc.version != SIDECAR_VERSION {
        problems.push(format!(
            "sidecar version {} is not {SIDECAR_VERSION}",
            sc.version
        ));
    }
    match sc.state {
        RecordingState::Finished | RecordingState::Recovered => {}
        RecordingState::Recording => problems.push(
            "the sidecar still says `recording`: the recorder died or is still running; run `kwik-record recover`".into(),
        ),
        RecordingState::Failed => problems.push(format!(
            "the recording failed ({}); the files hold what was written before",
            sc.stop_reason.as_deref().unwrap_or("no reason recorded")
        )),
    }
    if sc.parts.is_empty() {
        problems.push("the sidecar lists no data file".into());
    }
    let mut total = 0u64;
    let mut total_bytes = 0u64;
    let block = layout_of(&sc).map(|l| l.block()).unwrap_or(0);
    for (n, part) in sc.parts.iter().enumerate() {
        let file = dir.join(&part.file);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{}: cannot read: {e}", file.display()));
                continue;
            }
        };
        total_bytes += bytes.len() as u64;
        if bytes.len() as u64 != part.bytes {
            problems.push(format!(
                "{}: size {} bytes, sidecar says {}",
                part.file,
                bytes.len(),
                part.bytes
            ));
        }
        let digest = hex::encode(Sha256::digest(&bytes));
        match &part.sha256 {
            Some(h) if *h == digest => {}
            Some(h) => problems.push(format!(
                "{}: SHA-256 {digest} does not match the sidecar's {h}",
                part.file
            )),
            None => problems.push(format!("{}: the sidecar has no SHA-256", part.file)),
        }
        let contents = if sc.format == "parquet" {
            parquet_part(&sc, &file, &mut problems)
        } else if sc.format == "mcap" {
            mcap_part(&sc, &file, &mut problems)
        } else {
            parse_part(&sc, &bytes)
        };
        match contents {
            Err(e) => problems.push(format!("{}: {e}", part.file)),
            Ok(c) => {
                total += c.samples;
                if c.partial_tail > 0 {
                    problems.push(format!(
                        "{}: ends with {} bytes of an incomplete row",
                        part.file, c.partial_tail
                    ));
                }
                if c.samples != part.samples {
                    problems.push(format!(
                        "{}: {} rows, sidecar says {}",
                        part.file, c.samples, part.samples
                    ));
                }
                if sc.format == "csv" && sc.csv_compat().has_footer() {
                    match c.footer {
                        None => problems.push(format!("{}: no footer line", part.file)),
                        Some(f) if f.samples != c.samples => problems.push(format!(
                            "{}: footer says {} samples, file has {}",
                            part.file, f.samples, c.samples
                        )),
                        Some(_) => {}
                    }
                } else if sc.format != "csv" {
                    let last = c.blocks.len().saturating_sub(1);
                    let is_last_part = n + 1 == sc.parts.len();
                    for (i, &b) in c.blocks.iter().enumerate() {
                        if b != block && !(i == last && is_last_part && b < block) {
                            problems.push(format!(
                                "{}: block {i} has {b} samples, the layout says {block}",
                                part.file
                            ));
                        }
                    }
                }
            }
        }
    }
    if total != sc.samples {
        problems.push(format!(
            "the files hold {total} samples, the sidecar says {}",
            sc.samples
        ));
    }
    if total_bytes != sc.file_size {
        problems.push(format!(
            "the files hold {total_bytes} bytes, the sidecar says {}",
            sc.file_size
        ));
    }
    problems.extend(sc.accounting_problem());
    Ok(VerifyReport {
        sidecar: sc_path,
        samples: total,
        parts: sc.parts.len(),
        problems,
    })
}
