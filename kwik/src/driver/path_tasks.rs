//! The tasks that drive a session: per path, a control reader and writer, a
//! data writer (which pulls scheduled chunks from the core when the path has
//! room) and a data acceptor (one reader task per incoming data stream; it
//! also reports the connection's end); per session, the timer. They carry bytes
//! and wake-ups; every decision is the core's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kwik_presentation::StreamId;
use quinn::VarInt;
use tokio::sync::Notify;
use tracing::debug;

use crate::driver::control::unix_ms;
use crate::driver::peer_log::{self, Stage, close_for, connection_fault};
use crate::driver::quinn_config::INITIAL_DATA_STREAMS;
use crate::driver::shared::{PathIo, SessionShared};
use crate::proto::ids::PathId;
use crate::proto::peer_fault::PeerFault;
use crate::proto::wire::frame::FrameReader;
use crate::proto::wire::segment::{SegmentReader, encode_segment_header, encode_stream_header};

/// Ends `path` for `fault` (a violation on that path alone): the connection closes
/// with the fault's code and phrase, the peer log reports it, the session goes on.
fn fail_path(
    shared: &Arc<SessionShared>,
    path: PathId,
    conn: &quinn::Connection,
    fault: PeerFault,
) {
    metrics::counter!("kwik_protocol_errors_total").increment(1);
    close_for(conn, &fault);
    peer_log::report(conn.remote_address(), Some(shared.id), Some(path), &fault);
    shared.with_state(|s| s.path_failed(path, Instant::now()));
}

/// Whether a connection that ended with `e` was ended by the peer's fault: it went
/// silent (idle timeout) or broke QUIC's rules. A close by either side's application
/// is none.
fn is_peer_fault(e: &quinn::ConnectionError) -> bool {
    matches!(
        e,
        quinn::ConnectionError::TimedOut
            | quinn::ConnectionError::TransportError(_)
            | quinn::ConnectionError::ConnectionClosed(_)
    )
}

/// Ceiling for the concurrent data streams a peer may open on a path, as the
/// limit grows. One data stream per (path, logical stream) is open at a time and
/// the receive side refuses more than its `max_streams` logical streams (default
/// 1024), so more concurrent QUIC streams are not needed.
const MAX_DATA_STREAMS: u32 = 4096;

/// QUIC priority of a path's control stream; data streams stay below it.
const CONTROL_PRIORITY: i32 = 100;

/// Attaches a joined path to the session: its I/O entry and its tasks (a
/// control reader and writer, a data writer, and a data acceptor that also
/// reports the connection's end).
pub(crate) fn attach_path(
    shared: &Arc<SessionShared>,
    id: PathId,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
) {
    // The control channel goes before data on the same connection.
    let _ = send.set_priority(CONTROL_PRIORITY);
    let io = PathIo {
        conn: conn.clone(),
        local: None,
        control: Arc::new(Notify::new()),
        data: Arc::new(Notify::new()),
    };
    let (control, data) = (io.control.clone(), io.data.clone());
    shared.paths.lock().insert(id, io);
    tokio::spawn(control_reader(
        shared.clone(),
        id,
        conn.clone(),
        recv,
        reader,
    ));
    tokio::spawn(control_writer(shared.clone(), id, send, control));
    tokio::spawn(data_writer(shared.clone(), id, conn.clone(), data));
    tokio::spawn(data_acceptor(shared.clone(), id, conn));
    shared.kick();
}

/// The session timer: runs the core's timeouts (its receive side's among
/// them) and keeps the core's wall clock anchored.
pub(crate) async fn timer_task(shared: Arc<SessionShared>) {
    let mut closed = shared.closed.subscribe();
    loop {
        if shared.is_closed() {
            return;
        }
        let deadline = {
            let state = shared.state.lock();
            let deadline = state.next_deadline();
            // Under the core's lock: `with_state` compares against it there.
            *shared.timer_armed.lock() = deadline;
            deadline
        };
        let far = Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(deadline.unwrap_or(far).into());
        tokio::select! {
            _ = sleep => {}
            _ = shared.timer.notified() => continue,
            _ = closed.changed() => return,
        }
        let now = Instant::now();
        let wall = unix_ms();
        shared.with_state(|s| {
            s.set_wall_clock(now, wall);
            s.handle_timeout(now)
        });
    }
}

async fn control_reader(
    shared: Arc<SessionShared>,
    path: PathId,
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    mut reader: FrameReader,
) {
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    let name = frame.name();
                    let result = shared.with_state(|s| {
                        s.handle_frame(path, frame, Instant::now()).map_err(|e| {
                            // The phrase names the frame the violation came in.
                            let fault = PeerFault::protocol_in(name, &e);
                            s.fail_for(&fault);
                            fault
                        })
                    });
                    if let Err(fault) = result {
                        metrics::counter!("kwik_protocol_errors_total").increment(1);
                        peer_log::report(
                            conn.remote_address(),
                            Some(shared.id),
                            Some(path),
                            &fault,
                        );
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let fault = PeerFault::bad_frame(reader.bad_type(), e);
                    fail_path(&shared, path, &conn, fault);
                    return;
                }
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) | Err(_) if shared.is_closed() => return,
            // The watcher sees the connection's end first-hand (closing the path here
            // would hide why it ended).
            Err(quinn::ReadError::ConnectionLost(_)) => return,
            Ok(None) | Err(_) => {
                shared.with_state(|s| s.path_failed(path, Instant::now()));
                return;
            }
        }
    }
}

