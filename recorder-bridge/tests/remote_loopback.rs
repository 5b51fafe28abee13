//! Remote recording end to end on loopback: real KWIK sessions (quinn), real recorder
//! threads, real files, compared value by value with the simulator's ground truth.

use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use kwik_recorder::{
    FrameSource, Gateway, GatewayConfig, Message, MessageDecoder, RecorderServer,
    RecorderServerConfig, RunId, SamplesEncoder, Sending, ServerIdentity, SimImuConfig,
    StartRequest, StreamHeader, StreamKey, WIRE_VERSION, WireFormat, WireSample, WireSchema,
    imu_row, serial, sim_imu, sim_imu_with,
};
use kwik_recorder::{ImuRow, Sidecar, parse_csv, sidecar_path};

fn key(device: &str) -> StreamKey {
    StreamKey {
        device: device.into(),
        stream: "imu".into(),
    }
}

/// Every data file of a device, in recording order (by sidecar start time), parsed.
fn recorded_rows(out: &Path, device: &str) -> Vec<ImuRow> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for day in std::fs::read_dir(out.join(device)).unwrap().flatten() {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "csv") {
                let sc = Sidecar::read(&sidecar_path(&p)).unwrap();
                files.push((sc.start_utc, p));
            }
        }
    }
    files.sort();
    let mut rows = Vec::new();
    for (_, f) in files {
        let parsed = parse_csv::<ImuRow>(&std::fs::read(&f).unwrap()).unwrap();
        assert!(parsed.footer.is_some(), "{} has no footer", f.display());
        rows.extend(parsed.rows);
    }
    rows
}

