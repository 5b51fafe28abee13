//! Backpressure as the sending application sees it, over real quinn on
//! loopback: a slow reader on the server holds the client's stream back
//! (`SendStream::backpressure`, `Session::backpressure_events`) until it
//! catches up; hand holds of a stream and of the session; and peers of
//! protocol version 1 — a kwik side configured as one, and a raw quinn peer
//! speaking the version-1 bytes of docs/PROTOCOL.md — still interoperate.

mod kwik_wire;

use std::time::Duration;

use bytes::Bytes;
use kwik::{
    BackpressureEvent, BackpressureEvents, BackpressureReason, BackpressureScope,
    PresentationConfig, ProtocolVersion, Session, SessionConfig,
};
use kwik_testbed::loopback::{
    LOCALHOST, client_config, client_endpoint, connect, pattern, server_config, server_endpoint,
};
use kwik_testbed::{SERVER_NAME, TestPki};

/// The receiver's stream window: backpressure switches on at 75 % of it.
const STREAM_WINDOW: u64 = 256 * 1024;

/// Bound for things that happen within a few RTTs on loopback; only a hang
/// reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

fn config(version: ProtocolVersion) -> SessionConfig {
    SessionConfig::default()
        .protocol_version(version)
        .presentation(
            PresentationConfig::default()
                .stream_window(STREAM_WINDOW)
                .max_stream_window(STREAM_WINDOW),
        )
}

/// A client and a server endpoint of the given versions, and one session.
async fn session(
    client: ProtocolVersion,
    server: ProtocolVersion,
) -> (kwik::Endpoint, kwik::Endpoint, Session, Session) {
    let pki = TestPki::generate().unwrap();
    let s = server_endpoint(server_config(&pki, config(server)).unwrap()).unwrap();
    let c = client_endpoint(client_config(&pki, config(client)).unwrap()).unwrap();
    let (cs, ss) = connect(&c, s.local_addr().unwrap(), &s).await.unwrap();
    (c, s, cs, ss)
}

async fn next(events: &mut BackpressureEvents) -> BackpressureEvent {
    tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("a backpressure event in time")
        .expect("the session is alive")
}

/// The next event about `scope`; events about other scopes (a slow-reader
/// spell of a stream that has since caught up) are passed over.
async fn next_for(events: &mut BackpressureEvents, scope: BackpressureScope) -> BackpressureEvent {
    loop {
        let event = next(events).await;
        if event.scope() == scope {
            return event;
        }
    }
}

