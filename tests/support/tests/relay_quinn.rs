//! Raw quinn connections through the impairment relay: QUIC recovers what the relay
//! drops, and the relay's counters show that it did impair the traffic.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use kwik_testbed::impairment::{BitRate, Impairment, LossRate};
use kwik_testbed::relay::{Relay, RelayConfig};
use kwik_testbed::tls::{SERVER_NAME, TestPki};
use tokio::time::timeout;

const ALPN: &[&[u8]] = &[b"kwik-testbed/1"];
const PATIENCE: Duration = Duration::from_secs(25);

/// A deterministic, non-repeating-looking payload.
fn payload(len: usize) -> Vec<u8> {
    let mut state = 0x1234_5678u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

struct Pair {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
}

fn pair() -> Pair {
    let pki = TestPki::generate().unwrap();
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = quinn::Endpoint::server(pki.quinn_server_config(ALPN).unwrap(), any).unwrap();
    let mut client = quinn::Endpoint::client(any).unwrap();
    client.set_default_client_config(pki.quinn_client_config(ALPN).unwrap());
    Pair { server, client }
}

/// Sends `data` on one uni stream from the client to the server through `relay`, while
/// `during` runs; returns what the server read.
async fn transfer_through(
    pair: &Pair,
    relay: &Relay,
    data: Vec<u8>,
    during: impl std::future::Future<Output = ()>,
) -> Vec<u8> {
    let server = pair.server.clone();
    let receiver = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let mut recv = conn.accept_uni().await.unwrap();
        let got = recv.read_to_end(usize::MAX).await.unwrap();
        conn.close(0u32.into(), b"got it");
        got
    });
    let conn = pair
        .client
        .connect(relay.local_addr(), SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let sender = async {
        let mut send = conn.open_uni().await.unwrap();
        send.write_all(&data).await.unwrap();
        send.finish().unwrap();
    };
    // Done when the server has read everything. (Not when the client sees the
    // server's close: through a lossy relay that one packet can be lost, and the
    // client, with nothing left to send, would only notice at its idle timeout.)
    let (_, _, got) = timeout(PATIENCE, async { tokio::join!(sender, during, receiver) })
        .await
        .expect("transfer did not complete");
    conn.close(0u32.into(), b"done");
    got.unwrap()
}

/// A relay in front of `pair`'s server limited to `mbit` Mbit/s both ways.
async fn rate_limited_relay(pair: &Pair, mbit: u64) -> Relay {
    let mut limited = Impairment::none();
    limited.set_rate(Some(BitRate::mbit(mbit).unwrap()));
    let mut config = RelayConfig::default();
    config.set_impairment_both(limited);
    Relay::start(pair.server.local_addr().unwrap(), config)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_delayed_path_delivers_byte_exact() {
    let pair = pair();
    let mut lossy = Impairment::none();
    lossy
        .set_loss(LossRate::percent(1.0).unwrap())
        .set_delay(Duration::from_millis(2))
        .set_jitter(Duration::from_millis(1));
    let mut config = RelayConfig::default();
    config.set_impairment_both(lossy);
    let relay = Relay::start(pair.server.local_addr().unwrap(), config)
        .await
        .unwrap();
    let data = payload(4 << 20);
    let got = transfer_through(&pair, &relay, data.clone(), async {}).await;
    assert!(got == data, "byte-exact transfer");
    let stats = relay.handle().stats();
    assert!(stats.client_to_server.dropped_loss > 0, "{stats:?}");
    assert!(stats.client_to_server.forwarded_bytes > 4 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_path_delivers_byte_exact() {
    let pair = pair();
    let relay = rate_limited_relay(&pair, 40).await;
    let data = payload(2 << 20);
    let got = transfer_through(&pair, &relay, data.clone(), async {}).await;
    assert!(got == data, "byte-exact transfer");
    assert!(relay.handle().stats().client_to_server.forwarded_packets > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_survives_a_temporary_blackhole() {
    let pair = pair();
    // Rate-limited so that the transfer is still running when the cut comes.
    let relay = rate_limited_relay(&pair, 100).await;
    let handle = relay.handle();
    let data = payload(8 << 20);
    let cut = async {
        // Cut the path once some data has gone through, then restore it.
        while handle.stats().client_to_server.forwarded_bytes < 1 << 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        handle.set_blackhole(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        handle.set_blackhole(false);
    };
    let got = transfer_through(&pair, &relay, data.clone(), cut).await;
    assert!(got == data, "byte-exact transfer");
    let stats = handle.stats();
    assert!(
        stats.client_to_server.dropped_blackhole + stats.server_to_client.dropped_blackhole > 0,
        "{stats:?}"
    );
}
