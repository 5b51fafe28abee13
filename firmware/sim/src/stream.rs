//! A simulated board on its own thread, producing bytes at the board's pace into a
//! bounded channel; read them like a serial port.

use crate::simulator::{SimStats, Simulator};
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How fast the producer thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Pacing {
    /// One sample period per configured period of wall time, like the board.
    #[default]
    RealTime,
    /// As fast as the reader takes the bytes (the bounded channel paces it).
    Unpaced,
}

/// How many periods' worth of bytes may wait unread before the producer blocks.
const CHANNEL_CAPACITY: usize = 256;

impl Simulator {
    /// Moves the simulator to a producer thread. It sends each period's bytes into a
    /// bounded channel until `limit` samples were taken (`None`: until stopped), then
    /// closes the stream so readers see end-of-file.
    #[must_use]
    pub fn spawn(self, pacing: Pacing, limit: Option<u64>) -> SimStream {
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("xiao-sim".into())
            .spawn(move || produce(self, pacing, limit, &tx, &thread_stop))
            .ok();
        SimStream {
            rx,
            pending: Vec::new(),
            at: 0,
            stop,
            handle,
        }
    }
}

fn produce(
    mut sim: Simulator,
    pacing: Pacing,
    limit: Option<u64>,
    tx: &SyncSender<Vec<u8>>,
    stop: &AtomicBool,
) -> SimStats {
    let period = sim.period();
    let start = Instant::now();
    let mut taken: u64 = 0;
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| taken < l) {
        if pacing == Pacing::RealTime {
            let due = start + period * u32::try_from(taken).unwrap_or(u32::MAX);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let tick = sim.tick();
        taken += 1;
        if !tick.bytes.is_empty() && tx.send(tick.bytes).is_err() {
            break; // reader gone
        }
    }
    *sim.stats()
}

/// The reading end of a simulator thread: implements [`Read`] (blocking) and hands
/// out the bytes of each period. Dropping it stops the thread.
#[derive(Debug)]
pub struct SimStream {
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    at: usize,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<SimStats>>,
}

impl SimStream {
    /// The next period's bytes (blocking); `None` once the producer finished.
    /// Bytes already buffered by [`Read::read`] come first.
    pub fn recv_chunk(&mut self) -> Option<Vec<u8>> {
        if self.at < self.pending.len() {
            let rest = self.pending.split_off(self.at);
            self.at = 0;
            self.pending.clear();
            return Some(rest);
        }
        self.rx.recv().ok()
    }

    /// Like [`SimStream::recv_chunk`] but gives up after `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] when nothing arrived in time,
    /// [`RecvTimeoutError::Disconnected`] once the producer finished.
    pub fn recv_chunk_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        if self.at < self.pending.len() {
            return Ok(self.recv_chunk().unwrap_or_default());
        }
        self.rx.recv_timeout(timeout)
    }

    /// Stops the producer and returns its final counters (what it actually sent).
    /// Bytes not yet read are discarded.
    #[must_use]
    pub fn stop(mut self) -> SimStats {
        self.finish()
    }

    fn finish(&mut self) -> SimStats {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a producer waiting on a full channel.
        while self.rx.try_recv().is_ok() {}
        let Some(handle) = self.handle.take() else {
            return SimStats::default();
        };
        loop {
            if handle.is_finished() {
                return handle.join().unwrap_or_default();
            }
            while self.rx.try_recv().is_ok() {}
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Read for SimStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.at >= self.pending.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.finish();
        }
    }
}
