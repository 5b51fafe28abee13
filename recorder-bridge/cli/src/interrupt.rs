//! Ctrl-C / SIGTERM for the `kwik-record` subcommands: the signal only raises a flag, and
//! each long-running command polls it to finish its recording cleanly instead of dying
//! mid-write.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the flag read by [`requested`]. Idempotent.
pub(crate) fn install() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// Whether SIGINT or SIGTERM arrived since [`install`].
pub(crate) fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
