//! Exporter throughput: our encoder, our whole exporter pipeline (producer push ->
//! double buffer -> writer thread -> file, SHA-256 included) and the `csv` crate with
//! serde, writing the same rows to a file, in one criterion group per schema.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-rec cargo bench -p kwik-recorder --bench export -- --warm-up-time 1 --measurement-time 3`
//!
//! Every iteration writes `EXPORT_ROWS` rows (default 10 000 000, as the issue asks):
//! the first `min(EXPORT_ROWS, 1 000 000)` generated rows, cycled, so the three
//! contenders write byte-for-byte the same rows without holding 10 M samples in memory.
//! `EXPORT_DIR` picks the directory of the file (default: the system temp dir); on a
//! machine whose disk is slower than the encoders, `EXPORT_DIR=/dev/shm` measures the
//! CPU cost instead of the disk. `EXPORT_INTERLEAVED=R` runs the three in turn for R
//! rounds and prints medians and ratios instead (see [`interleaved`]).

#![allow(missing_docs)] // the criterion macros generate undocumented functions

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kwik_recorder::{
    CsvOptions, EfieldSample, Encoder, ExportConfig, Exporter, FileConfig, FileWriter, Footer,
    Format, ImuRow, OverflowPolicy, RateHz, Schema, SignalGenerator, SimEfield, SimImu,
    SizeLimitAction,
};
use serde::Serialize;

/// Rows the pipeline's producer hands over per call.
const CHUNK: usize = 4096;

/// Distinct rows generated; longer runs cycle through them.
const DISTINCT: u64 = 1_000_000;

