//! Loopback tests of multi-server KWIK sessions: a primary server adds a secondary
//! server to a client's session (ADD_PATH, JOIN at the secondary with a token
//! signed under the key the two servers share), relays messages to it through the
//! client, and strangers are refused by the secondary. Real quinn on 127.0.0.1,
//! certificates verified against the test CA.

mod kwik_wire;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kwik::{
    AddSecondaryError, CloseReason, Endpoint, PathId, RefuseReason, RelayError, SecondaryJoins,
    Session, SessionConfig, SessionId, TokenIssuer, TokenKey,
};
use kwik_testbed::loopback::{self, LOCALHOST, pattern};
use kwik_testbed::{SERVER_NAME, TestPki};
use kwik_wire::{Frame, FrameReader};

const SHARED_KEY: [u8; 32] = [0x5a; 32];

struct Deployment {
    pki: TestPki,
    primary_ep: Endpoint,
    secondary_ep: Endpoint,
    _client_ep: Endpoint,
    client: Session,
    primary: Session,
}

/// A server endpoint for `session`s, signing join tokens with `key`, accepting
/// secondary joins or not.
fn server_endpoint(
    pki: &TestPki,
    session: SessionConfig,
    key: TokenKey,
    joins: SecondaryJoins,
) -> Endpoint {
    let config = loopback::server_config(pki, session).expect("server config");
    loopback::server_endpoint(config.token_key(key).secondary_joins(joins))
        .expect("server endpoint")
}

/// A primary and a secondary server (the secondary with `secondary_key` and
/// `joins`), and a client session opened at the primary.
async fn deployment(secondary_key: TokenKey, joins: SecondaryJoins) -> Deployment {
    deployment_with(
        SessionConfig::lan(),
        SessionConfig::lan(),
        secondary_key,
        joins,
    )
    .await
}

/// [`deployment`] with the primary's and the client's session configurations.
async fn deployment_with(
    primary: SessionConfig,
    client: SessionConfig,
    secondary_key: TokenKey,
    joins: SecondaryJoins,
) -> Deployment {
    let pki = TestPki::generate().expect("test CA");
    let shared = TokenKey::new(SHARED_KEY);
    let primary_ep = server_endpoint(&pki, primary, shared, SecondaryJoins::Refuse);
    let secondary_ep = server_endpoint(&pki, SessionConfig::lan(), secondary_key, joins);
    let client_config = loopback::client_config(&pki, client).expect("client config");
    let client_ep = loopback::client_endpoint(client_config).expect("client endpoint");
    let primary_addr = primary_ep.local_addr().unwrap();
    let (client, primary) = loopback::connect(&client_ep, primary_addr, &primary_ep)
        .await
        .expect("connect");
    Deployment {
        pki,
        primary_ep,
        secondary_ep,
        _client_ep: client_ep,
        client,
        primary,
    }
}

impl Deployment {
    /// The primary asks the client to join `secondary_ep` (bounded by `timed`).
    async fn add_secondary(&self) -> Result<PathId, AddSecondaryError> {
        let addr = self.secondary_ep.local_addr().unwrap();
        timed(self.primary.add_secondary(addr, SERVER_NAME)).await
    }

