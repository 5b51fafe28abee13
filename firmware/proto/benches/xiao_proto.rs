//! Device-stream codecs of `xiao-proto` and the `xiao-sim` board simulator.
//!
//! Peers in the same groups: the board's CSV text form (parsed by `xiao-proto`'s
//! allocation-free parser and by the `csv` crate) against the binary frames.
//!
//! `cargo bench -p xiao-proto --bench xiao_proto`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::num::NonZeroU32;
use xiao_proto::{
    CSV_LINE_CAPACITY, Frame, FrameDecoder, ImuSample, parse_csv_line, write_csv_line,
};
use xiao_sim::{SimConfig, Simulator};

const SAMPLES: usize = 1000;

fn samples() -> Vec<ImuSample> {
    let mut sim = Simulator::new(SimConfig::new(1, NonZeroU32::new(100).unwrap()));
    (0..SAMPLES).map(|_| sim.tick().sample).collect()
}

fn decode(c: &mut Criterion) {
    let samples = samples();
    let frames: Vec<u8> = samples
        .iter()
        .flat_map(|s| Frame::Sample(*s).encode().as_bytes().to_vec())
        .collect();
    let mut csv_text = Vec::new();
    for s in &samples {
        let mut line = [0u8; CSV_LINE_CAPACITY];
        let n = write_csv_line(s, &mut line).unwrap();
        csv_text.extend_from_slice(&line[..n]);
    }

    let mut group = c.benchmark_group("xiao_decode_1000_samples");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.bench_function("frames/FrameDecoder", |b| {
        b.iter(|| {
            let mut decoder = FrameDecoder::new();
            let mut n = 0usize;
            decoder.decode_with(black_box(&frames), |r| n += usize::from(r.is_ok()));
            assert_eq!(n, SAMPLES);
        })
    });
    group.bench_function("csv/parse_csv_line", |b| {
        b.iter(|| {
            let text = std::str::from_utf8(black_box(&csv_text)).unwrap();
            let n = text.lines().filter(|l| parse_csv_line(l).is_ok()).count();
            assert_eq!(n, SAMPLES);
        })
    });
    group.bench_function("csv/csv_crate", |b| {
        b.iter(|| {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(black_box(csv_text.as_slice()));
            let mut record = csv::StringRecord::new();
            let mut n = 0usize;
            while reader.read_record(&mut record).unwrap() {
                let millis: u32 = record[0].parse().unwrap();
                let values: f32 = (1..9)
                    .map(|i| record[i].trim().parse::<f32>().unwrap())
                    .sum();
                black_box((millis, values));
                n += 1;
            }
            assert_eq!(n, SAMPLES);
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let samples = samples();
    let mut group = c.benchmark_group("xiao_encode_1000_samples");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.bench_function("frames/Frame::encode", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for s in black_box(&samples) {
                bytes += Frame::Sample(*s).encode().len();
            }
            bytes
        })
    });
    group.bench_function("csv/write_csv_line", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let mut line = [0u8; CSV_LINE_CAPACITY];
            for s in black_box(&samples) {
                bytes += write_csv_line(s, &mut line).unwrap();
            }
            bytes
        })
    });
    group.finish();
}

fn simulate(c: &mut Criterion) {
    let mut group = c.benchmark_group("xiao_sim_1000_ticks");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    for hz in [25u32, 1000] {
        group.bench_function(format!("tick_at_{hz}_hz"), |b| {
            b.iter_batched(
                || Simulator::new(SimConfig::new(1, NonZeroU32::new(hz).unwrap())),
                |mut sim| {
                    for _ in 0..SAMPLES {
                        black_box(sim.tick());
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode, simulate);
criterion_main!(benches);
