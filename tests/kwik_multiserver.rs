//! Loopback tests of multi-server KWIK sessions: a primary server adds a secondary
//! server to a client's session (ADD_PATH, JOIN at the secondary with a token
//! signed under the key the two servers share), relays messages to it through the
//! client, and strangers are refused by the secondary. Real quinn on 127.0.0.1,
//! certificates verified against the test CA.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kwik::frame::{Frame, FrameReader};
use kwik::{
    AddSecondaryError, ClientConfig, CloseReason, Endpoint, PathId, RefuseReason, RelayError,
    SecondaryJoins, ServerConfig, Session, SessionConfig, SessionId, TokenIssuer, TokenKey,
};
use kwik_testbed::{SERVER_NAME, TestPki};

const LOCAL: &str = "127.0.0.1:0";
const SHARED_KEY: [u8; 32] = [0x5a; 32];

struct Deployment {
    pki: TestPki,
    primary_ep: Endpoint,
    secondary_ep: Endpoint,
    _client_ep: Endpoint,
    client: Session,
    primary: Session,
}

fn server_config(pki: &TestPki, key: TokenKey, joins: SecondaryJoins) -> ServerConfig {
    ServerConfig::with_single_cert(pki.cert_chain(), pki.private_key())
        .expect("server config")
        .session(SessionConfig::lan())
        .token_key(key)
        .secondary_joins(joins)
}

/// A primary and a secondary server (the secondary with `secondary_key` and
/// `joins`), and a client session opened at the primary.
async fn deployment(secondary_key: TokenKey, joins: SecondaryJoins) -> Deployment {
    let pki = TestPki::generate().expect("test CA");
    let primary_ep = Endpoint::server(
        LOCAL.parse().unwrap(),
        server_config(&pki, TokenKey::new(SHARED_KEY), SecondaryJoins::Refuse),
    )
    .expect("primary endpoint");
    let secondary_ep = Endpoint::server(
        LOCAL.parse().unwrap(),
        server_config(&pki, secondary_key, joins),
    )
    .expect("secondary endpoint");
    let client_config = ClientConfig::with_root_certificates([pki.ca_root()])
        .expect("client config")
        .session(SessionConfig::lan());
    let client_ep = Endpoint::client(LOCAL.parse().unwrap(), client_config).expect("client");
    let client = client_ep
        .connect(primary_ep.local_addr().unwrap(), SERVER_NAME)
        .await
        .expect("connect");
    let primary = primary_ep.accept().await.expect("accept");
    Deployment {
        pki,
        primary_ep,
        secondary_ep,
        _client_ep: client_ep,
        client,
        primary,
    }
}