/// Writes `total` bytes on a new uni stream of `client` (in the background),
/// lets the server's reader sleep until the client reports backpressure, then
/// reads everything. Returns the reason the sender saw, the event that ended
/// it, what the sender sees once the reader caught up and the receive
/// stream's figures at its end.
async fn slow_reader(client: &Session, server: &Session, total: usize) -> SlowReaderRun {
    let mut events = client.backpressure_events();
    let data = pattern(total, 21);
    let mut send = client.open_uni().await.unwrap();
    let id = send.id();
    let writer = {
        let data = data.clone();
        tokio::spawn(async move {
            send.write_chunk(data).await.unwrap();
            send
        })
    };
    let mut recv = server.accept_uni().await.unwrap();
    // The reader does not read: the window fills and the sender hears why.
    let started = next(&mut events).await;
    let BackpressureEvent::Started { scope, reason } = started else {
        panic!("{started:?}");
    };
    assert_eq!(scope, BackpressureScope::Stream(id));
    let held = recv.stats().expect("stream stats");
    assert!(held.buffered >= STREAM_WINDOW * 3 / 4, "{held:?}");
    assert!(held.backpressure.is_some(), "{held:?}");
    // Catch up (the signal may come and go meanwhile; signals alternate).
    let mut got = Vec::with_capacity(total);
    while got.len() < total {
        let chunk = recv
            .read_chunk(64 * 1024)
            .await
            .unwrap()
            .expect("more data");
        got.extend_from_slice(&chunk);
    }
    assert!(got == data, "{} of {total} bytes arrived intact", got.len());
    let ended = next(&mut events).await;
    let mut send = tokio::time::timeout(PATIENCE, writer)
        .await
        .expect("the writer finishes")
        .unwrap();
    // Nothing is buffered any more: the signal is off, and the sender hears so.
    let after = tokio::time::timeout(PATIENCE, async {
        loop {
            match send.backpressure() {
                None => return None,
                Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| send.backpressure());
    send.finish().unwrap();
    assert_eq!(recv.read_chunk(64).await.unwrap(), None);
    send.finished().await.unwrap();
    SlowReaderRun {
        reason,
        ended,
        after,
        stats: recv.stats().expect("the figures the stream ended with"),
    }
}

struct SlowReaderRun {
    reason: BackpressureReason,
    ended: BackpressureEvent,
    after: Option<kwik::Backpressure>,
    stats: kwik::RecvStreamStats,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_seen_by_the_sender_and_clears_when_it_catches_up() {
    let (_c, _s, client, server) = session(ProtocolVersion::V2, ProtocolVersion::V2).await;
    let total = 4 << 20;
    let run = slow_reader(&client, &server, total).await;
    assert_eq!(run.reason, BackpressureReason::SlowReader);
    assert!(
        matches!(
            run.ended,
            BackpressureEvent::Ended {
                reason: BackpressureReason::SlowReader,
                ..
            }
        ),
        "{:?}",
        run.ended
    );
    assert_eq!(run.after, None, "cleared once the reader caught up");
    assert_eq!(run.stats.bytes_delivered, total as u64);
    assert_eq!(run.stats.buffered, 0);
    assert!(run.stats.bytes_received >= total as u64);
    assert_eq!(
        run.stats.per_path.iter().map(|(_, n)| n).sum::<u64>(),
        run.stats.bytes_received
    );
    assert!(client.stats().backpressure_signals >= 2);
    eprintln!(
        "slow reader: {:?}; path RTT {:?}; receive stream {:?}",
        run.ended,
        client.path_stats()[0].srtt,
        run.stats
    );
    client.close(0, b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_holds_of_a_stream_and_of_the_session_reach_the_sender() {
    let (_c, _s, client, server) = session(ProtocolVersion::V2, ProtocolVersion::V2).await;
    let mut events = client.backpressure_events();
    let mut send = client.open_uni().await.unwrap();
    send.write_chunk(Bytes::from_static(b"first"))
        .await
        .unwrap();
    let mut recv = server.accept_uni().await.unwrap();
    let scope = BackpressureScope::Stream(send.id());
    assert_eq!(&recv.read_chunk(64).await.unwrap().unwrap()[..], b"first");

    // One stream, by hand.
    assert!(recv.hold());
    assert_eq!(
        next(&mut events).await,
        BackpressureEvent::Started {
            scope,
            reason: BackpressureReason::Manual
        }
    );
    let seen = send.backpressure().expect("held");
    assert_eq!(
        (seen.scope, seen.reason),
        (scope, BackpressureReason::Manual)
    );
    assert_eq!(
        recv.stats().unwrap().backpressure,
        Some(BackpressureReason::Manual)
    );
    // Reading goes on while held, but the credit stays where it was: the
    // sender stops there, and goes on once released.
    let credit = send.stats().unwrap().credit;
    let rest = pattern(2 * STREAM_WINDOW as usize, 5);
    let writer = {
        let rest = rest.clone();
        tokio::spawn(async move {
            send.write_chunk(rest).await.unwrap();
            send
        })
    };
    let first = b"first".len() as u64;
    let mut got = Vec::new();
    while first + (got.len() as u64) < credit {
        let chunk = recv.read_chunk(1 << 16).await.unwrap().unwrap();
        got.extend_from_slice(&chunk);
    }
    assert_eq!(first + got.len() as u64, credit, "nothing past the credit");
    // Nothing more comes while the stream is held.
    let more = tokio::time::timeout(Duration::from_millis(300), recv.read_chunk(1 << 16)).await;
    assert!(more.is_err(), "data past the held credit: {more:?}");
    assert_eq!(recv.stats().unwrap().bytes_delivered, credit);
    recv.release();
    let ended = next(&mut events).await;
    assert!(
        matches!(ended, BackpressureEvent::Ended { scope: s, reason: BackpressureReason::Manual, .. } if s == scope),
        "{ended:?}"
    );
    while got.len() < rest.len() {
        let chunk = recv.read_chunk(1 << 16).await.unwrap().unwrap();
        got.extend_from_slice(&chunk);
    }
    assert!(got == rest, "the rest arrives intact after the release");
    let send = tokio::time::timeout(PATIENCE, writer)
        .await
        .expect("the writer finishes after the release")
        .unwrap();
    assert!(send.stats().unwrap().credit > credit);
    // A slow-reader spell while the rest arrived ends once the reader has it all.
    let t = std::time::Instant::now();
    while send.backpressure().is_some() && t.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(send.backpressure(), None);

    // The whole session, by hand: every stream of the sender sees it.
    server.hold();
    assert_eq!(
        next_for(&mut events, BackpressureScope::Session).await,
        BackpressureEvent::Started {
            scope: BackpressureScope::Session,
            reason: BackpressureReason::Manual
        }
    );
    let other = client.open_uni().await.unwrap();
    let seen = other.backpressure().expect("the session is held");
    assert_eq!(seen.scope, BackpressureScope::Session);
    server.release();
    assert!(matches!(
        next_for(&mut events, BackpressureScope::Session).await,
        BackpressureEvent::Ended {
            scope: BackpressureScope::Session,
            ..
        }
    ));
    client.close(0, b"done");
}

/// A client of version 1 (it offers 1, reads no reasons) against a server of
/// version 2, and a client of version 2 against a server of version 1 (which
/// refuses version 2, as one built before it did; the client opens the session
/// again at version 1): data flows, backpressure is seen on and off, without
/// its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_peers_interoperate_in_both_roles() {
    for (client_version, server_version) in [
        (ProtocolVersion::V1, ProtocolVersion::V2),
        (ProtocolVersion::V2, ProtocolVersion::V1),
    ] {
        let (_c, _s, client, server) = session(client_version, server_version).await;
        let run = slow_reader(&client, &server, 2 << 20).await;
        assert_eq!(
            run.reason,
            BackpressureReason::Unspecified,
            "{client_version:?} client, {server_version:?} server"
        );
        assert!(matches!(run.ended, BackpressureEvent::Ended { .. }));
        assert_eq!(run.after, None);
        assert_eq!(run.stats.bytes_delivered, 2 << 20);
        client.close(0, b"done");
    }
}

/// Reads control frames from `recv` into `frames` until one `want`s.
async fn read_until(
    recv: &mut quinn::RecvStream,
    reader: &mut kwik_wire::FrameReader,
    frames: &mut Vec<kwik_wire::Frame>,
    want: impl Fn(&kwik_wire::Frame) -> bool,
) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            while let Some(f) = reader.next_frame().unwrap() {
                let hit = want(&f);
                frames.push(f);
                if hit {
                    return;
                }
            }
            let chunk = recv.read_chunk(1 << 16, true).await.unwrap().unwrap();
            reader.push(&chunk.bytes);
        }
    })
    .await
    .expect("the frame in time")
}

/// A raw quinn peer that speaks version 1 as docs/PROTOCOL.md writes it: the
/// server's WELCOME and BACKPRESSURE come in their version-1 form (no version,
/// no reason), which that peer's decoder accepts byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_version_1_peer_gets_version_1_frames() {
    use kwik_wire::{Frame, FrameReader};
    let pki = TestPki::generate().unwrap();
    let server =
        server_endpoint(server_config(&pki, config(ProtocolVersion::V2)).unwrap()).unwrap();
    let raw = quinn::Endpoint::client(LOCALHOST).unwrap();
    let qc = pki.quinn_client_config(&[kwik::ALPN]).unwrap();
    let conn = raw
        .connect_with(qc, server.local_addr().unwrap(), SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut control, mut recv) = conn.open_bi().await.unwrap();
    let mut wire = bytes::BytesMut::new();
    Frame::Open {
        version: 1,
        max_data: 1 << 30,
        stream_credit: 1 << 24,
    }
    .encode(&mut wire);
    control.write_all(&wire).await.unwrap();
    let accepted = server.accept().await.unwrap();
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    read_until(&mut recv, &mut reader, &mut frames, |f| {
        matches!(f, Frame::Welcome { .. })
    })
    .await;
    assert!(
        matches!(frames[0], Frame::Welcome { version: 1, .. }),
        "{:?}",
        frames[0]
    );
    // Fill the stream window of a uni stream the server's application does
    // not read.
    let stream = kwik::StreamId::from_parts(0, kwik::Side::Client, kwik::Dir::Uni);
    let mut uni = conn.open_uni().await.unwrap();
    let mut data = bytes::BytesMut::new();
    kwik_wire::encode_stream_header(&mut data, stream);
    let len = STREAM_WINDOW * 7 / 8;
    kwik_wire::encode_segment_header(&mut data, 0, len, false);
    data.extend_from_slice(&pattern(len as usize, 3));
    uni.write_all(&data).await.unwrap();
    let mut incoming = accepted.accept_uni().await.unwrap();
    read_until(&mut recv, &mut reader, &mut frames, |f| {
        matches!(f, Frame::Backpressure { on: true, .. })
    })
    .await;
    assert_eq!(
        frames.last(),
        Some(&Frame::Backpressure {
            stream: Some(stream),
            on: true,
            reason: None
        })
    );
    // The reader catches up: the version-1 peer hears "off", again without
    // a reason.
    let mut read = 0u64;
    while read < len {
        read += incoming.read_chunk(1 << 16).await.unwrap().unwrap().len() as u64;
    }
    read_until(&mut recv, &mut reader, &mut frames, |f| {
        matches!(f, Frame::Backpressure { on: false, .. })
    })
    .await;
    assert_eq!(
        frames.last(),
        Some(&Frame::Backpressure {
            stream: Some(stream),
            on: false,
            reason: None
        })
    );
    assert!(accepted.close_reason().is_none());
    conn.close(0u32.into(), b"done");
}
