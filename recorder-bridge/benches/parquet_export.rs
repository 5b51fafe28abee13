//! CSV recording to Parquet: `kwik_recorder::export` against pyarrow converting the
//! same CSV (`pyarrow.csv.read_csv` -> `pyarrow.parquet.write_table`, zstd), in the same
//! run, on the same file. A timed command rather than criterion: one conversion of
//! 10 M rows takes seconds. Rows: `KWIK_BENCH_ROWS` (default 10 000 000); runs of each:
//! `KWIK_BENCH_RUNS` (default 3); the medians and their ratio are printed.
//!
//! `cargo bench -p kwik-recorder --bench parquet_export` (needs `tools/py-venv` for the
//! peer; without it only ours is timed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kwik_recorder::{
    CsvOptions, EfieldSample, Format, ParquetOptions, RateHz, RecordingConfig, RecordingGroup,
    SignalGenerator, SimEfield, export, ring,
};

const PYARROW: &str = r#"
import sys, time
import pyarrow.csv as pc, pyarrow.parquet as pq
src, dst = sys.argv[1], sys.argv[2]
t = time.perf_counter()
# The footer line (`# end ...`) has one field: skipped as an invalid row.
table = pc.read_csv(src, parse_options=pc.ParseOptions(invalid_row_handler=lambda r: "skip"))
pq.write_table(table, dst, compression="zstd")
print(time.perf_counter() - t, table.num_rows)
"#;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn python() -> Option<PathBuf> {
    let p = match std::env::var_os("KWIK_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py-venv/bin/python"),
    };
    p.exists().then_some(p)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows: u64 = std::env::var("KWIK_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let runs: usize = std::env::var("KWIK_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir =
        tempfile::tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")).unwrap();
    // The CSV: a real recording of the E-field simulator, without comment lines so that
    // pyarrow reads it as it is.
    let g = SimEfield {
        rate: RateHz::try_from(128_000).unwrap(),
    };
    let (mut w, r) = ring::<EfieldSample>(rows as usize + 1);
    for chunk in (0..rows).collect::<Vec<_>>().chunks(65_536) {
        let s: Vec<EfieldSample> = chunk.iter().map(|&i| g.sample(i)).collect();
        w.push_slice(&s);
    }
    let config = RecordingConfig {
        out_dir: dir.path().to_path_buf(),
        format: Format::Csv(CsvOptions {
            comment_header: false,
            ..CsvOptions::default()
        }),
        ..RecordingConfig::default()
    };
    let mut group = RecordingGroup::new(config);
    group.add_stream("efield", r);
    let summary = group.start().unwrap().stop();
    drop(w);
    let csv = summary.files[0][0].clone();
    let csv_bytes = std::fs::metadata(&csv).unwrap().len();
    println!("input: {rows} E-field rows, CSV {csv_bytes} bytes");
    let format = Format::Parquet(ParquetOptions::default());
    let mut ours = Vec::new();
    let mut ours_bytes = 0;
    for i in 0..runs {
        let out = dir.path().join(format!("ours{i}.parquet"));
        let t = Instant::now();
        let report = export(&csv, &format, &out).unwrap();
        ours.push(t.elapsed());
        assert_eq!(report.samples, rows);
        ours_bytes = report.bytes;
        println!("  ours    run {i}: {:.3} s", ours[i].as_secs_f64());
    }
    let ours_m = median(ours);
    println!(
        "ours:    median {:.3} s, {:.2} M rows/s, {} bytes ({:.2}x smaller than the CSV)",
        ours_m.as_secs_f64(),
        rows as f64 / ours_m.as_secs_f64() / 1e6,
        ours_bytes,
        csv_bytes as f64 / ours_bytes as f64
    );
    let Some(py) = python() else {
        println!("pyarrow: no target/py-venv (run tools/py-venv); peer not measured");
        return;
    };
    let mut theirs = Vec::new();
    let mut theirs_bytes = 0;
    for i in 0..runs {
        let out = dir.path().join(format!("pyarrow{i}.parquet"));
        let o = Command::new(&py)
            .args(["-c", PYARROW])
            .arg(&csv)
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        let mut f = text.split_whitespace();
        let secs: f64 = f.next().unwrap().parse().unwrap();
        let n: u64 = f.next().unwrap().parse().unwrap();
        assert_eq!(n, rows);
        theirs.push(Duration::from_secs_f64(secs));
        theirs_bytes = std::fs::metadata(&out).unwrap().len();
        println!("  pyarrow run {i}: {secs:.3} s");
    }
    let theirs_m = median(theirs);
    println!(
        "pyarrow: median {:.3} s, {:.2} M rows/s, {} bytes ({:.2}x smaller than the CSV)",
        theirs_m.as_secs_f64(),
        rows as f64 / theirs_m.as_secs_f64() / 1e6,
        theirs_bytes,
        csv_bytes as f64 / theirs_bytes as f64
    );
    println!(
        "ours / pyarrow rate: {:.2}x",
        theirs_m.as_secs_f64() / ours_m.as_secs_f64()
    );
}
