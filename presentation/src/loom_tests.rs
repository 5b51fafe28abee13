//! loom models of the concurrent parts (built only with `--cfg loom`).
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p kwik-presentation --release --lib loom`

use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use loom::sync::Arc;
use loom::thread;

use crate::{Presentation, PresentationConfig, StreamId, WriteError};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Bounding preemptions (override with LOOM_MAX_PREEMPTIONS) keeps the state
    // space small enough for CI on 2 cores (a few seconds for all models)
    // while still covering every interleaving of the lock acquisitions with up to
    // this many forced switches.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(6);
    }
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&runs);
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("loom explored {runs} interleavings");
    // A model with a single interleaving would check nothing about concurrency.
    assert!(runs > 1, "loom explored only {runs} interleaving");
}

fn session(window: u64, stream_window: u64) -> Presentation {
    let config = PresentationConfig::default()
        .session_window(window)
        .max_session_window(window)
        .stream_window(stream_window)
        .max_stream_window(stream_window);
    Presentation::new(config, Instant::now())
}

/// Reads the stream to its end, yielding to the model while nothing is readable.
fn read_to_end(p: &Presentation, id: StreamId) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match p.poll_read_chunk(id, usize::MAX, &mut cx) {
            Poll::Ready(Ok(Some(b))) => out.extend_from_slice(&b),
            Poll::Ready(Ok(None)) => return out,
            Poll::Ready(Err(e)) => panic!("read failed: {e}"),
            Poll::Pending => thread::yield_now(),
        }
    }
}

#[test]
fn loom_writer_and_reader() {
    model(|| {
        let p = Arc::new(session(64, 64));
        let id = StreamId::new(0);
        p.open_stream(id).unwrap();
        let writer = {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                let now = Instant::now();
                p.write(id, 2, Bytes::from_static(b"cd"), true, now)
                    .unwrap();
                p.write(id, 0, Bytes::from_static(b"ab"), false, now)
                    .unwrap();
            })
        };
        assert_eq!(read_to_end(&p, id), b"abcd");
        writer.join().unwrap();
        let s = p.stats();
        assert_eq!(
            (s.bytes_received, s.bytes_read, s.buffered_bytes),
            (4, 4, 0)
        );
    });
}

#[test]
fn loom_credit_release_unblocks_writer() {
    model(|| {
        // Stream window 4: the writer must wait for credit the reader releases.
        let p = Arc::new(session(64, 4));
        let id = StreamId::new(0);
        p.open_stream(id).unwrap();
        let writer = {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                let now = Instant::now();
                p.write(id, 0, Bytes::from_static(b"abcd"), false, now)
                    .unwrap();
                match p.write(id, 4, Bytes::from_static(b"ef"), true, now) {
                    Ok(_) => {}
                    Err(WriteError::FlowControl { .. }) => {
                        // Not yet released: wait for the credit, as a sender would.
                        while p.stream_credit(id).unwrap() < 6 {
                            thread::yield_now();
                        }
                        p.write(id, 4, Bytes::from_static(b"ef"), true, now)
                            .unwrap();
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            })
        };
        assert_eq!(read_to_end(&p, id), b"abcdef");
        writer.join().unwrap();
        let credit = p.stream_credit(id).unwrap();
        assert!(credit >= 6, "credit {credit}");
        assert_eq!(p.stats().buffered_bytes, 0);
    });
}

#[test]
fn loom_two_writers_one_stream() {
    model(|| {
        let p = Arc::new(session(64, 64));
        let id = StreamId::new(4);
        p.open_stream(id).unwrap();
        let spawn = |segments: &'static [(u64, &'static [u8], bool)]| {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                let mut total = (0, 0);
                for &(offset, data, fin) in segments {
                    let o = p
                        .write(id, offset, Bytes::from_static(data), fin, Instant::now())
                        .unwrap();
                    total.0 += o.new_bytes;
                    total.1 += o.duplicate_bytes;
                }
                total
            })
        };
        let a = spawn(&[(0, b"abc", false), (3, b"def", true)]);
        let b = spawn(&[(2, b"cde", false)]);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        // Every byte counted exactly once as new, whoever got there first.
        assert_eq!(a.0 + b.0, 6);
        assert_eq!(a.1 + b.1, 3);
        assert_eq!(read_to_end(&p, id), b"abcdef");
        let s = p.stats();
        assert_eq!(
            (s.bytes_received, s.duplicate_bytes, s.session_received),
            (6, 3, 6)
        );
    });
}

#[test]
fn loom_reader_stop_against_writer() {
    model(|| {
        let p = Arc::new(session(64, 64));
        let id = StreamId::new(8);
        p.open_stream(id).unwrap();
        let writer = {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                let now = Instant::now();
                p.write(id, 0, Bytes::from_static(b"abc"), false, now)
                    .unwrap();
                p.write(id, 3, Bytes::from_static(b"def"), true, now)
                    .unwrap();
            })
        };
        p.stop(id);
        writer.join().unwrap();
        // Whatever interleaving: nothing stays buffered and the whole stream counts
        // against (and was returned to) the session window.
        let s = p.stats();
        assert_eq!(s.buffered_bytes, 0);
        assert_eq!(s.session_received, 6);
        assert_eq!(s.discarded_bytes, 6);
    });
}

#[test]
fn loom_session_credit_is_shared_atomically() {
    model(|| {
        // Session window 6, two streams of 4 bytes each: exactly one write fits.
        let p = Arc::new(session(6, 64));
        let ids = [StreamId::new(0), StreamId::new(4)];
        for id in ids {
            p.open_stream(id).unwrap();
        }
        let writers: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let p = Arc::clone(&p);
                thread::spawn(move || {
                    p.write(id, 0, Bytes::from_static(b"wxyz"), false, Instant::now())
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 1, "{results:?}");
        assert!(results.iter().any(|r| matches!(
            r,
            Err(WriteError::SessionFlowControl {
                limit: 6,
                received: 8
            })
        )));
        let s = p.stats();
        assert_eq!((s.session_received, s.buffered_bytes), (4, 4));
    });
}
