//! Where a gateway's sessions go: the server address and extra paths of each attempt
//! (rotating over the routes to its server, then over a fleet's other servers), the
//! wait between attempts, and the retry of extra paths that could not be added.

use std::net::SocketAddr;
use std::time::Duration;

use crate::remote::gateway::GatewayConfig;

/// The wait before the next attempt after `failures` failed sessions in a row:
/// `interval` doubled per further failure (at most 8 times), spread at random over
/// ±50 % so that gateways that failed together do not retry together.
pub(super) fn retry_wait(interval: Duration, failures: u32) -> Duration {
    let base = interval.saturating_mul(1 << failures.saturating_sub(1).min(3));
    // rand::random::<f64>() is uniform in [0, 1). try_: a huge configured interval
    // saturates instead of panicking.
    Duration::try_from_secs_f64(base.as_secs_f64() * (0.5 + rand::random::<f64>()))
        .unwrap_or(Duration::MAX)
}

/// The server address a session is opened on at `attempt` and the extra paths it
/// gets. In turn: the server, each extra path's own remote address (another route to
/// the same server; the server's address then becomes that extra path), then each
/// fallback server of a fleet (with the extra paths that name no remote: uplinks to
/// whichever server the session is on).
pub(super) fn routes(config: &GatewayConfig, attempt: usize) -> (SocketAddr, Vec<kwik::PathSpec>) {
    let mut same_server = vec![config.server];
    for r in config
        .extra_paths
        .iter()
        .filter_map(kwik::PathSpec::remote_addr)
    {
        if !same_server.contains(&r) {
            same_server.push(r);
        }
    }
    let fallbacks: Vec<SocketAddr> = config
        .fallback_servers
        .iter()
        .copied()
        .filter(|f| !same_server.contains(f))
        .collect();
    let i = attempt % (same_server.len() + fallbacks.len());
    if let Some(&fallback) = i
        .checked_sub(same_server.len())
        .and_then(|j| fallbacks.get(j))
    {
        let uplinks = config
            .extra_paths
            .iter()
            .filter(|spec| spec.remote_addr().is_none())
            .copied()
            .collect();
        return (fallback, uplinks);
    }
    let primary = same_server[i];
    let extra = config
        .extra_paths
        .iter()
        .map(|spec| match spec.remote_addr() {
            Some(r) if r == primary => spec.with_remote(config.server),
            _ => *spec,
        })
        .collect();
    (primary, extra)
}

/// Adds the extra paths that could not be added when the session opened, one try
/// each per `every`, until all are in (or the task is aborted with the session).
pub(super) async fn add_missing_paths(
    session: kwik::Session,
    mut missing: Vec<kwik::PathSpec>,
    every: Duration,
) {
    while !missing.is_empty() {
        tokio::time::sleep(every).await;
        let mut still = Vec::new();
        for spec in missing {
            match session.add_path(spec).await {
                Ok(id) => tracing::info!(path = %id, "extra path added"),
                Err(kwik::AddPathError::SessionClosed(_)) => return,
                Err(_) => still.push(spec),
            }
        }
        missing = still;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::wire::StreamKey;

    #[test]
    fn sessions_rotate_over_the_server_and_the_extra_paths_remotes() {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let up: SocketAddr = "10.0.0.2:0".parse().unwrap();
        let up2: SocketAddr = "10.0.0.3:0".parse().unwrap();
        let client = kwik::ClientConfig::with_root_certificates([]).unwrap();
        let mut config = GatewayConfig::new(
            a,
            client,
            StreamKey {
                device: "d".into(),
                stream: "s".into(),
            },
        );
        config.extra_paths = vec![
            kwik::PathSpec::local(up).with_remote(b),
            kwik::PathSpec::local(up2),
        ];
        let (first, extra) = routes(&config, 0);
        assert_eq!(first, a);
        assert_eq!(extra, config.extra_paths);
        // The second try opens on the other route; the server's address takes its place.
        let (second, extra) = routes(&config, 1);
        assert_eq!(second, b);
        assert_eq!(
            extra,
            vec![
                kwik::PathSpec::local(up).with_remote(a),
                kwik::PathSpec::local(up2)
            ]
        );
        assert_eq!(routes(&config, 2).0, a);
        // A fleet: after the routes to the first server, the others in turn, with the
        // uplinks only.
        let c: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        config.fallback_servers = vec![c];
        assert_eq!(routes(&config, 2), (c, vec![kwik::PathSpec::local(up2)]));
        assert_eq!(routes(&config, 3).0, a);
        config.fallback_servers.clear();
        // Without extra remotes every try is the server.
        config.extra_paths.clear();
        assert_eq!(routes(&config, 7), (a, Vec::new()));
    }

    #[test]
    fn retry_wait_grows_and_spreads() {
        let i = Duration::from_millis(500);
        let waits: Vec<Duration> = (0..200).map(|_| retry_wait(i, 1)).collect();
        assert!(waits.iter().all(|w| *w >= i / 2 && *w < i * 3 / 2));
        // Spread: not all equal (200 draws from a continuous range).
        assert!(waits.iter().any(|w| *w != waits[0]));
        for _ in 0..50 {
            let w = retry_wait(i, 2);
            assert!(w >= i && w < i * 3);
            let w = retry_wait(i, 40);
            assert!(w >= i * 4 && w < i * 12);
        }
        // No overflow panic on an absurd setting.
        assert!(retry_wait(Duration::MAX, 5) >= Duration::from_secs(u64::MAX / 2));
    }
}
