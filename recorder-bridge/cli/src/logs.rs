//! The log of `kwik-record`: `tracing` events to standard error, as text for a person
//! (the default) or one JSON object per line for a log shipper (`--log-format json`).
//! The level comes from `--log-level`, else `RUST_LOG`, else [`DEFAULT_FILTER`]; both
//! take `tracing-subscriber`'s filter syntax (`debug`, `warn,kwik=info`, ...). Standard
//! output stays for the commands' results, so `--json` output and logs never mix.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// What is logged when neither `--log-level` nor `RUST_LOG` says: warnings from
/// everything, and the recorder's and kwik's own notices (sessions, refused peers).
pub(crate) const DEFAULT_FILTER: &str = "warn,kwik=info,kwik_recorder=info,kwik_record=info";

/// Log line layouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One line of text per event.
    #[default]
    Human,
    /// One JSON object per event (timestamp, level, target, fields).
    Json,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogSetupError {
    /// `--log-level` or `RUST_LOG` is not a filter.
    #[error("bad log filter {filter:?} ({source}); write e.g. info, debug or warn,kwik=debug")]
    Filter {
        /// The filter as given.
        filter: String,
        /// The parser's complaint.
        source: tracing_subscriber::filter::ParseError,
    },
}

/// Installs the process's log subscriber. `level` is `--log-level`.
///
/// # Errors
/// [`LogSetupError`] for a filter that does not parse.
pub(crate) fn init(format: LogFormat, level: Option<&str>) -> Result<(), LogSetupError> {
    let text = match level {
        Some(l) => l.to_owned(),
        None => std::env::var("RUST_LOG")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_FILTER.to_owned()),
    };
    let filter = EnvFilter::try_new(&text).map_err(|source| LogSetupError::Filter {
        filter: text.clone(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second subscriber (there is none in this binary) would only be refused.
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}
