//! Remote recording end to end on loopback: real KWIK sessions (quinn), real recorder
//! threads, real files, compared value by value with the simulator's ground truth.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kwik_recorder::remote::{
    Gateway, GatewayConfig, RecorderServer, ServerConfig, ServerIdentity, SimImuConfig, StreamKey,
    sim_imu,
};
use kwik_recorder::{ImuRow, parse_csv};

fn key(device: &str) -> StreamKey {
    StreamKey {
        device: device.into(),
        stream: "imu".into(),
    }
}

/// Every data file of a device, in recording order, parsed.
fn recorded_rows(out: &Path, device: &str) -> Vec<ImuRow> {
    let mut files: Vec<PathBuf> = Vec::new();
    for day in std::fs::read_dir(out.join(device)).unwrap().flatten() {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "csv") {
                files.push(f.path());
            }
        }
    }
    files.sort();
    let mut rows = Vec::new();
    for f in files {
        let parsed = parse_csv::<ImuRow>(&std::fs::read(&f).unwrap()).unwrap();
        assert!(parsed.footer.is_some(), "{} has no footer", f.display());
        rows.extend(parsed.rows);
    }
    rows
}

fn server_config(out: &Path) -> ServerConfig {
    let mut c = ServerConfig {
        out_dir: out.to_path_buf(),
        ..ServerConfig::default()
    };
    c.recording.min_free_bytes = 0;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_device_is_recorded_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let id = ServerIdentity::generate(&[]).unwrap();
    let server = RecorderServer::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        id.server_config().unwrap(),
        server_config(dir.path()),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let n = 5_000;
    let sim = SimImuConfig {
        seed: 11,
        rate_hz: NonZeroU32::new(1000).unwrap(),
        limit: Some(n),
        real_time: false,
    };
    let mut cfg = GatewayConfig::new(addr, id.client_config().unwrap(), key("xiao-a"));
    cfg.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let gw = Gateway::start(cfg, sim_imu(sim)).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(60), gw.finish())
        .await
        .expect("gateway finished");
    assert_eq!(report.error, None);
    assert_eq!(report.undelivered, 0);
    let c = report.counts;
    assert_eq!(c.device_samples, n);
    assert_eq!(c.acked, n);
    assert_eq!(c.dropped_overflow, 0);
    let rows = recorded_rows(dir.path(), "xiao-a");
    assert_eq!(rows.len() as u64, n);
    assert_eq!(rows, sim.expected(n));
    let reports = server.shutdown().await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].written, n);
    assert!(reports[0].balanced());
}
