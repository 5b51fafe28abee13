//! SHA-256 of a data file, computed next to the writer thread rather than on it.
//!
//! Hashing costs about as much CPU per byte as a tenth of the encoding, and the writer
//! thread is the exporter's bottleneck. [`FileHasher`] hashes small writes inline and,
//! from the first large block on, hands the blocks (already written to the file) to a
//! helper thread, so hashing overlaps encoding on another core. Blocks travel by move
//! and come back empty for reuse: no copy, no allocation per block, and at most
//! [`QUEUE`] blocks in flight (the writer waits for the hasher beyond that, which
//! bounds memory; the producer is never affected, it only ever waits for nothing).

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, channel, sync_channel};

use sha2::{Digest, Sha256};

/// Blocks at least this large go to the helper thread (smaller ones are hashed inline
/// until the thread exists, so a slow stream never starts one).
const OFFLOAD_BYTES: usize = 64 * 1024;
/// Blocks queued for the helper thread at most.
const QUEUE: usize = 2;

enum Msg {
    Data(Vec<u8>),
    /// Finish the current digest, reply with it, and start a new one.
    Finish(SyncSender<[u8; 32]>),
}

struct Helper {
    tx: SyncSender<Msg>,
    recycled: Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// SHA-256 over the bytes of one part after another; see the module docs.
pub(crate) struct FileHasher {
    /// The digest while hashing inline (before the helper thread exists).
    inline: Sha256,
    helper: Option<Helper>,
    /// The helper thread died mid-part: this part's digest is unknown.
    broken: bool,
}

impl std::fmt::Debug for FileHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHasher")
            .field("background", &self.helper.is_some())
            .field("broken", &self.broken)
            .finish()
    }
}

impl FileHasher {
    pub(crate) fn new() -> Self {
        FileHasher {
            inline: Sha256::new(),
            helper: None,
            broken: false,
        }
    }

    /// Adds `block` (bytes already in the file) to the digest. `block` is left empty,
    /// possibly swapped for a recycled buffer with spare capacity.
    pub(crate) fn update(&mut self, block: &mut Vec<u8>) {
        if self.helper.is_none() && !self.broken && block.len() >= OFFLOAD_BYTES {
            self.start_helper();
        }
        if self.broken {
            block.clear();
            return;
        }
        let Some(h) = &self.helper else {
            self.inline.update(&block[..]);
            block.clear();
            return;
        };
        let next = match h.recycled.try_recv() {
            Ok(v) => v,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                Vec::with_capacity(block.capacity())
            }
        };
        let full = std::mem::replace(block, next);
        if h.tx.send(Msg::Data(full)).is_err() {
            // The helper thread is gone (it has nothing that can fail; only a dying
            // process gets here): the digest of this part is unknown.
            self.helper = None;
            self.broken = true;
        }
    }

    /// The digest of everything since the last `finish` (`None` if it is unknown), and
    /// a fresh start.
    pub(crate) fn finish(&mut self) -> Option<[u8; 32]> {
        if std::mem::take(&mut self.broken) {
            self.inline = Sha256::new();
            return None;
        }
        match &self.helper {
            Some(h) => {
                let (tx, rx) = sync_channel(1);
                let digest =
                    h.tx.send(Msg::Finish(tx))
                        .ok()
                        .and_then(|()| rx.recv().ok());
                if digest.is_none() {
                    self.helper = None;
                }
                digest
            }
            None => Some(std::mem::take(&mut self.inline).finalize().into()),
        }
    }

    fn start_helper(&mut self) {
        let (tx, rx) = sync_channel::<Msg>(QUEUE);
        let (back, recycled) = channel::<Vec<u8>>();
        // A copy goes to the thread: if it cannot be spawned, hashing stays inline.
        let mut state = self.inline.clone();
        let spawned = std::thread::Builder::new()
            .name("kwik-rec-sha256".into())
            .spawn(move || {
                while let Ok(msg) = rx.recv() {
                    match msg {
                        Msg::Data(mut block) => {
                            state.update(&block);
                            block.clear();
                            // The writer may be gone already; the buffer is then freed.
                            let _ = back.send(block);
                        }
                        Msg::Finish(reply) => {
                            let _ = reply.send(std::mem::take(&mut state).finalize().into());
                        }
                    }
                }
            });
        if let Ok(thread) = spawned {
            self.helper = Some(Helper {
                tx,
                recycled,
                thread: Some(thread),
            });
        }
    }
}

impl Drop for FileHasher {
    fn drop(&mut self) {
        if let Some(mut h) = self.helper.take() {
            // Closing the channel ends the thread once it has hashed what it holds.
            drop(h.tx);
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inline, offloaded and mixed block sizes, over several parts, give exactly the
    /// digest of the bytes.
    #[test]
    fn digests_match_a_plain_sha256_across_parts_and_block_sizes() {
        let mut h = FileHasher::new();
        let mut all_parts = Vec::new();
        for part in 0..3u8 {
            let mut plain = Sha256::new();
            for (i, len) in [10usize, 200_000, 3, 70_000, 1].into_iter().enumerate() {
                let bytes: Vec<u8> = (0..len).map(|k| (k as u8) ^ part ^ i as u8).collect();
                plain.update(&bytes);
                let mut block = bytes.clone();
                h.update(&mut block);
                assert!(block.is_empty());
            }
            let want: [u8; 32] = plain.finalize().into();
            all_parts.push(h.finish());
            assert_eq!(
                all_parts.last().copied().flatten(),
                Some(want),
                "part {part}"
            );
        }
        assert!(
            h.helper.is_some(),
            "large blocks should go to the helper thread"
        );
    }
}
