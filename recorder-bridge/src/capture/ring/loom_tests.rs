//! loom models of the ring's seqlock (built only with `--cfg loom`; `.ci/run` runs them
//! with the crate's other models).
//!
//! Run: see the `loom models` step of `.ci/run` (the crate's test binary built with
//! `cargo rustc -p kwik-recorder --lib --profile test -- --cfg loom`, then run with the
//! filter `loom`).

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;

use super::*;

/// A sample whose halves must agree: a copy mixing two pushes is visibly torn.
fn sample(i: u64) -> (u64, u64) {
    (i, !i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Runs `f` under loom with a preemption bound (override with `LOOM_MAX_PREEMPTIONS`)
/// that keeps each model to seconds on two cores, and fails if loom explored a single
/// interleaving (which would check nothing about concurrency).
fn model(f: impl Fn() + Sync + Send + 'static) -> usize {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let runs = runs.load(Ordering::Relaxed);
    eprintln!("loom explored {runs} interleavings");
    assert!(runs > 1, "loom explored only {runs} interleaving");
    runs
}

/// Checks one `read` result against what the writer can have pushed: every value
/// whole, indices strictly increasing from the reader's position, and
/// `read + dropped` equal to the distance the reader moved.
fn check_read(from: SampleIndex, got: &[(u64, u64)], s: Since) {
    assert_eq!(got.len(), s.read);
    assert_eq!(s.read as u64 + s.dropped, s.next.0 - from.0, "{s:?}");
    let mut last = None;
    for &(i, h) in got {
        assert_eq!(sample(i), (i, h), "torn copy of sample {i}");
        assert!(
            (from.0..s.next.0).contains(&i),
            "sample {i} outside {from:?}..{s:?}"
        );
        assert!(last.is_none_or(|l| i > l), "sample {i} out of order");
        last = Some(i);
    }
}

/// Writer wraps a two-slot ring (three pushes) while a reader reads twice; after the
/// writer is joined a last read drains. In every interleaving no copy is torn, order
/// holds, and seen + dropped is exactly what was pushed. Some interleavings must drop
/// (the reader lost the race with the wrap-around), or the model did not reach the
/// overwrite it is there to check.
#[test]
fn loom_ring_wraparound_reads_are_whole_and_drops_exact() {
    static DROPPING_RUNS: AtomicUsize = AtomicUsize::new(0);
    let pushes = 3u64;
    model(move || {
        let (mut w, mut r) = ring::<(u64, u64)>(2);
        let writer = thread::spawn(move || {
            for i in 0..pushes {
                w.push(sample(i));
            }
        });
        let mut seen = Vec::new();
        let mut dropped = 0;
        for max in [1, usize::MAX] {
            let from = r.position();
            let mut got = Vec::new();
            let s = r.read(&mut got, max);
            check_read(from, &got, s);
            dropped += s.dropped;
            seen.extend(got);
        }
        if dropped > 0 {
            DROPPING_RUNS.fetch_add(1, Ordering::Relaxed);
        }
        writer.join().unwrap();
        let from = r.position();
        let mut got = Vec::new();
        let s = r.read(&mut got, usize::MAX);
        check_read(from, &got, s);
        dropped += s.dropped;
        seen.extend(got);
        assert_eq!(r.position(), SampleIndex(pushes));
        assert_eq!(
            seen.len() as u64 + dropped,
            pushes,
            "{seen:?} dropped {dropped}"
        );
        // Once the writer is done, what is still in the ring is read whole.
        assert!(seen.last() == Some(&sample(pushes - 1)), "{seen:?}");
    });
    assert!(DROPPING_RUNS.load(Ordering::Relaxed) > 0);
}

/// A one-slot ring read with `since` (the reader does not move) while the writer
/// overwrites the slot: the single slot is either read whole for the index asked or
/// counted dropped, never handed out for another index.
#[test]
fn loom_ring_single_slot_overwrite_is_detected() {
    model(|| {
        let (mut w, r) = ring::<(u64, u64)>(1);
        w.push(sample(0));
        let writer = thread::spawn(move || {
            w.push(sample(1));
            w.push(sample(2));
        });
        let mut got = Vec::new();
        let s = r.since(SampleIndex(0), &mut got, usize::MAX);
        check_read(SampleIndex(0), &got, s);
        assert!(got.len() <= 1);
        writer.join().unwrap();
    });
}

/// Upstream losses the writer reports reach a reader created before them, counted
/// once, whatever the interleaving with its reads.
#[test]
fn loom_ring_upstream_losses_are_counted_once() {
    model(|| {
        let (mut w, mut r) = ring::<u64>(2);
        w.push(1);
        let writer = thread::spawn(move || {
            w.count_lost_upstream(2);
            w.push(4);
        });
        let mut out = Vec::new();
        r.read(&mut out, usize::MAX);
        writer.join().unwrap();
        r.read(&mut out, usize::MAX);
        assert_eq!(out, vec![1, 4]);
        assert_eq!(r.lost_upstream(), 2);
    });
}
