//! The `kwik-record` binary's remote commands as real processes: the demo with its
//! JSON summary, and a recorder server killed (SIGKILL) and restarted mid-run while a
//! gateway streams to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kwik_recorder::remote::{
    Gateway, GatewayConfig, ServerIdentity, SimImuConfig, StreamKey, sim_imu,
};
use kwik_recorder::{ImuRow, Sidecar, parse_csv, sidecar_path};

const BIN: &str = env!("CARGO_BIN_EXE_kwik-record");

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

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_serve(out: &Path, port: u16) -> Child {
    let mut child = Command::new(BIN)
        .args(["serve", "--json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the "listening" line.
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    // Keep reading so the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    child
}

fn rows_in_order(dir: &Path) -> Vec<ImuRow> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for day in std::fs::read_dir(dir).unwrap().flatten() {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "csv") {
                files.push((Sidecar::read(&sidecar_path(&p)).unwrap().start_utc, p));
            }
        }
    }
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
    let mut server = start_serve(&out, port);
    let id = ServerIdentity::load(&out.join("tls")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = 4_000u64;
    let sim = SimImuConfig {
        seed: 8,
        rate_hz: NonZeroU32::new(1000).unwrap(),
        limit: Some(n),
        real_time: true,
    };
    let lan = kwik::SessionConfig::lan();
    let mut gc = GatewayConfig::new(
        SocketAddr::from(([127, 0, 0, 1], port)),
        id.client_config().unwrap().session(lan),
        StreamKey {
            device: "xiao-restart".into(),
            stream: "imu".into(),
        },
    );
    gc.bind = SocketAddr::from(([127, 0, 0, 1], 0));
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
    let mut server = start_serve(&out, port);
    let report = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), gw.finish())
            .await
            .expect("gateway finished")
    });
    // SIGTERM: the server finalises and exits.
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = server.wait().unwrap();
    assert!(status.success());
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
}
