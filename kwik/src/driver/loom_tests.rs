//! loom models of the driver's one shared hand-off: an application call that
//! finds nothing to do registers its waker under the session core's lock, and
//! whoever changes the core wakes it after releasing that lock (see
//! [`wakers`](crate::driver::wakers)). The core here is the session's real
//! receive side (a `Presentation` behind the driver's switchable mutex), the
//! registry the driver's real [`StreamWakers`]. A lost wake-up leaves the
//! reader parked forever, which loom reports as a deadlock.
//!
//! Built only with `--cfg loom` on this crate (tokio and quinn do not build
//! under a global one):
//! `cargo rustc -p kwik --lib --profile test -- --cfg loom`, then run the
//! test binary it names with the filter `loom`.

use std::sync::Arc as StdArc;
use std::task::{Context, Wake, Waker};
use std::time::Instant;

use bytes::Bytes;
use kwik_presentation::{Presentation, PresentationConfig, ReadError, StreamId};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

use crate::driver::sync::Mutex;
use crate::driver::wakers::{StreamWakers, WAKE_READ};

/// Unparks the model thread that registered it.
struct ParkWaker(thread::Thread);

impl Wake for ParkWaker {
    fn wake(self: StdArc<Self>) {
        self.0.unpark();
    }
}

/// One session's shared parts, as the driver holds them.
struct Shared {
    core: Mutex<Presentation>,
    wakers: StreamWakers,
    closed: AtomicBool,
}

const ID: StreamId = StreamId::new(2);

fn shared() -> Arc<Shared> {
    let config = PresentationConfig::default()
        .session_window(64)
        .max_session_window(64)
        .stream_window(64)
        .max_stream_window(64);
    let mut p = Presentation::new(config, Instant::now());
    p.open_stream(ID).expect("a fresh stream opens");
    Arc::new(Shared {
        core: Mutex::new(p),
        wakers: StreamWakers::default(),
        closed: AtomicBool::new(false),
    })
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Bounding preemptions (override with LOOM_MAX_PREEMPTIONS) keeps CI on 2
    // cores within seconds while still forcing every lock order of the hand-off.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    let runs = StdArc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = StdArc::clone(&runs);
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("loom explored {runs} interleavings");
    assert!(runs > 1, "loom explored only {runs} interleaving");
}

/// A path task: writes a segment under the core's lock, takes the streams the
/// core reports ready, and wakes their readers after the lock is released.
fn write(s: &Shared, offset: u64, data: &'static [u8], fin: bool) {
    let ready: Vec<StreamId> = {
        let mut core = s.core.lock();
        core.write(ID, offset, Bytes::from_static(data), fin, Instant::now())
            .expect("segment inside the credit");
        std::iter::from_fn(|| core.poll_readable()).collect()
    };
    for id in ready {
        s.wakers.wake((id, WAKE_READ));
    }
}

/// The application's reader, as `RecvStream::read_chunk` does it: read under
/// the lock, register on `Blocked` before unlocking, then check for a closed
/// session, and park until woken.
fn read_to_end(s: &Shared) -> Result<Vec<u8>, &'static str> {
    let waker = Waker::from(StdArc::new(ParkWaker(thread::current())));
    let cx = Context::from_waker(&waker);
    let mut out = Vec::new();
    loop {
        let r = {
            let mut core = s.core.lock();
            let r = core.read_chunk(ID, usize::MAX);
            if r == Err(ReadError::Blocked) {
                s.wakers.register((ID, WAKE_READ), cx.waker());
            }
            r
        };
        match r {
            Ok(Some(b)) => out.extend_from_slice(&b),
            Ok(None) => return Ok(out),
            Err(ReadError::Blocked) => {
                if s.closed.load(Ordering::SeqCst) {
                    return Err("session closed");
                }
                thread::park();
            }
            Err(_) => return Err("read failed"),
        }
    }
}

#[test]
fn loom_blocked_reader_is_woken_by_two_paths() {
    model(|| {
        let s = shared();
        let paths: Vec<_> = [(2u64, &b"cd"[..], true), (0, &b"ab"[..], false)]
            .into_iter()
            .map(|(offset, data, fin)| {
                let s = Arc::clone(&s);
                thread::spawn(move || write(&s, offset, data, fin))
            })
            .collect();
        let reader = {
            let s = Arc::clone(&s);
            thread::spawn(move || read_to_end(&s))
        };
        for p in paths {
            p.join().expect("path thread");
        }
        assert_eq!(reader.join().expect("reader thread"), Ok(b"abcd".to_vec()));
        let stats = s.core.lock().stats();
        assert_eq!((stats.bytes_read, stats.buffered_bytes), (4, 0));
    });
}

#[test]
fn loom_close_wakes_a_blocked_reader() {
    model(|| {
        let s = shared();
        let closer = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                s.closed.store(true, Ordering::SeqCst);
                s.wakers.wake_all();
            })
        };
        // The reader runs on its own model thread: a wake-up that comes after it
        // gave up must not land on a thread blocked in `join`.
        let reader = {
            let s = Arc::clone(&s);
            thread::spawn(move || read_to_end(&s))
        };
        closer.join().expect("closer thread");
        assert_eq!(reader.join().expect("reader thread"), Err("session closed"));
    });
}