fn rows_per_iteration() -> u64 {
    std::env::var("EXPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

/// `n` rows: `rows` cycled.
fn cycled<S>(rows: &[S], n: u64) -> impl Iterator<Item = &S> {
    rows.iter().cycle().take(n as usize)
}

#[derive(Serialize)]
struct ImuSerde {
    millis: u32,
    ax: f32,
    ay: f32,
    az: f32,
    gx: f32,
    gy: f32,
    gz: f32,
    #[serde(rename = "tempC")]
    temp_c: f32,
    #[serde(rename = "audioRMS")]
    audio_rms: f32,
}

impl From<&ImuRow> for ImuSerde {
    fn from(r: &ImuRow) -> Self {
        ImuSerde {
            millis: r.millis,
            ax: r.ax,
            ay: r.ay,
            az: r.az,
            gx: r.gx,
            gy: r.gy,
            gz: r.gz,
            temp_c: r.temp_c,
            audio_rms: r.audio_rms,
        }
    }
}

#[derive(Serialize)]
struct EfieldSerde {
    index: u64,
    timestamp_rel: String,
    segment_id: u32,
    is_active_line: u8,
    c: [f64; 8],
}

impl From<&EfieldSample> for EfieldSerde {
    fn from(s: &EfieldSample) -> Self {
        EfieldSerde {
            index: s.index,
            // The csv crate has no fixed-decimal float; the 6-decimal time goes as text.
            timestamp_rel: s.t_rel.to_string(),
            segment_id: s.segment.id.0,
            is_active_line: s.segment.line.as_flag(),
            c: s.channels,
        }
    }
}

fn ours<S: Schema>(rows: &[S], n: u64, path: &std::path::Path) {
    let mut enc = Encoder::<S>::new(Format::Csv(CsvOptions::default())).unwrap();
    let mut f = File::create(path).unwrap();
    let mut out = Vec::with_capacity(512 * 1024);
    enc.begin(&[], &mut out);
    for r in cycled(rows, n) {
        enc.push(r, &mut out);
        if out.len() >= 256 * 1024 {
            f.write_all(&out).unwrap();
            out.clear();
        }
    }
    enc.finish(
        Footer {
            samples: n,
            dropped: 0,
        },
        &mut out,
    );
    f.write_all(&out).unwrap();
}

fn ours_pipeline<S: Schema>(rows: &[S], n: u64, path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let w = FileWriter::create(
        Encoder::<S>::new(Format::default()).unwrap(),
        FileConfig {
            path: path.to_path_buf(),
            comments: vec![],
            size_limit: None,
            on_size_limit: SizeLimitAction::Stop,
            sync_interval: Duration::from_secs(3600),
            fault: None,
        },
        std::sync::Arc::new(|| 0),
    )
    .unwrap();
    let config = ExportConfig {
        overflow: OverflowPolicy::Reject,
        ..ExportConfig::default()
    };
    let mut ex = Exporter::start(config, w).unwrap();
    // The producer hands over runs of rows, as the recorder's worker does with what it
    // reads from the ring. Reject + wait: when both buffers are full the producer sleeps
    // until the writer gives one back instead of dropping, so the figure is the
    // pipeline's sustained throughput (and a waiting producer leaves the CPU to it).
    let mut left = n as usize;
    let mut at = 0usize;
    while left > 0 {
        let len = CHUNK.min(left).min(rows.len() - at);
        let mut run = &rows[at..at + len];
        while !run.is_empty() {
            let took = ex.push_slice(run);
            run = &run[took..];
            if !run.is_empty() {
                ex.wait_for_room(Duration::from_secs(1));
            }
        }
        left -= len;
        at = (at + len) % rows.len();
    }
    let stats = ex.stats();
    let report = ex.close().unwrap();
    assert_eq!(stats.snapshot().dropped, 0, "the bench must not drop");
    assert_eq!(report.parts[0].samples, n, "every row must be written");
}

fn serde_csv<S: Schema, T: Serialize>(
    rows: &[S],
    n: u64,
    path: &std::path::Path,
    conv: impl Fn(&S) -> T,
) {
    let f = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    // Header written by hand: the csv crate cannot derive one from an array field.
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(f);
    w.write_record(S::COLUMNS).unwrap();
    for r in cycled(rows, n) {
        w.serialize(conv(r)).unwrap();
    }
    w.flush().unwrap();
}

/// The rows to write (`DISTINCT` at most, cycled to `n`), `n`, and the output file in a
/// fresh directory under `EXPORT_DIR` (kept alive by the returned guard).
fn workload<S>(gen_row: impl Fn(u64) -> S) -> (Vec<S>, u64, tempfile::TempDir, std::path::PathBuf) {
    let n = rows_per_iteration();
    let rows: Vec<S> = (0..n.min(DISTINCT)).map(gen_row).collect();
    let dir = match std::env::var_os("EXPORT_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let path = dir.path().join("bench.csv");
    (rows, n, dir, path)
}

fn bench_schema<S: Schema, T: Serialize>(
    c: &mut Criterion,
    name: &str,
    gen_row: impl Fn(u64) -> S,
    conv: fn(&S) -> T,
) {
    let (rows, n, _dir, path) = workload(gen_row);
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function(BenchmarkId::new("kwik_encoder", n), |b| {
        b.iter(|| ours(&rows, n, &path))
    });
    g.bench_function(BenchmarkId::new("kwik_exporter_thread", n), |b| {
        b.iter(|| ours_pipeline(&rows, n, &path))
    });
    g.bench_function(BenchmarkId::new("csv_serde", n), |b| {
        b.iter(|| serde_csv(&rows, n, &path, conv))
    });
    g.finish();
}

/// `EXPORT_INTERLEAVED=R`: instead of criterion's one-after-the-other sampling, run
/// the three contenders in turn, R rounds, and print each one's median and the ratios.
/// On a machine whose load changes from minute to minute this compares them under the
/// same conditions.
fn interleaved<S: Schema, T: Serialize>(
    name: &str,
    rounds: usize,
    gen_row: impl Fn(u64) -> S,
    conv: fn(&S) -> T,
) {
    let (rows, n, _dir, path) = workload(gen_row);
    let mut times: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        ours(&rows, n, &path);
        times[0].push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        ours_pipeline(&rows, n, &path);
        times[1].push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        serde_csv(&rows, n, &path, conv);
        times[2].push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [a, b, c] = times.each_mut().map(median);
    let mrows = |secs: f64| n as f64 / secs / 1e6;
    println!(
        "{name}: {n} rows x {rounds} rounds, medians: kwik_encoder {a:.3} s ({:.2} M rows/s), \
         kwik_exporter_thread {b:.3} s ({:.2} M rows/s), csv_serde {c:.3} s ({:.2} M rows/s); \
         encoder/csv {:.2}x, exporter/csv {:.2}x",
        mrows(a),
        mrows(b),
        mrows(c),
        c / a,
        c / b
    );
}

fn benches(c: &mut Criterion) {
    let imu = SimImu {
        rate: RateHz::try_from(1000).unwrap(),
    };
    let ef = SimEfield {
        rate: RateHz::try_from(128_000).unwrap(),
    };
    if let Some(rounds) = std::env::var("EXPORT_INTERLEAVED")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        interleaved(
            "export_imu_9col",
            rounds,
            |i| imu.sample(i),
            |r: &ImuRow| ImuSerde::from(r),
        );
        interleaved(
            "export_efield_12col",
            rounds,
            |i| ef.sample(i),
            |r: &EfieldSample| EfieldSerde::from(r),
        );
        return;
    }
    bench_schema(
        c,
        "export_imu_9col",
        |i| imu.sample(i),
        |r: &ImuRow| ImuSerde::from(r),
    );
    bench_schema(
        c,
        "export_efield_12col",
        |i| ef.sample(i),
        |r: &EfieldSample| EfieldSerde::from(r),
    );
}

criterion_group!(export, benches);
criterion_main!(export);
