//! `kwik-record record --format parquet` and `--format mcap` killed with SIGKILL
//! mid-recording, then `recover` and `verify`; `export` from the command line, and its
//! refusal of a cut file.

mod support;

use support::{BIN, find, python, run};

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

/// Starts `kwik-record record` of a 20 kHz E-field simulation in `format` with a 100 ms
/// sync interval in `dir`, waits until its data file passes `bytes`, lets it run 250 ms
/// more and kills it with SIGKILL; returns the data file and how long it ran.
fn record_then_kill(dir: &Path, format: &str, ext: &str, bytes: u64) -> (PathBuf, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args([
            "record",
            "--source",
            "sim-efield@20000",
            "--format",
            format,
            "--sync-interval",
            "100ms",
            "--out",
            "r",
            "--quiet",
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let big = find(&dir.join("r"), ext)
            .first()
            .is_some_and(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > bytes));
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
    let files = find(&dir.join("r"), ext);
    assert_eq!(files.len(), 1, "{files:?}");
    (files[0].clone(), ran)
}

/// SIGKILL while recording MCAP at 20 kHz with a 100 ms sync interval: `verify` flags
/// the file without a summary, `recover` rewrites it from its whole chunks with a
/// summary, then `verify` passes; the Python `mcap` reader opens it through its summary
/// and finds as many messages as the sidecar says, and they are the generator's first
/// samples in order. The loss is printed against the bound of one sync interval.
#[test]
fn kill_9_during_mcap_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ran) = record_then_kill(dir.path(), "mcap", ".mcap", 300_000);
    let file = path.to_str().unwrap();
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
    let o = run(&["ls", "r"], dir.path());
    assert!(
        text(&o).contains("mcap") && text(&o).contains("recovered"),
        "{}",
        text(&o)
    );
    let sc = kwik_recorder::Sidecar::read(&kwik_recorder::sidecar_path(&path)).unwrap();
    assert_eq!(sc.state, kwik_recorder::RecordingState::Recovered);
    let c = kwik_recorder::read_mcap(&path).unwrap();
    assert_eq!(c.messages, sc.samples);
    assert!(c.summary);
    assert!(c.messages > 1000, "{}", c.messages);
    let produced = (ran.as_secs_f64() * 20_000.0) as i64;
    eprintln!(
        "recovered {} messages of about {produced} produced before the kill; lost ~{} (bound: one 100 ms sync interval = 2000 samples, plus the exporter's buffers and process start-up)",
        c.messages,
        produced - c.messages as i64
    );
    let Some(python) = python() else {
        return;
    };
    // The reader's messages: their count, and that they are the generator's first
    // samples in order.
    let script = "import sys, json\n\
from mcap.reader import make_reader\n\
r = make_reader(open(sys.argv[1], 'rb'))\n\
s = r.get_summary()\n\
assert s is not None and s.statistics is not None\n\
rows = [json.loads(m.data) for _, _, m in r.iter_messages()]\n\
assert s.statistics.message_count == len(rows)\n\
json.dump([[m['index'], repr(m['ADC1_Ch1_Ex_real'])] for m in rows], open(sys.argv[2], 'w'))\n\
print(len(rows))\n";
    let dump = dir.path().join("rows.json");
    let o = Command::new(python)
        .args(["-c", script, file, dump.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        sc.samples.to_string()
    );
    // Floats travel as Python's repr text, parsed here exactly.
    let rows: Vec<(u64, String)> = serde_json::from_slice(&std::fs::read(&dump).unwrap()).unwrap();
    use kwik_recorder::SignalGenerator;
    let g = kwik_recorder::SimEfield {
        rate: kwik_recorder::RateHz::try_from(20_000).unwrap(),
    };
    for (n, (index, ch1)) in rows.iter().enumerate() {
        let want = g.sample(n as u64);
        let ch1: f64 = ch1.parse().unwrap();
        assert_eq!((*index, ch1), (want.index, want.channels[0]), "row {n}");
    }
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
    assert!(out.ends_with("-parquet.parquet"), "{out}");
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
    // The same cut file to MCAP: refused, nothing written.
    let o = run(
        &["export", input, "--to", "mcap", "--out", "cut.mcap"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("is cut off"), "{}", text(&o));
    assert!(!dir.path().join("cut.mcap").exists());
    assert!(!dir.path().join("cut.mcap.partial").exists());
    // The whole file again: `export --to mcap`, then `verify`.
    std::fs::write(&csv[0], &bytes).unwrap();
    let o = run(
        &[
            "--json",
            "export",
            input,
            "--to",
            "mcap",
            "--out",
            "whole.mcap",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sc = kwik_recorder::Sidecar::read(&kwik_recorder::sidecar_path(&csv[0])).unwrap();
    assert_eq!(v["samples"], sc.samples, "{v}");
    let o = run(&["verify", "whole.mcap"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    // The default MCAP export sits beside the default Parquet one: both verify.
    let o = run(&["--json", "export", input, "--to", "mcap"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mcap = v["output"].as_str().unwrap().to_owned();
    assert!(mcap.ends_with("-mcap.mcap"), "{mcap}");
    for f in [&out, &mcap] {
        let o = run(&["verify", f], dir.path());
        assert!(o.status.success(), "{f}: {}", text(&o));
    }
}
