//! `fdatasync` of a data file on a helper thread, so a slow disk never stalls the
//! writer thread's encoding (on the shared VM one sync took up to 0.9 s, long enough
//! for the producer to fill both export buffers at 128 k rows/s).
//!
//! The writer asks for a sync with a duplicate of the file's descriptor; a request
//! made while the previous sync is still running is refused (the writer asks again at
//! its next tick). The first error is kept for the writer to act on.

use std::fs::File;
use std::io;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

/// What a failed background sync reports.
pub(crate) type SyncFailure = (Option<i32>, String);

/// A helper thread that syncs file data on request; see the module docs.
pub(crate) struct BackgroundSync {
    tx: Option<SyncSender<File>>,
    thread: Option<std::thread::JoinHandle<()>>,
    failure: Arc<Mutex<Option<SyncFailure>>>,
}

impl std::fmt::Debug for BackgroundSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundSync")
            .field("running", &self.tx.is_some())
            .finish()
    }
}

impl BackgroundSync {
    pub(crate) fn new() -> Self {
        BackgroundSync {
            tx: None,
            thread: None,
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// Asks for `file`'s data to be synced. `Ok(false)` if the previous sync is still
    /// running (ask again later); an error if no thread could be started.
    pub(crate) fn request(&mut self, file: &File) -> io::Result<bool> {
        if self.tx.is_none() {
            self.start()?;
        }
        let Some(tx) = &self.tx else {
            return Ok(false);
        };
        match tx.try_send(file.try_clone()?) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => Ok(false),
            Err(TrySendError::Disconnected(_)) => Err(io::Error::other("the sync thread is gone")),
        }
    }

    /// The first failure of a background sync, if any.
    pub(crate) fn failure(&self) -> Option<SyncFailure> {
        match self.failure.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn start(&mut self) -> io::Result<()> {
        // A rendezvous channel: a request is taken only while the thread is idle.
        let (tx, rx): (SyncSender<File>, Receiver<File>) = sync_channel(0);
        let failure = self.failure.clone();
        let thread = std::thread::Builder::new()
            .name("kwik-rec-sync".into())
            .spawn(move || {
                while let Ok(file) = rx.recv() {
                    if let Err(e) = file.sync_data() {
                        let mut f = match failure.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        f.get_or_insert((e.raw_os_error(), e.to_string()));
                    }
                }
            })?;
        self.tx = Some(tx);
        self.thread = Some(thread);
        Ok(())
    }
}

impl Drop for BackgroundSync {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the sync it may be running.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
