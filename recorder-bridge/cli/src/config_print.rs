//! `kwik-record config print [--config FILE] <command> [flags]`: the settings a command
//! would run with, merged from its defaults, the config file and the flags, and where
//! each came from. Nothing is started.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory as _;
use serde::Serialize;

use crate::config_file::{Origin, known_keys, resolve};
use crate::exit::{Exit, usage};

/// `kwik-record config`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the effective settings of a command (default, file or flag for each) and
    /// exit; e.g. `kwik-record config print --config lab.toml serve --listen [::]:4433`.
    Print {
        /// The command and its flags, as they would be run.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<OsString>,
    },
}

/// One effective setting.
#[derive(Debug, Serialize)]
struct Entry {
    /// The key (the long flag name).
    key: String,
    /// Its values (one, several for a repeated flag, none when unset).
    values: Vec<String>,
    /// `default`, `file`, `flag` or `unset`.
    source: &'static str,
    /// The config file's line, for a value from the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
}

/// Runs `config print`. `argv` is the whole command line as given.
pub(crate) fn cmd_config(argv: &[OsString], json: bool) -> Result<ExitCode> {
    // The inner command line: everything after `print`, with a `--config` given
    // before `print` carried over.
    let at = argv
        .iter()
        .position(|a| a == "print")
        .ok_or_else(|| usage("usage: kwik-record config print [--config FILE] COMMAND [FLAGS]"))?;
    let mut inner: Vec<OsString> = vec![argv[0].clone()];
    let before = &argv[1..at];
    if let Some(i) = before.iter().position(|a| a == "--config") {
        inner.extend(before[i..].iter().take(2).cloned());
    } else if let Some(c) = before
        .iter()
        .find(|a| a.to_string_lossy().starts_with("--config="))
    {
        inner.push(c.clone());
    }
    inner.extend(argv[at + 1..].iter().cloned());
    let cli = crate::Cli::command();
    let resolved = resolve(&cli, inner).map_err(|e| usage(e.to_string()))?;
    let name = resolved
        .command
        .clone()
        .ok_or_else(|| usage("config print needs a command, e.g. `config print serve`"))?;
    let matches = cli
        .clone()
        .try_get_matches_from(&resolved.argv)
        .map_err(|e| {
            let text = e.to_string();
            usage(text.trim_end().trim_start_matches("error: ").to_owned())
        })?;
    let (_, sub_matches) = matches
        .subcommand()
        .ok_or_else(|| usage("config print needs a command"))?;
    let mut built = cli;
    built.build();
    let sub = built
        .find_subcommand(&name)
        .ok_or_else(|| usage(format!("unknown command {name:?}")))?;
    let keys = known_keys(sub);
    let mut entries = Vec::new();
    for arg in sub.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if !keys.contains(&long) {
            continue;
        }
        let id = arg.get_id().as_str();
        let values: Vec<String> = sub_matches
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let (source, line) = match resolved.origin(id, sub_matches.value_source(id)) {
            Origin::File(line) => ("file", Some(line)),
            Origin::Flag => ("flag", None),
            Origin::Default if values.is_empty() => ("unset", None),
            Origin::Default => ("default", None),
        };
        entries.push(Entry {
            key: long.to_owned(),
            values,
            source,
            line,
        });
    }
    if json {
        let v = serde_json::json!({
            "command": name,
            "config": resolved.file,
            "settings": entries,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &resolved.file {
            Some(f) => outln!("{name} with config file {}:", f.display()),
            None => outln!("{name} (no config file):"),
        }
        let width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
        for e in &entries {
            let value = match e.values.as_slice() {
                [] => "-".to_owned(),
                [one] => one.clone(),
                many => format!("[{}]", many.join(", ")),
            };
            let from = match e.line {
                Some(l) => format!("file, line {l}"),
                None => e.source.to_owned(),
            };
            outln!("  {:<width$} = {value}  ({from})", e.key);
        }
    }
    Ok(Exit::Ok.into())
}
