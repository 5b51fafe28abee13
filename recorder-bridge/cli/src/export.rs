//! `kwik-record export FILE --to parquet|mcap`: a finished recording into another
//! layout, with its own sidecar.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use kwik_recorder::{Format, McapOptions, ParquetOptions, default_output, export};

/// `--to` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportTo {
    /// Parquet: typed columns, zstd; the sidecar's metadata in the file's key-value
    /// metadata.
    Parquet,
    /// MCAP: a JSON message per sample (for Foxglove), zstd chunks, a summary.
    Mcap,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// A data file of the recording, or its .meta.json.
    file: PathBuf,
    /// The layout to write.
    #[arg(long, value_enum)]
    to: ExportTo,
    /// Output file (default: beside the input, STEM-EXT.EXT, with STEM-EXT.meta.json
    /// as its sidecar, e.g. imu_20260101_120000-parquet.parquet).
    #[arg(long)]
    out: Option<PathBuf>,
    /// zstd level of Parquet pages or MCAP chunks (1-22).
    #[arg(long, default_value_t = ParquetOptions::default().zstd_level)]
    zstd_level: i32,
}

pub(crate) fn cmd_export(a: ExportArgs, json: bool) -> Result<ExitCode> {
    let format = match a.to {
        ExportTo::Parquet => Format::Parquet(ParquetOptions {
            zstd_level: a.zstd_level,
        }),
        ExportTo::Mcap => Format::Mcap(McapOptions {
            zstd_level: u32::try_from(a.zstd_level).unwrap_or(0),
        }),
    };
    let out = a.out.unwrap_or_else(|| default_output(&a.file, &format));
    let report = export(&a.file, &format, &out)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "exported {} samples to {} ({} bytes)\n  {}",
            report.samples,
            report.output.display(),
            report.bytes,
            report.sidecar.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
