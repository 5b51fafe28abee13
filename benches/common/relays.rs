//! Impairment relays in front of a server: one per path.

use std::net::SocketAddr;

use anyhow::Result;
use kwik_testbed::impairment::{BitRate, Impairment};
use kwik_testbed::relay::{Relay, RelayConfig};

/// A rate limit of `rate_mbit` (applied to each direction it is set on), nothing else.
pub(crate) fn rate_limit(rate_mbit: u64) -> Result<Impairment> {
    let mut imp = Impairment::none();
    imp.set_rate(Some(BitRate::mbit(rate_mbit)?));
    Ok(imp)
}

/// One relay to `target` per impairment (applied both ways); relay `i` seeds its loss
/// and jitter with `seed + i`.
pub(crate) async fn start_relays(
    target: SocketAddr,
    impairments: &[Impairment],
    seed: u64,
) -> Result<Vec<Relay>> {
    let mut relays = Vec::new();
    for (i, imp) in impairments.iter().enumerate() {
        let mut config = RelayConfig::default();
        config
            .set_seed(seed.wrapping_add(i as u64))
            .set_impairment_both(imp.clone());
        relays.push(Relay::start(target, config).await?);
    }
    Ok(relays)
}

/// One line of counters per relay.
pub(crate) fn print_relays(relays: &[Relay]) {
    for (i, relay) in relays.iter().enumerate() {
        let s = relay.handle().stats();
        println!(
            "  relay {i}: c->s forwarded {} pkts / {} B, dropped queue {} loss {} blackhole {}; s->c forwarded {} pkts, dropped {}",
            s.client_to_server.forwarded_packets,
            s.client_to_server.forwarded_bytes,
            s.client_to_server.dropped_queue,
            s.client_to_server.dropped_loss,
            s.client_to_server.dropped_blackhole,
            s.server_to_client.forwarded_packets,
            s.server_to_client.dropped_total(),
        );
    }
}