fn server_config(out: &Path) -> RecorderServerConfig {
    let mut c = RecorderServerConfig {
        out_dir: out.to_path_buf(),
        ..RecorderServerConfig::default()
    };
    c.recording.min_free_bytes = 0;
    c
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn start_server(out: &Path, config: RecorderServerConfig) -> (RecorderServer, ServerIdentity) {
    let _ = out;
    let id = ServerIdentity::generate(&[]).unwrap();
    let server = RecorderServer::bind(local(), id.server_config().unwrap(), config).unwrap();
    (server, id)
}

fn gateway_config(server: &RecorderServer, id: &ServerIdentity, device: &str) -> GatewayConfig {
    let mut cfg = GatewayConfig::new(
        server.local_addr().unwrap(),
        id.client_config().unwrap(),
        key(device),
    );
    cfg.bind = local();
    cfg
}

fn rate(hz: u32) -> NonZeroU32 {
    NonZeroU32::new(hz).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_device_is_recorded_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_server(dir.path(), server_config(dir.path()));
    let n = 10_000;
    let sim = SimImuConfig {
        seed: 11,
        rate_hz: rate(1000),
        limit: Some(n),
        real_time: false,
    };
    let gw = Gateway::start(gateway_config(&server, &id, "xiao-a"), sim_imu(sim)).unwrap();
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
    // The gateway's final report is the server's.
    let sr = report.server_report.expect("final report");
    assert_eq!(sr["written"], n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_recorder_withholds_credit_and_the_gateway_spools() {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = server_config(dir.path());
    // The recorder hands data to its writer only every second: in between the backlog
    // exceeds the bound and the server stops reading (a slow disk seen from the bridge).
    sc.recording.export.flush_interval = Duration::from_secs(1);
    sc.backlog_limit = 200;
    let (server, id) = start_server(dir.path(), sc);
    let n = 2_000;
    let sim = SimImuConfig {
        seed: 2,
        rate_hz: rate(1000),
        limit: Some(n),
        real_time: false,
    };
    let mut gc = gateway_config(&server, &id, "xiao-slow");
    // Unconfirmed samples stay in memory (then the spool) until the server has them on
    // disk, so with acks once a second at most 1000 are in flight and the rest spool.
    gc.queue_capacity = 1000;
    gc.spool = Some((dir.path().join("spool").join("s.spool"), 64 << 20));
    let gw = Gateway::start(gc, sim_imu(sim)).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(60), gw.finish())
        .await
        .unwrap();
    assert_eq!(report.error, None);
    let c = report.counts;
    assert_eq!(c.acked, n);
    assert_eq!(c.dropped_overflow, 0);
    assert!(c.spooled > 0, "nothing was spooled: {c:?}");
    let reports = server.shutdown().await;
    assert!(
        reports[0].counts.stalls > 0,
        "credit never withheld: {:?}",
        reports[0]
    );
    assert_eq!(reports[0].recorder_dropped, 0);
    assert_eq!(recorded_rows(dir.path(), "xiao-slow"), sim.expected(n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_device_frames_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_server(dir.path(), server_config(dir.path()));
    let mut cfg = xiao_sim::SimConfig::new(9, rate(1000));
    cfg.faults.corrupt = xiao_sim::Probability::try_from(0.01).unwrap();
    cfg.faults.drop = xiao_sim::Probability::try_from(0.01).unwrap();
    let n = 5_000;
    let mut truth = xiao_sim::Simulator::new(cfg);
    let ticks: Vec<_> = (0..n).map(|_| truth.tick()).collect();
    let gw = Gateway::start(
        gateway_config(&server, &id, "xiao-faulty"),
        sim_imu_with(cfg, false, Some(n)),
    )
    .unwrap();
    let report = gw.finish().await;
    let c = report.counts;
    let stats = truth.stats();
    assert_eq!(c.device_errors, stats.corrupted);
    let intact: Vec<ImuRow> = ticks
        .iter()
        .filter(|t| t.fate == xiao_sim::Fate::Sent)
        .map(|t| imu_row(&t.sample))
        .collect();
    assert_eq!(c.device_samples, intact.len() as u64);
    // Books: numbered by the device = decoded + lost (up to the last intact sample).
    assert_eq!(c.device_produced, c.device_samples + c.device_lost);
    assert_eq!(recorded_rows(dir.path(), "xiao-faulty"), intact);
    let reports = server.shutdown().await;
    // The server sees the device's gaps as missing sequence numbers, and the
    // recording's books carry them as lost before the recorder.
    assert_eq!(reports[0].counts.missing, c.device_lost);
    let st = &reports[0].status.streams[0];
    assert_eq!(st.dropped.source, c.device_lost);
    assert_eq!(st.dropped.recorder(), 0);
    assert_eq!(st.produced, st.samples + c.device_lost);
    assert!(reports[0].balanced(), "{:?}", reports[0]);
    // What the board announced reached the recording's sidecar.
    let sidecar = kwik_recorder::Sidecar::read(&reports[0].sidecar).unwrap();
    let [major, minor, patch] = xiao_sim::SIM_FIRMWARE_VERSION;
    assert_eq!(
        sidecar.device.get("firmware"),
        Some(&format!("{major}.{minor}.{patch}"))
    );
    assert_eq!(sidecar.device["device_rate_hz"], "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_peer_messages_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_server(dir.path(), server_config(dir.path()));
    let endpoint = kwik::Endpoint::client(local(), id.client_config().unwrap()).unwrap();
    let session = endpoint
        .connect(server.local_addr().unwrap(), "localhost")
        .await
        .unwrap();
    let sim = SimImuConfig {
        seed: 4,
        rate_hz: rate(100),
        limit: None,
        real_time: false,
    };
    let rows = sim.expected(6);
    let mut bytes = Message::Header(StreamHeader {
        key: key("peer"),
        run: RunId(77),
        schema: WireSchema::Imu,
        rate_hz: 100,
        device_time_us: 0,
        host_utc_us: 0,
        anchor_seq: 0,
    })
    .to_bytes()
    .unwrap();
    let sample = |seq: u64, out: &mut Vec<u8>| {
        let mut body = Vec::new();
        rows[seq as usize].encode_body(seq, &mut body);
        Message::encode_sample(seq, &body, out).unwrap();
    };
    sample(0, &mut bytes);
    sample(1, &mut bytes);
    bytes.extend_from_slice(b"garbage!"); // no message start: skipped
    let mut bad = Vec::new();
    rows[2].encode_body(2, &mut bad);
    bad[5] ^= 0x40; // CRC no longer matches
    Message::encode_sample(2, &bad, &mut bytes).unwrap();
    bytes.extend_from_slice(&[0xA5, 0x7E, 1, 0, 0]); // unknown kind
    sample(1, &mut bytes); // duplicate
    sample(3, &mut bytes);
    sample(4, &mut bytes);
    sample(5, &mut bytes);
    let mut s = session.open_uni().await.unwrap();
    s.write_chunk(Bytes::from(bytes)).await.unwrap();
    s.finish().unwrap();
    s.finished().await.unwrap();
    // Wait until the server processed everything.
    let mut report = None;
    for _ in 0..200 {
        let r = server.reports();
        if r.first().is_some_and(|r| r.counts.received >= 7) {
            report = r.into_iter().next();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = report.expect("stream recorded");
    assert_eq!(r.counts.received, 7);
    assert_eq!(r.counts.malformed, 3); // garbage, corrupt body, unknown kind
    assert_eq!(r.counts.duplicates, 1);
    assert_eq!(r.counts.missing, 1); // seq 2 never arrived intact
    assert_eq!(r.counts.pushed, 5);
    session.close(0, b"bye");
    let reports = server.shutdown().await;
    assert_eq!(reports[0].written, 5);
    let expect: Vec<ImuRow> = [0, 1, 3, 4, 5].iter().map(|&i| rows[i]).collect();
    assert_eq!(recorded_rows(dir.path(), "peer"), expect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_samples_are_recorded_with_duplicates_and_corrupt_bodies_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_server(dir.path(), server_config(dir.path()));
    let endpoint = kwik::Endpoint::client(local(), id.client_config().unwrap()).unwrap();
    let session = endpoint
        .connect(server.local_addr().unwrap(), "localhost")
        .await
        .unwrap();
    let sim = SimImuConfig {
        seed: 5,
        rate_hz: rate(100),
        limit: None,
        real_time: false,
    };
    let rows = sim.expected(10);
    let body = |seq: u64| {
        let mut b = Vec::new();
        rows[seq as usize].encode_body(seq, &mut b);
        b
    };
    let mut bytes = Message::Header(StreamHeader {
        key: key("batched"),
        run: RunId(78),
        schema: WireSchema::Imu,
        rate_hz: 100,
        device_time_us: 0,
        host_utc_us: 0,
        anchor_seq: 0,
    })
    .to_bytes()
    .unwrap();
    let batch = |first: u64, bodies: &[Vec<u8>], out: &mut Vec<u8>| {
        let mut e = SamplesEncoder::begin(first, out);
        for (i, b) in bodies.iter().enumerate() {
            assert!(e.push(first + i as u64, b, out));
        }
        e.finish(out);
    };
    // 0-3, then 2-5 again (2 and 3 duplicates), then 6-9 with 7 corrupt.
    batch(0, &(0..4).map(body).collect::<Vec<_>>(), &mut bytes);
    batch(2, &(2..6).map(body).collect::<Vec<_>>(), &mut bytes);
    let mut last: Vec<Vec<u8>> = (6..10).map(body).collect();
    last[1][5] ^= 0x40; // CRC no longer matches
    batch(6, &last, &mut bytes);
    let mut s = session.open_uni().await.unwrap();
    s.write_chunk(Bytes::from(bytes)).await.unwrap();
    s.finish().unwrap();
    s.finished().await.unwrap();
    let mut report = None;
    for _ in 0..200 {
        let r = server.reports();
        if r.first().is_some_and(|r| r.counts.received >= 12) {
            report = r.into_iter().next();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = report.expect("stream recorded");
    assert_eq!(r.counts.received, 12);
    assert_eq!(r.counts.duplicates, 2);
    assert_eq!(r.counts.malformed, 1);
    assert_eq!(r.counts.missing, 1); // seq 7 never arrived intact
    assert_eq!(r.counts.pushed, 9);
    session.close(0, b"bye");
    let reports = server.shutdown().await;
    assert_eq!(reports[0].written, 9);
    let expect: Vec<ImuRow> = [0, 1, 2, 3, 4, 5, 6, 8, 9]
        .iter()
        .map(|&i| rows[i])
        .collect();
    assert_eq!(recorded_rows(dir.path(), "batched"), expect);
}

/// The first messages a server sends on the control stream after a Hello of
/// `version` and a Start.
async fn server_answers_to(version: u8) -> Vec<Message> {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_server(dir.path(), server_config(dir.path()));
    let endpoint = kwik::Endpoint::client(local(), id.client_config().unwrap()).unwrap();
    let session = endpoint
        .connect(server.local_addr().unwrap(), "localhost")
        .await
        .unwrap();
    let (mut ctl, mut ctl_recv) = session.open_bi().await.unwrap();
    let mut bytes = Message::Hello {
        version,
        gateway: "test".into(),
    }
    .to_bytes()
    .unwrap();
    let header = StreamHeader {
        key: key(&format!("v{version}")),
        run: RunId(79),
        schema: WireSchema::Imu,
        rate_hz: 100,
        device_time_us: 0,
        host_utc_us: 0,
        anchor_seq: 0,
    };
    Message::Start(StartRequest {
        header,
        prefix: String::new(),
        duration_limit_ms: 0,
        size_limit: 0,
        format: WireFormat::Csv,
        held_from: None,
    })
    .encode(&mut bytes)
    .unwrap();
    ctl.write_chunk(Bytes::from(bytes)).await.unwrap();
    let mut dec = MessageDecoder::new();
    let mut got = Vec::new();
    while !got
        .iter()
        .any(|m| matches!(m, Message::Started { .. } | Message::Error { .. }))
    {
        let chunk = tokio::time::timeout(Duration::from_secs(10), ctl_recv.read_chunk(1 << 16))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        dec.push(&chunk);
        while let Some(m) = dec.next_message() {
            got.push(m.unwrap());
        }
    }
    session.close(0, b"bye");
    server.shutdown().await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_gateway_gets_no_hello_and_a_version_2_gateway_gets_one_first() {
    let v1 = server_answers_to(1).await;
    assert!(
        matches!(v1.as_slice(), [Message::Started { next_seq: 0, .. }]),
        "{v1:?}"
    );
    let v2 = server_answers_to(WIRE_VERSION).await;
    assert!(
        matches!(
            v2.as_slice(),
            [
                Message::Hello {
                    version: WIRE_VERSION,
                    ..
                },
                Message::Started { next_seq: 0, .. }
            ]
        ),
        "{v2:?}"
    );
    let v9 = server_answers_to(9).await;
    assert!(
        matches!(&v9[0], Message::Error { text, .. } if text.starts_with("protocol version 9 not supported")),
        "{v9:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_source_through_a_pty_fed_by_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_server(dir.path(), server_config(dir.path()));
    let n = 2_000u64;
    let cfg = xiao_sim::SimConfig::new(21, rate(1000));
    let mut pty = xiao_sim::Pty::open().unwrap();
    let path = pty.slave_path().to_path_buf();
    let source: FrameSource<_> = serial(&path).unwrap();
    let feeder = std::thread::spawn(move || {
        let mut sim = xiao_sim::Simulator::new(cfg);
        for _ in 0..n {
            pty.write_all(&sim.tick().bytes).unwrap();
        }
        pty // keep the terminal open until the test is done
    });
    let gw = Gateway::start(gateway_config(&server, &id, "ttyACM-sim"), source).unwrap();
    let t = std::time::Instant::now();
    while gw.counts().device_samples < n && t.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.stop_source();
    let report = gw.finish().await;
    let _pty = feeder.join().unwrap();
    assert_eq!(report.counts.device_samples, n);
    assert_eq!(report.counts.device_errors, 0);
    assert_eq!(report.counts.acked, n);
    let sim = SimImuConfig {
        seed: 21,
        rate_hz: rate(1000),
        limit: None,
        real_time: false,
    };
    assert_eq!(recorded_rows(dir.path(), "ttyACM-sim"), sim.expected(n));
    server.shutdown().await;
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server pauses a device (the dashboard's Stop) and resumes it: the gateway
/// confirms each state, the paused samples are counted as filtered on both sides and
/// never as missing, and the file is the simulator's samples with exactly one run of
/// them left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_samples_are_filtered_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_server(dir.path(), server_config(dir.path()));
    let sim = SimImuConfig {
        seed: 21,
        rate_hz: rate(1000),
        limit: None,
        real_time: true,
    };
    let gw = Gateway::start(gateway_config(&server, &id, "xiao-p"), sim_imu(sim)).unwrap();
    let handle = server.reports_handle();
    let k = key("xiao-p");
    let written = || handle.reports().first().map_or(0, |r| r.written);
    wait_for("samples on disk", || written() >= 300).await;
    assert_eq!(handle.request_sending("nobody", Sending::Paused), vec![]);
    assert_eq!(
        handle.request_sending("xiao-p", Sending::Paused),
        vec![k.clone()]
    );
    wait_for("the pause confirmed", || {
        handle.link(&k).and_then(|l| l.confirmed) == Some(Sending::Paused)
    })
    .await;
    assert_eq!(gw.sending(), Sending::Paused);
    wait_for("filtered samples counted by the server", || {
        handle.reports()[0].counts.filtered >= 1000
    })
    .await;
    assert_eq!(handle.reports()[0].counts.missing, 0);
    handle.request_sending("xiao-p", Sending::On);
    wait_for("sending again", || {
        handle.link(&k).and_then(|l| l.confirmed) == Some(Sending::On)
    })
    .await;
    let resumed = written();
    wait_for("recording again", || written() >= resumed + 300).await;
    gw.stop_source();
    let report = tokio::time::timeout(Duration::from_secs(60), gw.finish())
        .await
        .expect("gateway finished");
    assert_eq!(report.error, None);
    assert_eq!(report.undelivered, 0);
    let c = report.counts;
    assert!(c.filtered >= 1000);
    // Markers are not samples: every sample is on disk or filtered.
    assert_eq!(c.acked + c.filtered, c.device_samples);
    assert_eq!(c.pending(), 0);
    let reports = server.shutdown().await;
    let r = &reports[0];
    assert_eq!(r.counts.filtered, c.filtered);
    assert_eq!(r.counts.missing, 0);
    assert_eq!(r.written + c.filtered, c.device_samples);
    assert!(r.balanced());
    let rows = recorded_rows(dir.path(), "xiao-p");
    let expected = sim.expected(c.device_samples);
    let cut = rows
        .iter()
        .zip(&expected)
        .take_while(|(a, b)| a == b)
        .count();
    let gap = c.filtered as usize;
    assert_eq!(rows[..cut], expected[..cut]);
    assert_eq!(
        rows[cut..],
        expected[cut + gap..],
        "one run of {gap} left out at row {cut}"
    );
    let sc = Sidecar::read(&r.sidecar).unwrap();
    assert_eq!(sc.device["filtered_by_request"], c.filtered.to_string());
}

/// A gateway that does not know Control (it speaks the protocol from before it): the
/// request goes out, is never confirmed, and the stream keeps recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_control_keeps_recording() {
    let dir = tempfile::tempdir().unwrap();
    let (server, id) = start_server(dir.path(), server_config(dir.path()));
    let endpoint = kwik::Endpoint::client(local(), id.client_config().unwrap()).unwrap();
    let session = endpoint
        .connect(server.local_addr().unwrap(), "localhost")
        .await
        .unwrap();
    let sim = SimImuConfig {
        seed: 5,
        rate_hz: rate(100),
        limit: None,
        real_time: false,
    };
    let rows = sim.expected(200);
    let header = StreamHeader {
        key: key("old-gw"),
        run: RunId(9),
        schema: WireSchema::Imu,
        rate_hz: 100,
        device_time_us: 0,
        host_utc_us: 0,
        anchor_seq: 0,
    };
    let (mut ctl, mut ctl_recv) = session.open_bi().await.unwrap();
    let mut hello = Message::Hello {
        version: 1,
        gateway: "before control".into(),
    }
    .to_bytes()
    .unwrap();
    hello.extend(
        Message::Start(kwik_recorder::StartRequest {
            header: header.clone(),
            prefix: String::new(),
            duration_limit_ms: 0,
            size_limit: 0,
            format: kwik_recorder::WireFormat::Csv,
            held_from: None,
        })
        .to_bytes()
        .unwrap(),
    );
    ctl.write_chunk(Bytes::from(hello)).await.unwrap();
    // Read the control stream as an old gateway does: Started, then whatever comes.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut dec = kwik_recorder::MessageDecoder::new();
        while let Ok(Some(c)) = ctl_recv.read_chunk(1 << 16).await {
            dec.push(&c);
            while let Some(m) = dec.next_message() {
                let _ = seen_tx.send(m);
            }
        }
    });
    // As every gateway does: samples only after the server's Started.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), seen_rx.recv()).await {
            Ok(Some(Ok(Message::Started { .. }))) => break,
            Ok(Some(_)) => {}
            other => panic!("no Started on the control stream: {other:?}"),
        }
    }
    let mut data = session.open_uni().await.unwrap();
    let send = |from: u64, to: u64| {
        let mut bytes = Vec::new();
        if from == 0 {
            bytes = Message::Header(header.clone()).to_bytes().unwrap();
        }
        for seq in from..to {
            let mut body = Vec::new();
            rows[seq as usize].encode_body(seq, &mut body);
            Message::encode_sample(seq, &body, &mut bytes).unwrap();
        }
        Bytes::from(bytes)
    };
    data.write_chunk(send(0, 100)).await.unwrap();
    let handle = server.reports_handle();
    let k = key("old-gw");
    wait_for("the first samples", || {
        handle
            .reports()
            .first()
            .is_some_and(|r| r.counts.pushed == 100)
    })
    .await;
    assert_eq!(
        handle.request_sending("old-gw", Sending::Paused),
        vec![k.clone()]
    );
    // The request reaches the gateway; one that knows no kind 0x15 skips it.
    let control = loop {
        match tokio::time::timeout(Duration::from_secs(10), seen_rx.recv()).await {
            Ok(Some(Ok(m @ Message::Control { .. }))) => break m,
            Ok(Some(_)) => {}
            other => panic!("no Control on the control stream: {other:?}"),
        }
    };
    let mut on_wire = control.to_bytes().unwrap();
    assert_eq!(on_wire[1], 0x15);
    on_wire[1] = 0x7d; // what an older decoder sees: an unknown kind
    let mut old = kwik_recorder::MessageDecoder::new();
    old.push(&on_wire);
    assert!(old.next_message().is_some_and(|m| m.is_err()));
    data.write_chunk(send(100, 200)).await.unwrap();
    data.finish().unwrap();
    wait_for("the later samples recorded", || {
        handle
            .reports()
            .first()
            .is_some_and(|r| r.counts.pushed == 200)
    })
    .await;
    let link = handle.link(&k).unwrap();
    assert_eq!(link.requested, Some(Sending::Paused));
    assert_eq!(link.confirmed, None);
    session.close(0, b"bye");
    let reports = server.shutdown().await;
    assert_eq!(reports[0].written, 200);
    assert_eq!(reports[0].counts.filtered, 0);
    assert_eq!(recorded_rows(dir.path(), "old-gw"), rows);
}
