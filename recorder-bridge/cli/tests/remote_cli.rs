//! The `kwik-record` binary's remote commands as real processes: the demo with its
//! JSON summary, a recorder server killed (SIGKILL) and restarted mid-run while a
//! gateway streams to it, and a server recording Parquet and MCAP.

mod support;

use support::{BIN, csv_files, free_udp_port, python, start_serve, stop_serve};

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kwik_recorder::{
    EfieldSample, ImuRow, LabviewLayout, RateHz, Schema, Sidecar, SignalGenerator, SimEfield,
    parse_csv, parse_labview, sidecar_path,
};
use kwik_recorder::{Gateway, GatewayConfig, ServerIdentity, SimImuConfig, StreamKey, sim_imu};

#[test]
fn demo_runs_and_its_summary_says_nothing_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--duration", "2", "--json", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["stages"]["device_produced"], 2000);
    assert_eq!(v["stages"]["written"], 2000);
    assert_eq!(v["file_matches_simulator"], true);
    let file = PathBuf::from(v["files"][0].as_str().unwrap());
    assert!(file.starts_with(dir.path()), "{file:?}");
    let rows = parse_csv::<ImuRow>(&std::fs::read(&file).unwrap())
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 2000);
    // The human form prints the same verdict.
    let text = Command::new(BIN)
        .args(["demo", "--duration", "1", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(text.status.success());
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(s.contains("OK: nothing was lost"), "{s}");
}

/// One of the demo's two paths is killed mid-run (its relay drops every datagram), with
/// the aggregate and the redundant scheduler: nothing is lost, the killed path is
/// abandoned, and the delivery latency of every sample is measured.
#[test]
fn one_of_two_paths_killed_mid_run_loses_nothing() {
    for scheduler in ["aggregate", "redundant"] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args([
                "demo",
                "--json",
                "--duration",
                "3s",
                "--rate",
                "1000",
                "--seed",
                "3",
            ])
            .args(["--scheduler", scheduler, "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{scheduler}: no JSON summary ({e}): {out:?}"));
        assert_eq!(summary["ok"], true, "{scheduler}: {summary:#}");
        assert_eq!(summary["lost"], 0);
        // Delivery latency across the kill, reported (benches hold timing claims; see
        // docs/BENCHMARKS.md): every sample arrived, each one measured.
        let l = &summary["latency"];
        println!("{scheduler}: delivery latency around the path kill: {l}");
        assert_eq!(l["never_arrived"], 0, "{l}");
        assert!(
            !l["before_kill"].is_null() && !l["after_kill"].is_null(),
            "{l}"
        );
        assert_eq!(summary["stages"]["written"], 3000);
        assert_eq!(summary["file_matches_simulator"], true);
        let paths = summary["paths"].as_array().unwrap();
        assert!(
            paths
                .iter()
                .any(|p| p["killed"] == true && p["state"] == "Abandoned"),
            "{scheduler}: killed path not abandoned: {paths:?}"
        );
        assert!(out.status.success(), "{scheduler}: {out:?}");
    }
}

/// A two-thread runtime and the configuration of a gateway streaming a simulated board
/// of `n` real-time 1 kHz IMU samples as `device` to the server on `port`.
fn imu_gateway(
    out: &Path,
    port: u16,
    device: &str,
    seed: u64,
    n: u64,
) -> (tokio::runtime::Runtime, GatewayConfig, SimImuConfig) {
    let id = ServerIdentity::load(&out.join("tls")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = SimImuConfig {
        seed,
        rate_hz: NonZeroU32::new(1000).unwrap(),
        limit: Some(n),
        real_time: true,
    };
    let mut gc = GatewayConfig::new(
        SocketAddr::from(([127, 0, 0, 1], port)),
        id.client_config()
            .unwrap()
            .session(kwik::SessionConfig::lan()),
        StreamKey {
            device: device.into(),
            stream: "imu".into(),
        },
    );
    gc.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    (rt, gc, sim)
}

fn rows_in_order(dir: &Path) -> Vec<ImuRow> {
    let mut files: Vec<(String, PathBuf)> = csv_files(dir)
        .into_iter()
        .map(|p| (Sidecar::read(&sidecar_path(&p)).unwrap().start_utc, p))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "expected a file per server run: {files:?}"
    );
    let mut rows = Vec::new();
    for (_, f) in files {
        let p = parse_csv::<ImuRow>(&std::fs::read(&f).unwrap()).unwrap();
        assert!(
            p.footer.is_some(),
            "{} not finalised or recovered",
            f.display()
        );
        rows.extend(p.rows);
    }
    rows
}

