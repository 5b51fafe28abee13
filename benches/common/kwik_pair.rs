//! The kwik side: a session between two loopback endpoints, through relays when a
//! scenario has any, and one bulk transfer on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kwik_testbed::Loopback;
use kwik_testbed::impairment::Impairment;
use kwik_testbed::relay::Relay;
use kwik_testbed::tls::SERVER_NAME;

use super::cli::Policy;
use super::payload::{MIB, Sink, Transfer, pattern};
use super::relays::{print_relays, start_relays};

/// Connects a kwik session, through the relays when there are any (the first relay
/// carries the initial path, each further relay one added path).
pub(crate) async fn kwik_connect(pair: &Loopback, relays: &[Relay]) -> Result<kwik::Session> {
    let server_addr = pair.server.local_addr()?;
    let first = relays.first().map_or(server_addr, Relay::local_addr);
    let session = pair.client.connect(first, SERVER_NAME).await?;
    for relay in relays.iter().skip(1) {
        session
            .add_path(kwik::PathSpec::remote(relay.local_addr()))
            .await?;
    }
    Ok(session)
}

/// Sends `size` bytes on one kwik uni stream with kwik's default session configuration
/// and `policy`, one path per impairment (none: plain loopback); returns timing and what
/// the receiver saw.
pub(crate) async fn kwik_bulk(
    size: u64,
    relays: &[Impairment],
    policy: Policy,
) -> Result<Transfer> {
    let config = kwik::SessionConfig::default().scheduler(policy.scheduler());
    Ok(kwik_transfer_cut(size, relays, config, None).await?.0)
}

/// A blackhole to apply to one relay once the receiver has `after` bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    /// Which relay (path) to blackhole, both ways.
    pub(crate) path: usize,
    /// Bytes the receiver must have read first.
    pub(crate) after: u64,
}

/// Sends `size` bytes on one kwik uni stream over one path per impairment, applying
/// `cut` if given (the receiver then records its arrivals); returns timing, what the
/// receiver saw and when the cut happened. Prints the paths', the session's, the
/// receiver's and the relays' counters.
pub(crate) async fn kwik_transfer_cut(
    size: u64,
    impairments: &[Impairment],
    config: kwik::SessionConfig,
    cut: Option<Cut>,
) -> Result<(Transfer, Option<Instant>)> {
    let pair = Loopback::new(config)?;
    let relays = start_relays(pair.server.local_addr()?, impairments, 1).await?;
    let progress = Arc::new(AtomicU64::new(0));
    let server = pair.server.clone();
    let record = cut.is_some();
    let receiver = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let session = server.accept().await.context("no incoming session")?;
            let mut recv = session.accept_uni().await?;
            let mut sink = Sink::new(progress, record);
            while let Some(chunk) = recv.read_chunk(usize::MAX).await? {
                sink.take(&chunk);
            }
            let done = Instant::now();
            anyhow::Ok((sink, done, session))
        })
    };
    let session = kwik_connect(&pair, &relays).await?;
    let cutter = cut.map(|cut| {
        let handle = relays[cut.path].handle();
        let progress = progress.clone();
        tokio::spawn(async move {
            while progress.load(Ordering::Relaxed) < cut.after {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            handle.set_blackhole(true);
            Instant::now()
        })
    });
    let chunk = pattern();
    let start = Instant::now();
    let mut send = session.open_uni().await?;
    let mut sent = 0u64;
    while sent < size {
        let len = (size - sent).min(MIB) as usize;
        send.write_chunk(chunk.slice(..len)).await?;
        sent += len as u64;
    }
    send.finish()?;
    let (sink, done, server_session) = tokio::time::timeout(Duration::from_secs(300), receiver)
        .await
        .context("kwik transfer did not complete within 300 s")???;
    let cut_at = match cutter {
        Some(task) => Some(task.await?),
        None => None,
    };
    print_session(&session, &server_session);
    print_relays(&relays);
    session.close(0, b"done");
    server_session.close(0, b"done");
    Ok((
        Transfer {
            secs: (done - start).as_secs_f64(),
            sink,
        },
        cut_at,
    ))
}

/// The sender's path and session counters and the receiver's presentation counters.
fn print_session(session: &kwik::Session, server_session: &kwik::Session) {
    for path in session.paths() {
        let s = &path.stats;
        println!(
            "  path {:?}: {:?} sent {} B (resent {}), srtt {:?}, rate {:.1} Mbit/s",
            s.id,
            s.state,
            s.bytes_sent,
            s.bytes_resent,
            s.srtt,
            s.rate * 8e-6
        );
    }
    let stats = session.stats();
    println!(
        "  session: written {} sent {} resent {} acked {} paths abandoned {}",
        stats.bytes_written,
        stats.bytes_sent,
        stats.bytes_resent,
        stats.bytes_acked,
        stats.paths_abandoned
    );
    let ps = server_session.presentation_stats();
    let (sb, bb) = (&ps.stream_backpressure, &ps.session_backpressure);
    println!(
        "  receiver: session window {} KiB ({} growths), stream backpressure {}x ({} slow reader, {} gap) {:?}, session backpressure {}x {:?}, gap timeouts {}",
        ps.session_window >> 10,
        ps.session_window_growths,
        sb.activations,
        sb.slow_reader,
        sb.head_of_line_gap,
        sb.time_active,
        bb.activations,
        bb.time_active,
        ps.gap_timeouts,
    );
}
