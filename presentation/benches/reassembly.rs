//! Reassembly throughput of kwik-presentation against a plain memcpy of the same bytes.
//!
//! Group `reassembly`: 64 MiB per iteration in 1200-byte chunks (a QUIC datagram's
//! worth), throughput in bytes of the original stream. Each case inserts every
//! chunk (an owned `Bytes`, as the network hands it over) and drains what became
//! readable after each insert, the way a reader that keeps up would.
//!
//! * `memcpy` — one copy of the 64 MiB into a preallocated buffer: the physical
//!   reference.
//! * `{stream_buffer,presentation}/in_order` — chunks in order.
//! * `…/shuffled_64` — order shuffled within consecutive windows of 64 chunks.
//! * `…/duplicated` — every chunk delivered twice (redundant paths).
//! * `…/streams_16` — 16 streams of 4 MiB, chunks interleaved round-robin.
//!
//! `stream_buffer` measures the reassembly structure alone; `presentation` the whole
//! receive side (stream lookup, window, backpressure, events, reader readiness).
//!
//! quinn-proto's receive assembler (`connection::assembler::Assembler`) is
//! `pub(super)` and only reachable through a full `Connection`, so it cannot be
//! measured as a peer here.
//!
//! Run: `cargo bench -p kwik-presentation --bench reassembly -- --warm-up-time 1 --measurement-time 5`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kwik_presentation::{Presentation, PresentationConfig, StreamBuffer, StreamId, StreamRead};

const TOTAL: usize = 64 << 20;
const CHUNK: usize = 1200;
const STREAMS: usize = 16;

/// A chunk for stream `stream` at `offset`.
#[derive(Clone)]
struct Segment {
    stream: usize,
    offset: u64,
    data: Bytes,
    fin: bool,
}

/// Small deterministic generator (xorshift64*), so every run sees the same order.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn source() -> Bytes {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut v = Vec::with_capacity(TOTAL);
    while v.len() < TOTAL {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(TOTAL);
    Bytes::from(v)
}

/// The stream `data` cut into chunks, tagged with `stream`.
fn chunks(data: &Bytes, stream: usize) -> Vec<Segment> {
    (0..data.len())
        .step_by(CHUNK)
        .map(|start| {
            let end = (start + CHUNK).min(data.len());
            Segment {
                stream,
                offset: start as u64,
                data: data.slice(start..end),
                fin: end == data.len(),
            }
        })
        .collect()
}

fn in_order(data: &Bytes) -> Vec<Segment> {
    chunks(data, 0)
}

fn shuffled(data: &Bytes) -> Vec<Segment> {
    let mut segs = chunks(data, 0);
    let mut rng = Rng(42);
    for window in segs.chunks_mut(64) {
        for i in (1..window.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            window.swap(i, j);
        }
    }
    segs
}

fn duplicated(data: &Bytes) -> Vec<Segment> {
    chunks(data, 0)
        .into_iter()
        .flat_map(|s| [s.clone(), s])
        .collect()
}

fn interleaved(data: &Bytes) -> Vec<Segment> {
    let per_stream = TOTAL / STREAMS;
    let streams: Vec<Vec<Segment>> = (0..STREAMS)
        .map(|s| chunks(&data.slice(s * per_stream..(s + 1) * per_stream), s))
        .collect();
    let rounds = streams[0].len();
    (0..rounds)
        .flat_map(|i| streams.iter().map(move |s| s[i].clone()))
        .collect()
}

/// Inserts every segment into per-stream `StreamBuffer`s, draining after each.
fn run_stream_buffers(segs: Vec<Segment>, now: Instant) -> u64 {
    let mut buffers: Vec<StreamBuffer> = (0..STREAMS)
        .map(|_| StreamBuffer::new(TOTAL as u64))
        .collect();
    let mut read = 0u64;
    for seg in segs {
        let buf = &mut buffers[seg.stream];
        // The limit covers the whole stream: no insert can fail.
        let _ = buf.insert(seg.offset, seg.data, seg.fin, now);
        while let StreamRead::Data(chunk) = buf.read_chunk(usize::MAX) {
            read += chunk.len() as u64;
        }
    }
    read
}

fn presentation() -> Presentation {
    let config = PresentationConfig::default()
        .session_window(TOTAL as u64)
        .stream_window(TOTAL as u64);
    let mut p = Presentation::new(config, Instant::now());
    for s in 0..STREAMS {
        let _ = p.open_stream(StreamId::new(s as u64 * 4 + 2));
    }
    p
}

/// Writes every segment into a `Presentation`, reading after each write and
/// draining its outputs (events for the senders, readers to wake) as a driver does.
fn run_presentation(p: &mut Presentation, segs: Vec<Segment>, now: Instant) -> u64 {
    let mut read = 0u64;
    for seg in segs {
        let id = StreamId::new(seg.stream as u64 * 4 + 2);
        let _ = p.write(id, seg.offset, seg.data, seg.fin, now);
        while let Ok(Some(chunk)) = p.read_chunk(id, usize::MAX) {
            read += chunk.len() as u64;
        }
        while let Some(ready) = p.poll_readable() {
            black_box(ready);
        }
        while let Some(event) = p.poll_event() {
            black_box(event);
        }
    }
    read
}

fn bench(c: &mut Criterion) {
    let data = source();
    let now = Instant::now();
    let mut group = c.benchmark_group("reassembly");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));

    let mut dst = vec![0u8; TOTAL];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&data[..]));
            black_box(dst.as_ptr());
        })
    });

    let cases: [(&str, Vec<Segment>); 4] = [
        ("in_order", in_order(&data)),
        ("shuffled_64", shuffled(&data)),
        ("duplicated", duplicated(&data)),
        ("streams_16", interleaved(&data)),
    ];
    for (name, segs) in &cases {
        group.bench_function(format!("stream_buffer/{name}"), |b| {
            b.iter_batched(
                || segs.clone(),
                |segs| {
                    let read = run_stream_buffers(segs, now);
                    assert_eq!(read, TOTAL as u64);
                    read
                },
                BatchSize::PerIteration,
            )
        });
    }
    for (name, segs) in &cases {
        group.bench_function(format!("presentation/{name}"), |b| {
            b.iter_batched(
                || (presentation(), segs.clone()),
                |(mut p, segs)| {
                    let read = run_presentation(&mut p, segs, now);
                    assert_eq!(read, TOTAL as u64);
                    p
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
