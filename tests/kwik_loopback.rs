//! Loopback integration tests of `kwik` over real quinn connections on 127.0.0.1,
//! with the test CA from `kwik_testbed::tls` (certificates verified) and the
//! impairment relay from `kwik_testbed::relay` for multipath behaviour.

mod kwik_wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kwik::{PathId, PathSpec, Scheduler, Session, SessionConfig};
use kwik_testbed::loopback::{LOCALHOST, pattern};
use kwik_testbed::{Loopback, Relay, RelayConfig, SERVER_NAME, TestPki};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One session over loopback: the endpoints and both of its sides.
struct Pair {
    lo: Loopback,
    client: Session,
    server: Session,
}

async fn pair(session: SessionConfig) -> Pair {
    let lo = Loopback::new(session).expect("loopback endpoints");
    let (client, server) = lo
        .connect(lo.server_addr().unwrap())
        .await
        .expect("connect");
    assert_eq!(client.id(), server.id());
    Pair { lo, client, server }
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Reads a uni stream to its end, hashing as it goes; returns (bytes, hash).
async fn drain(mut stream: kwik::RecvStream) -> (u64, [u8; 32]) {
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = stream.read_chunk(1 << 20).await.expect("read") {
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    (n, h.finalize().into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_on_one_path() {
    let p = pair(SessionConfig::default()).await;
    let server = p.server.clone();
    let echo = tokio::spawn(async move {
        let (mut send, mut recv) = server.accept_bi().await.expect("accept_bi");
        let buf = recv.read_to_end(usize::MAX).await.expect("server read");
        send.write_all(&buf).await.expect("server write");
        send.finish().expect("finish");
        send.finished().await.expect("acked");
    });
    let (mut send, mut recv) = p.client.open_bi().await.expect("open_bi");
    let msg = pattern(100_000, 1);
    send.write_all(&msg).await.expect("write");
    send.finish().expect("finish");
    let mut back = Vec::new();
    AsyncReadExt::read_to_end(&mut recv, &mut back)
        .await
        .expect("read back");
    assert_eq!(sha(&back), sha(&msg));
    echo.await.unwrap();
    send.finished().await.expect("client data acked");
    p.client.close(0, b"done");
    let reason = p.server.closed().await;
    assert!(
        matches!(reason, kwik::CloseReason::Peer { code: 0, .. }),
        "{reason:?}"
    );
    drop(p.lo);
}

/// Bytes each path carried, by path id.
fn sent_by_path(s: &Session) -> Vec<(PathId, u64)> {
    s.paths()
        .iter()
        .map(|p| (p.stats.id, p.stats.bytes_sent))
        .collect()
}

fn sent_on(before: &[(PathId, u64)], after: &[(PathId, u64)], path: PathId) -> u64 {
    let get = |v: &[(PathId, u64)]| v.iter().find(|(id, _)| *id == path).map_or(0, |(_, b)| *b);
    get(after) - get(before)
}

/// Sends `data` on a new uni stream with `policy` and checks the server got it
/// byte-exact; returns bytes each of paths 0 and 1 carried meanwhile.
async fn send_and_check(p: &Pair, policy: Scheduler, data: Bytes) -> (u64, u64) {
    let before = sent_by_path(&p.client);
    let mut send = p.client.open_uni_with(Some(policy)).await.expect("open");
    let want = sha(&data);
    let len = data.len() as u64;
    let writer = tokio::spawn(async move {
        send.write_chunk(data).await.expect("write");
        send.finish().expect("finish");
        send.finished().await.expect("acked");
    });
    let recv = p.server.accept_uni().await.expect("accept");
    let (n, h) = drain(recv).await;
    assert_eq!(n, len, "{policy:?}");
    assert_eq!(h, want, "{policy:?}: bytes differ");
    writer.await.unwrap();
    let after = sent_by_path(&p.client);
    (
        sent_on(&before, &after, PathId::new(0)),
        sent_on(&before, &after, PathId::new(1)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_paths_with_each_scheduler() {
    let p = pair(SessionConfig::default()).await;
    let second = p
        .client
        .add_path(PathSpec::local(LOCALHOST))
        .await
        .expect("add_path");
    assert_eq!(second, PathId::new(1));
    assert_eq!(p.server.paths().len(), 2);
    let size = 8 << 20;
    for (i, policy) in [
        Scheduler::MinRtt,
        Scheduler::Aggregate,
        Scheduler::Redundant,
        Scheduler::Backup,
        Scheduler::Pinned(PathId::new(1)),
    ]
    .into_iter()
    .enumerate()
    {
        let (on0, on1) = send_and_check(&p, policy, pattern(size, i as u64 + 10)).await;
        match policy {
            Scheduler::Redundant => {
                // A lagging path skips chunks already acknowledged via the other.
                assert!(on0 + on1 >= size as u64 * 3 / 2, "{on0} {on1}")
            }
            Scheduler::Aggregate => assert!(on0 > 0 && on1 > 0, "{on0} {on1}"),
            Scheduler::Backup => assert_eq!(on1, 0),
            Scheduler::Pinned(_) => assert_eq!(on0, 0),
            _ => assert!(on0 + on1 >= size as u64),
        }
    }
    p.client.close(0, b"");
}

/// Two paths, each through its own relay; the victim's relay is blackholed once
/// the server has received a quarter of the data.
async fn failover(policy: Scheduler, victim: u64) {
    let lo = Loopback::new(SessionConfig::lan()).unwrap();
    let target = lo.server_addr().unwrap();
    let relays = [
        Relay::start(target, RelayConfig::default()).await.unwrap(),
        Relay::start(target, RelayConfig::default()).await.unwrap(),
    ];
    let (client, server) = lo.connect(relays[0].local_addr()).await.expect("connect");
    client
        .add_path(PathSpec::remote(relays[1].local_addr()))
        .await
        .expect("add path");
    let size: usize = 24 << 20;
    let data = pattern(size, victim + 99);
    let want = sha(&data);
    let mut send = client.open_uni_with(Some(policy)).await.unwrap();
    let writer = tokio::spawn(async move {
        send.write_chunk(data).await.expect("write");
        send.finish().expect("finish");
        send.finished().await.expect("acked");
    });
    let mut recv = server.accept_uni().await.unwrap();
    let mut h = Sha256::new();
    let mut n = 0usize;
    let mut killed = false;
    while let Some(chunk) = recv.read_chunk(1 << 20).await.expect("read") {
        n += chunk.len();
        h.update(&chunk);
        if !killed && n >= size / 4 {
            relays[victim as usize].handle().set_blackhole(true);
            killed = true;
        }
    }
    assert!(killed);
    assert_eq!(n, size, "{policy:?}");
    assert_eq!(
        <[u8; 32]>::from(h.finalize()),
        want,
        "{policy:?}: bytes differ"
    );
    writer.await.unwrap();
    // The blackholed path is declared dead (missed pongs) on both sides.
    for side in [&client, &server] {
        wait_abandoned(side, PathId::new(victim)).await;
    }
    assert!(client.close_reason().is_none());
    client.close(0, b"");
}

async fn wait_abandoned(session: &Session, path: PathId) {
    for _ in 0..1000 {
        let state = session
            .paths()
            .into_iter()
            .find(|p| p.stats.id == path)
            .map(|p| p.stats.state);
        if state == Some(kwik::PathState::Abandoned) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} never abandoned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_killed_mid_transfer_min_rtt() {
    failover(Scheduler::MinRtt, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_killed_mid_transfer_aggregate() {
    failover(Scheduler::Aggregate, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_killed_mid_transfer_redundant() {
    failover(Scheduler::Redundant, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_killed_mid_transfer_backup() {
    failover(Scheduler::Backup, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_killed_mid_transfer_pinned() {
    failover(Scheduler::Pinned(PathId::new(1)), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_added_mid_transfer_gets_used() {
    let p = pair(SessionConfig::default()).await;
    let first = pattern(4 << 20, 5);
    let second = pattern(8 << 20, 6);
    let mut all = first.to_vec();
    all.extend_from_slice(&second);
    let want = sha(&all);
    let mut send = p
        .client
        .open_uni_with(Some(Scheduler::Aggregate))
        .await
        .unwrap();
    send.write_chunk(first).await.unwrap();
    let recv = p.server.accept_uni().await.unwrap();
    let reader = tokio::spawn(drain(recv));
    let path = p
        .client
        .add_path(PathSpec::local(LOCALHOST))
        .await
        .expect("add_path");
    send.write_chunk(second).await.unwrap();
    send.finish().unwrap();
    send.finished().await.unwrap();
    let (n, h) = reader.await.unwrap();
    assert_eq!(n as usize, all.len());
    assert_eq!(h, want);
    let used = p
        .client
        .paths()
        .into_iter()
        .find(|i| i.stats.id == path)
        .unwrap()
        .stats
        .bytes_sent;
    assert!(used > 0, "new path carried nothing");
    p.client.close(0, b"");
}

/// A stream pinned to path 0 switches to `Redundant` half-way: the first half
/// never touches path 1, the second half travels on both, and the bytes
/// arrive once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_changed_while_the_stream_is_open() {
    let p = pair(SessionConfig::default()).await;
    let second_path = p
        .client
        .add_path(PathSpec::local(LOCALHOST))
        .await
        .expect("add_path");
    let first = pattern(2 << 20, 7);
    let second = pattern(2 << 20, 8);
    let mut all = first.to_vec();
    all.extend_from_slice(&second);
    let want = sha(&all);

    let before = sent_by_path(&p.client);
    let mut send = p
        .client
        .open_uni_with(Some(Scheduler::Pinned(PathId::new(0))))
        .await
        .unwrap();
    send.write_chunk(first.clone()).await.unwrap();
    // Let the reader take the whole first half before switching, so no byte
    // of it is still unsent when the policy changes.
    let mut recv = p.server.accept_uni().await.unwrap();
    let mut h = Sha256::new();
    let mut n = 0;
    while n < first.len() {
        let chunk = recv.read_chunk(1 << 20).await.unwrap().expect("first half");
        n += chunk.len();
        h.update(&chunk);
    }
    let middle = sent_by_path(&p.client);
    assert_eq!(
        sent_on(&before, &middle, second_path),
        0,
        "a stream pinned to path 0 used path 1"
    );

    send.set_scheduler(Scheduler::Redundant).unwrap();
    send.write_chunk(second.clone()).await.unwrap();
    send.finish().unwrap();
    while let Some(chunk) = recv.read_chunk(1 << 20).await.unwrap() {
        n += chunk.len();
        h.update(&chunk);
    }
    send.finished().await.unwrap();
    assert_eq!(n, all.len());
    assert_eq!(<[u8; 32]>::from(h.finalize()), want);
    let after = sent_by_path(&p.client);
    for path in [PathId::new(0), second_path] {
        assert!(
            sent_on(&middle, &after, path) > 0,
            "{path} carried none of the redundant half"
        );
    }
    p.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_join_token_is_rejected() {
    use kwik_wire::{Frame, FrameReader};
    let p = pair(SessionConfig::default()).await;
    let server_addr = p.lo.server.local_addr().unwrap();
    let raw = quinn::Endpoint::client(LOCALHOST).unwrap();
    let qc = p.lo.pki.quinn_client_config(&[kwik::ALPN]).unwrap();
    for (session, token) in [
        (p.client.id(), Bytes::from(vec![1u8; kwik::TOKEN_LEN])),
        (
            kwik::SessionId::from_bytes([3; 16]),
            Bytes::from(vec![1u8; kwik::TOKEN_LEN]),
        ),
    ] {
        let conn = raw
            .connect_with(qc.clone(), server_addr, SERVER_NAME)
            .unwrap()
            .await
            .expect("QUIC handshake");
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut buf = bytes::BytesMut::new();
        Frame::Join {
            session,
            path: PathId::new(1),
            token,
        }
        .encode(&mut buf);
        send.write_all(&buf).await.unwrap();
        let mut reader = FrameReader::new();
        let answer = loop {
            if let Some(f) = reader.next_frame().unwrap() {
                break f;
            }
            let chunk = recv.read_chunk(1024, true).await.unwrap().expect("answer");
            reader.push(&chunk.bytes);
        };
        assert!(matches!(answer, Frame::Refused { .. }), "{answer:?}");
        conn.closed().await;
    }
    assert_eq!(p.lo.server.refused_joins(), 2);
    // The real session is unaffected.
    assert_eq!(p.server.paths().len(), 1);
    assert!(p.server.close_reason().is_none());
    p.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_streams() {
    let p = pair(SessionConfig::default()).await;
    let mut writers = Vec::new();
    let mut expected = std::collections::HashMap::new();
    for i in 0..100u64 {
        let mut s = p.client.open_uni().await.unwrap();
        let data = pattern(64 * 1024 + i as usize * 97, i);
        expected.insert(s.id(), sha(&data));
        writers.push(tokio::spawn(async move {
            for piece in data.chunks(10_000) {
                s.write_all(piece).await.unwrap();
            }
            s.finish().unwrap();
            s.finished().await.unwrap();
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..100 {
        let r = p.server.accept_uni().await.unwrap();
        let id = r.id();
        readers.push(tokio::spawn(async move { (id, drain(r).await) }));
    }
    for r in readers {
        let (id, (_, h)) = r.await.unwrap();
        assert_eq!(expected.remove(&id), Some(h), "stream {id:?}");
    }
    assert!(expected.is_empty());
    for w in writers {
        w.await.unwrap();
    }
    p.client.close(0, b"");
}

/// Bytes for the large-transfer test: `KWIK_BIG_BYTES` (e.g. 1073741824 for the
/// 1 GiB run in release mode), default 64 MiB so `cargo test` stays quick.
fn big_size() -> usize {
    std::env::var("KWIK_BIG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfer_byte_exact() {
    let p = pair(SessionConfig::default()).await;
    let size = big_size();
    let block = pattern(1 << 20, 77);
    let mut send = p.client.open_uni().await.unwrap();
    let writer = tokio::spawn(async move {
        let mut h = Sha256::new();
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len());
            let piece = block.slice(..n);
            h.update(&piece);
            send.write_chunk(piece).await.unwrap();
            left -= n;
        }
        send.finish().unwrap();
        send.finished().await.unwrap();
        <[u8; 32]>::from(h.finalize())
    });
    let recv = p.server.accept_uni().await.unwrap();
    let (n, h) = drain(recv).await;
    assert_eq!(n as usize, size);
    assert_eq!(h, writer.await.unwrap());
    p.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_bounds_memory_and_stalls_sender() {
    let window: u64 = 2 << 20;
    let pres = kwik::PresentationConfig::default()
        .session_window(window)
        .max_session_window(window)
        .stream_window(window)
        .max_stream_window(window);
    let p = pair(SessionConfig::default().presentation(pres)).await;
    let size = 32 << 20;
    let data = pattern(size, 3);
    let want = sha(&data);
    let written = Arc::new(AtomicU64::new(0));
    let mut send = p.client.open_uni().await.unwrap();
    let w = written.clone();
    let writer = tokio::spawn(async move {
        for piece in data.chunks(64 * 1024) {
            send.write_all(piece).await.unwrap();
            w.fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
        send.finish().unwrap();
        send.finished().await.unwrap();
    });
    let mut recv = p.server.accept_uni().await.unwrap();
    // Nobody reads: the sender runs out of credit at the window.
    while p.client.stats().bytes_written < window {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        p.client.stats().bytes_written,
        window,
        "sender went past its credit"
    );
    assert!(written.load(Ordering::Relaxed) <= window);
    assert!(!writer.is_finished());
    assert!(p.client.stats().bytes_retained <= window);
    let ps = p.server.presentation_stats();
    assert!(ps.buffered_bytes <= window, "{ps:?}");
    // Now read slowly; memory stays bounded all along.
    let mut h = Sha256::new();
    let mut n = 0;
    while let Some(chunk) = recv.read_chunk(256 * 1024).await.unwrap() {
        n += chunk.len();
        h.update(&chunk);
        assert!(p.server.presentation_stats().buffered_bytes <= window);
        // Retained = written - acknowledged <= credit - acknowledged: at most the
        // window plus what was read but whose ACK is still on its way.
        assert!(p.client.stats().bytes_retained <= 2 * window);
    }
    assert_eq!(n, size);
    assert_eq!(<[u8; 32]>::from(h.finalize()), want);
    writer.await.unwrap();
    p.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_events_remove_path_and_close() {
    let p = pair(SessionConfig::lan()).await;
    let mut client_events = p.client.path_events();
    let mut server_events = p.server.path_events();
    let path = p
        .client
        .add_path(PathSpec::local(LOCALHOST).backup())
        .await
        .expect("add_path");
    loop {
        let e = client_events.next().await.expect("event");
        if e == kwik::PathEvent::Added(path) {
            break;
        }
    }
    // The server hears of the path, then of its backup status.
    let mut seen = Vec::new();
    while !seen.contains(&kwik::PathEvent::Backup(path)) {
        seen.push(server_events.next().await.expect("event"));
    }
    assert!(seen.contains(&kwik::PathEvent::Added(path)), "{seen:?}");
    // Data flows over the available path only.
    let (on0, on1) = send_and_check(&p, Scheduler::MinRtt, pattern(1 << 20, 8)).await;
    assert_eq!(on1, 0, "backup path used while path 0 lives ({on0})");
    assert_eq!(
        p.client.remove_path(PathId::new(7)),
        Err(kwik::RemovePathError::UnknownPath(PathId::new(7)))
    );
    p.client
        .remove_path(PathId::INITIAL)
        .expect("remove path 0");
    wait_abandoned(&p.server, PathId::INITIAL).await;
    assert_eq!(
        p.client.remove_path(path),
        Err(kwik::RemovePathError::LastPath)
    );
    // The backup path is the only one left and carries the next stream.
    let (on0, on1) = send_and_check(&p, Scheduler::MinRtt, pattern(1 << 20, 9)).await;
    assert_eq!(on0, 0);
    assert!(on1 >= 1 << 20);
    let stats = p.client.stats();
    assert_eq!(stats.paths_added, 2);
    assert_eq!(stats.paths_abandoned, 1);
    assert_eq!(stats.bytes_retained, 0);
    p.client.close(42, b"bye");
    let reason = p.server.closed().await;
    assert_eq!(
        reason,
        kwik::CloseReason::Peer {
            code: 42,
            reason: Bytes::from_static(b"bye")
        }
    );
    assert!(matches!(
        p.client.open_uni().await,
        Err(kwik::StreamError::SessionClosed(_))
    ));
    assert!(matches!(
        p.server.accept_uni().await,
        Err(kwik::StreamError::SessionClosed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_stop_reach_the_peer() {
    let p = pair(SessionConfig::default()).await;
    let mut send = p.client.open_uni().await.unwrap();
    send.write_all(b"some bytes").await.unwrap();
    let mut recv = p.server.accept_uni().await.unwrap();
    send.reset(7).unwrap();
    // Read only once the reset has discarded the buffered bytes (a reset that
    // arrives after everything was read is an ordinary end).
    while p.server.presentation_stats().discarded_bytes < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = loop {
        match recv.read_chunk(1024).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended normally after reset"),
            Err(e) => break e,
        }
    };
    assert_eq!(err, kwik::ReadError::Reset { error_code: 7 });
    // Stop in the other direction: the writer learns the code.
    let mut send = p.server.open_uni().await.unwrap();
    send.write_all(b"hello").await.unwrap();
    let mut recv = p.client.accept_uni().await.unwrap();
    recv.stop(9);
    let err = loop {
        match send.write_all(&[0u8; 1024]).await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("9"), "{err}");
    p.client.close(0, b"");
}

/// A raw quinn connection that opened a KWIK session by hand; returns the
/// connection, its control stream and the server's initial stream credit.
async fn raw_session(
    pki: &TestPki,
    server: SocketAddr,
) -> (quinn::Connection, quinn::SendStream, u64) {
    use kwik_wire::{Frame, FrameReader};
    let raw = quinn::Endpoint::client(LOCALHOST).unwrap();
    let qc = pki.quinn_client_config(&[kwik::ALPN]).unwrap();
    let conn = raw
        .connect_with(qc, server, SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    Frame::Open {
        version: 1,
        max_data: 1 << 30,
        stream_credit: 1 << 24,
    }
    .encode(&mut buf);
    send.write_all(&buf).await.unwrap();
    let mut reader = FrameReader::new();
    let credit = loop {
        if let Some(f) = reader.next_frame().unwrap() {
            match f {
                Frame::Welcome { stream_credit, .. } => break stream_credit,
                other => panic!("unexpected {other:?}"),
            }
        }
        let chunk = recv.read_chunk(1024, true).await.unwrap().unwrap();
        reader.push(&chunk.bytes);
    };
    // Keep the control stream's receive half alive in the background.
    tokio::spawn(async move { while let Ok(Some(_)) = recv.read_chunk(1 << 16, true).await {} });
    (conn, send, credit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_only_what_they_must() {
    let p = pair(SessionConfig::default()).await;
    let server_addr = p.lo.server.local_addr().unwrap();

    // 1. Data beyond the stream credit: that session ends with a protocol error.
    let (conn, _control, credit) = raw_session(&p.lo.pki, server_addr).await;
    let victim = p.lo.server.accept().await.unwrap();
    let mut uni = conn.open_uni().await.unwrap();
    let mut wire = bytes::BytesMut::new();
    let stream = kwik::StreamId::from_parts(0, kwik::Side::Client, kwik::Dir::Uni);
    kwik_wire::encode_stream_header(&mut wire, stream);
    kwik_wire::encode_segment_header(&mut wire, credit + 100, 10, false);
    wire.extend_from_slice(&[0u8; 10]);
    uni.write_all(&wire).await.unwrap();
    let reason = victim.closed().await;
    assert!(
        matches!(reason, kwik::CloseReason::Protocol(_)),
        "{reason:?}"
    );
    assert_eq!(victim.presentation_stats().buffered_bytes, 0);
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), kwik::PROTOCOL_ERROR_CODE)
        }
        other => panic!("{other:?}"),
    }

    // 2. An unknown control frame type: the path is closed.
    let (conn, mut control, _) = raw_session(&p.lo.pki, server_addr).await;
    let second = p.lo.server.accept().await.unwrap();
    control.write_all(&[0x3f, 0x00]).await.unwrap();
    conn.closed().await;
    wait_abandoned(&second, PathId::INITIAL).await;

    // The well-behaved session on the same endpoint is untouched.
    assert!(p.server.close_reason().is_none());
    let (on0, _) = send_and_check(&p, Scheduler::MinRtt, pattern(100_000, 4)).await;
    assert!(on0 > 0);
    p.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_closes_after_delivery() {
    let p = pair(SessionConfig::default()).await;
    let data = pattern(4 << 20, 12);
    let want = sha(&data);
    let mut send = p.client.open_uni().await.unwrap();
    send.write_chunk(data).await.unwrap();
    // No finish, no close: dropping the stream finishes it, dropping the last
    // handle closes the session once everything is acknowledged.
    drop(send);
    drop(p.client);
    let recv = p.server.accept_uni().await.unwrap();
    let (n, h) = drain(recv).await;
    assert_eq!(n, 4 << 20);
    assert_eq!(h, want);
    let reason = p.server.closed().await;
    assert!(
        matches!(reason, kwik::CloseReason::Peer { code: 0, .. }),
        "{reason:?}"
    );
}
