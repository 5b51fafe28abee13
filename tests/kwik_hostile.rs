//! Hostile peers over real quinn: raw quinn clients that speak the wire of
//! docs/PROTOCOL.md (through `kwik_wire`, written from the document) and then
//! misbehave — garbage after the handshake, varints at the limit, stream ids
//! past the limit, ten thousand streams, replayed join tokens — against one
//! server endpoint while a well-behaved session on the same endpoint moves
//! data. The server stays up, each case is closed with the code and a phrase
//! naming its class (§3.8) and counted in `kwik_peer_faults_total`, and what a
//! hostile session may hold stays within the bounds the configuration sets,
//! read from the session's own counters. One test per binary: the metrics
//! recorder is global.

mod kwik_wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kwik::{
    Dir, PathId, PresentationConfig, RefuseReason, Session, SessionConfig, SessionId, Side,
    StreamId,
};
use kwik_testbed::loopback::{
    LOCALHOST, client_config, client_endpoint, connect, pattern, server_config, server_endpoint,
};
use kwik_testbed::{SERVER_NAME, TestPki};
use kwik_wire::{Frame, FrameReader};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sha2::{Digest, Sha256};

/// Receive-side limits of the server: every bound below follows from them.
const MAX_STREAMS: usize = 256;
const STREAM_WINDOW: u64 = 64 * 1024;
const SESSION_WINDOW: u64 = 1 << 20;

/// Only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

fn server_session() -> SessionConfig {
    SessionConfig::default().presentation(
        PresentationConfig::default()
            .max_streams(MAX_STREAMS)
            .stream_window(STREAM_WINDOW)
            .max_stream_window(STREAM_WINDOW)
            .session_window(SESSION_WINDOW)
            .max_session_window(SESSION_WINDOW),
    )
}

/// `kwik_peer_faults_total` by reason.
fn faults(snapshotter: &Snapshotter) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != "kwik_peer_faults_total" {
            continue;
        }
        let reason = key
            .labels()
            .find(|l| l.key() == "reason")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        if let DebugValue::Counter(v) = value {
            out.insert(reason, v);
        }
    }
    out
}

/// A raw quinn connection that opened a session by hand.
struct Raw {
    conn: quinn::Connection,
    control: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
    session: SessionId,
}

async fn raw_connection(pki: &TestPki, server: SocketAddr) -> quinn::Connection {
    raw_connection_with(pki, server, quinn::TransportConfig::default()).await
}

async fn raw_connection_with(
    pki: &TestPki,
    server: SocketAddr,
    transport: quinn::TransportConfig,
) -> quinn::Connection {
    let raw = quinn::Endpoint::client(LOCALHOST).unwrap();
    let mut qc = pki.quinn_client_config(&[kwik::ALPN]).unwrap();
    qc.transport_config(std::sync::Arc::new(transport));
    raw.connect_with(qc, server, SERVER_NAME)
        .unwrap()
        .await
        .expect("QUIC handshake")
}

async fn write(send: &mut quinn::SendStream, frames: &[Frame]) {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf);
    }
    send.write_all(&buf).await.unwrap();
}

impl Raw {
    /// OPEN (version 2), WELCOME.
    async fn open(pki: &TestPki, server: SocketAddr) -> Raw {
        Self::open_with(pki, server, quinn::TransportConfig::default()).await
    }

    async fn open_with(
        pki: &TestPki,
        server: SocketAddr,
        transport: quinn::TransportConfig,
    ) -> Raw {
        let conn = raw_connection_with(pki, server, transport).await;
        let (mut control, recv) = conn.open_bi().await.unwrap();
        write(
            &mut control,
            &[Frame::Open {
                version: 2,
                max_data: 1 << 20,
                stream_credit: 1 << 16,
            }],
        )
        .await;
        let mut raw = Raw {
            conn,
            control,
            recv,
            reader: FrameReader::new(),
            session: SessionId::from_bytes([0; 16]),
        };
        match raw.next_frame(|f| matches!(f, Frame::Welcome { .. })).await {
            Frame::Welcome { session, .. } => raw.session = session,
            other => panic!("{other:?}"),
        }
        raw
    }