async fn shared_deployment() -> Deployment {
    deployment(TokenKey::new(SHARED_KEY), SecondaryJoins::Accept).await
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("no answer in 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_joins_and_every_side_sees_the_path() {
    let d = shared_deployment().await;
    let secondary_addr = d.secondary_ep.local_addr().unwrap();
    let path = timed(d.primary.add_secondary(secondary_addr, SERVER_NAME))
        .await
        .expect("secondary joins");
    assert!(path.into_inner() >= 1 << 32, "{path}");

    let secondary = timed(d.secondary_ep.accept_secondary())
        .await
        .expect("secondary session");
    assert_eq!(secondary.id(), d.client.id());
    assert_eq!(secondary.path(), path);

    let on_primary = d.primary.secondary_paths();
    assert_eq!(on_primary.len(), 1);
    assert_eq!(on_primary[0].id, path);
    assert_eq!(on_primary[0].addr, secondary_addr);
    let on_client = d.client.secondary_paths();
    assert_eq!(on_client.len(), 1);
    assert_eq!(on_client[0].id, path);
    // A secondary path is not a transport path to the primary.
    assert_eq!(d.client.paths().len(), 1);
    assert_eq!(d.primary.paths().len(), 1);

    // A second secondary path of the same session gets its own id.
    let path2 = timed(d.primary.add_secondary(secondary_addr, SERVER_NAME))
        .await
        .expect("second secondary path");
    assert_ne!(path, path2);
    let second = timed(d.secondary_ep.accept_secondary()).await.unwrap();
    assert_eq!(second.path(), path2);
    assert_eq!(d.client.secondary_paths().len(), 2);
    assert_eq!(d.secondary_ep.refused_joins(), 0);

    // The session itself still carries data primary <-> client.
    let mut out = d.primary.open_uni().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut out, b"still here")
        .await
        .unwrap();
    out.finish().unwrap();
    let mut incoming = d.client.accept_uni().await.unwrap();
    assert_eq!(incoming.read_to_end(64).await.unwrap(), b"still here");
    d.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_round_trip_through_the_client() {
    let d = shared_deployment().await;
    let path = timed(
        d.primary
            .add_secondary(d.secondary_ep.local_addr().unwrap(), SERVER_NAME),
    )
    .await
    .unwrap();
    let secondary = timed(d.secondary_ep.accept_secondary()).await.unwrap();

    for i in 0..50u32 {
        let msg = Bytes::from(format!("chunk plan {i}"));
        d.primary.relay(path, msg).expect("relay");
    }
    for i in 0..50u32 {
        let got = timed(secondary.accept_relay()).await.expect("relayed");
        assert_eq!(got, format!("chunk plan {i}").as_bytes());
    }
    let big = Bytes::from(vec![7u8; kwik::frame::MAX_RELAY_LEN]);
    d.primary.relay(path, big.clone()).unwrap();
    assert_eq!(timed(secondary.accept_relay()).await.unwrap(), big);

    secondary
        .relay(Bytes::from_static(b"ready"))
        .await
        .expect("relay back");
    let (from, payload) = timed(d.primary.accept_relay()).await.expect("reply");
    assert_eq!(from, path);
    assert_eq!(payload, "ready".as_bytes());

    // Typed refusals, nothing sent.
    assert_eq!(
        d.primary.relay(PathId::new(99), Bytes::from_static(b"x")),
        Err(RelayError::UnknownPath(PathId::new(99)))
    );
    let too_long = Bytes::from(vec![0u8; kwik::frame::MAX_RELAY_LEN + 1]);
    assert_eq!(
        d.primary.relay(path, too_long),
        Err(RelayError::TooLong(kwik::frame::MAX_RELAY_LEN + 1))
    );
    assert_eq!(
        d.client.relay(path, Bytes::new()),
        Err(RelayError::NotAServer)
    );
    assert_eq!(d.primary.relays_dropped(), 0);
    assert_eq!(d.client.relays_dropped(), 0);

    // Closing the client's session closes the secondary path with its code.
    d.client.close(7, b"done");
    match timed(secondary.closed()).await {
        CloseReason::Peer { code, .. } => assert_eq!(code, 7),
        other => panic!("unexpected {other:?}"),
    }
    assert!(timed(secondary.accept_relay()).await.is_none());
    assert!(timed(d.primary.accept_relay()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_without_the_shared_key_refuses() {
    let d = deployment(TokenKey::new([1; 32]), SecondaryJoins::Accept).await;
    let err = timed(
        d.primary
            .add_secondary(d.secondary_ep.local_addr().unwrap(), SERVER_NAME),
    )
    .await
    .unwrap_err();
    assert_eq!(err, AddSecondaryError::Refused(RefuseReason::BadToken));
    assert_eq!(d.secondary_ep.refused_joins(), 1);
    assert!(d.primary.secondary_paths().is_empty());
    assert!(d.client.secondary_paths().is_empty());
    assert!(d.primary.close_reason().is_none());
    assert!(d.client.close_reason().is_none());
    d.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_not_accepting_secondaries_refuses_unknown_session() {
    let d = deployment(TokenKey::new(SHARED_KEY), SecondaryJoins::Refuse).await;
    let err = timed(
        d.primary
            .add_secondary(d.secondary_ep.local_addr().unwrap(), SERVER_NAME),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        AddSecondaryError::Refused(RefuseReason::UnknownSession)
    );
    d.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_secondary_is_a_typed_error() {
    let d = shared_deployment().await;
    // A UDP socket that never answers: the client's handshake times out
    // (the `lan` idle timeout, 2 s).
    let silent = std::net::UdpSocket::bind(LOCAL).unwrap();
    let err = timed(
        d.primary
            .add_secondary(silent.local_addr().unwrap(), SERVER_NAME),
    )
    .await
    .unwrap_err();
    assert_eq!(err, AddSecondaryError::Unreachable);
    // A certificate that does not match the name: also unreachable (TLS fails).
    let err = timed(
        d.primary
            .add_secondary(d.secondary_ep.local_addr().unwrap(), "not-the-name"),
    )
    .await
    .unwrap_err();
    assert_eq!(err, AddSecondaryError::Unreachable);
    assert!(d.primary.secondary_paths().is_empty());
    // Only the primary adds secondaries.
    assert_eq!(
        d.client
            .add_secondary(silent.local_addr().unwrap(), SERVER_NAME)
            .await
            .unwrap_err(),
        AddSecondaryError::NotAServer
    );
    d.client.close(0, b"");
}

/// Sends JOIN over a raw QUIC connection and returns the answer.
async fn raw_join(
    pki: &TestPki,
    server: SocketAddr,
    session: SessionId,
    path: PathId,
    token: Bytes,
) -> Frame {
    let raw = quinn::Endpoint::client(LOCAL.parse().unwrap()).unwrap();
    let qc = pki.quinn_client_config(&[kwik::ALPN]).unwrap();
    let conn = raw
        .connect_with(qc, server, SERVER_NAME)
        .unwrap()
        .await
        .expect("QUIC handshake");
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut buf = BytesMut::new();
    Frame::Join {
        session,
        path,
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
    conn.close(0u32.into(), b"");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranger_with_made_up_session_is_refused() {
    let d = shared_deployment().await;
    let secondary_addr = d.secondary_ep.local_addr().unwrap();
    let made_up = SessionId::from_bytes([0x42; 16]);
    let path = PathId::new(1 << 32);

    // Random bytes as a token.
    let answer = raw_join(
        &d.pki,
        secondary_addr,
        made_up,
        path,
        Bytes::from(vec![1u8; kwik::TOKEN_LEN]),
    )
    .await;
    assert_eq!(
        answer,
        Frame::Refused {
            reason: RefuseReason::BadToken
        }
    );
    // A well-formed token signed with another key.
    let other = TokenIssuer::new(TokenKey::new([9; 32])).issue(made_up, path, now_ms(), 60_000);
    let answer = raw_join(&d.pki, secondary_addr, made_up, path, other).await;
    assert_eq!(
        answer,
        Frame::Refused {
            reason: RefuseReason::BadToken
        }
    );
    // A real token replayed: the first JOIN is welcomed, the copy refused.
    let real = TokenIssuer::new(TokenKey::new(SHARED_KEY)).issue(made_up, path, now_ms(), 60_000);
    let answer = raw_join(&d.pki, secondary_addr, made_up, path, real.clone()).await;
    assert!(matches!(answer, Frame::Welcome { session, .. } if session == made_up));
    let answer = raw_join(&d.pki, secondary_addr, made_up, path, real).await;
    assert_eq!(
        answer,
        Frame::Refused {
            reason: RefuseReason::ReusedToken
        }
    );
    // An expired one.
    let expired = TokenIssuer::new(TokenKey::new(SHARED_KEY)).issue(made_up, path, 0, 1);
    let answer = raw_join(&d.pki, secondary_addr, made_up, path, expired).await;
    assert_eq!(
        answer,
        Frame::Refused {
            reason: RefuseReason::ExpiredToken
        }
    );
    assert_eq!(d.secondary_ep.refused_joins(), 4);
    // The primary's token for the real session still works afterwards.
    let real_path = timed(d.primary.add_secondary(secondary_addr, SERVER_NAME))
        .await
        .expect("real client joins");
    let _welcomed_stranger = timed(d.secondary_ep.accept_secondary()).await.unwrap();
    let secondary = timed(d.secondary_ep.accept_secondary()).await.unwrap();
    assert_eq!(secondary.path(), real_path);
    assert_eq!(secondary.id(), d.client.id());
    assert_eq!(d.primary_ep.refused_joins(), 0);
    d.client.close(0, b"");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn abandoned(events: &mut kwik::PathEvents, path: PathId) {
    while let Some(e) = timed(events.next()).await {
        if e == kwik::PathEvent::Abandoned(path) {
            return;
        }
    }
    panic!("no Abandoned({path}) event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_removes_a_secondary() {
    let d = shared_deployment().await;
    let mut client_events = d.client.path_events();
    let path = timed(
        d.primary
            .add_secondary(d.secondary_ep.local_addr().unwrap(), SERVER_NAME),
    )
    .await
    .unwrap();
    let secondary = timed(d.secondary_ep.accept_secondary()).await.unwrap();
    while timed(client_events.next()).await != Some(kwik::PathEvent::Added(path)) {}
    d.primary.remove_secondary(path).expect("remove");
    assert_eq!(
        d.primary.remove_secondary(path),
        Err(kwik::RemovePathError::UnknownPath(path))
    );
    assert!(d.primary.secondary_paths().is_empty());
    abandoned(&mut client_events, path).await;
    assert!(d.client.secondary_paths().is_empty());
    assert!(matches!(
        timed(secondary.closed()).await,
        CloseReason::Peer { .. }
    ));
    assert!(d.client.close_reason().is_none());
    d.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_leaving_is_reported_to_the_primary() {
    let d = shared_deployment().await;
    let mut primary_events = d.primary.path_events();
    let path = timed(
        d.primary
            .add_secondary(d.secondary_ep.local_addr().unwrap(), SERVER_NAME),
    )
    .await
    .unwrap();
    let secondary = timed(d.secondary_ep.accept_secondary()).await.unwrap();
    secondary.close(0, b"going away");
    abandoned(&mut primary_events, path).await;
    assert!(d.primary.secondary_paths().is_empty());
    assert!(d.client.secondary_paths().is_empty());
    assert_eq!(
        d.primary.relay(path, Bytes::from_static(b"x")),
        Err(RelayError::UnknownPath(path))
    );
    // The session goes on.
    assert!(d.primary.close_reason().is_none());
    assert!(d.client.close_reason().is_none());
    d.client.close(0, b"");
}
