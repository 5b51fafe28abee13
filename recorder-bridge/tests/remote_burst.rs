//! A burst of gateways starting at the same instant against one recorder server must
//! not cost any of them its first session (issue: 100 boards started together, some
//! first connections timed out and were retried).
//!
//! The fan-in bench showed why: while the server was starved of CPU for a few seconds
//! (the 100 simulators and gateways on the same two cores), the gateways' handshake
//! packets overflowed the server's UDP receive buffer (the kernel default, 208 KiB:
//! 92 datagrams of 1200 bytes); each dropped handshake packet cost its gateway a
//! QUIC retransmission timeout (1 s, 2 s, 4 s), and the gateways gave up after 5 s.
//!
//! Here the server is descheduled outright: its runtime runs on one thread, which
//! sleeps for [`STALL`] while [`GATEWAYS`] gateways start. Their first handshake
//! packets (one 1200-byte datagram each) must wait in the socket until the server
//! runs again, then every handshake must complete within the gateway's connect
//! timeout. It fails if the server socket keeps the kernel's default buffer (the
//! 93rd and later first packets are dropped, and so are their retransmissions at
//! 1, 3 and 7 s, all inside the stall; the next one, at 15 s, is after
//! [`CONNECT_TIMEOUT`]) or if the gateways give up before the server is back (the
//! old fixed 5 s connect timeout).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::mpsc;
use std::time::Duration;

use kwik::SessionConfig;

use kwik_recorder::{
    Gateway, GatewayConfig, GatewayReport, RecorderServer, RecorderServerConfig, ServerIdentity,
    SimImuConfig, StreamKey, StreamReport, sim_imu,
};

/// Gateways started together: more first packets than the kernel's default UDP
/// receive buffer holds.
const GATEWAYS: usize = 100;
/// How long the server does not run while they start: longer than QUIC's third
/// retransmission of a handshake packet (7 s after the first).
const STALL: Duration = Duration::from_secs(8);
/// The gateways' connect timeout: well after the server is back (so a loaded machine
/// has time to answer 100 handshakes), before QUIC's fourth retransmission (15 s).
/// The QUIC idle timeout, which also ends a handshake that hears nothing, is raised
/// above it ([`patient_session`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(13);
/// Both ends' session settings: a QUIC idle timeout of 20 s, above
/// [`CONNECT_TIMEOUT`] (a handshake that hears nothing ends at the idle timeout), and
/// long enough that a CI machine starving the server's one thread for a while does
/// not end a session once it is up: this test is about getting the first session.
fn patient_session() -> SessionConfig {
    SessionConfig::default().idle_timeout(Duration::from_secs(20))
}
/// Samples per device (100 Hz, real time: 2 s).
const SAMPLES: u64 = 200;

/// The recorder server on a single-threaded runtime of its own thread, so that the
/// test can stop it from running at all (as a starved process would be).
struct StalledServer {
    addr: SocketAddr,
    identity: ServerIdentity,
    go: mpsc::Sender<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Vec<StreamReport>>,
}

fn start_stalled_server(out: &std::path::Path) -> StalledServer {
    let identity = ServerIdentity::generate(&[]).unwrap();
    let tls = identity.server_config().unwrap().session(patient_session());
    let mut config = RecorderServerConfig {
        out_dir: out.to_path_buf(),
        ..RecorderServerConfig::default()
    };
    config.recording.min_free_bytes = 0;
    let (addr_tx, addr_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(async {
            RecorderServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), tls, config).unwrap()
        });
        addr_tx.send(server.local_addr().unwrap()).unwrap();
        // The stall: nothing of this runtime runs (no socket reads, no handshakes)
        // until the gateways have all started and the time is up.
        go_rx.recv().unwrap();
        std::thread::sleep(STALL);
        rt.block_on(async move {
            let _ = stop_rx.await;
            server.shutdown().await
        })
    });
    StalledServer {
        addr: addr_rx.recv().unwrap(),
        identity,
        go: go_tx,
        stop: stop_tx,
        thread,
    }
}

#[test]
fn burst_of_gateways_behind_a_stalled_server_all_keep_their_first_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_stalled_server(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    server.go.send(()).unwrap();
    let gateways: Vec<Gateway> = (0..GATEWAYS)
        .map(|d| {
            let mut gc = GatewayConfig::new(
                server.addr,
                server.identity.client_config().unwrap(),
                StreamKey {
                    device: format!("dev-{d:03}"),
                    stream: "imu".into(),
                },
            );
            gc.bind = SocketAddr::from(([127, 0, 0, 1], 0));
            gc.client = server
                .identity
                .client_config()
                .unwrap()
                .session(patient_session());
            gc.connect_timeout = CONNECT_TIMEOUT;
            let sim = SimImuConfig {
                seed: d as u64,
                rate_hz: NonZeroU32::new(100).unwrap(),
                limit: Some(SAMPLES),
                real_time: true,
            };
            Gateway::start(gc, sim_imu(sim)).unwrap()
        })
        .collect();
    let reports: Vec<GatewayReport> = rt.block_on(async {
        let mut v = Vec::new();
        for g in gateways {
            v.push(
                tokio::time::timeout(Duration::from_secs(60), g.finish())
                    .await
                    .expect("gateway finished"),
            );
        }
        v
    });
    server.stop.send(()).unwrap();
    let server_reports = server.thread.join().unwrap();

    let failed: Vec<String> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| r.counts.connect_failures > 0 || r.counts.connects != 1)
        .map(|(d, r)| {
            format!(
                "dev-{d:03}: {} failed sessions, {} sessions",
                r.counts.connect_failures, r.counts.connects
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {GATEWAYS} gateways lost their first session: {failed:?}",
        failed.len()
    );
    for (d, r) in reports.iter().enumerate() {
        assert_eq!(r.error, None, "dev-{d:03}");
        assert_eq!(r.undelivered, 0, "dev-{d:03}");
        assert_eq!(r.counts.acked, SAMPLES, "dev-{d:03}");
    }
    assert_eq!(server_reports.len(), GATEWAYS);
    for r in &server_reports {
        assert_eq!(r.written, SAMPLES, "{}", r.device);
        assert!(r.balanced(), "{}", r.device);
    }
}
