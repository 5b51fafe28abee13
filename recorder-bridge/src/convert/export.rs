//! `export`: a CSV recording to Parquet, through the same writer as live recording.
//! The input is read a line at a time (memory stays bounded by one row group); the
//! output is written under a `.partial` name and renamed only once it is complete, so
//! a bad input line leaves no file that looks finished.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::DateTime;
use sha2::{Digest, Sha256};

use crate::format::columns::ParquetOptions;
use crate::format::csv::CsvLines;
use crate::format::encoder::Format;
use crate::format::parse_error::ParseError;
use crate::format::schema::{EfieldSample, ImuRow, Schema, SchemaKind, StagePosition};
use crate::store::exporter::{BatchWriter, WriteOutcome};
use crate::store::file_writer::WriterStop;
use crate::store::parquet::{ParquetConfig, ParquetWriter, journal_path};
use crate::store::sidecar::{PartMeta, Sidecar, SidecarError, file_name, sidecar_path};

/// Rows handed to the writer at a time.
const EXPORT_BATCH: usize = 64 * 1024;

/// Why a recording could not be exported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The input's sidecar is missing or unreadable.
    #[error("{0}; export needs the recording's .meta.json next to the data file")]
    Sidecar(#[from] SidecarError),
    /// The input cannot be exported to the layout asked for.
    #[error("{0}")]
    Unsupported(String),
    /// A data file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line of the input is malformed; nothing was left at the output path.
    #[error("{path}: {error}; nothing was exported")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line number.
        error: ParseError,
    },
    /// The input ends in the middle of a line (a recording cut by a crash).
    #[error(
        "{path}: line {line} is cut off (no newline at the end of the file); run `kwik-record recover` on it first; nothing was exported"
    )]
    CutLine {
        /// The file.
        path: PathBuf,
        /// One-based line number.
        line: usize,
    },
    /// The output exists already.
    #[error("{0} exists; remove it or give another --out")]
    Exists(PathBuf),
    /// The output could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        message: String,
    },
}

/// What [`export`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The data file written.
    pub output: PathBuf,
    /// Its sidecar.
    pub sidecar: PathBuf,
    /// Samples exported.
    pub samples: u64,
    /// Size of the output in bytes.
    pub bytes: u64,
}

/// The default output of exporting `input` (any data file of a recording or its
/// sidecar) to `format`: beside the input, `<stem>.export.<ext>`, whose sidecar is
/// `<stem>.export.meta.json`.
pub fn default_output(input: &Path, format: &Format) -> PathBuf {
    let sc = sidecar_path(input);
    let name = file_name(&sc);
    let stem = name.trim_end_matches(".meta.json");
    sc.with_file_name(format!("{stem}.export.{}", format.extension()))
}

/// Exports the recording of `input` (a data file or its `.meta.json`) to `format`
/// at `output`, with a sidecar beside it (the input's, describing the new file).
pub fn export(input: &Path, format: &Format, output: &Path) -> Result<ExportReport, ExportError> {
    let Format::Parquet(options) = format else {
        return Err(ExportError::Unsupported(format!(
            "export writes Parquet; {} is what recordings are made in",
            format.name()
        )));
    };
    let sc_path = sidecar_path(input);
    let sc = Sidecar::read(&sc_path)?;
    if sc.format != "csv" {
        return Err(ExportError::Unsupported(format!(
            "export reads standard CSV recordings; this one is {}",
            sc.format
        )));
    }
    let kind = SchemaKind::from_name(&sc.schema).ok_or_else(|| {
        ExportError::Unsupported(format!("unknown schema {:?} in the sidecar", sc.schema))
    })?;
    let out_sidecar = sidecar_path(output);
    for p in [output, &out_sidecar] {
        if p.exists() {
            return Err(ExportError::Exists(p.to_path_buf()));
        }
    }
    let dir = sc_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let inputs: Vec<PathBuf> = sc.parts.iter().map(|p| dir.join(&p.file)).collect();
    let partial = {
        let mut n = output.as_os_str().to_owned();
        n.push(".partial");
        PathBuf::from(n)
    };
    let result = match kind {
        SchemaKind::Imu => write_parquet::<ImuRow>(&sc, &inputs, &partial, options),
        SchemaKind::Efield => write_parquet::<EfieldSample>(&sc, &inputs, &partial, options),
        SchemaKind::Stage => write_parquet::<StagePosition>(&sc, &inputs, &partial, options),
    };
    let samples = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(journal_path(&partial));
            return Err(e);
        }
    };
    let write_err = |e: std::io::Error| ExportError::Write {
        path: output.to_path_buf(),
        message: e.to_string(),
    };
    let bytes = std::fs::read(&partial).map_err(write_err)?;
    let mut out_sc = sc.clone();
    out_sc.format = format.name().to_owned();
    out_sc.labview = None;
    out_sc.csv = None;
    out_sc.xiao = None;
    out_sc.samples = samples;
    out_sc.file_size = bytes.len() as u64;
    let sha = hex::encode(Sha256::digest(&bytes));
    out_sc.sha256 = Some(sha.clone());
    out_sc.parts = vec![PartMeta {
        file: file_name(output),
        samples,
        bytes: bytes.len() as u64,
        sha256: Some(sha),
    }];
    out_sc
        .settings
        .insert("exported_from".into(), file_name(&sc_path));
    std::fs::rename(&partial, output).map_err(write_err)?;
    out_sc.write_atomic(&out_sidecar)?;
    Ok(ExportReport {
        output: output.to_path_buf(),
        sidecar: out_sidecar,
        samples,
        bytes: bytes.len() as u64,
    })
}