#[test]
fn server_killed_and_restarted_mid_run_gateway_spools_and_resumes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let port = free_udp_port();
    let mut server = start_serve(&out, port, &[]);
    let n = 4_000u64;
    let (rt, mut gc, sim) = imu_gateway(&out, port, "xiao-restart", 8, n);
    gc.queue_capacity = 300;
    gc.spool = Some((dir.path().join("spool").join("gw.spool"), 64 << 20));
    gc.reconnect_interval = Duration::from_millis(200);
    let _guard = rt.enter();
    let gw = Gateway::start(gc, sim_imu(sim)).unwrap();
    let t = Instant::now();
    while gw.counts().acked < 1000 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill().unwrap(); // SIGKILL: no chance to finalise anything
    server.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let spooled_while_down = gw.counts().spooled;
    let server = start_serve(&out, port, &[]);
    let report = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), gw.finish())
            .await
            .expect("gateway finished")
    });
    stop_serve(server);
    assert_eq!(report.error, None, "{report:?}");
    let c = report.counts;
    assert_eq!(c.device_samples, n);
    assert_eq!(c.acked, n);
    assert_eq!(c.dropped_overflow, 0);
    assert!(c.connects >= 2, "{c:?}");
    assert!(spooled_while_down > 0, "the gateway did not spool: {c:?}");
    let rows = rows_in_order(&out.join("xiao-restart"));
    assert_eq!(rows.len() as u64, n, "every sample exactly once");
    assert_eq!(rows, sim.expected(n));
    // `verify FOLDER`: both recordings, and the run whole across the restart.
    let v = Command::new(BIN)
        .args(["verify", "--json"])
        .arg(out.join("xiao-restart"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(v.status.success(), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let runs = v["runs"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{v}");
    assert!(runs[0]["recordings"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(
        runs[0]["end_seq"].as_u64().unwrap() - runs[0]["first_seq"].as_u64().unwrap(),
        n,
        "{v}"
    );
    assert_eq!(v["runs"]["duplicate_samples"], 0, "{v}");
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One Prometheus scrape over plain HTTP/1.0 (no chunked encoding, body to EOF).
fn scrape(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.").then_some(text)
}

/// The value of `name{...device="DEV"...}` in a scrape, if present.
fn metric(text: &str, name: &str, device: &str) -> Option<f64> {
    let label = format!("device=\"{device}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The one finished data file of a device and its sidecar.
fn only_file(dir: &Path) -> (PathBuf, Sidecar) {
    let mut found = csv_files(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    let p = found.remove(0);
    let sc = Sidecar::read(&sidecar_path(&p)).unwrap();
    (p, sc)
}

#[test]
fn prometheus_endpoint_counts_move_during_a_recording_and_match_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let (port, mport) = (free_udp_port(), free_tcp_port());
    let metrics = format!("127.0.0.1:{mport}");
    let server = start_serve(&out, port, &["--metrics", &metrics]);
    let n = 3_000u64;
    let (rt, gc, sim) = imu_gateway(&out, port, "xiao-metrics", 4, n);
    let _guard = rt.enter();
    let gw = Gateway::start(gc, sim_imu(sim)).unwrap();
    // Scrape while the board streams in real time (3 s): the written count must be seen
    // strictly between 0 and n and then grow.
    let mut seen: Vec<f64> = Vec::new();
    while !gw.source_finished() {
        if let Some(v) = scrape(mport)
            .as_deref()
            .and_then(|t| metric(t, "kwik_record_written_samples", "xiao-metrics"))
        {
            seen.push(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), gw.finish())
            .await
            .expect("gateway finished")
    });
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(report.counts.acked, n);
    let moving: Vec<f64> = seen
        .iter()
        .copied()
        .filter(|v| *v > 0.0 && *v < n as f64)
        .collect();
    assert!(
        moving.len() >= 2 && moving.last() > moving.first(),
        "the written count did not move during the recording: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "counts went back: {seen:?}"
    );
    // The recording is stopped and finalised; the server publishes every 200 ms.
    let (file, sidecar) = only_file(&out.join("xiao-metrics"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = scrape(mport).expect("metrics endpoint answers");
        if metric(&t, "kwik_record_written_samples", "xiao-metrics") == Some(n as f64)
            || Instant::now() > deadline
        {
            break t;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let m = |name: &str| metric(&text, name, "xiao-metrics");
    assert_eq!(sidecar.samples, n, "{}", file.display());
    assert_eq!(
        m("kwik_record_written_samples"),
        Some(sidecar.samples as f64)
    );
    assert_eq!(m("kwik_record_received_samples"), Some(n as f64));
    assert_eq!(
        m("kwik_record_recorder_dropped_samples"),
        Some(sidecar.dropped.recorder() as f64)
    );
    assert_eq!(m("kwik_record_duplicate_samples"), Some(0.0));
    assert_eq!(m("kwik_record_missing_samples"), Some(0.0));
    assert!(
        text.lines()
            .any(|l| l.starts_with("kwik_record_sessions_total") && !l.ends_with(" 0")),
        "no session counted: {text}"
    );
    stop_serve(server);
}

/// `kwik-record stream --source sim-efield` into `kwik-record serve`, once per layout:
/// the server's file holds exactly the generator's samples, value by value (standard
/// CSV: every column; LabVIEW: every cell of the 16-row blocks, constants included).
#[test]
fn sim_efield_through_stream_and_serve_is_recorded_exactly_in_csv_and_labview() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let port = free_udp_port();
    let server = start_serve(&out, port, &[]);
    let (rate, seconds) = (2_000u32, 1.5f64);
    let n = (f64::from(rate) * seconds) as u64;
    let generator = SimEfield {
        rate: RateHz::try_from(rate).unwrap(),
    };
    let expected: Vec<EfieldSample> = (0..n).map(|i| generator.sample(i)).collect();
    for format in ["csv", "labview"] {
        let device = format!("bench-{format}");
        let run = Command::new(BIN)
            .args(["stream", "--json", "--source", "sim-efield", "--to"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--ca")
            .arg(out.join("tls").join("ca.der"))
            .args([
                "--device", &device, "--stream", "efield", "--format", format,
            ])
            .args([
                "--rate",
                &rate.to_string(),
                "--seconds",
                &seconds.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{format}: stream failed: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(report["counts"]["device_samples"], n, "{format}: {report}");
        assert_eq!(report["counts"]["acked"], n, "{format}: {report}");
        let (file, sidecar) = only_file(&out.join(&device));
        assert_eq!(sidecar.samples, n, "{format}");
        assert_eq!(sidecar.format, format);
        assert_eq!(sidecar.schema, "efield");
        let bytes = std::fs::read(&file).unwrap();
        match format {
            "csv" => {
                let parsed = parse_csv::<EfieldSample>(&bytes).unwrap();
                assert_eq!(parsed.rows.len() as u64, n);
                for (i, (got, want)) in parsed.rows.iter().zip(&expected).enumerate() {
                    assert_eq!(got, want, "csv row {i}");
                }
                assert_eq!(parsed.footer.map(|f| f.samples), Some(n));
            }
            _ => {
                let layout = LabviewLayout::default();
                let parsed = parse_labview(&bytes, &layout).unwrap();
                let want: Vec<_> = expected.iter().map(|s| s.labview().unwrap()).collect();
                assert_eq!(parsed.samples.len() as u64, n);
                for (i, (got, want)) in parsed.samples.iter().zip(&want).enumerate() {
                    assert_eq!(got, want, "labview column {i}");
                }
                assert_eq!(parsed.block_sizes, vec![1000, 1000, 1000]);
                assert_eq!(parsed.partial_tail, 0);
            }
        }
    }
    stop_serve(server);
}

/// A server started with `--format parquet` and one with `--format mcap`, each fed by
/// `stream` with 3 000 E-field samples: every sample is acknowledged, `verify` passes,
/// and pyarrow (Parquet) or the `mcap` reader (MCAP) reads back exactly the generator's
/// samples in order.
#[test]
fn sim_efield_through_stream_and_serve_is_recorded_exactly_in_parquet_and_mcap() {
    let (rate, seconds) = (2_000u32, 1.5f64);
    let n = (f64::from(rate) * seconds) as u64;
    let generator = SimEfield {
        rate: RateHz::try_from(rate).unwrap(),
    };
    for format in ["parquet", "mcap"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rec");
        let port = free_udp_port();
        let server = start_serve(
            &out,
            port,
            &["--format", format, "--sync-interval", "200ms"],
        );
        let device = format!("bench-{format}");
        let run = Command::new(BIN)
            .args(["stream", "--json", "--source", "sim-efield", "--to"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--ca")
            .arg(out.join("tls").join("ca.der"))
            .args(["--device", &device, "--stream", "efield"])
            .args([
                "--rate",
                &rate.to_string(),
                "--seconds",
                &seconds.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{format}: stream failed: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(report["counts"]["device_samples"], n, "{format}: {report}");
        assert_eq!(report["counts"]["acked"], n, "{format}: {report}");
        stop_serve(server);
        let files = support::find(&out.join(&device), &format!(".{format}"));
        assert_eq!(files.len(), 1, "{format}: {files:?}");
        let file = files[0].clone();
        let sidecar = Sidecar::read(&sidecar_path(&file)).unwrap();
        assert_eq!(sidecar.samples, n, "{format}");
        assert_eq!(sidecar.format, format);
        let v = Command::new(BIN).arg("verify").arg(&file).output().unwrap();
        assert!(
            v.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&v.stdout)
        );
        let Some(python) = python() else {
            continue;
        };
        let script = match format {
            "parquet" => {
                "import sys, json, pyarrow.parquet as pq\n\
t = pq.read_table(sys.argv[1])\n\
json.dump([t.column('index').to_pylist(), [repr(v) for v in t.column('ADC1_Ch1 Ex_real').to_pylist()]], open(sys.argv[2], 'w'))\n"
            }
            _ => {
                "import sys, json\n\
from mcap.reader import make_reader\n\
r = make_reader(open(sys.argv[1], 'rb'))\n\
assert r.get_summary().statistics.message_count > 0\n\
rows = [json.loads(m.data) for _, _, m in r.iter_messages()]\n\
json.dump([[m['index'] for m in rows], [repr(m['ADC1_Ch1_Ex_real']) for m in rows]], open(sys.argv[2], 'w'))\n"
            }
        };
        let dump = dir.path().join("rows.json");
        let o = Command::new(python)
            .args(["-c", script])
            .arg(&file)
            .arg(&dump)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Floats travel as Python's repr text, parsed here exactly.
        let (index, ch1): (Vec<u64>, Vec<String>) =
            serde_json::from_slice(&std::fs::read(&dump).unwrap()).unwrap();
        assert_eq!(index.len() as u64, n, "{format}");
        for (i, (got_index, got_ch1)) in index.iter().zip(&ch1).enumerate() {
            let want = generator.sample(i as u64);
            let got_ch1: f64 = got_ch1.parse().unwrap();
            assert_eq!(
                (*got_index, got_ch1),
                (want.index, want.channels[0]),
                "{format} row {i}"
            );
        }
    }
}
