//! Standard output of every `kwik-record` command, through `outln!` and [`bytes`].
//!
//! Rust ignores SIGPIPE, so writing to a pipe whose reader has gone (`kwik-record demo |
//! head -3`) fails with EPIPE, and `println!` turns that into a panic (exit 101). Here
//! a failed write ends the output instead: nothing more is written to stdout, and the
//! command carries on with its work (a recording is still finished and its files
//! closed) and exits with the code its work earns. Any other write error ends the
//! output the same way, with one warning in the log.

use std::io::{ErrorKind, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed; later output is discarded.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line (`args` and a newline) to stdout, unless stdout has gone.
pub(crate) fn line(args: std::fmt::Arguments<'_>) {
    write(|o| {
        o.write_fmt(args)?;
        o.write_all(b"\n")
    });
}

/// Writes `b` to stdout as they are, unless stdout has gone.
pub(crate) fn bytes(b: &[u8]) {
    write(|o| o.write_all(b));
}

/// Whether stdout has gone (a write to it failed).
pub(crate) fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

fn write(f: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    if closed() {
        return;
    }
    let mut o = std::io::stdout().lock();
    // Flushed each time: a line must reach a pipe when it is printed, and an EPIPE must
    // show up here rather than in the flush at exit.
    if let Err(e) = f(&mut o).and_then(|()| o.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            tracing::warn!(error = %e, "standard output failed; no more output is written");
        }
    }
}

/// `println!` for `kwik-record`: the same arguments, but a closed stdout ends the
/// output quietly instead of panicking (see the module `out`).
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