    /// A secondary path joined: its id and the secondary server's side of it.
    async fn join_secondary(&self) -> (PathId, kwik::SecondarySession) {
        let path = self.add_secondary().await.expect("secondary joins");
        let secondary = timed(self.secondary_ep.accept_secondary()).await.unwrap();
        (path, secondary)
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
    let (path, secondary) = d.join_secondary().await;

    for i in 0..50u32 {
        let msg = Bytes::from(format!("chunk plan {i}"));
        d.primary.relay(path, msg).expect("relay");
    }
    for i in 0..50u32 {
        let got = timed(secondary.accept_relay()).await.expect("relayed");
        assert_eq!(got, format!("chunk plan {i}").as_bytes());
    }
    let big = Bytes::from(vec![7u8; kwik::MAX_RELAY_LEN]);
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
    let too_long = Bytes::from(vec![0u8; kwik::MAX_RELAY_LEN + 1]);
    assert_eq!(
        d.primary.relay(path, too_long),
        Err(RelayError::TooLong(kwik::MAX_RELAY_LEN + 1))
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
    let err = d.add_secondary().await.unwrap_err();
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
    let err = d.add_secondary().await.unwrap_err();
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
    let silent = std::net::UdpSocket::bind(LOCALHOST).unwrap();
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
    let raw = quinn::Endpoint::client(LOCALHOST).unwrap();
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
    let (path, secondary) = d.join_secondary().await;
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
    let (path, secondary) = d.join_secondary().await;
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

// ================================================================ delegation

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// File size of the delegation tests: `KWIK_MS_BYTES` (e.g. 268435456 for
/// 256 MiB), default 8 MiB.
fn file_len() -> usize {
    std::env::var("KWIK_MS_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8 << 20)
}

/// A secondary server's application: writes every grant's range from `file`;
/// after `serve` grants (if given) it closes its path instead (killed).
/// Returns the number of grants it served; each one served goes to `log`.
async fn serve_grants(
    secondary: kwik::SecondarySession,
    file: Bytes,
    serve: Option<usize>,
    log: Served,
) -> usize {
    let mut served = 0;
    while let Some(grant) = secondary.accept_grant().await {
        if serve == Some(served) {
            secondary.close(0, b"killed");
            return served;
        }
        let part = file.slice(grant.range.start as usize..grant.range.end as usize);
        if secondary
            .write_at(grant.stream, grant.range.start, part)
            .await
            .is_err()
        {
            return served;
        }
        log.lock().unwrap().push(grant);
        served += 1;
    }
    served
}

type Served = std::sync::Arc<std::sync::Mutex<Vec<kwik::Grant>>>;

enum Step {
    Done(Result<(), String>),
    Event(Option<kwik::PathEvent>),
}

/// Writes back every range delegated to `path` that the client is missing.
/// Reclaims what the dead secondary on `path` left missing: delegated to
/// `via` (another secondary) when given and alive, else written here.
async fn reclaim(
    primary: &Session,
    stream: &kwik::SendStream,
    file: &Bytes,
    path: PathId,
    via: Option<PathId>,
) -> Result<u64, String> {
    let mut bytes = 0;
    for (id, r) in primary.missing_from(path) {
        assert_eq!(id, stream.id());
        bytes += r.end - r.start;
        if let Some(other) = via {
            match primary.delegate(id, r.clone(), other).await {
                Ok(_) => continue,
                Err(kwik::DelegateError::UnknownPath(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        stream
            .write_at(r.start, file.slice(r.start as usize..r.end as usize))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

/// Who takes over the ranges of a secondary that left.
#[derive(Clone, Copy, PartialEq)]
enum Reclaim {
    /// The primary writes them.
    Primary,
    /// They are delegated to a secondary still alive.
    OtherSecondary,
}

/// The primary's application: chunk `i` of `file` is written by the primary
/// when `i % (secondaries + 1) == 0`, else delegated to secondary
/// `i % (secondaries + 1) - 1`. A secondary that leaves has its missing ranges
/// reclaimed as `how` says. Returns the bytes reclaimed.
async fn serve_primary(
    primary: Session,
    secondaries: Vec<PathId>,
    file: Bytes,
    chunk: u64,
    how: Reclaim,
) -> Result<u64, String> {
    let mut events = primary.path_events();
    let mut stream = primary.open_uni().await.map_err(|e| e.to_string())?;
    let len = file.len() as u64;
    let mut dead: Vec<PathId> = Vec::new();
    let mut reclaimed = 0;
    let mut next = 0u64;
    let mut finished = false;
    loop {
        // One step of work (a chunk, or waiting for completion), raced against
        // path events so a dead secondary is reclaimed even while we wait.
        let work = async {
            if next < len {
                let range = next..(next + chunk).min(len);
                let owner = (next / chunk) as usize % (secondaries.len() + 1);
                let mut own = owner == 0;
                if !own {
                    match primary
                        .delegate(stream.id(), range.clone(), secondaries[owner - 1])
                        .await
                    {
                        Ok(grant) => assert_eq!(grant.range, range),
                        Err(kwik::DelegateError::UnknownPath(_)) => own = true,
                        Err(e) => return Err(e.to_string()),
                    }
                }
                if own {
                    let data = file.slice(range.start as usize..range.end as usize);
                    stream
                        .write_at(range.start, data)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            } else {
                stream.finished().await.map_err(|e| e.to_string())
            }
        };
        let step = tokio::select! {
            biased;
            e = events.next() => Step::Event(e),
            r = work => Step::Done(r),
        };
        match step {
            Step::Event(Some(kwik::PathEvent::GrantExpired(p))) => {
                reclaimed += reclaim(&primary, &stream, &file, p, None).await?;
            }
            Step::Event(Some(kwik::PathEvent::Abandoned(p))) if secondaries.contains(&p) => {
                dead.push(p);
                let via = secondaries
                    .iter()
                    .copied()
                    .find(|s| *s != p && !dead.contains(s))
                    .filter(|_| how == Reclaim::OtherSecondary);
                reclaimed += reclaim(&primary, &stream, &file, p, via).await?;
            }
            Step::Event(_) => {}
            Step::Done(r) => {
                r?;
                if next >= len {
                    return Ok(reclaimed);
                }
                next = (next + chunk).min(len);
                if next >= len && !finished {
                    finished = true;
                    stream.finish().map_err(|e| e.to_string())?;
                    // A cancelled reclaim may have left a prefix: run it again.
                    for p in &dead {
                        reclaimed += reclaim(&primary, &stream, &file, *p, None).await?;
                    }
                }
            }
        }
    }
}

/// Reads the client's one incoming stream to the end; returns its hash and
/// length, and the most bytes the client held buffered while reading.
async fn read_file(client: &Session, pause: Option<Duration>) -> ([u8; 32], usize, u64) {
    use sha2::Digest;
    let mut incoming = timed(client.accept_uni()).await.expect("incoming stream");
    let mut hasher = sha2::Sha256::new();
    let mut len = 0;
    let mut most_buffered = 0;
    while let Some(chunk) =
        tokio::time::timeout(Duration::from_secs(20), incoming.read_chunk(64 * 1024))
            .await
            .expect("stream stalled for 20 s")
            .expect("read")
    {
        hasher.update(&chunk);
        len += chunk.len();
        most_buffered = most_buffered.max(client.presentation_stats().buffered_bytes);
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
    }
    (hasher.finalize().into(), len, most_buffered)
}

struct Three {
    d: Deployment,
    second_ep: Endpoint,
    paths: Vec<PathId>,
    secondaries: Vec<kwik::SecondarySession>,
}

/// A deployment with two secondary servers joined to the client's session.
async fn with_two_secondaries(d: Deployment) -> Three {
    let shared = TokenKey::new(SHARED_KEY);
    let second_ep = server_endpoint(&d.pki, SessionConfig::lan(), shared, SecondaryJoins::Accept);
    let a = d.add_secondary().await.expect("secondary A joins");
    let sa = timed(d.secondary_ep.accept_secondary()).await.unwrap();
    let b = timed(
        d.primary
            .add_secondary(second_ep.local_addr().unwrap(), SERVER_NAME),
    )
    .await
    .expect("secondary B joins");
    let sb = timed(second_ep.accept_secondary()).await.unwrap();
    assert_eq!((sa.path(), sb.path()), (a, b));
    Three {
        d,
        second_ep,
        paths: vec![a, b],
        secondaries: vec![sa, sb],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_from_a_primary_and_two_secondaries_is_byte_exact() {
    let t = with_two_secondaries(shared_deployment().await).await;
    let len = file_len();
    let file = pattern(len, 0x0123_4567);
    let chunk = 256 * 1024;
    let logs = [Served::default(), Served::default()];
    let served: Vec<_> = t
        .secondaries
        .iter()
        .zip(&logs)
        .map(|(s, log)| tokio::spawn(serve_grants(s.clone(), file.clone(), None, log.clone())))
        .collect();
    let primary = tokio::spawn(serve_primary(
        t.d.primary.clone(),
        t.paths.clone(),
        file.clone(),
        chunk,
        Reclaim::Primary,
    ));
    let (hash, got, _) = read_file(&t.d.client, None).await;
    assert_eq!(got, len);
    assert_eq!(hash, sha256(&file), "file differs");
    let reclaimed = timed(primary).await.unwrap().expect("primary");
    assert_eq!(reclaimed, 0);

    // Each secondary wrote its third of the chunks, inside its grants only.
    let stats = t.d.client.stats();
    assert_eq!(stats.segments_outside_grant, 0);
    let chunks = len.div_ceil(chunk as usize) as u64;
    assert_eq!(
        t.d.primary.stats().grants_issued,
        chunks - chunks.div_ceil(3)
    );
    let mut from_secondaries = 0;
    for s in &t.secondaries {
        let st = s.stats();
        assert_eq!(st.grants_refused, 0);
        assert!(st.grants_received > 0);
        from_secondaries += st.bytes_written;
    }
    assert_eq!(stats.bytes_from_secondaries, from_secondaries);
    assert!(from_secondaries > len as u64 / 2, "{from_secondaries}");
    // The secondaries learn that their ranges arrived (and drop the grants).
    for (s, log) in t.secondaries.iter().zip(&logs) {
        let grants = log.lock().unwrap().clone();
        assert_eq!(grants.len() as u64, s.stats().grants_received);
        for g in grants {
            timed(s.acknowledged(g.stream, g.range.clone()))
                .await
                .unwrap();
        }
        assert!(s.grants().is_empty(), "{:?}", s.grants());
    }
    // Relay still works beside the data.
    t.d.primary
        .relay(t.paths[1], Bytes::from_static(b"done"))
        .unwrap();
    assert_eq!(
        timed(t.secondaries[1].accept_relay()).await.unwrap(),
        "done".as_bytes()
    );
    t.d.client.close(0, b"");
    for h in served {
        let _ = timed(h).await;
    }
    drop(t.second_ep);
}

/// Secondary B is killed after half of its share; what it left missing is
/// reclaimed as `how` says, and the file still arrives byte-exact.
async fn killed_secondary(how: Reclaim) {
    let t = with_two_secondaries(shared_deployment().await).await;
    let len = 4 << 20;
    let file = pattern(len, 0xfeed);
    let chunk = 128 * 1024;
    let per_secondary = len / chunk / 3;
    let a_log = Served::default();
    let a = tokio::spawn(serve_grants(
        t.secondaries[0].clone(),
        file.clone(),
        None,
        a_log.clone(),
    ));
    let b = tokio::spawn(serve_grants(
        t.secondaries[1].clone(),
        file.clone(),
        Some(per_secondary / 2),
        Served::default(),
    ));
    let mut primary_events = t.d.primary.path_events();
    let primary = tokio::spawn(serve_primary(
        t.d.primary.clone(),
        t.paths.clone(),
        file.clone(),
        chunk as u64,
        how,
    ));
    let (hash, got, _) = read_file(&t.d.client, None).await;
    assert_eq!(got, len);
    assert_eq!(hash, sha256(&file), "file differs");
    let reclaimed = timed(primary).await.unwrap().expect("primary");
    assert!(reclaimed >= chunk as u64, "reclaimed {reclaimed}");
    assert_eq!(timed(b).await.unwrap(), per_secondary / 2);
    abandoned(&mut primary_events, t.paths[1]).await;
    assert_eq!(t.d.client.stats().segments_outside_grant, 0);
    assert!(t.d.primary.missing_from(t.paths[1]).is_empty());
    if how == Reclaim::OtherSecondary {
        // A served B's leftovers as well as its own share.
        let a_chunks = (0..len / chunk).filter(|i| i % 3 == 1).count();
        let a_bytes = t.secondaries[0].stats().bytes_written;
        let a_share = (a_chunks * chunk) as u64;
        assert!(
            a_bytes > a_share,
            "A wrote {a_bytes}, its share is {a_share}"
        );
        assert!(a_log.lock().unwrap().len() > a_chunks);
    }
    t.d.client.close(0, b"");
    let _ = timed(a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_killed_halfway_is_reclaimed_by_the_primary() {
    killed_secondary(Reclaim::Primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_killed_halfway_is_reclaimed_by_the_other_secondary() {
    killed_secondary(Reclaim::OtherSecondary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_reaches_the_secondaries() {
    use kwik::PresentationConfig;
    let window = 1 << 20;
    let pres = PresentationConfig::default()
        .session_window(window)
        .max_session_window(window)
        .stream_window(256 * 1024)
        .max_stream_window(256 * 1024);
    let d = deployment_with(
        SessionConfig::lan(),
        SessionConfig::lan().presentation(pres),
        TokenKey::new(SHARED_KEY),
        SecondaryJoins::Accept,
    )
    .await;
    let t = with_two_secondaries(d).await;
    let len = 4 << 20;
    let file = pattern(len, 42);
    let served: Vec<_> = t
        .secondaries
        .iter()
        .map(|s| {
            tokio::spawn(serve_grants(
                s.clone(),
                file.clone(),
                None,
                Served::default(),
            ))
        })
        .collect();
    let primary = tokio::spawn(serve_primary(
        t.d.primary.clone(),
        t.paths.clone(),
        file.clone(),
        64 * 1024,
        Reclaim::Primary,
    ));
    // A slow reader: the window fills, credit is withheld, writers wait.
    let (hash, got, most_buffered) = read_file(&t.d.client, Some(Duration::from_millis(2))).await;
    assert_eq!(got, len);
    assert_eq!(hash, sha256(&file));
    assert!(
        most_buffered <= window,
        "client buffered {most_buffered} > window {window}"
    );
    timed(primary).await.unwrap().expect("primary");
    for s in &t.secondaries {
        assert!(s.stats().credit_waits > 0, "{:?}", s.stats());
    }
    t.d.client.close(0, b"");
    for h in served {
        let _ = timed(h).await;
    }
}

/// The next control frame from `recv`.
async fn next_frame(recv: &mut quinn::RecvStream, reader: &mut FrameReader) -> Option<Frame> {
    loop {
        if let Some(f) = reader.next_frame().expect("well-formed frames") {
            return Some(f);
        }
        let chunk = recv.read_chunk(64 * 1024, true).await.ok()??;
        reader.push(&chunk.bytes);
    }
}

/// Opens a data stream on `conn` and writes `segments` (offset, bytes).
async fn write_segments(
    conn: &quinn::Connection,
    stream: kwik::StreamId,
    segments: &[(u64, Bytes)],
) {
    let mut send = conn.open_uni().await.expect("uni stream");
    let mut buf = BytesMut::new();
    kwik_wire::encode_stream_header(&mut buf, stream);
    for (offset, data) in segments {
        kwik_wire::encode_segment_header(&mut buf, *offset, data.len() as u64, false);
        buf.extend_from_slice(data);
    }
    let _ = send.write_all(&buf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_writing_outside_its_grant_is_refused_and_the_file_is_unaffected() {
    let d = shared_deployment().await;
    let file = pattern(1 << 20, 7);
    // A rogue secondary: a bare QUIC server that speaks just enough KWIK to be
    // joined, then writes the first 1000 bytes of its grant correctly and
    // 1000 bytes of garbage outside the grant.
    let raw = quinn::Endpoint::server(d.pki.quinn_server_config(&[kwik::ALPN]).unwrap(), LOCALHOST)
        .unwrap();
    let rogue_addr = raw.local_addr().unwrap();
    let rogue_file = file.clone();
    let rogue = tokio::spawn(async move {
        let conn = raw.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let mut reader = FrameReader::new();
        let Some(Frame::Join { session, path, .. }) = next_frame(&mut recv, &mut reader).await
        else {
            panic!("expected JOIN");
        };
        let mut buf = BytesMut::new();
        Frame::Welcome {
            session,
            path,
            max_data: 0,
            stream_credit: 0,
            version: 1,
        }
        .encode(&mut buf);
        send.write_all(&buf).await.unwrap();
        let grant = loop {
            match next_frame(&mut recv, &mut reader).await {
                Some(Frame::Grant { grant }) => {
                    break kwik::Grant::verify(
                        &TokenKey::new(SHARED_KEY),
                        session,
                        &grant,
                        now_ms(),
                    )
                    .expect("the primary's grant verifies");
                }
                Some(_) => continue,
                None => panic!("control stream ended"),
            }
        };
        let start = grant.range.start as usize;
        let inside = rogue_file.slice(start..start + 1000);
        let outside = Bytes::from(vec![0xee; 1000]);
        write_segments(
            &conn,
            grant.stream,
            // Past the file's end: bytes the client cannot hold from anyone
            // (garbage over bytes it already holds would merely be dropped).
            &[(grant.range.start, inside), (2 << 20, outside)],
        )
        .await;
        let closed = conn.closed().await;
        (grant, closed)
    });
    let path = timed(d.primary.add_secondary(rogue_addr, SERVER_NAME))
        .await
        .expect("rogue joins");
    let mut client_events = d.client.path_events();
    let primary = tokio::spawn(serve_primary(
        d.primary.clone(),
        vec![path],
        file.clone(),
        256 * 1024,
        Reclaim::Primary,
    ));
    let (hash, got, _) = read_file(&d.client, None).await;
    assert_eq!(got, file.len());
    assert_eq!(hash, sha256(&file), "the rogue's bytes reached the file");
    let reclaimed = timed(primary).await.unwrap().expect("primary");
    assert!(reclaimed > 0);

    let (grant, closed) = timed(rogue).await.unwrap();
    assert_eq!(grant.path, path);
    match closed {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), kwik::PROTOCOL_ERROR_CODE);
        }
        other => panic!("unexpected {other:?}"),
    }
    let stats = d.client.stats();
    assert_eq!(stats.segments_outside_grant, 1);
    assert_eq!(stats.bytes_from_secondaries, 1000);
    abandoned(&mut client_events, path).await;
    assert!(d.client.close_reason().is_none(), "the session goes on");
    d.client.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_misdirected_grants_are_refused_by_the_secondary() {
    let d = shared_deployment().await;
    let shared = TokenKey::new(SHARED_KEY);
    let session = SessionId::from_bytes([0x77; 16]);
    let path = PathId::new(1 << 32);
    // A client joined with a real token; it then plays the forwarder of grants.
    let raw = quinn::Endpoint::client(LOCALHOST).unwrap();
    let conn = raw
        .connect_with(
            d.pki.quinn_client_config(&[kwik::ALPN]).unwrap(),
            d.secondary_ep.local_addr().unwrap(),
            SERVER_NAME,
        )
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut buf = BytesMut::new();
    Frame::Join {
        session,
        path,
        token: TokenIssuer::new(shared.clone()).issue(session, path, now_ms(), 60_000),
    }
    .encode(&mut buf);
    send.write_all(&buf).await.unwrap();
    let mut reader = FrameReader::new();
    assert!(matches!(
        next_frame(&mut recv, &mut reader).await,
        Some(Frame::Welcome { .. })
    ));
    let secondary = timed(d.secondary_ep.accept_secondary()).await.unwrap();

    let stream = kwik::StreamId::new(3); // the server's first uni stream
    let later = now_ms() + 60_000;
    let valid = kwik::Grant::new(path, stream, 0..1000, later);
    let mut altered = valid.sign(&shared, session).to_vec();
    altered[32] ^= 1; // the range's end
    let refused = [
        valid.sign(&TokenKey::new([9; 32]), session),
        kwik::Grant::new(path, stream, 0..1000, now_ms() - 1000).sign(&shared, session),
        kwik::Grant::new(PathId::new((1 << 32) + 1), stream, 0..1000, later).sign(&shared, session),
        valid.sign(&shared, SessionId::from_bytes([0x78; 16])),
        Bytes::from(altered),
    ];
    let mut buf = BytesMut::new();
    for grant in refused.iter().cloned() {
        Frame::Grant { grant }.encode(&mut buf);
    }
    Frame::Grant {
        grant: valid.sign(&shared, session),
    }
    .encode(&mut buf);
    Frame::StreamCredit {
        stream,
        max_offset: 1000,
    }
    .encode(&mut buf);
    send.write_all(&buf).await.unwrap();

    // Only the valid grant comes out; the others were counted.
    assert_eq!(timed(secondary.accept_grant()).await, Some(valid.clone()));
    let stats = secondary.stats();
    assert_eq!((stats.grants_received, stats.grants_refused), (1, 5));
    assert_eq!(secondary.grants(), vec![valid]);

    // A grant that lapses while held: writing under it is refused as expired.
    let short = kwik::Grant::new(path, stream, 1000..2000, now_ms() + 1500);
    let mut buf = BytesMut::new();
    Frame::Grant {
        grant: short.sign(&shared, session),
    }
    .encode(&mut buf);
    send.write_all(&buf).await.unwrap();
    assert_eq!(timed(secondary.accept_grant()).await, Some(short.clone()));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        secondary
            .write_at(stream, 1000, Bytes::from_static(b"late"))
            .await,
        Err(kwik::SecondaryWriteError::Expired)
    );

    // Writes outside the grant are refused locally; inside they go out as segments.
    assert_eq!(
        secondary
            .write_at(stream, 990, Bytes::from(vec![1u8; 20]))
            .await,
        Err(kwik::SecondaryWriteError::OutsideGrant {
            stream,
            offset: 990,
            length: 20
        })
    );
    assert!(matches!(
        secondary
            .write_at(kwik::StreamId::new(7), 0, Bytes::from_static(b"x"))
            .await,
        Err(kwik::SecondaryWriteError::OutsideGrant { .. })
    ));
    secondary
        .write_at(stream, 10, Bytes::from_static(b"delegated bytes"))
        .await
        .expect("inside the grant");
    let mut data = conn.accept_uni().await.unwrap();
    let mut segments = kwik_wire::SegmentReader::new();
    let mut pieces = Vec::new();
    while pieces.is_empty() {
        let chunk = data.read_chunk(1024, true).await.unwrap().expect("segment");
        segments.feed(chunk.bytes, &mut pieces).unwrap();
    }
    assert_eq!(segments.stream(), Some(stream));
    assert_eq!(pieces[0].offset, 10);
    assert_eq!(&pieces[0].data[..], b"delegated bytes");
    assert!(!pieces[0].fin);
    conn.close(0u32.into(), b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_grants_of_a_stalled_secondary_are_reclaimed() {
    let d = deployment_with(
        SessionConfig::lan().grant_ttl(Duration::from_millis(200)),
        SessionConfig::lan(),
        TokenKey::new(SHARED_KEY),
        SecondaryJoins::Accept,
    )
    .await;
    let (client, primary) = (&d.client, &d.primary);
    let (path, stalled) = d.join_secondary().await;
    // The secondary takes its grants and never writes.
    let staller = tokio::spawn({
        let stalled = stalled.clone();
        async move {
            let mut grants = 0;
            while stalled.accept_grant().await.is_some() {
                grants += 1;
            }
            grants
        }
    });
    let mut events = primary.path_events();
    let file = pattern(1 << 20, 99);
    let serving = tokio::spawn(serve_primary(
        primary.clone(),
        vec![path],
        file.clone(),
        256 * 1024,
        Reclaim::Primary,
    ));
    let (hash, got, _) = read_file(client, None).await;
    assert_eq!(got, file.len());
    assert_eq!(hash, sha256(&file));
    let reclaimed = timed(serving).await.unwrap().expect("primary");
    assert!(
        reclaimed >= 512 * 1024,
        "both delegated chunks came back: {reclaimed}"
    );
    while timed(events.next()).await != Some(kwik::PathEvent::GrantExpired(path)) {}
    assert_eq!(stalled.stats().bytes_written, 0);
    assert!(stalled.grants().is_empty(), "expired");
    // Its grants are spent (the primary's bytes arrived): writes are refused.
    assert!(matches!(
        stalled
            .write_at(
                kwik::StreamId::new(3),
                256 * 1024,
                Bytes::from_static(b"late")
            )
            .await,
        Err(kwik::SecondaryWriteError::OutsideGrant { .. })
    ));
    assert_eq!(
        primary.secondary_paths().len(),
        1,
        "the path itself lives on"
    );
    client.close(0, b"");
    assert_eq!(timed(staller).await.unwrap(), 2);
}

/// A joined peer that sends garbage on its secondary path's control channel: the
/// secondary closes the connection with the path code and a phrase naming the frame
/// type, and goes on accepting joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_secondary_path_is_closed_with_the_frame_type_named() {
    let d = shared_deployment().await;
    let shared = TokenKey::new(SHARED_KEY);
    let session = SessionId::from_bytes([0x79; 16]);
    let path = PathId::new(1 << 32);
    let raw = quinn::Endpoint::client(LOCALHOST).unwrap();
    let conn = raw
        .connect_with(
            d.pki.quinn_client_config(&[kwik::ALPN]).unwrap(),
            d.secondary_ep.local_addr().unwrap(),
            SERVER_NAME,
        )
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut buf = BytesMut::new();
    Frame::Join {
        session,
        path,
        token: TokenIssuer::new(shared).issue(session, path, now_ms(), 60_000),
    }
    .encode(&mut buf);
    send.write_all(&buf).await.unwrap();
    let mut reader = FrameReader::new();
    assert!(matches!(
        next_frame(&mut recv, &mut reader).await,
        Some(Frame::Welcome { .. })
    ));
    let _secondary = timed(d.secondary_ep.accept_secondary()).await.unwrap();
    // An unknown frame type (0x3f), then noise.
    send.write_all(&[0x3f, 0x03, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff])
        .await
        .unwrap();
    match timed(conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            assert_eq!(c.error_code.into_inner(), 0x1_0001, "{reason}");
            assert!(
                reason.starts_with("protocol violation on a path (unknown type 0x3f frame)"),
                "{reason}"
            );
        }
        other => panic!("not an application close: {other:?}"),
    }
    // The secondary still welcomes a good join.
    let other = SessionId::from_bytes([0x7a; 16]);
    let token = TokenIssuer::new(TokenKey::new(SHARED_KEY)).issue(other, path, now_ms(), 60_000);
    let answer = raw_join(
        &d.pki,
        d.secondary_ep.local_addr().unwrap(),
        other,
        path,
        token,
    )
    .await;
    assert!(matches!(answer, Frame::Welcome { session, .. } if session == other));
    d.client.close(0, b"");
}
