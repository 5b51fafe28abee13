//! Scheduling that users steer, over real quinn connections through
//! rate-limited impairment relays: `Aggregate` with user weights splits the
//! bytes in the weights' proportion (whatever the paths' speeds), and a
//! high-priority stream goes first on saturated paths. Every stream is
//! checked end to end (length and SHA-256).

use std::time::Duration;

use bytes::Bytes;
use kwik::{PathId, PathSpec, Scheduler, SendStream, Session, SessionConfig};
use kwik_testbed::impairment::{BitRate, Impairment};
use kwik_testbed::loopback::pattern;
use kwik_testbed::relay::Direction;
use kwik_testbed::{Loopback, Relay, RelayConfig};
use sha2::{Digest, Sha256};

/// A relay whose client-to-server direction is limited to `mbit`.
async fn limited(target: std::net::SocketAddr, mbit: u64) -> Relay {
    let mut config = RelayConfig::default();
    let mut limit = Impairment::none();
    limit.set_rate(Some(BitRate::mbit(mbit).unwrap()));
    config.set_impairment(Direction::ClientToServer, limit);
    Relay::start(target, config).await.unwrap()
}

struct Setup {
    _lo: Loopback,
    _relays: [Relay; 2],
    client: Session,
    server: Session,
}

/// Two paths through relays limited to `rates` (Mbit/s, client to server),
/// the second one with `weight`.
async fn setup(rates: [u64; 2], weight: Option<u32>) -> Setup {
    let lo = Loopback::new(SessionConfig::default()).unwrap();
    let target = lo.server_addr().unwrap();
    let relays = [
        limited(target, rates[0]).await,
        limited(target, rates[1]).await,
    ];
    let (client, server) = lo.connect(relays[0].local_addr()).await.unwrap();
    let mut spec = PathSpec::remote(relays[1].local_addr());
    if let Some(w) = weight {
        spec = spec.weight(w);
    }
    client.add_path(spec).await.unwrap();
    Setup {
        _lo: lo,
        _relays: relays,
        client,
        server,
    }
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

async fn read_all(server: Session) -> (u64, [u8; 32]) {
    let mut recv = server.accept_uni().await.unwrap();
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = recv.read_chunk(1 << 20).await.unwrap() {
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    (n, h.finalize().into())
}

async fn send_all(mut send: SendStream, data: Bytes) -> SendStream {
    send.write_chunk(data).await.unwrap();
    send.finish().unwrap();
    send.finished().await.unwrap();
    send
}

/// Sends `size` bytes with `Aggregate` and returns the share of path 0 in
/// what the server received.
async fn weighted_share(s: &Setup, size: usize) -> f64 {
    let data = pattern(size, size as u64);
    let want = sha(&data);
    let send = s
        .client
        .open_uni_with(Some(Scheduler::Aggregate))
        .await
        .unwrap();
    let reader = tokio::spawn(read_all(s.server.clone()));
    send_all(send, data).await;
    assert_eq!(reader.await.unwrap(), (size as u64, want));
    let got = |id: u64| {
        s.server
            .path_stats()
            .iter()
            .find(|p| p.id == PathId::new(id))
            .map_or(0, |p| p.bytes_received) as f64
    };
    got(0) / (got(0) + got(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_three_to_one_on_equal_links() {
    let s = setup([48, 48], Some(1)).await;
    assert!(s.client.set_path_weight(PathId::INITIAL, Some(3)));
    let share = weighted_share(&s, 12 << 20).await;
    eprintln!("weights 3:1, equal links: path 0 carried {share:.4}");
    // Within 10 % of the weights: 0.75 ± 0.075.
    assert!((share - 0.75).abs() <= 0.075, "path 0 carried {share:.3}");
    s.client.close(0, b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_weights_hold_against_unequal_links() {
    // Path 1 is three times faster; weights 1:1 still split the bytes evenly
    // (the rate-based split would give path 0 about a quarter).
    let s = setup([16, 48], Some(1)).await;
    assert!(s.client.set_path_weight(PathId::INITIAL, Some(1)));
    let share = weighted_share(&s, 8 << 20).await;
    eprintln!("weights 1:1, links 16/48 Mbit/s: path 0 carried {share:.4}");
    assert!((share - 0.5).abs() <= 0.05, "path 0 carried {share:.3}");
    s.client.close(0, b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_stream_goes_first_on_saturated_paths() {
    let s = setup([24, 24], None).await;
    let size = 6usize << 20;
    let (urgent_data, bulk_data) = (pattern(size, 1), pattern(size, 2));
    let want = [sha(&urgent_data), sha(&bulk_data)];
    let mut bulk = s.client.open_uni().await.unwrap();
    let mut urgent = s.client.open_uni().await.unwrap();
    urgent.set_priority(10).unwrap();
    bulk.set_priority(0).unwrap();
    let readers = [
        tokio::spawn(read_all(s.server.clone())),
        tokio::spawn(read_all(s.server.clone())),
    ];
    // Bulk writes first: priority, not order, decides.
    let bulk_task = tokio::spawn(send_all(bulk, bulk_data));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let urgent_id = urgent.id();
    let urgent = send_all(urgent, urgent_data).await;
    assert_eq!(urgent.id(), urgent_id);
    // When every urgent byte is acknowledged, the bulk stream has had little.
    let bulk_sent = s.client.stats().bytes_acked - size as u64;
    eprintln!("bulk acknowledged when the urgent stream completed: {bulk_sent} of {size}");
    assert!(
        bulk_sent < size as u64 / 4,
        "bulk got {bulk_sent} bytes before the urgent stream completed"
    );
    bulk_task.await.unwrap();
    let mut got = Vec::new();
    for r in readers {
        got.push(r.await.unwrap());
    }
    // Streams were accepted in order of first bytes; compare as a set.
    got.sort();
    let mut expected = vec![(size as u64, want[0]), (size as u64, want[1])];
    expected.sort();
    assert_eq!(got, expected);
    s.client.close(0, b"done");
}
