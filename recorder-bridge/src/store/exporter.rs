//! The double-buffered exporter: the producer fills one buffer while a dedicated writer
//! thread drains the other.
//!
//! Ownership: the producer ([`Exporter`]) owns the *active* buffer. When it reaches the
//! batch size (or [`Exporter::poll`] sees the flush interval pass) it is put into a
//! mutex-guarded slot for the writer as soon as the slot is free, and the producer goes
//! on in the *spare* buffer the writer gave back. A full buffer waits in the slot even
//! while the writer still holds the other one, so the writer moves from batch to batch
//! without waiting for the producer to be scheduled. The lock is held only to move
//! `Vec`s, never during formatting or I/O, so the producer never waits for the disk.
//! If the writer has not given the spare back when the producer needs room, the
//! [`OverflowPolicy`] decides: drop the newest
//! sample and count it (local default), or hand it back to the caller (for a sender that
//! can be slowed down, e.g. by withholding KWIK credit). Memory is two buffers, bounded.

use std::time::{Duration, Instant};

use crate::sync::{self, Arc, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};

/// What happens to a sample pushed while both buffers are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Drop the new sample and count it in [`ExportCounts::dropped`] (the default for
    /// local acquisition: the acquisition never waits).
    #[default]
    DropNewest,
    /// Hand the sample back (`Err(Overflow::Full(sample))`) without counting it; the
    /// caller slows its source down and retries.
    Reject,
}

/// A push that was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Overflow<S> {
    /// Both buffers are full and the policy is [`OverflowPolicy::Reject`]: here is the
    /// sample back.
    #[error("both export buffers are full; retry when the writer has caught up")]
    Full(S),
    /// Both buffers are full; the sample was dropped and counted.
    #[error("both export buffers are full; the sample was dropped and counted")]
    Dropped,
    /// The writer has stopped (write error or size limit); the sample was counted as
    /// discarded.
    #[error("the writer has stopped; the sample was counted as discarded")]
    WriterStopped,
}

/// Exporter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportConfig {
    /// Samples per buffer (default 8192). Larger batches mean fewer swaps and more memory
    /// (two buffers of this size) and a longer wait before data reaches the writer.
    pub batch: usize,
    /// Hand a non-empty buffer to the writer at least this often (default 250 ms), so a
    /// slow source still reaches the disk.
    pub flush_interval: Duration,
    /// How often the writer thread calls [`BatchWriter::tick`] when idle (default 250 ms);
    /// file writers sync there, off the acquisition thread.
    pub tick_interval: Duration,
    /// What to do when both buffers are full.
    pub overflow: OverflowPolicy,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            batch: 8192,
            flush_interval: Duration::from_millis(250),
            tick_interval: Duration::from_millis(250),
            overflow: OverflowPolicy::DropNewest,
        }
    }
}

/// What a batch writer tells the writer thread after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Keep going.
    Continue,
    /// Stop writing (error or limit); later samples are discarded and counted.
    Stop,
}

/// Formats and stores batches; runs on the writer thread.
pub trait BatchWriter<S>: Send + 'static {
    /// What [`BatchWriter::finish`] returns.
    type Report: Send + 'static;
    /// Stores a batch; says whether to keep going. What ends up stored is the writer's
    /// own report (a file writer counts rows per file).
    fn write_batch(&mut self, batch: &[S]) -> WriteOutcome;
    /// Called periodically (and when idle); file writers sync here.
    fn tick(&mut self) -> WriteOutcome;
    /// Ends the output (footer, final sync) and reports.
    fn finish(self) -> Self::Report;
}

/// Counters shared by producer, writer thread and status readers.
///
/// The producer's counters and the writer's sit on separate cache lines, so a push
/// never waits for a line the writer thread just dirtied.
#[derive(Debug, Default)]
pub struct ExportStats {
    producer: CacheLine<ProducerCounts>,
    writer: CacheLine<WriterCounts>,
}

/// Written by the producer only (`accepted` with plain stores of its own count).
#[derive(Debug, Default)]
struct ProducerCounts {
    accepted: AtomicU64,
    dropped: AtomicU64,
    swaps: AtomicU64,
}

