//! Commands ended from outside: a reader of stdout that goes away (`kwik-record demo |
//! head -3`) ends the output, never the work and never with a panic; SIGINT and SIGTERM
//! stop the demo early with its normal summary.

mod support;

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kwik_recorder::{ImuRow, parse_csv};
use support::{BIN, csv_files, run};

/// Waits up to `limit` for `child`, killing it (and failing) when it does not end.
fn wait_for(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// Runs `kwik-record ARGS` with a stdout whose reader is gone before the command writes
/// (the read end of its pipe is closed at once): every write fails with EPIPE.
fn with_closed_stdout(args: &[&str], cwd: &Path) -> (ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = wait_for(&mut child, Duration::from_secs(60), &args.join(" "));
    (status, stderr_of(&mut child))
}

fn rows(file: &Path) -> Vec<ImuRow> {
    parse_csv::<ImuRow>(&std::fs::read(file).unwrap())
        .unwrap()
        .rows
}

/// `demo | head -3`: the demo reads three lines' worth of reader, then goes on to the
/// end of its run with nobody listening; it records everything and exits 0.
#[test]
fn demo_into_head_finishes_its_run_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--duration", "1s", "--out"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        lines.next().unwrap().unwrap();
    }
    drop(lines); // what `head -3` does after its third line
    let status = wait_for(&mut child, Duration::from_secs(60), "demo");
    let err = stderr_of(&mut child);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
    let files = csv_files(&dir.path().join("xiao-sim-1"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(rows(&files[0]).len(), 1000);
}

/// Every kind of output (progress and summary lines, JSON, a listing, completions, the
/// man page, a verify report) into a closed pipe: exit codes as documented, no panic,
/// the recording complete.
#[test]
fn every_command_takes_a_closed_stdout_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let out_s = out.to_str().unwrap();
    let (status, err) = with_closed_stdout(
        &[
            "record",
            "--source",
            "sim-imu",
            "--duration",
            "1s",
            "--out",
            out_s,
        ],
        dir.path(),
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "record: {err}");
    let files = csv_files(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files[0].to_str().unwrap();
    for args in [
        vec!["ls", out_s],
        vec!["--json", "ls", out_s],
        vec!["verify", file],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["config", "print", "record", "--source", "sim-imu"],
    ] {
        let (status, err) = with_closed_stdout(&args, dir.path());
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
    }
    // The same commands with an open stdout still print (the output was only dropped
    // because nobody read it).
    let listed = run(&["ls", out_s], dir.path());
    assert!(listed.status.success());
    assert!(!listed.stdout.is_empty());
}

/// SIGINT while the demo runs (text output): it stops the board, delivers what the board
/// produced, prints its normal summary with the interruption, and exits 0 since nothing
/// produced was lost.
#[test]
fn sigint_stops_the_demo_early_with_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--duration", "60s", "--out"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        let streaming = l.starts_with("gateway streaming");
        seen.push(l);
        if streaming {
            break;
        }
    }
    assert!(
        seen.last()
            .is_some_and(|l| l.starts_with("gateway streaming")),
        "{seen:#?}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = wait_for(&mut child, Duration::from_secs(60), "demo after SIGINT");
    let err = stderr_of(&mut child);
    let text = rest.join("\n");
    assert_eq!(status.code(), Some(0), "{text}\n{err}");
    assert!(
        text.contains("interrupted: the board stops after"),
        "{text}"
    );
    assert!(text.contains("interrupted at t="), "{text}");
    assert!(text.contains("OK: nothing was lost"), "{text}");
    assert!(text.contains("no path killed"), "{text}");
    let files = csv_files(&dir.path().join("xiao-sim-1"));
    assert_eq!(files.len(), 1, "{files:?}");
    let n = rows(&files[0]).len();
    assert!(n > 0 && n < 60_000, "{n} rows");
    assert!(
        text.contains(&format!("recorded {n} samples into:")),
        "{text}"
    );
}

/// SIGTERM with `--json`, after the path kill: the JSON summary names the interruption,
/// the books balance against what the board produced, the file equals the simulator's
/// samples, exit 0.
#[test]
fn sigterm_stops_the_demo_early_with_its_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--json", "--duration", "8s", "--out"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Past halfway (4 s of board time, after the session came up): the path is killed.
    let device = dir.path().join("xiao-sim-1");
    let start = Instant::now();
    while csv_files(&device).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "no recording");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(5000));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = wait_for(&mut child, Duration::from_secs(60), "demo after SIGTERM");
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "{stdout}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let produced = v["stages"]["device_produced"].as_u64().unwrap();
    assert!(v["interrupted_at_s"].as_f64().is_some(), "{v:#}");
    assert!(v["killed_at_s"].as_f64().is_some(), "{v:#}");
    assert!(produced > 0 && produced < 8000, "{v:#}");
    assert_eq!(v["stages"]["written"], produced);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["ok"], true);
    assert_eq!(v["file_matches_simulator"], true);
    let files = csv_files(&device);
    assert_eq!(rows(&files[0]).len() as u64, produced);
}
