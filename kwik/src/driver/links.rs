//! Multi-server sessions, the client's tasks: joining a secondary server when
//! the primary asks (ADD_PATH, then ADD_PATH_RESULT), and per link a control
//! writer (relays, pongs and the [`Outbox`]), a control reader, the readers of
//! the secondary's data streams (every piece checked by the core against the
//! primary's grants before anything is buffered) and a watcher.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use quinn::VarInt;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::driver::control::{HANDSHAKE_TIMEOUT, send_join};
use crate::driver::error::ConnectError;
use crate::driver::multi_server::{Link, Outbox, RELAY_QUEUE, SecondaryPath};
use crate::driver::peer_log::close_for;
use crate::driver::quinn_config::link_client_config;
use crate::driver::shared::SessionShared;
use crate::proto::error::ProtocolError;
use crate::proto::ids::PathId;
use crate::proto::multiserver::client::{LinkInput, on_link_frame};
use crate::proto::peer_fault::PeerFault;
use crate::proto::session::events::PathEvent;
use crate::proto::wire::frame::{AddPathOutcome, Frame, FrameReader, RefuseReason};
use crate::proto::wire::segment::SegmentReader;

/// (Client) Starts joining the secondary at `addr` as `path` (an ADD_PATH
/// from the primary); the outcome goes back to the primary.
pub(crate) fn spawn_client_join(
    shared: Arc<SessionShared>,
    path: PathId,
    addr: SocketAddr,
    server_name: Bytes,
    token: Bytes,
) {
    tokio::spawn(client_join(shared, path, addr, server_name, token));
}

fn outcome_of(e: &ConnectError) -> AddPathOutcome {
    match e {
        ConnectError::Refused(reason) => AddPathOutcome::Refused(*reason),
        ConnectError::TimedOut => AddPathOutcome::TimedOut,
        _ => AddPathOutcome::Unreachable,
    }
}

/// (Client) joins the secondary at `addr` as `path` and reports the outcome to
/// the primary.
async fn client_join(
    shared: Arc<SessionShared>,
    path: PathId,
    addr: SocketAddr,
    server_name: Bytes,
    token: Bytes,
) {
    let outcome = match join_secondary(&shared, path, addr, &server_name, token).await {
        Ok(()) => AddPathOutcome::Joined,
        Err(e) => {
            debug!(session = %shared.id, %path, %addr, error = %e, "secondary join failed");
            outcome_of(&e)
        }
    };
    shared.with_state(|s| s.queue_frame(Frame::AddPathResult { path, outcome }));
}

async fn join_secondary(
    shared: &Arc<SessionShared>,
    path: PathId,
    addr: SocketAddr,
    server_name: &[u8],
    token: Bytes,
) -> Result<(), ConnectError> {
    let client = shared.client.as_ref().ok_or(ConnectError::NotAClient)?;
    let in_use =
        shared.state.lock().has_path(path) || shared.multi.links.lock().contains_key(&path);
    if in_use {
        return Err(ConnectError::Refused(RefuseReason::PathInUse));
    }
    let name = std::str::from_utf8(server_name).map_err(|_| {
        ConnectError::Connect(quinn::ConnectError::InvalidServerName(
            String::from_utf8_lossy(server_name).into_owned(),
        ))
    })?;
    let qc = link_client_config(&client.quinn_config, &client.config.session);
    let connecting = client.quinn.connect_with(qc, addr, name)?;
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| ConnectError::Connection(quinn::ConnectionError::TimedOut))??;
    let (send, recv, reader) = send_join(&conn, shared.id, path, token).await?;
    if shared.is_closed() {
        conn.close(VarInt::from_u32(0), b"session closed");
        return Err(ConnectError::ControlClosed);
    }
    let (tx, rx) = mpsc::channel(RELAY_QUEUE);
    let outbox = Arc::new(Outbox::default());
    shared.multi.links.lock().insert(
        path,
        Link {
            conn: conn.clone(),
            frames: tx.clone(),
            outbox: outbox.clone(),
        },
    );
    shared
        .multi
        .paths
        .lock()
        .insert(path, SecondaryPath { id: path, addr });
    shared.with_state(|s| s.secondary_joined(path));
    shared.events.send(PathEvent::Added(path));
    tokio::spawn(link_writer(send, rx, outbox));
    tokio::spawn(link_reader(shared.clone(), path, recv, reader, tx));
    tokio::spawn(link_data_acceptor(shared.clone(), path, conn.clone()));
    tokio::spawn(link_watcher(shared.clone(), path, conn));
    Ok(())
}

