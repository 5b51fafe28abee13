//! The impairment relay on real loopback UDP sockets.
//!
//! No timing assertions: checks are on counts and on which datagrams arrive. Waiting is
//! done by polling the relay's counters (bounded, generous), never by asserting on time.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use kwik_testbed::impairment::{BitRate, Impairment, LossRate};
use kwik_testbed::relay::{Direction, Relay, RelayConfig, RelayHandle, RelayStats};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(10);

async fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// An echo server: sends every datagram back to its sender.
async fn echo_server() -> SocketAddr {
    let socket = bind().await;
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// Polls the relay's counters until `done` holds.
async fn wait_for(handle: &RelayHandle, done: impl Fn(&RelayStats) -> bool) -> RelayStats {
    timeout(PATIENCE, async {
        loop {
            let stats = handle.stats();
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("relay counters never settled: {:?}", handle.stats()))
}

/// Every datagram offered in `direction` has been forwarded or dropped.
fn settled(stats: &RelayStats, direction: Direction, offered: u64) -> bool {
    let link = stats.direction(direction);
    link.received_packets == offered
        && link.forwarded_packets + link.dropped_total() + link.send_errors == offered
}

async fn recv_u32(socket: &UdpSocket) -> u32 {
    let mut buf = [0u8; 2048];
    let n = timeout(PATIENCE, socket.recv(&mut buf))
        .await
        .expect("datagram expected")
        .unwrap();
    assert!(n >= 4, "short datagram");
    u32::from_be_bytes(buf[..4].try_into().unwrap())
}

#[tokio::test]
async fn forwards_both_ways() {
    let server = echo_server().await;
    let relay = Relay::start(server, RelayConfig::default()).await.unwrap();
    let client = bind().await;
    client.connect(relay.local_addr()).await.unwrap();
    for i in 0..100u32 {
        client.send(&i.to_be_bytes()).await.unwrap();
        assert_eq!(recv_u32(&client).await, i);
    }
    let stats = relay.handle().stats();
    assert_eq!(stats.client_to_server.forwarded_packets, 100);
    assert_eq!(stats.server_to_client.forwarded_packets, 100);
    assert_eq!(stats.client_to_server.forwarded_bytes, 400);
    assert_eq!(stats.client_to_server.dropped_total(), 0);
    assert_eq!(stats.clients, 1);
    assert_eq!(relay.target(), server);
}

#[tokio::test]
async fn clients_get_their_own_replies() {
    let server = echo_server().await;
    let relay = Relay::start(server, RelayConfig::default()).await.unwrap();
    let a = bind().await;
    let b = bind().await;
    a.connect(relay.local_addr()).await.unwrap();
    b.connect(relay.local_addr()).await.unwrap();
    for i in 0..20u32 {
        a.send(&i.to_be_bytes()).await.unwrap();
        b.send(&(1000 + i).to_be_bytes()).await.unwrap();
        assert_eq!(recv_u32(&a).await, i);
        assert_eq!(recv_u32(&b).await, 1000 + i);
    }
    assert_eq!(relay.handle().stats().clients, 2);
}

#[tokio::test]
async fn blackhole_drops_until_lifted() {
    let server = echo_server().await;
    let relay = Relay::start(server, RelayConfig::default()).await.unwrap();
    let handle = relay.handle();
    let client = bind().await;
    client.connect(relay.local_addr()).await.unwrap();
    client.send(&0u32.to_be_bytes()).await.unwrap();
    assert_eq!(recv_u32(&client).await, 0);

    handle.set_blackhole(true);
    for i in 1..=50u32 {
        client.send(&i.to_be_bytes()).await.unwrap();
    }
    let stats = wait_for(&handle, |s| settled(s, Direction::ClientToServer, 51)).await;
    assert_eq!(stats.client_to_server.dropped_blackhole, 50);
    assert_eq!(stats.client_to_server.forwarded_packets, 1);

    handle.set_blackhole(false);
    client.send(&999u32.to_be_bytes()).await.unwrap();
    // Nothing sent during the blackhole may arrive: the marker is the next datagram.
    assert_eq!(recv_u32(&client).await, 999);
    assert_eq!(handle.stats().server_to_client.dropped_total(), 0);
}

/// Killing a path for good, as the recorder demo does: once blackholed, nothing more is
/// forwarded either way and the forwarded count stays where it was.
#[tokio::test]
async fn killed_relay_forwards_nothing_more_either_way() {
    let server = bind().await;
    let relay = Relay::start(server.local_addr().unwrap(), RelayConfig::default())
        .await
        .unwrap();
    let handle = relay.handle();
    let client = bind().await;
    client.connect(relay.local_addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let mut via = None;
    for i in 0..10u32 {
        client.send(&i.to_be_bytes()).await.unwrap();
        let (n, from) = timeout(PATIENCE, server.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &i.to_be_bytes());
        server.send_to(&buf[..n], from).await.unwrap();
        assert_eq!(recv_u32(&client).await, i);
        via = Some(from);
    }
    let via = via.unwrap();
    let before = wait_for(&handle, |s| s.forwarded_packets() == 20).await;
    assert_eq!(before.client_to_server.forwarded_packets, 10);
    assert_eq!(before.server_to_client.forwarded_packets, 10);

    handle.set_blackhole(true);
    for i in 10..30u32 {
        client.send(&i.to_be_bytes()).await.unwrap();
        server.send_to(&i.to_be_bytes(), via).await.unwrap();
    }
    let after = wait_for(&handle, |s| {
        settled(s, Direction::ClientToServer, 30) && settled(s, Direction::ServerToClient, 30)
    })
    .await;
    assert_eq!(after.forwarded_packets(), 20);
    assert_eq!(after.client_to_server.dropped_blackhole, 20);
    assert_eq!(after.server_to_client.dropped_blackhole, 20);
    // Nothing got through to either side.
    let quiet = Duration::from_millis(100);
    assert!(timeout(quiet, server.recv_from(&mut buf)).await.is_err());
    assert!(timeout(quiet, client.recv(&mut buf)).await.is_err());
}

#[tokio::test]
async fn one_direction_blackholed_cuts_replies_only() {
    let server = bind().await;
    let relay = Relay::start(server.local_addr().unwrap(), RelayConfig::default())
        .await
        .unwrap();
    let handle = relay.handle();
    handle.update(Direction::ServerToClient, |i| {
        i.set_blackhole(true);
    });
    let client = bind().await;
    client.connect(relay.local_addr()).await.unwrap();
    client.send(b"up").await.unwrap();
    let mut buf = [0u8; 16];
    let (n, via) = timeout(PATIENCE, server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"up");
    server.send_to(b"down", via).await.unwrap();
    let stats = wait_for(&handle, |s| settled(s, Direction::ServerToClient, 1)).await;
    assert_eq!(stats.server_to_client.dropped_blackhole, 1);
    assert_eq!(stats.client_to_server.forwarded_packets, 1);
}

/// Sends `count` numbered datagrams through a relay with `impairment` client-to-server and
/// returns which numbers the server got, plus the relay's counters. Sends in batches and
/// waits for the relay to take each batch, so no socket buffer overflows behind its back.
async fn numbered_run(
    seed: u64,
    impairment: Impairment,
    count: u32,
) -> (BTreeSet<u32>, RelayStats) {
    let server = bind().await;
    let mut config = RelayConfig::default();
    config
        .set_seed(seed)
        .set_impairment(Direction::ClientToServer, impairment);
    let relay = Relay::start(server.local_addr().unwrap(), config)
        .await
        .unwrap();
    let handle = relay.handle();
    let collector = tokio::spawn(async move {
        let mut got = BTreeSet::new();
        let mut buf = [0u8; 2048];
        // Ends when no datagram has come for a while after the relay settled (see below).
        while let Ok(Ok(n)) = timeout(Duration::from_millis(500), server.recv(&mut buf)).await {
            if n >= 4 {
                got.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
        }
        got
    });
    let client = bind().await;
    client.connect(relay.local_addr()).await.unwrap();
    let payload = [0u8; 200];
    for start in (0..count).step_by(50) {
        let end = (start + 50).min(count);
        for i in start..end {
            let mut datagram = payload;
            datagram[..4].copy_from_slice(&i.to_be_bytes());
            client.send(&datagram).await.unwrap();
        }
        wait_for(&handle, |s| {
            s.client_to_server.received_packets == u64::from(end)
        })
        .await;
    }
    let stats = wait_for(&handle, |s| {
        settled(s, Direction::ClientToServer, u64::from(count))
    })
    .await;
    let got = collector.await.unwrap();
    (got, stats)
}

#[tokio::test]
async fn seeded_loss_is_within_bounds_and_reproducible() {
    let mut lossy = Impairment::none();
    lossy.set_loss(LossRate::percent(10.0).unwrap());
    let (got_a, stats_a) = numbered_run(42, lossy.clone(), 3000).await;
    let lost = stats_a.client_to_server.dropped_loss;
    // Binomial(3000, 0.1): mean 300, sd 16.4; the bounds are > 6 sd away.
    assert!((200..=400).contains(&lost), "lost {lost} of 3000 at 10 %");
    assert_eq!(
        got_a.len() as u64,
        3000 - lost,
        "the server got exactly what was forwarded"
    );

    let (got_b, stats_b) = numbered_run(42, lossy.clone(), 3000).await;
    assert_eq!(stats_b.client_to_server.dropped_loss, lost);
    assert_eq!(got_a, got_b, "same seed, same datagrams lost");

    let (got_c, _) = numbered_run(43, lossy, 3000).await;
    assert_ne!(got_a, got_c, "another seed, other datagrams lost");
}

#[tokio::test]
async fn rate_limit_queue_overflows_when_overloaded() {
    let mut limited = Impairment::none();
    // 1 Mbit/s with 4 KiB burst and a 16 KiB queue: about 20 datagrams of 1000 bytes get
    // through at once; offering 500 in a burst must overflow the queue.
    limited
        .set_rate(Some(BitRate::mbit(1).unwrap()))
        .set_burst_bytes(4 * 1024)
        .set_queue_limit_bytes(16 * 1024);
    let server = bind().await;
    let mut config = RelayConfig::default();
    config.set_impairment(Direction::ClientToServer, limited);
    let relay = Relay::start(server.local_addr().unwrap(), config)
        .await
        .unwrap();
    let handle = relay.handle();
    let client = bind().await;
    client.connect(relay.local_addr()).await.unwrap();
    for start in (0..500u64).step_by(50) {
        for _ in 0..50 {
            client.send(&[7u8; 1000]).await.unwrap();
        }
        wait_for(&handle, |s| {
            s.client_to_server.received_packets == start + 50
        })
        .await;
    }
    let stats = wait_for(&handle, |s| settled(s, Direction::ClientToServer, 500)).await;
    let link = stats.client_to_server;
    assert!(
        link.dropped_queue > 0,
        "an overloaded limiter must drop: {link:?}"
    );
    assert_eq!(link.dropped_blackhole + link.dropped_loss, 0);
    // What got through is bounded by burst + queue + what the rate allowed meanwhile;
    // far less than offered unless the 500 sends took seconds.
    assert!(link.forwarded_packets < 500, "{link:?}");
    let mut buf = [0u8; 2048];
    let mut received = 0u64;
    while received < link.forwarded_packets {
        timeout(PATIENCE, server.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        received += 1;
    }
}

#[tokio::test]
async fn impairments_switch_at_run_time() {
    let server = echo_server().await;
    let relay = Relay::start(server, RelayConfig::default()).await.unwrap();
    let handle = relay.handle();
    let client = bind().await;
    client.connect(relay.local_addr()).await.unwrap();

    // Total loss upstream: everything counted as loss.
    handle.update(Direction::ClientToServer, |i| {
        i.set_loss(LossRate::new(1.0).unwrap());
    });
    for i in 0..20u32 {
        client.send(&i.to_be_bytes()).await.unwrap();
    }
    let stats = wait_for(&handle, |s| settled(s, Direction::ClientToServer, 20)).await;
    assert_eq!(stats.client_to_server.dropped_loss, 20);

    // Back to clean, with a delay downstream: datagrams flow again, in order.
    handle.set_impairment(Direction::ClientToServer, Impairment::none());
    handle.update(Direction::ServerToClient, |i| {
        i.set_delay(Duration::from_millis(20))
            .set_jitter(Duration::from_millis(10));
    });
    for i in 100..110u32 {
        client.send(&i.to_be_bytes()).await.unwrap();
    }
    for i in 100..110u32 {
        assert_eq!(recv_u32(&client).await, i);
    }
    assert_eq!(
        handle.impairment(Direction::ServerToClient).delay(),
        Duration::from_millis(20)
    );
    let stats = handle.stats();
    assert_eq!(stats.client_to_server.forwarded_packets, 10);
    assert_eq!(stats.server_to_client.forwarded_packets, 10);
}

#[tokio::test]
async fn dropping_the_relay_stops_it() {
    let server = echo_server().await;
    let relay = Relay::start(server, RelayConfig::default()).await.unwrap();
    let addr = relay.local_addr();
    let handle = relay.handle();
    drop(relay);
    // The listening port is released once the aborted tasks are gone.
    let rebound = timeout(PATIENCE, async {
        loop {
            if let Ok(socket) = UdpSocket::bind(addr).await {
                return socket;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("relay socket never released");
    drop(rebound);
    // The handle still answers, and nothing more was counted.
    assert_eq!(handle.stats().client_to_server.received_packets, 0);
}

#[tokio::test]
async fn client_limit_is_enforced() {
    let server = echo_server().await;
    let mut config = RelayConfig::default();
    config.set_max_clients(1);
    let relay = Relay::start(server, config).await.unwrap();
    let handle = relay.handle();
    let a = bind().await;
    let b = bind().await;
    a.send_to(b"a", relay.local_addr()).await.unwrap();
    b.send_to(b"b", relay.local_addr()).await.unwrap();
    let stats = wait_for(&handle, |s| s.rejected_clients == 1).await;
    assert_eq!(stats.clients, 1);
}