    /// Reads control frames until one `want`s (others are dropped).
    async fn next_frame(&mut self, want: impl Fn(&Frame) -> bool) -> Frame {
        tokio::time::timeout(PATIENCE, async {
            loop {
                while let Some(f) = self.reader.next_frame().unwrap() {
                    if want(&f) {
                        return f;
                    }
                }
                let chunk = self.recv.read_chunk(1 << 16, true).await.unwrap().unwrap();
                self.reader.push(&chunk.bytes);
            }
        })
        .await
        .expect("the frame in time")
    }

    /// A data stream of `stream` carrying `bytes` as is (header included).
    async fn data_stream(&self, bytes: &[u8]) {
        let mut uni = self.conn.open_uni().await.unwrap();
        uni.write_all(bytes).await.unwrap();
        let _ = uni.finish();
    }
}

/// How the server closed a raw connection: (application code, reason).
async fn closed(conn: &quinn::Connection) -> (u64, String) {
    let error = tokio::time::timeout(PATIENCE, conn.closed())
        .await
        .expect("the server closes the connection");
    match error {
        quinn::ConnectionError::ApplicationClosed(c) => (
            c.error_code.into_inner(),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        other => panic!("not an application close: {other:?}"),
    }
}

fn segment(stream: StreamId, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    kwik_wire::encode_stream_header(&mut wire, stream);
    kwik_wire::encode_segment_header(&mut wire, offset, data.len() as u64, false);
    wire.extend_from_slice(data);
    wire.to_vec()
}

/// The victim's receive side stays within the windows whatever its peer did.
fn assert_bounded(victim: &Session) {
    let p = victim.presentation_stats();
    assert!(p.open_streams <= MAX_STREAMS, "{p:?}");
    assert!(p.buffered_bytes <= SESSION_WINDOW, "{p:?}");
}

/// The well-behaved session: `streams` streams of 256 KiB, each checked
/// byte for byte; returns the bytes that arrived intact.
async fn good_traffic(client: Session, server: Session, streams: usize) -> u64 {
    let reader = tokio::spawn(async move {
        let mut total = 0u64;
        for _ in 0..streams {
            let mut recv = server.accept_uni().await.expect("a good stream");
            let mut h = Sha256::new();
            while let Some(chunk) = recv.read_chunk(1 << 16).await.expect("good read") {
                total += chunk.len() as u64;
                h.update(&chunk);
            }
            let want: [u8; 32] = Sha256::digest(pattern(256 * 1024, recv.id().index())).into();
            assert_eq!(<[u8; 32]>::from(h.finalize()), want, "stream {}", recv.id());
        }
        total
    });
    for _ in 0..streams {
        let mut send = client.open_uni().await.expect("open a good stream");
        send.write_chunk(pattern(256 * 1024, send.id().index()))
            .await
            .expect("good write");
        send.finish().unwrap();
        send.finished().await.expect("good stream acknowledged");
    }
    reader.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_closed_counted_and_bounded_while_others_move_data() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("first recorder of this process");

    let pki = TestPki::generate().unwrap();
    let server = server_endpoint(server_config(&pki, server_session()).unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let client = client_endpoint(client_config(&pki, SessionConfig::default()).unwrap()).unwrap();
    let (good_client, good_server) = connect(&client, addr, &server).await.unwrap();
    let good_streams = 48;
    let good = tokio::spawn(good_traffic(
        good_client.clone(),
        good_server.clone(),
        good_streams,
    ));

    let before = faults(&snapshotter);
    let violation = |f: &HashMap<String, u64>| f.get("protocol_violation").copied().unwrap_or(0);
    let mut expected_violations = 0;

    // 1. Garbage on the control channel after the handshake: an unknown frame
    //    type, then noise. The path closes (0x10001) with the frame type named.
    let raw = Raw::open(&pki, addr).await;
    let victim = server.accept().await.unwrap();
    let mut control = raw.control;
    control
        .write_all(&[0x3f, 0x03, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff])
        .await
        .unwrap();
    let (code, reason) = closed(&raw.conn).await;
    assert_eq!(code, 0x1_0001, "{reason}");
    assert!(
        reason.starts_with("protocol violation on a path (unknown type 0x3f frame)"),
        "{reason}"
    );
    assert_bounded(&victim);
    expected_violations += 1;

    //    A frame of a known type that does not decode: the phrase names it.
    let mut raw = Raw::open(&pki, addr).await;
    let victim = server.accept().await.unwrap();
    raw.control.write_all(&[0x12, 0x01, 0x04]).await.unwrap();
    let (code, reason) = closed(&raw.conn).await;
    assert_eq!(code, 0x1_0001, "{reason}");
    assert_eq!(
        reason,
        "protocol violation on a path (ACK frame): frame payload truncated"
    );
    assert_bounded(&victim);
    expected_violations += 1;
    //    A frame that decodes but is not allowed: the session ends with
    //    0x10000, and the phrase names the class and the frame.
    let mut raw = Raw::open(&pki, addr).await;
    let victim = server.accept().await.unwrap();
    let server_uni = StreamId::from_parts(7, Side::Server, Dir::Uni);
    let mut reset = BytesMut::new();
    for v in [server_uni.into_inner(), 0, 0] {
        reset.extend_from_slice(&[v as u8]);
    }
    write(
        &mut raw.control,
        &[Frame::Other {
            ty: 0x14,
            payload: reset.freeze(),
        }],
    )
    .await;
    let (code, reason) = closed(&raw.conn).await;
    assert_eq!(code, kwik::PROTOCOL_ERROR_CODE, "{reason}");
    assert_eq!(
        reason,
        "protocol violation (RESET_STREAM frame): stream misuse: RESET_STREAM for a local uni stream"
    );
    assert!(matches!(victim.closed().await, kwik::CloseReason::Protocol(r) if r == reason));
    expected_violations += 1;

    // 2. Garbage on a data stream: an unknown data stream kind.
    let raw = Raw::open(&pki, addr).await;
    let victim = server.accept().await.unwrap();
    raw.data_stream(&[0x25, 0x00, 0x01, 0x02, 0x03]).await;
    let (code, reason) = closed(&raw.conn).await;
    assert_eq!(code, 0x1_0001, "{reason}");
    assert!(reason.contains("unknown data stream kind"), "{reason}");
    assert_bounded(&victim);
    expected_violations += 1;

    // 3. Varints at the limit. Legal values at 2^62 - 1 are taken as what
    //    they are (credit for a stream that does not exist, an ACK of one)
    //    and the session goes on; a segment whose end passes 2^62 - 1 and a
    //    frame type of 2^62 - 1 close the path.
    let max = kwik::VARINT_MAX;
    let mut raw = Raw::open(&pki, addr).await;
    let victim = server.accept().await.unwrap();
    write(
        &mut raw.control,
        &[
            Frame::SessionCredit { max_data: max },
            Frame::StreamCredit {
                stream: StreamId::new(max),
                max_offset: max,
            },
            Frame::Other {
                // ACK of stream 2^62 - 1: fin 0, one range [2^62 - 2, 2^62 - 1).
                ty: 0x12,
                payload: {
                    let mut p = BytesMut::new();
                    p.extend_from_slice(&[0xff; 8]);
                    p.extend_from_slice(&[0x00, 0x01]);
                    p.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
                    p.extend_from_slice(&[0x01]);
                    p.freeze()
                },
            },
        ],
    )
    .await;
    // The session answers a PING after them: it is alive.
    write(
        &mut raw.control,
        &[Frame::Other {
            ty: 0x17,
            payload: Bytes::from_static(&[0x2a]),
        }],
    )
    .await;
    let pong = raw
        .next_frame(|f| matches!(f, Frame::Other { ty: 0x18, .. }))
        .await;
    assert_eq!(
        pong,
        Frame::Other {
            ty: 0x18,
            payload: Bytes::from_static(&[0x2a])
        }
    );
    assert!(victim.close_reason().is_none());
    let client_uni = |index| StreamId::from_parts(index, Side::Client, Dir::Uni);
    let mut wire = BytesMut::new();
    kwik_wire::encode_stream_header(&mut wire, client_uni(0));
    kwik_wire::encode_segment_header(&mut wire, max, 1, false);
    wire.extend_from_slice(b"x");
    raw.data_stream(&wire).await;
    let (code, reason) = closed(&raw.conn).await;
    assert_eq!(code, 0x1_0001, "{reason}");
    assert!(reason.contains("passes the maximum offset"), "{reason}");
    assert_bounded(&victim);
    expected_violations += 1;
    let mut raw = Raw::open(&pki, addr).await;
    let victim = server.accept().await.unwrap();
    let mut frame = vec![0xff; 8];
    frame.push(0x00);
    raw.control.write_all(&frame).await.unwrap();
    let (code, reason) = closed(&raw.conn).await;
    assert_eq!(code, 0x1_0001, "{reason}");
    assert!(
        reason.contains("unknown type 0x3fffffffffffffff"),
        "{reason}"
    );
    assert_bounded(&victim);
    expected_violations += 1;

    // 4. Stream ids past what the peer may use: data on a stream only the
    //    server may open ends the session (0x10000), the phrase names the
    //    class.
    let raw = Raw::open(&pki, addr).await;
    let victim = server.accept().await.unwrap();
    raw.data_stream(&segment(server_uni, 0, b"mine?")).await;
    let (code, reason) = closed(&raw.conn).await;
    assert_eq!(code, kwik::PROTOCOL_ERROR_CODE, "{reason}");
    assert!(
        reason.starts_with("protocol violation: stream misuse"),
        "{reason}"
    );
    assert!(matches!(
        victim.closed().await,
        kwik::CloseReason::Protocol(_)
    ));
    assert_eq!(victim.presentation_stats().buffered_bytes, 0);
    expected_violations += 1;

    // 5. Ten thousand streams the server's application never reads: one
    //    byte on each. The server holds at most MAX_STREAMS of them (at most
    //    MAX_STREAMS bytes); the stream past the limit ends the session.
    let raw = Raw::open(&pki, addr).await;
    let victim = server.accept().await.unwrap();
    let conn = raw.conn.clone();
    let opener = tokio::spawn(async move {
        for index in 0..10_000u64 {
            let Ok(mut uni) = conn.open_uni().await else {
                return index;
            };
            if uni
                .write_all(&segment(client_uni(index), 0, b"x"))
                .await
                .is_err()
            {
                return index;
            }
            let _ = uni.finish();
        }
        10_000
    });
    let (code, reason) = closed(&raw.conn).await;
    let opened = opener.await.unwrap();
    assert_eq!(code, kwik::PROTOCOL_ERROR_CODE, "{reason}");
    assert!(
        reason.starts_with("protocol violation: too many streams"),
        "{reason}"
    );
    let p = victim.presentation_stats();
    assert!(p.open_streams <= MAX_STREAMS, "{p:?}");
    assert!(p.buffered_bytes <= MAX_STREAMS as u64, "{p:?}");
    assert!(opened as usize > MAX_STREAMS, "{opened} streams opened");
    eprintln!(
        "ten thousand streams: {opened} opened before the close, server held {} streams, {} bytes: {reason}",
        p.open_streams, p.buffered_bytes
    );
    expected_violations += 1;

    // 6. A client that never reads its control channel (a 1 KiB stream
    //    window, never read past the WELCOME) while it floods PINGs and
    //    TOKEN_REQUESTs and sends data on streams the server acknowledges: the
    //    server's control writer waits for it, and what waits for the writer
    //    stays within a few frames per stream the receive side tracks —
    //    PONGs, PINGs, ACKs, credits and tokens replace the queued ones.
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(1024u32.into());
    let mut raw = Raw::open_with(&pki, addr, transport).await;
    let victim = server.accept().await.unwrap();
    let streams = 100u64;
    for index in 0..streams {
        raw.data_stream(&segment(client_uni(index), 0, &[7; 100]))
            .await;
    }
    let mut flood = BytesMut::new();
    for seq in 0..50_000u64 {
        Frame::Other {
            ty: 0x17,
            payload: Bytes::copy_from_slice(&[(seq % 64) as u8]),
        }
        .encode(&mut flood);
        if seq % 10 == 0 {
            Frame::TokenRequest {
                path: PathId::new(1),
            }
            .encode(&mut flood);
        }
    }
    raw.control.write_all(&flood).await.unwrap();
    // Everything was taken in: the server's receive side holds the streams.
    tokio::time::timeout(PATIENCE, async {
        while victim.presentation_stats().open_streams < streams as usize
            || victim.stats().bytes_received < streams * 100
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the streams arrive");
    // The flood itself is taken in once the server has answered (queued an
    // answer to) the last TOKEN_REQUEST and PING of it.
    let path0 = tokio::time::timeout(PATIENCE, async {
        loop {
            let p = victim.path_stats()[0].clone();
            if p.control_coalesced >= 50_000 {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the flood is taken in");
    // At most: per tracked stream an ACK and a credit, the session credit,
    // one PING, one PONG, one token per path id asked for, a few others.
    let bound = 2 * MAX_STREAMS + 16;
    eprintln!(
        "unread control channel: {} frames queued (bound {bound}), {} coalesced",
        path0.control_queued, path0.control_coalesced
    );
    assert!(path0.control_queued <= bound, "{path0:?}");
    assert!(victim.close_reason().is_none());
    assert_bounded(&victim);
    raw.conn.close(0u32.into(), b"");

    // 7. Joins with replayed tokens: a token used once is refused every
    //    later time (REFUSED 4, then close 0x10003), counted each time.
    let mut raw = Raw::open(&pki, addr).await;
    let victim = server.accept().await.unwrap();
    let path = PathId::new(1);
    write(&mut raw.control, &[Frame::TokenRequest { path }]).await;
    let Frame::PathToken { token, .. } = raw
        .next_frame(|f| matches!(f, Frame::PathToken { .. }))
        .await
    else {
        unreachable!()
    };
    let join = async |token: Bytes| {
        let conn = raw_connection(&pki, addr).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        write(
            &mut send,
            &[Frame::Join {
                session: raw.session,
                path,
                token,
            }],
        )
        .await;
        let mut reader = FrameReader::new();
        let answer = loop {
            if let Some(f) = reader.next_frame().unwrap() {
                break f;
            }
            let chunk = recv.read_chunk(1024, true).await.unwrap().expect("answer");
            reader.push(&chunk.bytes);
        };
        (conn, answer)
    };
    let (joined, answer) = join(token.clone()).await;
    assert!(matches!(answer, Frame::Welcome { .. }), "{answer:?}");
    let refused_before = server.refused_joins();
    let replays = 5;
    for _ in 0..replays {
        let (conn, answer) = join(token.clone()).await;
        assert_eq!(
            answer,
            Frame::Refused {
                reason: RefuseReason::ReusedToken
            }
        );
        let (code, reason) = closed(&conn).await;
        assert_eq!(code, kwik::JOIN_REFUSED_CODE);
        assert_eq!(reason, "join refused: token already used");
    }
    assert_eq!(server.refused_joins() - refused_before, replays);
    assert_bounded(&victim);
    joined.close(0u32.into(), b"");

    // Every case was counted by class.
    let after = faults(&snapshotter);
    // Every case once, nothing else (the legal values at the limit and the
    // unread control channel are no fault).
    assert_eq!(
        violation(&after) - violation(&before),
        expected_violations,
        "{before:?} -> {after:?}"
    );
    let refused = |f: &HashMap<String, u64>| f.get("join_refused").copied().unwrap_or(0);
    assert_eq!(
        refused(&after) - refused(&before),
        replays,
        "{before:?} -> {after:?}"
    );

    eprintln!("peer faults before {before:?}, after {after:?}");

    // The well-behaved session moved all its data meanwhile, and still does.
    let moved = tokio::time::timeout(Duration::from_secs(120), good)
        .await
        .expect("the good session completes")
        .unwrap();
    assert_eq!(moved, good_streams as u64 * 256 * 1024);
    assert!(good_server.close_reason().is_none());
    let again = good_traffic(good_client.clone(), good_server.clone(), 2).await;
    assert_eq!(again, 2 * 256 * 1024);
    good_client.close(0, b"done");
}
