//! Paths at run time, over real quinn connections through the UDP impairment
//! relay: a dead path comes back (re-created after a blackhole, also after a
//! NAT rebinding), a path changes status and is removed while data flows.
//! Every test checks the stream end to end: length and SHA-256 equal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kwik::{
    PathEvent, PathEvents, PathId, PathInfo, PathRecreation, PathSpec, PathState, PathStatus,
    RemovePathError, Scheduler, Session, SessionConfig,
};
use kwik_testbed::loopback::pattern;
use kwik_testbed::{Loopback, Relay, RelayConfig};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

/// Longest wait for anything in these tests (a loaded CI machine is slow).
const PATIENCE: Duration = Duration::from_secs(60);
const CHUNK: usize = 128 << 10;

/// A client and server session with two paths, each through its own relay.
struct TwoPaths {
    _lo: Loopback,
    relays: [Relay; 2],
    client: Session,
    server: Session,
}

async fn two_paths(config: SessionConfig) -> TwoPaths {
    let lo = Loopback::new(config).expect("loopback endpoints");
    let target = lo.server_addr().unwrap();
    let relays = [
        Relay::start(target, RelayConfig::default()).await.unwrap(),
        Relay::start(target, RelayConfig::default()).await.unwrap(),
    ];
    let (client, server) = lo.connect(relays[0].local_addr()).await.expect("connect");
    let second = client
        .add_path(PathSpec::remote(relays[1].local_addr()))
        .await
        .expect("add path");
    assert_eq!(second, PathId::new(1));
    TwoPaths {
        _lo: lo,
        relays,
        client,
        server,
    }
}

/// The session config of these tests: LAN liveness (a dead path is noticed in
/// about 200 ms) and re-creation that keeps trying through a 3 s outage.
fn config() -> SessionConfig {
    SessionConfig::lan().path_recreation(
        PathRecreation::default()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1))
            .max_attempts(40),
    )
}

/// A stream the client writes (paced chunks of a seeded pattern) until told
/// to stop, and the server reads; both sides hash what they saw.
struct Transfer {
    stop: Arc<AtomicBool>,
    writer: JoinHandle<(u64, [u8; 32])>,
    reader: JoinHandle<(u64, [u8; 32])>,
}

impl Transfer {
    async fn start(client: &Session, server: &Session, policy: Scheduler) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut send = client.open_uni_with(Some(policy)).await.expect("open");
        let flag = stop.clone();
        let writer = tokio::spawn(async move {
            let mut h = Sha256::new();
            let mut n = 0u64;
            // About 64 MB/s at most: enough to keep every path busy, cheap on CI.
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let mut seed = 1u64;
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                let chunk = pattern(CHUNK, seed);
                seed += 1;
                h.update(&chunk);
                n += chunk.len() as u64;
                send.write_chunk(chunk).await.expect("write");
            }
            send.finish().expect("finish");
            send.finished().await.expect("acknowledged");
            (n, h.finalize().into())
        });
        let server = server.clone();
        let reader = tokio::spawn(async move {
            let mut recv = server.accept_uni().await.expect("accept");
            let mut h = Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = recv.read_chunk(1 << 20).await.expect("read") {
                n += chunk.len() as u64;
                h.update(&chunk);
            }
            (n, h.finalize().into())
        });
        Self {
            stop,
            writer,
            reader,
        }
    }

    /// Stops writing and checks that the reader got exactly what was written.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (sent, sent_hash) = self.writer.await.expect("writer");
        let (read, read_hash) = self.reader.await.expect("reader");
        assert_eq!(read, sent, "bytes lost or duplicated");
        assert_eq!(read_hash, sent_hash, "SHA-256 differs");
        read
    }
}

fn path(session: &Session, id: PathId) -> PathInfo {
    session
        .paths()
        .into_iter()
        .find(|p| p.stats.id == id)
        .unwrap_or_else(|| panic!("{id} unknown"))
}

