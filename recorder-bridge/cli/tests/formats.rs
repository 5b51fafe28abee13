//! `kwik-record record --format parquet` killed with SIGKILL mid-recording, then
//! `recover` and `verify`; `export` from the command line, and its refusal of a cut
//! file.

mod support;

use support::{BIN, find, run};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// SIGKILL while recording Parquet at 20 kHz with a 100 ms sync interval: `verify`
/// flags the open file, `recover` closes it from its journal, then `verify` passes, the
/// file opens with as many rows as the sidecar says, and they are the generator's
/// first samples in order. The loss (what the writer held since its last row group) is
/// printed against the bound.
#[test]
fn kill_9_during_parquet_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args([
            "record",
            "--source",
            "sim-efield@20000",
            "--format",
            "parquet",
            "--sync-interval",
            "100ms",
            "--out",
            "r",
            "--quiet",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let big = dir.path().join("r").is_dir()
            && find(&dir.path().join("r"), ".parquet")
                .first()
                .is_some_and(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 300_000));
        if big {
            break;
        }
        assert!(Instant::now() < deadline, "the recorder wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(250));
    child.kill().unwrap(); // SIGKILL
    let ran = started.elapsed();
    child.wait().unwrap();
    let files = find(&dir.path().join("r"), ".parquet");
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files[0].to_str().unwrap();
    let o = run(&["verify", file], dir.path());
    assert!(
        !o.status.success(),
        "verify must flag an interrupted recording"
    );
    assert!(text(&o).contains("recover"), "{}", text(&o));
    let o = run(&["recover", file], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["verify", file], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let sc = kwik_recorder::Sidecar::read(&kwik_recorder::sidecar_path(&files[0])).unwrap();
    assert_eq!(sc.state, kwik_recorder::RecordingState::Recovered);
    let c = kwik_recorder::read_parquet(&files[0]).unwrap();
    assert_eq!(c.rows, sc.samples);
    assert!(c.rows > 1000, "{}", c.rows);
    // The rows are the generator's first `rows` samples, in order.
    use kwik_recorder::SignalGenerator;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let g = kwik_recorder::SimEfield {
        rate: kwik_recorder::RateHz::try_from(20_000).unwrap(),
    };
    let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let mut n = 0u64;
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        let want = g.sample(n);
        assert_eq!(row.get_ulong(0).unwrap(), want.index, "row {n}");
        assert_eq!(row.get_double(5).unwrap(), want.channels[0], "row {n}");
        n += 1;
    }
    assert_eq!(n, c.rows);
    let produced = (ran.as_secs_f64() * 20_000.0) as i64;
    eprintln!(
        "recovered {} rows of about {produced} produced before the kill; lost ~{} (bound: one 100 ms sync interval = 2000 rows, plus the exporter's buffers and process start-up)",
        c.rows,
        produced - c.rows as i64
    );
    if let Some(python) = python() {
        let o = Command::new(python)
            .args([
                "-c",
                "import sys, pyarrow.parquet as pq, polars as pl; t = pq.read_table(sys.argv[1]); \
                 d = pl.read_parquet(sys.argv[1]); assert t.num_rows == d.height; print(t.num_rows)",
                file,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            c.rows.to_string()
        );
    }
}

/// The test venv's interpreter, or `None` (with one line saying why) unless
/// `KWIK_REQUIRE_PYTHON=1`.
fn python() -> Option<PathBuf> {
    let p = match std::env::var_os("KWIK_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/py-venv/bin/python"),
    };
    if p.exists() {
        return Some(p);
    }
    let msg = format!(
        "no Python interpreter at {} (set KWIK_PYTHON or run tools/py-venv); skipping the reader check",
        p.display()
    );
    assert!(
        std::env::var("KWIK_REQUIRE_PYTHON").as_deref() != Ok("1"),
        "{msg}"
    );
    eprintln!("{msg}");
    None
}

/// `export --to parquet` from the command line, then `verify` of what it wrote; a cut
/// file is refused with a message naming the line and leaves nothing behind.
#[test]
fn export_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "record",
            "--source",
            "sim-stage@2000",
            "--duration",
            "500ms",
            "--out",
            "r",
            "--quiet",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let csv = find(&dir.path().join("r"), ".csv");
    let input = csv[0].to_str().unwrap();
    let o = run(&["--json", "export", input, "--to", "parquet"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let out = v["output"].as_str().unwrap().to_owned();
    assert!(out.ends_with(".export.parquet"), "{out}");
    let o = run(&["verify", &out], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    // Cut the CSV mid-row: refused, nothing written.
    let bytes = std::fs::read(&csv[0]).unwrap();
    std::fs::write(&csv[0], &bytes[..bytes.len() - 30]).unwrap();
    let o = run(
        &["export", input, "--to", "parquet", "--out", "cut.parquet"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("is cut off"), "{}", text(&o));
    assert!(!dir.path().join("cut.parquet").exists());
    assert!(!dir.path().join("cut.parquet.partial").exists());
}
