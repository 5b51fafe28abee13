//! `export`: a CSV recording to Parquet or MCAP, or a LabVIEW recording to MCAP,
//! through the same writers as live recording. The input is read a line (a LabVIEW
//! block) at a time, so memory stays bounded by one row group or chunk; the output is
//! written under a `.partial` name and renamed only once it is complete, so a bad input
//! line leaves no file that looks finished.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::DateTime;
use sha2::{Digest, Sha256};

use crate::check::verify::layout_of;
use crate::format::columns::{Columnar, McapOptions, ParquetOptions};
use crate::format::csv::CsvLines;
use crate::format::encoder::Format;
use crate::format::labview::{LABVIEW_ROWS, LabviewLayout, parse_labview};
use crate::format::parse_error::ParseError;
use crate::format::schema::{
    EfieldSample, ImuRow, LabviewValues, Schema, SchemaKind, StagePosition,
};
use crate::store::exporter::{BatchWriter, WriteOutcome};
use crate::store::file_writer::{FileReport, WriterStop};
use crate::store::mcap::{McapConfig, McapWriter};
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
    /// A block of a LabVIEW input is malformed; nothing was left at the output path.
    #[error("{path}: line {line}: {what}; nothing was exported")]
    Labview {
        /// The file.
        path: PathBuf,
        /// One-based number of the block's first line.
        line: usize,
        /// What is wrong.
        what: String,
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
/// sidecar) to `format`: beside the input, `<stem>-<ext>.<ext>`, whose sidecar is
/// `<stem>-<ext>.meta.json` (one per layout, so exports to two layouts sit side by
/// side).
pub fn default_output(input: &Path, format: &Format) -> PathBuf {
    let sc = sidecar_path(input);
    let name = file_name(&sc);
    let stem = name.trim_end_matches(".meta.json");
    let ext = format.extension();
    sc.with_file_name(format!("{stem}-{ext}.{ext}"))
}

/// Which writer an export uses.
enum Target<'a> {
    Parquet(&'a ParquetOptions),
    Mcap(&'a McapOptions),
}

/// Exports the recording of `input` (a data file or its `.meta.json`) to `format`
/// at `output`, with a sidecar beside it (the input's, describing the new file).
/// Standard CSV and LabVIEW recordings export to Parquet and MCAP (a LabVIEW one as
/// the rows the layout holds: `efield-labview`, see [`LabviewValues`]).
pub fn export(input: &Path, format: &Format, output: &Path) -> Result<ExportReport, ExportError> {
    let target = match format {
        Format::Parquet(o) => Target::Parquet(o),
        Format::Mcap(o) => Target::Mcap(o),
        other => {
            return Err(ExportError::Unsupported(format!(
                "export writes Parquet or MCAP; {} is what recordings are made in",
                other.name()
            )));
        }
    };
    let sc_path = sidecar_path(input);
    let sc = Sidecar::read(&sc_path)?;
    if !matches!(sc.format.as_str(), "csv" | "labview") {
        return Err(ExportError::Unsupported(format!(
            "export reads standard CSV and LabVIEW recordings; this one is {}",
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
    let result = if sc.format == "labview" {
        layout_of(&sc)
            .map_err(ExportError::Unsupported)
            .and_then(|layout| match &target {
                Target::Mcap(options) => {
                    let w = mcap_writer::<LabviewValues>(&sc, &partial, options)?;
                    labview_into(&inputs, &layout, w, &partial)
                }
                Target::Parquet(options) => {
                    let w = parquet_writer::<LabviewValues>(&sc, &partial, options)?;
                    labview_into(&inputs, &layout, w, &partial)
                }
            })
    } else {
        match kind {
            SchemaKind::Imu => csv_as::<ImuRow>(&sc, &inputs, &partial, &target),
            SchemaKind::Efield => csv_as::<EfieldSample>(&sc, &inputs, &partial, &target),
            SchemaKind::Stage => csv_as::<StagePosition>(&sc, &inputs, &partial, &target),
        }
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
    if sc.format == "labview" {
        // The rows are the LabVIEW layout's: the schema verify expects (the MCAP
        // channel's, the Parquet file's columns).
        out_sc.schema = <LabviewValues as Columnar>::NAME.to_owned();
    }
    std::fs::rename(&partial, output).map_err(write_err)?;
    out_sc.write_atomic(&out_sidecar)?;
    Ok(ExportReport {
        output: output.to_path_buf(),
        sidecar: out_sidecar,
        samples,
        bytes: bytes.len() as u64,
    })
}

/// The recording's facts as `(key, value)` metadata (Parquet prefixes them `kwik.`),
/// for rows of `schema` (the sidecar's, or `efield-labview` for a LabVIEW recording's
/// rows).
fn facts(sc: &Sidecar, schema: &str) -> Vec<(&'static str, String)> {
    let json = |v: serde_json::Result<String>| v.unwrap_or_default();
    vec![
        ("session_id", sc.session_id.clone()),
        ("stream", sc.stream.clone()),
        ("schema", schema.to_owned()),
        ("start_utc", sc.start_utc.clone()),
        ("device", json(serde_json::to_string(&sc.device))),
        ("settings", json(serde_json::to_string(&sc.settings))),
        ("dropped_by_stage", json(serde_json::to_string(&sc.dropped))),
    ]
}

fn start_us(sc: &Sidecar) -> i64 {
    DateTime::parse_from_rfc3339(&sc.start_utc)
        .map(|t| t.timestamp_micros())
        .unwrap_or(0)
}

fn create_err(out: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |e| ExportError::Write {
        path: out.to_path_buf(),
        message: e.to_string(),
    }
}

fn parquet_writer<R: Columnar>(
    sc: &Sidecar,
    out: &Path,
    options: &ParquetOptions,
) -> Result<ParquetWriter<R>, ExportError> {
    let config = ParquetConfig {
        path: out.to_path_buf(),
        // Row groups by size only: an export has no crash window worth bounding.
        sync_interval: std::time::Duration::MAX,
        start_utc_us: start_us(sc),
        metadata: facts(sc, R::NAME)
            .into_iter()
            .map(|(k, v)| (format!("kwik.{k}"), v))
            .collect(),
        options: options.clone(),
        size_limit: None,
    };
    let dropped = sc.dropped.total();
    ParquetWriter::<R>::create(config, Arc::new(move || dropped)).map_err(create_err(out))
}

fn mcap_writer<R: Columnar>(
    sc: &Sidecar,
    out: &Path,
    options: &McapOptions,
) -> Result<McapWriter<R>, ExportError> {
    let config = McapConfig {
        path: out.to_path_buf(),
        // Chunks by size only: an export has no crash window worth bounding.
        sync_interval: std::time::Duration::MAX,
        start_utc_us: start_us(sc),
        stream: sc.stream.clone(),
        metadata: facts(sc, R::NAME)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        options: options.clone(),
        size_limit: None,
    };
    let dropped = sc.dropped.total();
    McapWriter::<R>::create(config, Arc::new(move || dropped)).map_err(create_err(out))
}

/// Streams the CSV parts into `target` at `out`; returns the samples written.
fn csv_as<S: Schema>(
    sc: &Sidecar,
    inputs: &[PathBuf],
    out: &Path,
    target: &Target<'_>,
) -> Result<u64, ExportError> {
    match target {
        Target::Mcap(options) => csv_into(inputs, mcap_writer::<S>(sc, out, options)?, out),
        Target::Parquet(options) => csv_into(inputs, parquet_writer::<S>(sc, out, options)?, out),
    }
}

/// Streams the CSV parts into `writer`; returns the samples written.
fn csv_into<S: Schema, W: BatchWriter<S, Report = FileReport>>(
    inputs: &[PathBuf],
    mut writer: W,
    out: &Path,
) -> Result<u64, ExportError> {
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
    finish(writer, out)
}

/// Streams the LabVIEW parts, a 16-row block at a time, into `writer`; returns the
/// samples written.
fn labview_into<W: BatchWriter<LabviewValues, Report = FileReport>>(
    inputs: &[PathBuf],
    layout: &LabviewLayout,
    mut writer: W,
    out: &Path,
) -> Result<u64, ExportError> {
    for input in inputs {
        let read_err = |source| ExportError::Read {
            path: input.clone(),
            source,
        };
        let mut reader = BufReader::with_capacity(1 << 20, File::open(input).map_err(read_err)?);
        let mut block = Vec::new();
        let mut line = 0usize;
        loop {
            block.clear();
            let first = line + 1;
            let mut rows = 0;
            while rows < LABVIEW_ROWS {
                let n = reader.read_until(b'\n', &mut block).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                line += 1;
                rows += 1;
                if block.last() != Some(&b'\n') {
                    return Err(ExportError::CutLine {
                        path: input.clone(),
                        line,
                    });
                }
            }
            if rows == 0 {
                break;
            }
            if rows < LABVIEW_ROWS {
                return Err(ExportError::Labview {
                    path: input.clone(),
                    line: first,
                    what: format!("the last block has {rows} of its {LABVIEW_ROWS} rows"),
                });
            }
            let parsed = parse_labview(&block, layout).map_err(|e| ExportError::Labview {
                path: input.clone(),
                line: first,
                what: e.to_string(),
            })?;
            push(&mut writer, &parsed.samples, out)?;
        }
    }
    finish(writer, out)
}

fn push<S, W: BatchWriter<S>>(w: &mut W, batch: &[S], out: &Path) -> Result<(), ExportError> {
    match w.write_batch(batch) {
        WriteOutcome::Continue => Ok(()),
        _ => Err(ExportError::Write {
            path: out.to_path_buf(),
            message: "the writer stopped".into(),
        }),
    }
}

fn finish<S, W: BatchWriter<S, Report = FileReport>>(
    writer: W,
    out: &Path,
) -> Result<u64, ExportError> {
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
