//! The file-layout flags of `record` (`--format`, `--compat`, `--decimals`, and the
//! layouts' own settings), turned into the library's [`Format`].

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use kwik_recorder::{
    CsvCompat, CsvOptions, Decimals, FloatText, Format, LabviewLayout, McapOptions, ParquetOptions,
};

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatKind {
    /// Standard CSV with comment header and footer.
    Csv,
    /// Legacy LabVIEW block layout (E-field only).
    Labview,
    /// Parquet: typed columns (integers, the device's floats, a UTC timestamp), zstd;
    /// a row group per --sync-interval, so a crash loses at most that much.
    Parquet,
    /// MCAP for Foxglove: one JSON message per sample on a channel per stream, zstd
    /// chunks; a chunk per --sync-interval, so a crash loses at most that much.
    Mcap,
}

impl FormatKind {
    /// The layout with its default settings (what `serve --format` records in).
    pub(crate) fn with_defaults(self) -> Format {
        match self {
            FormatKind::Csv => Format::Csv(CsvOptions::default()),
            FormatKind::Labview => Format::Labview(LabviewLayout::default()),
            FormatKind::Parquet => Format::Parquet(ParquetOptions::default()),
            FormatKind::Mcap => Format::Mcap(McapOptions::default()),
        }
    }
}

/// `--compat` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompatArg {
    /// KWIK's own CSV (default).
    Kwik,
    /// The XIAO recorder's CSV and sidecar (xiao-imu streams): its comment header
    /// (unless --no-comments), no footer, its sidecar field names beside ours.
    Xiao,
    /// The E-field imaging bench's position exporter (stage streams only): a
    /// `# Metadata` block, the header row, `# End of export,N`.
    Bench,
}

/// How the data files are laid out.
#[derive(Debug, Args)]
pub(crate) struct FormatArgs {
    /// File layout.
    #[arg(long, value_enum, default_value = "csv")]
    pub(crate) format: FormatKind,
    /// Samples per LabVIEW block.
    #[arg(long, default_value_t = kwik_recorder::DEFAULT_LABVIEW_BLOCK)]
    pub(crate) labview_block: usize,
    /// Leave out the `#` comment header of standard CSV.
    #[arg(long)]
    pub(crate) no_comments: bool,
    /// Write CSV as another tool did, so its readers take the files unchanged.
    #[arg(long, value_enum, default_value = "kwik")]
    pub(crate) compat: CompatArg,
    /// Write float cells of CSV with exactly N decimals (0-17) instead of the shortest
    /// exact text (which uses exponents such as 2.4492935e-17 for small values).
    #[arg(long, value_name = "N")]
    pub(crate) decimals: Option<u32>,
}

impl FormatArgs {
    /// The layout these flags ask for.
    pub(crate) fn to_format(&self) -> Result<Format> {
        let floats = match self.decimals {
            Some(n) => FloatText::Fixed(Decimals::try_from(n).context("bad --decimals")?),
            None => FloatText::Shortest,
        };
        let csv_only = self.format != FormatKind::Csv;
        if csv_only && (self.decimals.is_some() || self.compat != CompatArg::Kwik) {
            anyhow::bail!("--decimals and --compat are options of --format csv");
        }
        Ok(match self.format {
            FormatKind::Csv => Format::Csv(CsvOptions {
                comment_header: !self.no_comments,
                floats,
                compat: match self.compat {
                    CompatArg::Kwik => CsvCompat::Kwik,
                    CompatArg::Xiao => CsvCompat::Xiao,
                    CompatArg::Bench => CsvCompat::Bench,
                },
            }),
            FormatKind::Labview => Format::Labview(
                LabviewLayout::default()
                    .with_block(self.labview_block)
                    .context("bad --labview-block")?,
            ),
            FormatKind::Parquet => Format::Parquet(ParquetOptions::default()),
            FormatKind::Mcap => Format::Mcap(McapOptions::default()),
        })
    }
}