/// Polls `cond` until it holds (panics after [`PATIENCE`]).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next event that `pick` accepts (others are skipped, but kept in `seen`).
async fn wait_event<T>(
    events: &mut PathEvents,
    seen: &mut Vec<PathEvent>,
    mut pick: impl FnMut(&PathEvent) -> Option<T>,
) -> T {
    let work = async {
        loop {
            let e = events.next().await.expect("session alive");
            seen.push(e);
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    };
    tokio::time::timeout(PATIENCE, work)
        .await
        .unwrap_or_else(|_| panic!("event not seen; saw {seen:?}"))
}

/// How path 0 is cut.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cut {
    /// Blackholed both ways for 3 s.
    Blackhole,
    /// Blackholed for 3 s, and the relay's NAT mapping changes meanwhile: the
    /// server sees the path's client at a new address.
    BlackholeAndRebind,
}

/// Path 0 dies mid-transfer; after the cut is lifted it is re-created over
/// the same relay, carries data again, and the stream arrives intact.
async fn path_comes_back(cut: Cut) {
    let t = two_paths(config()).await;
    let mut events = t.client.path_events();
    let mut seen = Vec::new();
    let transfer = Transfer::start(&t.client, &t.server, Scheduler::Aggregate).await;
    let server = t.server.clone();
    wait_until("data on both paths", || {
        server
            .paths()
            .iter()
            .all(|p| p.stats.bytes_received > 1 << 20)
    })
    .await;

    let relay0 = t.relays[0].handle();
    relay0.set_blackhole(true);
    let cut_at = Instant::now();
    if cut == Cut::BlackholeAndRebind {
        relay0.rebind();
    }
    let zero = PathId::INITIAL;
    wait_event(&mut events, &mut seen, |e| {
        (*e == PathEvent::Abandoned(zero)).then_some(())
    })
    .await;
    // Dials start while the path is still cut (and fail).
    wait_event(&mut events, &mut seen, |e| match e {
        PathEvent::Recreating { path, attempt } if *path == zero => Some(*attempt),
        _ => None,
    })
    .await;
    tokio::time::sleep_until((cut_at + Duration::from_secs(3)).into()).await;
    relay0.set_blackhole(false);

    let new = wait_event(&mut events, &mut seen, |e| match e {
        PathEvent::Recreated { old, new } if *old == zero => Some(*new),
        _ => None,
    })
    .await;
    assert_ne!(new, zero);
    // Same remote (the relay) as the dead path; the dead one keeps its counters.
    assert_eq!(path(&t.client, new).remote, Some(t.relays[0].local_addr()));
    assert_eq!(path(&t.client, zero).stats.state, PathState::Abandoned);
    // The scheduler uses it again: the counters of both sides show its bytes.
    let (client, server) = (t.client.clone(), t.server.clone());
    wait_until("data on the re-created path", || {
        path(&client, new).stats.bytes_sent > 2 << 20
            && server
                .paths()
                .iter()
                .any(|p| p.stats.id == new && p.stats.bytes_received > 2 << 20)
    })
    .await;
    let total = transfer.finish().await;
    assert!(total > 8 << 20, "{total}");
    let stats = t.client.stats();
    assert_eq!(stats.paths_recreated, 1);
    assert!(stats.recreate_attempts >= 1);
    assert_eq!(stats.paths_given_up, 0);
    assert!(t.client.close_reason().is_none());
    if cut == Cut::BlackholeAndRebind {
        assert_eq!(relay0.rebinds(), 1);
    }
    t.client.close(0, b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_path_is_recreated_and_carries_data() {
    path_comes_back(Cut::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_behind_a_rebinding_nat_is_recreated_and_carries_data() {
    path_comes_back(Cut::BlackholeAndRebind).await;
}

/// A NAT rebinding alone (no outage): the path through that relay keeps
/// carrying data (QUIC migrates the connection, or the path is re-created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_rebinding_mid_transfer_loses_nothing() {
    let t = two_paths(config()).await;
    let transfer = Transfer::start(&t.client, &t.server, Scheduler::Aggregate).await;
    let server = t.server.clone();
    wait_until("data on both paths", || {
        server
            .paths()
            .iter()
            .all(|p| p.stats.bytes_received > 1 << 20)
    })
    .await;
    let relay = t.relays[0].local_addr();
    let on_relay0 = |s: &Session| -> u64 {
        s.paths()
            .iter()
            .filter(|p| p.remote == Some(relay))
            .map(|p| p.stats.bytes_sent)
            .sum()
    };
    let before = on_relay0(&t.client);
    t.relays[0].handle().rebind();
    let client = t.client.clone();
    wait_until("data through the rebound relay", || {
        on_relay0(&client) > before + (4 << 20)
    })
    .await;
    transfer.finish().await;
    assert!(t.client.close_reason().is_none());
    t.client.close(0, b"done");
}

/// Backup, available again, removed: each takes effect while a stream flows,
/// and a removed path is not re-created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_removal_at_runtime_with_data_flowing() {
    let t = two_paths(config()).await;
    let mut server_events = t.server.path_events();
    let mut seen = Vec::new();
    let transfer = Transfer::start(&t.client, &t.server, Scheduler::Aggregate).await;
    let (client, server) = (t.client.clone(), t.server.clone());
    let one = PathId::new(1);
    wait_until("data on both paths", || {
        server
            .paths()
            .iter()
            .all(|p| p.stats.bytes_received > 1 << 20)
    })
    .await;

    // Backup: no new chunk goes to path 1 while path 0 is healthy.
    assert!(t.client.set_path_status(one, PathStatus::Backup));
    let frozen = path(&t.client, one).stats.bytes_sent;
    wait_event(&mut server_events, &mut seen, |e| {
        (*e == PathEvent::Backup(one)).then_some(())
    })
    .await;
    let zero_before = path(&t.client, PathId::INITIAL).stats.bytes_sent;
    wait_until("path 0 carrying the stream alone", || {
        path(&client, PathId::INITIAL).stats.bytes_sent > zero_before + (4 << 20)
    })
    .await;
    assert_eq!(path(&t.client, one).stats.bytes_sent, frozen);
    assert_eq!(path(&t.server, one).stats.status, PathStatus::Backup);

    // Available again: path 1 takes chunks again.
    assert!(t.client.set_path_status(one, PathStatus::Available));
    wait_until("path 1 back in use", || {
        path(&client, one).stats.bytes_sent > frozen + (2 << 20)
    })
    .await;

    // Removed: the server hears it, nothing is re-created, data keeps flowing.
    t.client.remove_path(one).expect("remove");
    assert_eq!(path(&t.client, one).stats.state, PathState::Abandoned);
    assert_eq!(
        t.client.remove_path(PathId::INITIAL),
        Err(RemovePathError::LastPath)
    );
    wait_until("the server abandoning path 1", || {
        path(&server, one).stats.state == PathState::Abandoned
    })
    .await;
    let zero_before = path(&t.client, PathId::INITIAL).stats.bytes_sent;
    wait_until("path 0 carrying on", || {
        path(&client, PathId::INITIAL).stats.bytes_sent > zero_before + (2 << 20)
    })
    .await;

    // A path the server removes is not re-created either.
    let two = t
        .client
        .add_path(PathSpec::remote(t.relays[1].local_addr()))
        .await
        .expect("add path");
    wait_until("path 2 in use", || {
        path(&client, two).stats.bytes_sent > 1 << 20
    })
    .await;
    t.server.remove_path(two).expect("server removes");
    wait_until("the client abandoning path 2", || {
        path(&client, two).stats.state == PathState::Abandoned
    })
    .await;
    transfer.finish().await;
    let stats = t.client.stats();
    assert_eq!(stats.paths_recreated, 0, "{:?}", t.client.paths());
    assert_eq!(
        t.client
            .paths()
            .iter()
            .filter(|p| p.stats.state != PathState::Abandoned)
            .count(),
        1
    );
    t.client.close(0, b"done");
}
