//! The `kwik-record` binary: record, ls, verify, recover, and a `kill -9` mid-recording
//! followed by `recover` and `verify`.

mod support;

use support::{BIN, find, run};

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn record_ls_verify_json() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "record",
            "--source",
            "sim-imu",
            "--rate",
            "200",
            "--duration",
            "300ms",
            "--out",
            "r",
            "--quiet",
            "--prefix",
            "bench1",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("duration limit"), "{text}");
    let csv = find(&dir.path().join("r"), ".csv");
    assert_eq!(csv.len(), 1);
    let o = run(&["verify", csv[0].to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let o = run(&["--json", "verify", csv[0].to_str().unwrap()], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let o = run(&["ls", "r"], dir.path());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("bench1_") && text.contains("finished"),
        "{text}"
    );
    let o = run(&["--json", "ls", "r"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["meta"]["state"], "finished");
}

#[test]
fn errors_say_what_to_do_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "record",
            "--source",
            "sim-imu",
            "--format",
            "labview",
            "--duration",
            "1s",
            "--quiet",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("use --format csv"));
    let o = run(
        &[
            "record", "--source", "sim-imu", "--prefix", "../x", "--quiet",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("use 1-64 characters"));
    let o = run(&["verify", "nothing.csv"], dir.path());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(".meta.json"));
    let o = run(
        &["record", "--source", "sim-imu", "--duration", "10 parsecs"],
        dir.path(),
    );
    assert!(!o.status.success());
}

/// `record --source ble:NAME` without a reachable board (no BLE adapter here; none of
/// these machines has a virtual controller): a clear error, exit code 3, no files. A
/// build without the feature says how to get it.
#[test]
fn record_from_ble_without_a_board_fails_clearly_before_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "record",
            "--source",
            "ble:XIAO-Sense",
            "--duration",
            "1s",
            "--out",
            "rec",
        ],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    if cfg!(feature = "ble") {
        assert!(
            err.contains("cannot connect to the BLE board \"XIAO-Sense\""),
            "{err}"
        );
    } else {
        assert!(err.contains("rebuild with `--features ble`"), "{err}");
    }
    assert!(find(&dir.path().join("rec"), ".csv").is_empty());
}

fn kill_then_recover(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "record",
            "--source",
            "sim-efield",
            "--rate",
            "20000",
            "--format",
            format,
            "--labview-block",
            "100",
            "--sync-interval",
            "50ms",
            "--batch",
            "512",
            "--out",
            "r",
            "--quiet",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until data reached the disk, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let big = dir.path().join("r").is_dir()
            && find(&dir.path().join("r"), ".csv")
                .first()
                .is_some_and(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 200_000));
        if big {
            break;
        }
        assert!(Instant::now() < deadline, "the recorder wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let csv = find(&dir.path().join("r"), ".csv");
    let file = csv[0].to_str().unwrap();
    let o = run(&["verify", file], dir.path());
    assert!(
        !o.status.success(),
        "verify must flag an interrupted recording"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("recover"));
    let o = run(&["recover", file], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["verify", file], dir.path());
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let sc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kwik_recorder::sidecar_path(&csv[0])).unwrap())
            .unwrap();
    assert_eq!(sc["state"], "recovered");
    let samples = sc["samples"].as_u64().unwrap();
    assert!(samples > 1000, "{samples}");
    // Every count balances after recover: what was produced is recorded, filtered or
    // counted dropped (the last refresh before the kill is older than the last rows).
    let dropped: u64 = ["source", "ring", "exporter", "writer"]
        .iter()
        .map(|k| sc["dropped"][k].as_u64().unwrap())
        .sum();
    assert_eq!(
        sc["produced"].as_u64().unwrap(),
        samples + sc["filtered_inactive"].as_u64().unwrap() + dropped,
        "{sc}"
    );
    // The recovered rows are exactly the generator's first `samples` samples.
    if format == "csv" {
        let p = kwik_recorder::parse_csv::<kwik_recorder::EfieldSample>(
            &std::fs::read(&csv[0]).unwrap(),
        )
        .unwrap();
        use kwik_recorder::SignalGenerator;
        let g = kwik_recorder::SimEfield {
            rate: kwik_recorder::RateHz::try_from(20_000).unwrap(),
        };
        for (i, r) in p.rows.iter().enumerate() {
            assert_eq!(*r, g.sample(i as u64), "row {i}");
        }
    }
    // Recovering twice is harmless.
    assert!(run(&["recover", file], dir.path()).status.success());
}