/// (Client) Writes a link's control channel: relays and pongs from `rx`,
/// grants, credits and acknowledgements from the outbox.
async fn link_writer(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Frame>,
    outbox: Arc<Outbox>,
) {
    let mut buf = BytesMut::new();
    loop {
        buf.clear();
        outbox.drain_into(&mut buf);
        while let Ok(f) = rx.try_recv() {
            f.encode(&mut buf);
        }
        if buf.is_empty() {
            tokio::select! {
                f = rx.recv() => match f {
                    Some(f) => f.encode(&mut buf),
                    None => break,
                },
                _ = outbox.notify.notified() => continue,
            }
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// (Client) Data streams a secondary opens on its link.
async fn link_data_acceptor(shared: Arc<SessionShared>, path: PathId, conn: quinn::Connection) {
    while let Ok(recv) = conn.accept_uni().await {
        tokio::spawn(link_data_reader(shared.clone(), path, conn.clone(), recv));
    }
}

/// (Client) One data stream from a secondary: every piece is checked against
/// the grants the primary sent for this path before anything is buffered. A
/// piece outside them, or malformed data, closes the link (the session goes
/// on; the primary hears PATH_ABANDON and can reclaim).
async fn link_data_reader(
    shared: Arc<SessionShared>,
    path: PathId,
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
) {
    let mut reader = SegmentReader::new();
    let mut pieces = Vec::new();
    loop {
        let error = match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => {
                if let Err(e) = reader.feed(chunk.bytes, &mut pieces) {
                    Some(ProtocolError::from(e))
                } else {
                    let now = Instant::now();
                    shared
                        .with_state(|s| {
                            for piece in pieces.drain(..) {
                                s.handle_secondary_piece(path, piece, now)?;
                            }
                            Ok(())
                        })
                        .err()
                }
            }
            Ok(None) => {
                if reader.at_boundary() {
                    return;
                }
                Some(ProtocolError::StreamState(
                    "data stream ended inside a segment",
                ))
            }
            Err(_) => return,
        };
        if let Some(e) = error {
            pieces.clear();
            if matches!(e, ProtocolError::OutsideGrant { .. }) {
                metrics::counter!("kwik_segments_outside_grant_total").increment(1);
            }
            metrics::counter!("kwik_protocol_errors_total").increment(1);
            warn!(session = %shared.id, %path, error = %e, "secondary broke the protocol; closing its path");
            // Code 0x10000 with a phrase that names the class (docs/PROTOCOL.md §3.8).
            close_for(&conn, &PeerFault::protocol(&e));
            return;
        }
    }
}

/// (Client) frames from a secondary: relays go to the primary (stamped with the
/// link's own path id, whatever the secondary wrote), pings are answered.
async fn link_reader(
    shared: Arc<SessionShared>,
    path: PathId,
    mut recv: quinn::RecvStream,
    mut reader: FrameReader,
    frames: mpsc::Sender<Frame>,
) {
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => match on_link_frame(path, frame) {
                    LinkInput::ToPrimary(frame) => {
                        shared.with_state(|s| s.queue_frame(frame));
                    }
                    LinkInput::Answer(frame) => {
                        let _ = frames.try_send(frame);
                    }
                    LinkInput::Ignored(other) => {
                        debug!(session = %shared.id, %path, frame = ?other, "ignored on a secondary link");
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    metrics::counter!("kwik_protocol_errors_total").increment(1);
                    // The phrase names the frame type, as a server's does.
                    let fault = PeerFault::bad_frame(reader.bad_type(), e);
                    warn!(session = %shared.id, %path, error = %fault, "bad frame from secondary; closing link");
                    if let Some(link) = shared.multi.links.lock().get(&path) {
                        close_for(&link.conn, &fault);
                    }
                    return;
                }
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) | Err(_) => return,
        }
    }
}

/// (Client) when a link ends without the primary having removed it, the
/// primary is told with PATH_ABANDON.
async fn link_watcher(shared: Arc<SessionShared>, path: PathId, conn: quinn::Connection) {
    let error = conn.closed().await;
    debug!(session = %shared.id, %path, %error, "secondary link ended");
    if shared.multi.forget(path) {
        shared.events.send(PathEvent::Abandoned(path));
        shared.with_state(|s| s.secondary_lost(path));
    }
}
