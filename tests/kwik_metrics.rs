//! The labelled `metrics` of kwik, read through a real recorder
//! (`metrics-util`'s debugging recorder, installed for this process): after a
//! known transfer over two paths, the per-path counters equal what each path
//! carried, on both sides, and the session totals equal the transfer. One
//! test per binary: the recorder is global.

use std::collections::HashMap;

use kwik::{PathId, PathSpec, Scheduler, SessionConfig};
use kwik_testbed::Loopback;
use kwik_testbed::loopback::pattern;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// (name, side, path) -> value, for every counter and gauge.
type Series = HashMap<(String, String, Option<u64>), f64>;

fn read(snapshotter: &metrics_util::debugging::Snapshotter) -> Series {
    let mut out = Series::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
        };
        let side = label("side").unwrap_or_default();
        let path = label("path").map(|p| p.parse().expect("numeric path label"));
        let value = match value {
            DebugValue::Counter(v) => v as f64,
            DebugValue::Gauge(v) => v.into_inner(),
            DebugValue::Histogram(_) => continue,
        };
        out.insert((key.name().to_owned(), side, path), value);
    }
    out
}

fn get(series: &Series, name: &str, side: &str, path: Option<u64>) -> f64 {
    *series
        .get(&(name.to_owned(), side.to_owned(), path))
        .unwrap_or_else(|| panic!("no {name}{{side={side},path={path:?}}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_counters_equal_what_each_path_carried() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("first recorder of this process");

    let lo = Loopback::new(SessionConfig::default()).unwrap();
    let (client, server) = lo.connect(lo.server_addr().unwrap()).await.unwrap();
    let second = client
        .add_path(PathSpec::local("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(second, PathId::new(1));

    let size = 48usize << 20;
    let data = pattern(size, 42);
    let mut send = client
        .open_uni_with(Some(Scheduler::Aggregate))
        .await
        .unwrap();
    let reader = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut recv = server.accept_uni().await.unwrap();
            let mut n = 0u64;
            while let Some(chunk) = recv.read_chunk(1 << 20).await.unwrap() {
                n += chunk.len() as u64;
            }
            n
        })
    };
    send.write_chunk(data).await.unwrap();
    let mid = send.stats().expect("stream still sending");
    assert_eq!(mid.written, size as u64);
    assert!(mid.bytes_acked <= mid.bytes_sent && mid.bytes_sent <= mid.written);
    assert_eq!(mid.retained, mid.written - mid.bytes_acked);
    send.finish().unwrap();
    send.finished().await.unwrap();
    assert_eq!(send.stats(), None, "complete streams have no figures");
    assert_eq!(reader.await.unwrap(), size as u64);

    let m = read(&snapshotter);
    let paths = client.path_stats();
    let mut sent_sum = 0.0;
    for p in &paths {
        let id = p.id.into_inner();
        let sent = get(&m, "kwik_path_bytes_sent_total", "client", Some(id));
        assert_eq!(sent, p.bytes_sent as f64, "path {id}");
        assert!(sent > 0.0, "path {id} carried nothing: {paths:?}");
        // Every byte was acknowledged, on the path that carried it.
        assert_eq!(
            get(&m, "kwik_path_bytes_acked_total", "client", Some(id)),
            sent
        );
        assert_eq!(
            get(&m, "kwik_path_bytes_resent_total", "client", Some(id)),
            0.0
        );
        assert_eq!(get(&m, "kwik_path_inflight_bytes", "client", Some(id)), 0.0);
        // What the client sent on the path is what the server received on it.
        assert_eq!(
            get(&m, "kwik_path_bytes_received_total", "server", Some(id)),
            sent
        );
        assert!(get(&m, "kwik_path_rtt_seconds", "client", Some(id)) > 0.0);
        assert!(get(&m, "kwik_path_rate_bytes_per_second", "client", Some(id)) > 0.0);
        assert_eq!(get(&m, "kwik_path_state", "client", Some(id)), 1.0);
        sent_sum += sent;
    }
    assert_eq!(paths.len(), 2);
    assert_eq!(sent_sum, size as f64);
    for name in [
        "kwik_session_bytes_written_total",
        "kwik_session_bytes_sent_total",
        "kwik_session_bytes_acked_total",
    ] {
        assert_eq!(get(&m, name, "client", None), size as f64, "{name}");
    }
    assert_eq!(
        get(&m, "kwik_session_bytes_received_total", "server", None),
        size as f64
    );
    let stats = client.stats();
    assert_eq!(stats.bytes_sent, size as u64);
    assert_eq!(
        get(&m, "kwik_sessions_accepted_total", "", None),
        1.0,
        "unlabelled session counter"
    );
    client.close(0, b"done");
}
