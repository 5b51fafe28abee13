//! `kwik-record completions SHELL` and `kwik-record man`: shell completions and the
//! man page, generated from the same clap definition that parses the command line, so
//! they cannot drift from it.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory as _;

use crate::exit::Exit;

/// Prints the completion script for `shell` to standard output, e.g.
/// `kwik-record completions bash > /etc/bash_completion.d/kwik-record`.
pub(crate) fn cmd_completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cli = crate::Cli::command();
    // Into memory first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, "kwik-record", &mut script);
    crate::out::bytes(&script);
    Ok(Exit::Ok.into())
}

/// Prints the man page (roff) of `kwik-record`, or of one of its commands, e.g.
/// `kwik-record man > kwik-record.1` or `kwik-record man serve > kwik-record-serve.1`.
pub(crate) fn cmd_man(command: Option<&str>) -> Result<ExitCode> {
    let mut cli = crate::Cli::command();
    cli.build();
    let page = match command {
        None => clap_mangen::Man::new(cli),
        Some(name) => {
            let sub = cli.find_subcommand(name).cloned().ok_or_else(|| {
                crate::exit::usage(format!("no command {name:?}; see `kwik-record --help`"))
            })?;
            clap_mangen::Man::new(sub.version(env!("CARGO_PKG_VERSION")))
                .title(format!("kwik-record-{name}"))
        }
    };
    let mut roff = Vec::new();
    page.render(&mut roff)
        .context("cannot render the man page")?;
    crate::out::bytes(&roff);
    Ok(Exit::Ok.into())
}
