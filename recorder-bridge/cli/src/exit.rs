//! The exit codes of `kwik-record`, in one place so that scripts and service
//! managers can tell a lost sample from a typo from a full disk:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok: the command did what it was asked and nothing was lost |
//! | 1 | data lost: the command ran, but samples were dropped, not delivered, or a recording does not match its sidecar |
//! | 2 | usage: a bad flag, flag value or config file (nothing was started) |
//! | 3 | environment: the disk, the network, a device or the TLS files failed |
//!
//! Clap's own usage errors already exit with 2. A command reports a bad value that
//! clap could not check with [`usage`]; every other error is the environment's.

use std::process::ExitCode;

/// How a `kwik-record` command ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Everything asked for was done; nothing was lost (0).
    Ok,
    /// The command ran, but data was lost or does not match (1).
    DataLost,
    /// A bad command line or config file (2).
    Usage,
    /// The disk, the network, a device or a needed file failed (3).
    Environment,
}

impl Exit {
    /// The process exit status.
    pub(crate) fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::DataLost => 1,
            Exit::Usage => 2,
            Exit::Environment => 3,
        }
    }

    /// [`Exit::Ok`] when `complete`, else [`Exit::DataLost`].
    pub(crate) fn lossless(complete: bool) -> Self {
        if complete { Exit::Ok } else { Exit::DataLost }
    }

    /// The exit class of an error a command returned: [`UsageError`] anywhere in its
    /// chain is usage, anything else the environment.
    pub(crate) fn of_error(e: &anyhow::Error) -> Self {
        if e.chain().any(|c| c.is::<UsageError>()) {
            Exit::Usage
        } else {
            Exit::Environment
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// A bad value on the command line or in a config file that clap's parsers could
/// not reject (e.g. a combination of flags): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// A usage error with `message` (exit code 2).
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_are_found_through_context_and_the_rest_is_the_environment() {
        let e = usage("--rate must be at least 1").context("bad stream flags");
        assert_eq!(Exit::of_error(&e), Exit::Usage);
        let io = anyhow::Error::from(std::io::Error::other("disk full"));
        assert_eq!(Exit::of_error(&io), Exit::Environment);
        assert_eq!(
            [Exit::Ok, Exit::DataLost, Exit::Usage, Exit::Environment].map(Exit::code),
            [0, 1, 2, 3]
        );
        assert_eq!(Exit::lossless(false), Exit::DataLost);
    }
}