async fn control_writer(
    shared: Arc<SessionShared>,
    path: PathId,
    mut send: quinn::SendStream,
    notify: Arc<Notify>,
) {
    loop {
        let mut buf = BytesMut::new();
        {
            let mut state = shared.state.lock();
            while let Some(f) = state.poll_control(path) {
                f.encode(&mut buf);
            }
        }
        if buf.is_empty() {
            if !shared.path_alive(path) {
                return;
            }
            notify.notified().await;
            continue;
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
    }
}

async fn data_writer(
    shared: Arc<SessionShared>,
    path: PathId,
    conn: quinn::Connection,
    notify: Arc<Notify>,
) {
    // Each logical stream's QUIC stream on this path, with the priority set on it.
    let mut streams: HashMap<StreamId, (quinn::SendStream, i32)> = HashMap::new();
    let mut header = BytesMut::new();
    loop {
        let (next, done) =
            shared.with_state_quiet(|s| (s.poll_data(path), s.take_done_streams(path)));
        for id in done {
            if let Some((mut s, _)) = streams.remove(&id) {
                let _ = s.finish();
            }
        }
        let Some(tx) = next else {
            if !shared.path_alive(path) {
                return;
            }
            notify.notified().await;
            continue;
        };
        shared.kick_others(path);
        header.clear();
        let (stream, set) = match streams.entry(tx.stream) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let Ok(s) = conn.open_uni().await else {
                    return;
                };
                encode_stream_header(&mut header, tx.stream);
                e.insert((s, 0))
            }
        };
        // Below the control channel's priority, whatever the application asks.
        let priority = tx.priority.min(CONTROL_PRIORITY - 1);
        if *set != priority && stream.set_priority(priority).is_ok() {
            *set = priority;
        }
        encode_segment_header(&mut header, tx.offset, tx.data.len() as u64, tx.fin);
        let header_bytes = header.split().freeze();
        if stream
            .write_all_chunks(&mut [header_bytes, tx.data])
            .await
            .is_err()
        {
            return;
        }
        if tx.fin {
            if let Some((mut s, _)) = streams.remove(&tx.stream) {
                let _ = s.finish();
            }
        }
    }
}

async fn data_acceptor(shared: Arc<SessionShared>, path: PathId, conn: quinn::Connection) {
    // Data streams of this path being read now; when they reach half the limit
    // the peer may open, the limit doubles (up to `MAX_DATA_STREAMS`), so a
    // session that uses few streams keeps quinn's per-stream table small.
    let open = Arc::new(AtomicU64::new(0));
    let mut limit = INITIAL_DATA_STREAMS;
    loop {
        let recv = match conn.accept_uni().await {
            Ok(recv) => recv,
            Err(error) => {
                // The connection ended: the acceptor doubles as its watcher
                // (one task less per path).
                connection_ended(&shared, path, &conn, error);
                return;
            }
        };
        let in_use = open.fetch_add(1, Ordering::Relaxed) + 1;
        if in_use * 2 >= u64::from(limit) && limit < MAX_DATA_STREAMS {
            limit = (limit * 2).min(MAX_DATA_STREAMS);
            conn.set_max_concurrent_uni_streams(VarInt::from_u32(limit));
        }
        let (shared, open, conn) = (shared.clone(), open.clone(), conn.clone());
        tokio::spawn(async move {
            data_reader(shared, path, conn, recv).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn data_reader(
    shared: Arc<SessionShared>,
    path: PathId,
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
) {
    let mut reader = SegmentReader::new();
    let mut pieces = Vec::new();
    loop {
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => {
                if let Err(e) = reader.feed(chunk.bytes, &mut pieces) {
                    fail_path(&shared, path, &conn, PeerFault::path_protocol(&e.into()));
                    return;
                }
                if pieces.is_empty() {
                    continue;
                }
                let now = Instant::now();
                let failed = shared.with_state(|s| {
                    for piece in pieces.drain(..) {
                        if let Err(e) = s.handle_piece(path, piece, now) {
                            s.fail(&e);
                            return Some(e);
                        }
                    }
                    None
                });
                if let Some(e) = failed {
                    metrics::counter!("kwik_protocol_errors_total").increment(1);
                    let fault = PeerFault::protocol(&e);
                    peer_log::report(conn.remote_address(), Some(shared.id), Some(path), &fault);
                    return;
                }
            }
            Ok(None) => {
                if !reader.at_boundary() {
                    let fault = PeerFault::PathProtocol {
                        frame: None,
                        detail: "data stream ended inside a segment".into(),
                    };
                    fail_path(&shared, path, &conn, fault);
                }
                return;
            }
            // The connection failed (the watcher handles it) or the stream was reset.
            Err(_) => return,
        }
    }
}

/// Reports the end of `path`'s connection to the core.
fn connection_ended(
    shared: &Arc<SessionShared>,
    path: PathId,
    conn: &quinn::Connection,
    error: quinn::ConnectionError,
) {
    debug!(session = %shared.id, %path, %error, "path connection ended");
    if is_peer_fault(&error) {
        let fault = connection_fault(&error, Stage::Established);
        peer_log::report(conn.remote_address(), Some(shared.id), Some(path), &fault);
    }
    let application_close = match &error {
        quinn::ConnectionError::ApplicationClosed(close) => {
            Some((close.error_code.into_inner(), close.reason.clone()))
        }
        _ => None,
    };
    shared.with_state(|s| s.connection_lost(path, application_close, Instant::now()));
}