/// Written by the writer thread (`discarded` also by the producer after a stop).
#[derive(Debug, Default)]
struct WriterCounts {
    delivered: AtomicU64,
    discarded: AtomicU64,
    stopped: AtomicBool,
}

#[derive(Debug, Default)]
#[repr(align(128))] // two 64-byte lines: adjacent-line prefetch pairs them on x86
struct CacheLine<T>(T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A snapshot of [`ExportStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ExportCounts {
    /// Samples accepted into a buffer.
    pub accepted: u64,
    /// Samples dropped because both buffers were full.
    pub dropped: u64,
    /// Samples delivered to the [`BatchWriter`].
    pub delivered: u64,
    /// Accepted samples the writer did not store because it had stopped (error or limit).
    pub discarded: u64,
    /// Buffer hand-offs.
    pub swaps: u64,
}

impl ExportStats {
    /// Reads the counters.
    pub fn snapshot(&self) -> ExportCounts {
        ExportCounts {
            accepted: self.producer.accepted.load(Ordering::Relaxed),
            dropped: self.producer.dropped.load(Ordering::Relaxed),
            delivered: self.writer.delivered.load(Ordering::Relaxed),
            discarded: self.writer.discarded.load(Ordering::Relaxed),
            swaps: self.producer.swaps.load(Ordering::Relaxed),
        }
    }

    /// True once the writer has stopped (write error or limit).
    pub fn writer_stopped(&self) -> bool {
        self.writer.stopped.load(Ordering::Acquire)
    }
}

struct Exchange<S> {
    /// A buffer handed to the writer and not yet taken.
    full: Option<Vec<S>>,
    /// The empty buffer the writer gave back.
    spare: Option<Vec<S>>,
    /// The producer's last buffer, handed over at close.
    last: Option<Vec<S>>,
    closing: bool,
}

struct Shared<S> {
    exchange: Mutex<Exchange<S>>,
    /// Wakes the writer (a full buffer, or closing).
    wake: Condvar,
    /// Wakes a producer in [`Exporter::wait_for_room`] (the spare came back).
    room: Condvar,
    stats: std::sync::Arc<ExportStats>,
}

/// The producer side. Owns the active buffer; not `Clone` (one producer per exporter).
pub struct Exporter<S: Send + 'static, R: Send + 'static> {
    active: Vec<S>,
    /// Samples accepted so far (the producer is the only writer of the shared copy).
    accepted: u64,
    config: ExportConfig,
    shared: Arc<Shared<S>>,
    stats: std::sync::Arc<ExportStats>,
    last_handoff: Option<Instant>,
    writer: Option<sync::thread::JoinHandle<R>>,
}

impl<S: Send + 'static, R: Send + 'static> std::fmt::Debug for Exporter<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("active", &self.active.len())
            .field("config", &self.config)
            .field("stats", &self.shared.stats.snapshot())
            .finish()
    }
}

impl<S: Send + 'static, R: Send + 'static> Exporter<S, R> {
    /// Starts the writer thread around `writer`.
    pub fn start<W>(config: ExportConfig, writer: W) -> std::io::Result<Self>
    where
        W: BatchWriter<S, Report = R>,
    {
        let batch = config.batch.max(1);
        let config = ExportConfig { batch, ..config };
        let shared = Arc::new(Shared {
            exchange: Mutex::new(Exchange {
                full: None,
                spare: Some(Vec::with_capacity(batch)),
                last: None,
                closing: false,
            }),
            wake: Condvar::new(),
            room: Condvar::new(),
            stats: std::sync::Arc::new(ExportStats::default()),
        });
        let s2 = shared.clone();
        let tick = config.tick_interval;
        let handle = spawn_writer(move || writer_loop(s2, writer, tick))?;
        Ok(Exporter {
            active: Vec::with_capacity(batch),
            accepted: 0,
            config,
            stats: shared.stats.clone(),
            shared,
            last_handoff: None,
            writer: Some(handle),
        })
    }

    /// The shared counters (for status).
    pub fn stats(&self) -> std::sync::Arc<ExportStats> {
        self.shared.stats.clone()
    }

    /// Appends a sample to the active buffer; hands the buffer over when it is full.
    /// Never waits for the writer.
    pub fn push(&mut self, sample: S) -> Result<(), Overflow<S>> {
        let stats = &*self.stats;
        if stats.writer.stopped.load(Ordering::Relaxed) {
            stats.writer.discarded.fetch_add(1, Ordering::Relaxed);
            return Err(Overflow::WriterStopped);
        }
        if !make_room(&self.shared, &mut self.active, self.config.batch) {
            return match self.config.overflow {
                OverflowPolicy::DropNewest => {
                    stats.producer.dropped.fetch_add(1, Ordering::Relaxed);
                    Err(Overflow::Dropped)
                }
                OverflowPolicy::Reject => Err(Overflow::Full(sample)),
            };
        }
        self.active.push(sample);
        self.count_accepted(1);
        Ok(())
    }

    /// Counts `n` samples just appended to the active buffer and hands the buffer over
    /// at once if that filled it (room for the next push is checked then).
    fn count_accepted(&mut self, n: u64) {
        // Only this producer writes `accepted`: a plain store, no locked add per push.
        self.accepted += n;
        self.stats
            .producer
            .accepted
            .store(self.accepted, Ordering::Relaxed);
        if self.active.len() >= self.config.batch {
            make_room(&self.shared, &mut self.active, self.config.batch);
        }
    }

    /// Appends as many of `samples` as the buffers take, in order, handing full buffers
    /// over: the same as [`Exporter::push`] on each in turn, but copied in runs.
    /// Returns how many were consumed: accepted, or dropped/discarded and counted
    /// (policy [`OverflowPolicy::DropNewest`], or a stopped writer). With
    /// [`OverflowPolicy::Reject`] it stops at the first sample refused; the rest are
    /// the caller's to retry.
    pub fn push_slice(&mut self, samples: &[S]) -> usize
    where
        S: Copy,
    {
        let mut done = 0;
        while done < samples.len() {
            let stats = &*self.stats;
            if stats.writer.stopped.load(Ordering::Relaxed) {
                let rest = samples.len() - done;
                stats
                    .writer
                    .discarded
                    .fetch_add(rest as u64, Ordering::Relaxed);
                return samples.len();
            }
            if !make_room(&self.shared, &mut self.active, self.config.batch) {
                return match self.config.overflow {
                    OverflowPolicy::DropNewest => {
                        let rest = samples.len() - done;
                        stats
                            .producer
                            .dropped
                            .fetch_add(rest as u64, Ordering::Relaxed);
                        samples.len()
                    }
                    OverflowPolicy::Reject => done,
                };
            }
            let n = (self.config.batch - self.active.len()).min(samples.len() - done);
            self.active.extend_from_slice(&samples[done..done + n]);
            done += n;
            self.count_accepted(n as u64);
        }
        done
    }

    /// Blocks until a full active buffer could be handed over (the writer has given the
    /// spare back), the writer has stopped, or `timeout` passes; true if there is room
    /// now. For producers that may wait (a file replay, a bench, a sender that can be
    /// slowed down) after [`Overflow::Full`]; an acquisition thread should not wait.
    pub fn wait_for_room(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut ex = sync::lock(&self.shared.exchange);
        loop {
            if self.stats.writer_stopped() {
                return false;
            }
            if self.has_room(&ex) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            #[cfg(not(loom))]
            {
                ex = match self.shared.room.wait_timeout(ex, deadline - now) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
            #[cfg(loom)]
            {
                // loom's model has no timed wait: report the state as it is.
                let _ = (now, &self.shared.room);
                return self.has_room(&ex);
            }
        }
    }

    /// Whether a push would find room now (see [`make_room`]).
    fn has_room(&self, ex: &Exchange<S>) -> bool {
        let has_buffer = self.active.capacity() > 0;
        let full = self.active.len() >= self.config.batch;
        (has_buffer && !full) || (ex.spare.is_some() && (!has_buffer || ex.full.is_none()))
    }

    /// Hands a non-empty active buffer over if the flush interval has passed since the
    /// last hand-off. Call it regularly with the current time.
    pub fn poll(&mut self, now: Instant) {
        if self.active.is_empty() {
            return;
        }
        let due = match self.last_handoff {
            Some(t) => now.saturating_duration_since(t) >= self.config.flush_interval,
            None => true,
        };
        if due && hand_off_partial(&self.shared, &mut self.active) {
            self.last_handoff = Some(now);
        }
    }

    /// Samples waiting in the active buffer.
    pub fn pending(&self) -> usize {
        self.active.len()
    }

    /// Hands the last samples over without waiting, tells the writer to finish, and
    /// waits for it. Returns the writer's report, or `None` if the writer thread
    /// panicked.
    pub fn close(mut self) -> Option<R> {
        {
            let mut ex = sync::lock(&self.shared.exchange);
            ex.last = Some(std::mem::take(&mut self.active));
            ex.closing = true;
        }
        self.shared.wake.notify_one();
        self.writer.take().and_then(|h| h.join().ok())
    }
}

impl<S: Send + 'static, R: Send + 'static> Drop for Exporter<S, R> {
    fn drop(&mut self) {
        if let Some(h) = self.writer.take() {
            {
                let mut ex = sync::lock(&self.shared.exchange);
                ex.last = Some(std::mem::take(&mut self.active));
                ex.closing = true;
            }
            self.shared.wake.notify_one();
            let _ = h.join();
        }
    }
}

/// Gives the producer room for one more sample; false if there is none.
///
/// A full active buffer goes into the writer's `full` slot as soon as that slot is
/// free, even while the writer still holds the spare: the writer then finds the next
/// batch waiting the moment it finishes one, instead of waiting for the producer to be
/// scheduled. Until the spare comes back the producer has no buffer (`Vec::new()`,
/// nothing allocated), so memory stays two buffers.
fn make_room<S>(shared: &Shared<S>, active: &mut Vec<S>, batch: usize) -> bool {
    let has_buffer = active.capacity() > 0;
    if has_buffer && active.len() < batch {
        return true;
    }
    let mut ex = sync::lock(&shared.exchange);
    let handed = if has_buffer {
        // Full: hand it over if the slot is free.
        if ex.full.is_some() {
            return false;
        }
        ex.full = Some(std::mem::take(active));
        true
    } else {
        false
    };
    let room = match ex.spare.take() {
        Some(spare) => {
            *active = spare;
            true
        }
        None => false,
    };
    drop(ex);
    if handed {
        shared.stats.producer.swaps.fetch_add(1, Ordering::Relaxed);
        shared.wake.notify_one();
    }
    room
}

/// Hands a partly filled buffer over (flush interval) in exchange for the spare. False
/// if the writer's slot is taken or the spare is not back: a partial buffer is not
/// worth leaving the producer without room.
fn hand_off_partial<S>(shared: &Shared<S>, active: &mut Vec<S>) -> bool {
    let mut ex = sync::lock(&shared.exchange);
    if ex.full.is_some() {
        return false;
    }
    let Some(next) = ex.spare.take() else {
        return false;
    };
    ex.full = Some(std::mem::replace(active, next));
    drop(ex);
    shared.stats.producer.swaps.fetch_add(1, Ordering::Relaxed);
    shared.wake.notify_one();
    true
}

#[cfg(not(loom))]
fn spawn_writer<F, R>(f: F) -> std::io::Result<sync::thread::JoinHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    std::thread::Builder::new()
        .name("kwik-rec-writer".into())
        .spawn(f)
}

#[cfg(loom)]
fn spawn_writer<F, R>(f: F) -> std::io::Result<sync::thread::JoinHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Ok(loom::thread::spawn(f))
}

enum Work<S> {
    Batch(Vec<S>, bool),
    #[cfg_attr(loom, allow(dead_code))] // loom's model has no timed wait
    Idle,
    Done,
}

fn next_work<S>(shared: &Shared<S>, tick: Duration) -> Work<S> {
    let mut ex = sync::lock(&shared.exchange);
    loop {
        if let Some(b) = ex.full.take() {
            return Work::Batch(b, true);
        }
        if ex.closing {
            return match ex.last.take() {
                Some(b) => Work::Batch(b, false),
                None => Work::Done,
            };
        }
        #[cfg(not(loom))]
        {
            let (g, timeout) = match shared.wake.wait_timeout(ex, tick) {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            ex = g;
            if timeout.timed_out() && ex.full.is_none() && !ex.closing {
                return Work::Idle;
            }
        }
        #[cfg(loom)]
        {
            let _ = tick;
            ex = match shared.wake.wait(ex) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }
}

fn writer_loop<S, W: BatchWriter<S>>(
    shared: Arc<Shared<S>>,
    mut writer: W,
    tick: Duration,
) -> W::Report {
    let stats = &shared.stats;
    let mut stopped = false;
    loop {
        match next_work(&shared, tick) {
            Work::Done => break,
            Work::Idle => {
                if !stopped && writer.tick() == WriteOutcome::Stop {
                    stopped = true;
                    stats.writer.stopped.store(true, Ordering::Release);
                }
            }
            Work::Batch(mut buf, give_back) => {
                if give_back {
                    // The slot is free again: a producer waiting with a full buffer
                    // and the spare in hand can go on.
                    shared.room.notify_all();
                }
                let n = buf.len() as u64;
                if stopped {
                    stats.writer.discarded.fetch_add(n, Ordering::Relaxed);
                } else {
                    let outcome = writer.write_batch(&buf);
                    stats.writer.delivered.fetch_add(n, Ordering::Relaxed);
                    let outcome = if outcome == WriteOutcome::Continue {
                        writer.tick()
                    } else {
                        outcome
                    };
                    if outcome == WriteOutcome::Stop {
                        stopped = true;
                        stats.writer.stopped.store(true, Ordering::Release);
                    }
                }
                if give_back {
                    buf.clear();
                    sync::lock(&shared.exchange).spare = Some(buf);
                    shared.room.notify_all();
                }
            }
        }
    }
    writer.finish()
}

/// A writer that keeps batches in memory (tests, benches, live views).
#[derive(Debug)]
pub struct MemoryWriter<S> {
    rows: Vec<S>,
}

impl<S> Default for MemoryWriter<S> {
    fn default() -> Self {
        MemoryWriter { rows: Vec::new() }
    }
}

impl<S: Clone + Send + 'static> BatchWriter<S> for MemoryWriter<S> {
    type Report = Vec<S>;
    fn write_batch(&mut self, batch: &[S]) -> WriteOutcome {
        self.rows.extend_from_slice(batch);
        WriteOutcome::Continue
    }
    fn tick(&mut self) -> WriteOutcome {
        WriteOutcome::Continue
    }
    fn finish(self) -> Vec<S> {
        self.rows
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct SlowWriter {
        rows: Vec<u64>,
        gate: std::sync::mpsc::Receiver<()>,
    }

    impl BatchWriter<u64> for SlowWriter {
        type Report = Vec<u64>;
        fn write_batch(&mut self, batch: &[u64]) -> WriteOutcome {
            // Blocks until the test lets one batch through: a writer as slow as we like.
            let _ = self.gate.recv();
            self.rows.extend_from_slice(batch);
            WriteOutcome::Continue
        }
        fn tick(&mut self) -> WriteOutcome {
            WriteOutcome::Continue
        }
        fn finish(self) -> Vec<u64> {
            self.rows
        }
    }

    /// An exporter of `batch`-sample buffers whose writer stores one batch per message
    /// sent on the returned channel (dropping the sender lets every batch through).
    fn gated(
        batch: usize,
        overflow: OverflowPolicy,
    ) -> (std::sync::mpsc::Sender<()>, Exporter<u64, Vec<u64>>) {
        let (tx, gate) = std::sync::mpsc::channel();
        let cfg = ExportConfig {
            batch,
            overflow,
            ..ExportConfig::default()
        };
        let ex = Exporter::start(cfg, SlowWriter { rows: vec![], gate }).unwrap();
        (tx, ex)
    }

    #[test]
    fn drop_newest_is_counted_exactly() {
        let (tx, mut ex) = gated(4, OverflowPolicy::DropNewest);
        let stats = ex.stats();
        // 4 fill A (handed over, the writer blocks on it), 4 fill B (handed into the
        // slot; the spare is still with the writer), so the producer has no buffer and
        // the next 5 are dropped.
        let mut results = Vec::new();
        for i in 0..13u64 {
            results.push(ex.push(i));
        }
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 5);
        assert_eq!(stats.snapshot().dropped, 5);
        for _ in 0..10 {
            tx.send(()).unwrap();
        }
        let rows = ex.close().unwrap();
        assert_eq!(rows, (0..8).collect::<Vec<_>>());
        let c = stats.snapshot();
        assert_eq!(c.accepted, 8);
        assert_eq!(c.delivered, 8);
        assert_eq!(c.accepted + c.dropped, 13);
    }

    #[test]
    fn reject_hands_the_sample_back() {
        let (tx, mut ex) = gated(2, OverflowPolicy::Reject);
        for i in 0..4 {
            ex.push(i).unwrap();
        }
        assert_eq!(ex.push(99), Err(Overflow::Full(99)));
        assert_eq!(ex.stats().snapshot().dropped, 0);
        drop(tx);
        assert_eq!(ex.close().unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn push_slice_counts_like_push_and_wait_for_room_wakes() {
        let (tx, mut ex) = gated(4, OverflowPolicy::DropNewest);
        let stats = ex.stats();
        // 4 fill A (handed over), 4 fill B, the other 5 are dropped and counted.
        let all: Vec<u64> = (0..13).collect();
        assert_eq!(ex.push_slice(&all), 13);
        assert_eq!(stats.snapshot().dropped, 5);
        assert!(!ex.wait_for_room(Duration::from_millis(1)));
        tx.send(()).unwrap(); // the writer stores A and gives its buffer back
        assert!(ex.wait_for_room(Duration::from_secs(10)));
        for _ in 0..10 {
            tx.send(()).unwrap();
        }
        assert_eq!(ex.close().unwrap(), (0..8).collect::<Vec<_>>());
        let c = stats.snapshot();
        assert_eq!((c.accepted, c.dropped, c.delivered), (8, 5, 8));

        let (tx, mut ex) = gated(2, OverflowPolicy::Reject);
        assert_eq!(
            ex.push_slice(&[0, 1, 2, 3, 4, 5]),
            4,
            "the refused tail is not taken"
        );
        assert_eq!(ex.stats().snapshot().dropped, 0);
        drop(tx);
        assert!(ex.wait_for_room(Duration::from_secs(10)));
        assert_eq!(ex.push_slice(&[4, 5]), 2);
        assert_eq!(ex.close().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn poll_flushes_a_partial_buffer() {
        let mut ex = Exporter::start(ExportConfig::default(), MemoryWriter::default()).unwrap();
        ex.push(1u8).unwrap();
        ex.poll(Instant::now());
        assert_eq!(ex.pending(), 0);
        assert_eq!(ex.close().unwrap(), vec![1]);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// Model-checks the swap protocol: a producer pushing through two one-sample
    /// buffers while the writer drains, then closing. In every interleaving each sample
    /// is either written (in order) or counted as dropped, nothing is written twice and
    /// close never deadlocks.
    #[test]
    fn loom_swap_protocol() {
        loom::model(|| {
            let cfg = ExportConfig {
                batch: 1,
                ..ExportConfig::default()
            };
            let mut ex = Exporter::start(cfg, MemoryWriter::default()).unwrap();
            let stats = ex.stats();
            let mut accepted = Vec::new();
            for i in 0..3u32 {
                if ex.push(i).is_ok() {
                    accepted.push(i);
                }
            }
            let rows = ex.close().unwrap();
            let c = stats.snapshot();
            assert_eq!(rows, accepted);
            assert_eq!(c.accepted + c.dropped, 3);
            assert_eq!(c.delivered, c.accepted);
        });
    }
}
