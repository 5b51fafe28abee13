//! Exporter throughput: our encoder vs the `csv` crate with serde, same rows, same
//! file, in one criterion group per schema.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-rec cargo bench -p kwik-recorder --bench export`

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kwik_recorder::{
    CsvOptions, EfieldSample, Encoder, ExportConfig, Exporter, FileConfig, FileWriter, Footer,
    Format, ImuRow, Overflow, OverflowPolicy, RateHz, Schema, SignalGenerator, SimEfield, SimImu,
    SizeLimitAction,
};
use serde::Serialize;

const ROWS: u64 = 200_000;

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

fn ours<S: Schema>(rows: &[S], path: &std::path::Path) {
    let mut enc = Encoder::<S>::new(Format::Csv(CsvOptions::default())).unwrap();
    let mut f = File::create(path).unwrap();
    let mut out = Vec::with_capacity(1 << 20);
    enc.begin(&[], &mut out);
    for r in rows {
        enc.push(r, &mut out);
        if out.len() >= 1 << 20 {
            f.write_all(&out).unwrap();
            out.clear();
        }
    }
    enc.finish(
        Footer {
            samples: rows.len() as u64,
            dropped: 0,
        },
        &mut out,
    );
    f.write_all(&out).unwrap();
}

fn ours_pipeline<S: Schema>(rows: &[S], path: &std::path::Path) {
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
    for r in rows {
        // Reject hands a refused row back: the producer waits for the writer instead of
        // dropping, so the figure is the pipeline's sustained throughput.
        let mut row = *r;
        while let Err(Overflow::Full(back)) = ex.push(row) {
            row = back;
            std::thread::yield_now();
        }
    }
    let stats = ex.stats();
    ex.close().unwrap();
    assert_eq!(stats.snapshot().dropped, 0, "the bench must not drop");
}

fn serde_csv<S: Schema, T: Serialize>(rows: &[S], path: &std::path::Path, conv: impl Fn(&S) -> T) {
    let f = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    // Header written by hand: the csv crate cannot derive one from an array field.
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(f);
    w.write_record(S::COLUMNS).unwrap();
    for r in rows {
        w.serialize(conv(r)).unwrap();
    }
    w.flush().unwrap();
}

fn bench_schema<S: Schema, T: Serialize>(
    c: &mut Criterion,
    name: &str,
    rows: Vec<S>,
    conv: fn(&S) -> T,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.csv");
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function(BenchmarkId::new("kwik_encoder", ROWS), |b| {
        b.iter(|| ours(&rows, &path))
    });
    g.bench_function(BenchmarkId::new("kwik_exporter_thread", ROWS), |b| {
        b.iter(|| ours_pipeline(&rows, &path))
    });
    g.bench_function(BenchmarkId::new("csv_serde", ROWS), |b| {
        b.iter(|| serde_csv(&rows, &path, conv))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let imu = SimImu {
        rate: RateHz::try_from(1000).unwrap(),
    };
    let ef = SimEfield {
        rate: RateHz::try_from(128_000).unwrap(),
    };
    bench_schema(
        c,
        "export_imu_9col",
        (0..ROWS).map(|i| imu.sample(i)).collect(),
        |r: &ImuRow| ImuSerde::from(r),
    );
    bench_schema(
        c,
        "export_efield_12col",
        (0..ROWS).map(|i| ef.sample(i)).collect(),
        |r: &EfieldSample| EfieldSerde::from(r),
    );
}

criterion_group!(export, benches);
criterion_main!(export);