#[test]
fn kill_9_then_recover_and_verify_csv() {
    kill_then_recover("csv");
}

#[test]
fn kill_9_then_recover_and_verify_labview() {
    kill_then_recover("labview");
}

/// `record --source serial:PATH` on a pseudo-terminal fed by the firmware's simulator
/// with dropped and corrupted samples: from the first sample the recorder received,
/// every sample sent intact is in the file and every one the board numbered is recorded
/// or counted as a source loss; the recording stops by itself when the board goes away,
/// and `verify` accepts it.
#[test]
fn record_from_a_serial_board_counts_its_gaps_and_stops_when_it_goes_away() {
    use kwik_recorder::ImuRow;
    use kwik_recorder::imu_row;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let n = 3_000u64;
    let mut sim = xiao_sim::SimConfig::new(11, std::num::NonZeroU32::new(1000).unwrap());
    sim.faults.drop = xiao_sim::Probability::try_from(0.01).unwrap();
    sim.faults.corrupt = xiao_sim::Probability::try_from(0.01).unwrap();
    let ticks: Vec<xiao_sim::Tick> = {
        let mut s = xiao_sim::Simulator::new(sim);
        (0..n).map(|_| s.tick()).collect()
    };

    let mut pty = xiao_sim::Pty::open().unwrap();
    let port = pty.slave_path().to_path_buf();
    let child = Command::new(BIN)
        .args([
            "--json", "record", "--out", "r", "--prefix", "board", "--source",
        ])
        .arg(format!("serial:{}", port.display()))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Write once the recorder has the port open. (Opening a serial port flushes what
    // was waiting, so the first few frames may still be lost before the recording
    // starts; the expectations below count from the first sample recorded.)
    let opened = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == port))
    };
    let t = Instant::now();
    while !opened(child.id()) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the recorder never opened {port:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for t in &ticks {
        pty.write_all(&t.bytes).unwrap();
    }
    assert!(pty.wait_drained(Duration::from_secs(30)).unwrap());
    drop(pty); // the board goes away
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["stop_reason"], "source ended", "{v}");

    let csv = find(&dir.path().join("r"), ".csv");
    assert_eq!(csv.len(), 1);
    let rows = kwik_recorder::parse_csv::<ImuRow>(&std::fs::read(&csv[0]).unwrap())
        .unwrap()
        .rows;
    // The ground truth from the first sample recorded: what was sent intact, and how
    // many the board numbered up to its last intact sample (losses after it leave no
    // gap the host could see).
    let sent = |t: &xiao_sim::Tick| t.fate == xiao_sim::Fate::Sent;
    let first = ticks
        .iter()
        .position(|t| sent(t) && Some(&imu_row(&t.sample)) == rows.first())
        .expect("the first recorded row is one the board sent");
    assert!(first < 100, "the first {first} samples were not recorded");
    let intact: Vec<ImuRow> = ticks[first..]
        .iter()
        .filter(|t| sent(t))
        .map(|t| imu_row(&t.sample))
        .collect();
    let numbered = (ticks.iter().rposition(sent).unwrap() - first + 1) as u64;
    assert_eq!(rows, intact);
    let lost = numbered - intact.len() as u64;
    assert!(lost > 0, "the simulator's faults were not seen");
    let stream = &v["status"]["streams"][0];
    assert_eq!(stream["samples"], intact.len() as u64, "{stream}");
    assert_eq!(stream["produced"], numbered, "{stream}");
    assert_eq!(stream["dropped"]["source"], lost, "{stream}");
    assert_eq!(stream["dropped"]["ring"], 0);
    let sidecar = kwik_recorder::Sidecar::read(&kwik_recorder::sidecar_path(&csv[0])).unwrap();
    assert_eq!(sidecar.dropped.source, lost);
    assert_eq!(sidecar.device["kind"], "xiao-serial");
    // What the board said of itself (it repeats it every 2 s of device time).
    let [major, minor, patch] = xiao_sim::SIM_FIRMWARE_VERSION;
    assert_eq!(
        sidecar.device["firmware"],
        format!("{major}.{minor}.{patch}")
    );
    assert_eq!(sidecar.device["device_rate_hz"], "1000");
    let o = run(&["verify", csv[0].to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

/// Two `--source`s make one recording group: an E-field stream and a stage stream with
/// one session id and one start, each at its own rate, both verified; two sources of
/// one schema are refused with a message that says why.
#[test]
fn several_sources_record_one_group() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "--json",
            "record",
            "--source",
            "sim-efield@2000",
            "--source",
            "sim-stage@100",
            "--duration",
            "1s",
            "--out",
            "r",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut csv = find(&dir.path().join("r"), ".csv");
    csv.sort_by_key(|p| p.to_string_lossy().contains("stage"));
    assert_eq!(csv.len(), 2, "{csv:?}");
    let meta: Vec<kwik_recorder::Sidecar> = csv
        .iter()
        .map(|f| kwik_recorder::Sidecar::read(&kwik_recorder::sidecar_path(f)).unwrap())
        .collect();
    assert_eq!(
        (meta[0].schema.as_str(), meta[1].schema.as_str()),
        ("efield", "stage")
    );
    assert_eq!(meta[0].session_id, meta[1].session_id);
    assert_eq!(meta[0].start_utc, meta[1].start_utc);
    assert_eq!(meta[0].settings["efield.rate_hz"], "2000");
    assert_eq!(meta[1].settings["stage.rate_hz"], "100");
    assert_eq!(meta[0].device["name"], "sim-efield + sim-stage");
    // Each at its own rate, both stopped together: twenty E-field rows per stage row
    // (not checked exactly: the pacing follows the wall clock).
    assert!(
        meta[0].samples > 5 * meta[1].samples && meta[1].samples > 0,
        "efield {} stage {}",
        meta[0].samples,
        meta[1].samples
    );
    assert!(
        meta.iter()
            .all(|m| m.dropped.total() == 0 && m.produced == m.samples)
    );
    for f in &csv {
        let o = run(&["verify", f.to_str().unwrap()], dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }

    let o = run(
        &[
            "record",
            "--source",
            "sim-imu",
            "--source",
            "sim-imu@50",
            "--quiet",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--source sim-imu and --source sim-imu both give xiao-imu samples"),
        "{err}"
    );
}

/// `--format labview` with an E-field and a stage stream: the E-field in LabVIEW blocks,
/// the stage positions as the bench's position exporter wrote them beside such files
/// (`# Metadata` block, empty line, header row, rows, `# End of export,N`), with the
/// generator's values. Killed (SIGKILL) mid-run, `recover` completes both and both verify.
#[test]
fn a_labview_group_writes_stage_positions_in_the_bench_layout_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "record",
            "--source",
            "sim-efield@2000",
            "--source",
            "sim-stage@200",
        ])
        .args([
            "--format",
            "labview",
            "--sync-interval",
            "50ms",
            "--out",
            "r",
            "--quiet",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stage_file = || {
        find(&dir.path().join("r"), ".csv")
            .into_iter()
            .find(|f| f.to_string_lossy().contains("stage"))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stage_file().is_some_and(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 4000)) {
        assert!(Instant::now() < deadline, "no stage rows on disk");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let stage = stage_file().unwrap();
    for f in find(&dir.path().join("r"), ".csv") {
        let o = run(&["recover", f.to_str().unwrap()], dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = run(&["verify", f.to_str().unwrap()], dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    let text = std::fs::read_to_string(&stage).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# Metadata");
    let header = lines
        .iter()
        .position(|l| *l == "index,timestamp_rel,segment_id,is_active_line,x,y")
        .expect("the header row");
    assert_eq!(lines[header - 1], "", "an empty line before the header row");
    assert!(lines[1..header - 1].iter().all(|l| l.starts_with("# ")));
    let rows = &lines[header + 1..lines.len() - 1];
    assert_eq!(
        *lines.last().unwrap(),
        format!("# End of export,{}", rows.len())
    );
    let sc = kwik_recorder::Sidecar::read(&kwik_recorder::sidecar_path(&stage)).unwrap();
    assert_eq!(
        (sc.format.as_str(), sc.state),
        ("csv", kwik_recorder::RecordingState::Recovered)
    );
    assert_eq!(sc.csv.as_ref().unwrap().compat, "bench");
    assert_eq!(sc.samples, rows.len() as u64);
    // The rows are the generator's, written as a standard CSV would write them.
    use kwik_recorder::SignalGenerator;
    let generator = kwik_recorder::SimStage {
        rate: kwik_recorder::RateHz::try_from(200).unwrap(),
    };
    let parsed = kwik_recorder::parse_csv::<kwik_recorder::StagePosition>(text.as_bytes()).unwrap();
    assert_eq!(parsed.rows.len(), rows.len());
    for (i, row) in parsed.rows.iter().enumerate() {
        assert_eq!(*row, generator.sample(i as u64), "row {i}");
    }
}