/// Streams the CSV parts into one Parquet file at `out`; returns the samples written.
fn write_parquet<S: Schema>(
    sc: &Sidecar,
    inputs: &[PathBuf],
    out: &Path,
    options: &ParquetOptions,
) -> Result<u64, ExportError> {
    let start_utc_us = DateTime::parse_from_rfc3339(&sc.start_utc)
        .map(|t| t.timestamp_micros())
        .unwrap_or(0);
    let metadata = vec![
        ("kwik.session_id".to_owned(), sc.session_id.clone()),
        ("kwik.stream".to_owned(), sc.stream.clone()),
        ("kwik.schema".to_owned(), sc.schema.clone()),
        ("kwik.start_utc".to_owned(), sc.start_utc.clone()),
        (
            "kwik.device".to_owned(),
            serde_json::to_string(&sc.device).unwrap_or_default(),
        ),
        (
            "kwik.settings".to_owned(),
            serde_json::to_string(&sc.settings).unwrap_or_default(),
        ),
        (
            "kwik.dropped_by_stage".to_owned(),
            serde_json::to_string(&sc.dropped).unwrap_or_default(),
        ),
    ];
    let config = ParquetConfig {
        path: out.to_path_buf(),
        // Row groups by size only: an export has no crash window worth bounding.
        sync_interval: std::time::Duration::MAX,
        start_utc_us,
        metadata,
        options: options.clone(),
    };
    let dropped = sc.dropped.total();
    let mut writer =
        ParquetWriter::<S>::create(config, Arc::new(move || dropped)).map_err(|e| {
            ExportError::Write {
                path: out.to_path_buf(),
                message: e.to_string(),
            }
        })?;
    let mut batch = Vec::with_capacity(EXPORT_BATCH);
    for input in inputs {
        let read_err = |source| ExportError::Read {
            path: input.clone(),
            source,
        };
        let mut reader = BufReader::with_capacity(1 << 20, File::open(input).map_err(read_err)?);
        let mut lines = CsvLines::<S>::default();
        let mut buf = String::new();
        loop {
            buf.clear();
            let n = reader.read_line(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            let Some(line) = buf.strip_suffix('\n') else {
                return Err(ExportError::CutLine {
                    path: input.clone(),
                    line: lines.lines() + 1,
                });
            };
            let parsed = lines.push(line).map_err(|error| ExportError::Parse {
                path: input.clone(),
                error,
            })?;
            if let Some(row) = parsed {
                batch.push(row);
                if batch.len() == EXPORT_BATCH {
                    push(&mut writer, &batch, out)?;
                    batch.clear();
                }
            }
        }
        lines.finish().map_err(|error| ExportError::Parse {
            path: input.clone(),
            error,
        })?;
    }
    push(&mut writer, &batch, out)?;
    let report = writer.finish();
    if let Some(stop) = report.stop {
        return Err(ExportError::Write {
            path: out.to_path_buf(),
            message: match stop {
                WriterStop::Io { message, .. } => message,
                other => format!("{other:?}"),
            },
        });
    }
    Ok(report.parts.iter().map(|p| p.samples).sum())
}

fn push<S: Schema>(w: &mut ParquetWriter<S>, batch: &[S], out: &Path) -> Result<(), ExportError> {
    match w.write_batch(batch) {
        WriteOutcome::Continue => Ok(()),
        _ => Err(ExportError::Write {
            path: out.to_path_buf(),
            message: "the Parquet writer stopped".into(),
        }),
    }
}
