//! Unit tests of the session core: multi-server frames by side, the client's
//! grant checks on secondary data, and the primary's delegation.

#![allow(clippy::single_range_in_vec_init)]

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use kwik_presentation::{Dir, Presentation, PresentationConfig, Side, StreamId};

use super::SessionState;
use super::events::{Event, PathEvent};
use crate::proto::config::SessionConfig;
use crate::proto::error::{DelegateError, ProtocolError, WriteError};
use crate::proto::ids::{PathId, SECONDARY_PATH_BASE, SessionId};
use crate::proto::multiserver::client::GRANT_GRACE_MS;
use crate::proto::multiserver::grant::Grant;
use crate::proto::multiserver::token::TokenKey;
use crate::proto::wire::frame::{AddPathOutcome, Frame};
use crate::proto::wire::segment::Piece;

fn state(side: Side) -> SessionState {
    let now = Instant::now();
    let presentation = Presentation::new(PresentationConfig::default(), now);
    SessionState::new(
        SessionId::from_bytes([1; 16]),
        side,
        SessionConfig::default(),
        presentation,
        1 << 20,
        1 << 16,
        now,
    )
}

/// The events after the initial `Added(0)`.
fn events(s: &mut SessionState) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = s.poll_event() {
        if !matches!(e, Event::Path(PathEvent::Added(_))) {
            out.push(e);
        }
    }
    out
}

#[test]
fn multi_server_frames_are_checked_by_side() {
    let now = Instant::now();
    let path = PathId::new(1 << 32);
    let add = Frame::AddPath {
        path,
        addr: "127.0.0.1:4433".parse().unwrap(),
        server_name: Bytes::from_static(b"localhost"),
        token: Bytes::from_static(b"t"),
    };
    let result = Frame::AddPathResult {
        path,
        outcome: AddPathOutcome::Joined,
    };
    let relay = Frame::Relay {
        path,
        payload: Bytes::from_static(b"hi"),
    };

    let mut server = state(Side::Server);
    assert_eq!(
        server.handle_frame(PathId::INITIAL, add.clone(), now),
        Err(ProtocolError::UnexpectedFrame("ADD_PATH"))
    );
    server
        .handle_frame(PathId::INITIAL, result.clone(), now)
        .unwrap();
    server
        .handle_frame(PathId::INITIAL, relay.clone(), now)
        .unwrap();
    assert_eq!(
        events(&mut server),
        vec![
            Event::AddPathResult(path, AddPathOutcome::Joined),
            Event::RelayReceived(path, Bytes::from_static(b"hi")),
        ]
    );

    let mut client = state(Side::Client);
    assert_eq!(
        client.handle_frame(PathId::INITIAL, result, now),
        Err(ProtocolError::UnexpectedFrame("ADD_PATH_RESULT"))
    );
    client.handle_frame(PathId::INITIAL, add, now).unwrap();
    client.handle_frame(PathId::INITIAL, relay, now).unwrap();
    assert_eq!(
        events(&mut client),
        vec![
            Event::AddPathRequested {
                path,
                addr: "127.0.0.1:4433".parse().unwrap(),
                server_name: Bytes::from_static(b"localhost"),
                token: Bytes::from_static(b"t"),
            },
            Event::RelayForward(path, Bytes::from_static(b"hi")),
        ]
    );
    // Secondary paths never become transport paths of the core.
    assert!(!client.has_path(path));
}

/// `s` receives a GRANT frame (a signed `grant`) from the primary on path 0.
fn receive_grant(s: &mut SessionState, grant: Bytes, now: Instant) -> Result<(), ProtocolError> {
    s.handle_frame(PathId::INITIAL, Frame::Grant { grant }, now)
}

/// The control frames `s` has queued on path 0.
fn control_frames(s: &mut SessionState) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(f) = s.poll_control(PathId::INITIAL) {
        frames.push(f);
    }
    frames
}

fn piece(stream: StreamId, offset: u64, len: usize, fin: bool) -> Piece {
    Piece {
        stream,
        offset,
        data: Bytes::from(vec![7u8; len]),
        fin,
    }
}

#[test]
fn client_accepts_secondary_data_inside_grants_only() {
    let t0 = Instant::now();
    let mut client = state(Side::Client);
    client.set_wall_clock(t0, 1_000_000);
    let key = TokenKey::new([5; 32]);
    let path = PathId::new(SECONDARY_PATH_BASE);
    let stream = StreamId::from_parts(0, Side::Server, Dir::Uni);
    let grant = Grant::new(path, stream, 100..200, 1_000_500);
    let signed = grant.sign(&key, client.id());

    // A grant for a secondary the client has no link to is dropped.
    receive_grant(&mut client, signed.clone(), t0).unwrap();
    assert!(events(&mut client).is_empty());
    client.secondary_joined(path);
    receive_grant(&mut client, signed.clone(), t0).unwrap();
    let ev = events(&mut client);
    assert!(ev.contains(&Event::Incoming(Dir::Uni)), "{ev:?}");
    assert!(ev.contains(&Event::ToSecondary(path, Frame::Grant { grant: signed })));
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::ToSecondary(p, Frame::StreamCredit { stream: s, .. }) if *p == path && *s == stream
    )));

    // Inside: buffered, acknowledged to the primary and to the secondary.
    client
        .handle_secondary_piece(path, piece(stream, 100, 50, false), t0)
        .unwrap();
    assert_eq!(client.stats().bytes_from_secondaries, 50);
    client.handle_timeout(t0 + std::time::Duration::from_secs(1));
    assert!(events(&mut client).iter().any(|e| matches!(
        e,
        Event::ToSecondary(p, Frame::Ack { ranges, .. }) if *p == path && ranges == &vec![100..150]
    )));
    // The rest of the range: the grant is spent once the ACK says so.
    client
        .handle_secondary_piece(path, piece(stream, 150, 50, false), t0)
        .unwrap();
    client.handle_timeout(t0 + std::time::Duration::from_secs(2));
    assert!(
        client
            .links
            .grants_of(path)
            .is_some_and(|g| !g.has_stream(stream))
    );
    // Written again (held bytes): dropped, not an error.
    let late = client.stats().late_segments;
    client
        .handle_secondary_piece(path, piece(stream, 120, 10, false), t0)
        .unwrap();
    assert_eq!(client.stats().late_segments, late + 1);
    assert_eq!(client.presentation().stats().buffered_bytes, 100);
    // A copy of the spent grant is not forwarded again.
    let _ = events(&mut client);
    let copy = grant.sign(&key, client.id());
    receive_grant(&mut client, copy, t0).unwrap();
    assert!(events(&mut client).is_empty());
    // Outside (past the range, other stream, a FIN): refused, counted, not buffered.
    for bad in [
        piece(stream, 150, 51, false),
        piece(stream, 99, 2, false),
        piece(
            StreamId::from_parts(1, Side::Server, Dir::Uni),
            100,
            1,
            false,
        ),
        piece(stream, 150, 50, true),
    ] {
        assert!(matches!(
            client.handle_secondary_piece(path, bad, t0),
            Err(ProtocolError::OutsideGrant { .. })
        ));
    }
    assert_eq!(client.stats().segments_outside_grant, 4);
    assert_eq!(client.presentation().stats().buffered_bytes, 100);
    // After expiry plus the grace period the grant admits nothing.
    let late = t0 + std::time::Duration::from_millis(500 + GRANT_GRACE_MS + 1);
    assert!(
        client
            .handle_secondary_piece(path, piece(stream, 200, 10, false), late)
            .is_err()
    );
    assert!(client.close_reason().is_none(), "the session goes on");
    // Losing the link acknowledges to the primary, then reports the loss.
    let mut c = client;
    c.secondary_lost(path);
    let frames = control_frames(&mut c);
    let ack = frames.iter().position(|f| matches!(f, Frame::Ack { .. }));
    let abandon = frames
        .iter()
        .position(|f| *f == Frame::PathAbandon { path });
    assert!(ack.is_some() && ack < abandon, "{frames:?}");
    assert!(
        c.handle_secondary_piece(path, piece(stream, 100, 1, false), t0)
            .is_ok()
    );
    assert_eq!(
        c.stats().segments_outside_grant,
        5,
        "a dead link's data is ignored"
    );

    // Only the primary sends grants.
    let mut server = state(Side::Server);
    let signed = grant.sign(&key, server.id());
    assert_eq!(
        receive_grant(&mut server, signed, t0),
        Err(ProtocolError::UnexpectedFrame("GRANT"))
    );
}

#[test]
fn primary_delegates_writes_holes_and_sees_what_is_missing() {
    let t0 = Instant::now();
    let key = TokenKey::new([5; 32]);
    let path = PathId::new(SECONDARY_PATH_BASE);
    let mut server = state(Side::Server);
    server.set_wall_clock(t0, 1_000_000);
    let stream = server.open(Dir::Uni, None).unwrap();
    assert_eq!(
        server.write_at(stream, 0, Bytes::from(vec![1u8; 100])),
        Ok(Bytes::new())
    );
    let grant = server
        .delegate(stream, 100..200, path, &key, t0)
        .unwrap()
        .expect("credit for 200 bytes");
    assert_eq!(grant.expiry_ms, 1_000_000 + 60_000);
    let signed = control_frames(&mut server)
        .iter()
        .find_map(|f| match f {
            Frame::Grant { grant } => Some(grant.clone()),
            _ => None,
        })
        .expect("GRANT queued");
    assert_eq!(
        Grant::verify(&key, server.id(), &signed, 1_000_000),
        Ok(grant)
    );

    // Bytes the primary wrote cannot be delegated or written again.
    assert_eq!(
        server.delegate(stream, 50..150, path, &key, t0),
        Err(DelegateError::AlreadyWritten)
    );
    assert_eq!(
        server.write_at(stream, 99, Bytes::from_static(b"xy")),
        Err(WriteError::AlreadyWritten { offset: 99 })
    );
    assert_eq!(server.missing(stream, &(0..300)), vec![100..200]);
    // The client acknowledges part of the delegated range.
    let ack = |ranges: Vec<Range<u64>>, fin| Frame::Ack {
        stream,
        fin,
        ranges,
    };
    server
        .handle_frame(PathId::INITIAL, ack(vec![0..150], false), t0)
        .unwrap();
    assert_eq!(server.missing_from(path), vec![(stream, 150..200)]);
    // The primary reclaims the rest itself, after finishing.
    server.finish(stream).unwrap();
    assert_eq!(
        server.write_at(stream, 200, Bytes::from_static(b"z")),
        Err(WriteError::BeyondFinalSize)
    );
    assert_eq!(
        server.write_at(stream, 150, Bytes::from(vec![2u8; 50])),
        Ok(Bytes::new())
    );
    assert!(server.missing_from(path).is_empty());
    let mut sent = Vec::new();
    while let Some(tx) = server.poll_data(PathId::INITIAL) {
        sent.push((tx.offset, tx.data.len(), tx.fin));
    }
    assert!(sent.contains(&(150, 50, true)), "{sent:?}");
    // Complete only when every byte up to the final size is acknowledged.
    server
        .handle_frame(PathId::INITIAL, ack(vec![0..150], true), t0)
        .unwrap();
    assert!(server.retained(stream).is_some());
    server
        .handle_frame(PathId::INITIAL, ack(vec![0..200], true), t0)
        .unwrap();
    assert_eq!(server.retained(stream), None);
}

#[test]
fn delegation_waits_for_session_credit() {
    let t0 = Instant::now();
    let key = TokenKey::new([5; 32]);
    let path = PathId::new(SECONDARY_PATH_BASE);
    let mut server = state(Side::Server);
    let stream = server.open(Dir::Uni, None).unwrap();
    // The peer granted 1 MiB of session credit: a range ending past it waits.
    assert_eq!(
        server.delegate(stream, (1 << 20) - 10..(1 << 20) + 10, path, &key, t0),
        Ok(None)
    );
    assert!(
        server
            .delegate(stream, 0..(1 << 20), path, &key, t0)
            .unwrap()
            .is_some()
    );
    // The delegated range used the session credit up.
    assert_eq!(
        server.write_at(stream, 1 << 20, Bytes::from_static(b"x")),
        Ok(Bytes::from_static(b"x"))
    );
    server
        .handle_frame(
            PathId::INITIAL,
            Frame::SessionCredit { max_data: 2 << 20 },
            t0,
        )
        .unwrap();
    // Stream credit (64 KiB) still limits the primary's own bytes.
    assert_eq!(
        server.write_at(stream, 1 << 20, Bytes::from_static(b"x")),
        Ok(Bytes::from_static(b"x"))
    );
    server
        .handle_frame(
            PathId::INITIAL,
            Frame::StreamCredit {
                stream,
                max_offset: 2 << 20,
            },
            t0,
        )
        .unwrap();
    assert_eq!(
        server.write_at(stream, 1 << 20, Bytes::from_static(b"x")),
        Ok(Bytes::new())
    );
    assert_eq!(
        server.delegate(stream, 5..5, path, &key, t0),
        Err(DelegateError::EmptyRange)
    );
}

/// Both paths of a fresh client session validated, so the scheduler sees them.
fn two_path_client(now: Instant) -> SessionState {
    let mut s = state(Side::Client);
    s.add_path(
        PathId::new(1),
        crate::proto::wire::frame::PathStatus::Available,
        now,
    );
    for p in [PathId::INITIAL, PathId::new(1)] {
        s.handle_timeout(now);
        while let Some(f) = s.poll_control(p) {
            if let Frame::Ping { seq } = f {
                s.handle_frame(p, Frame::Pong { seq }, now).unwrap();
            }
        }
    }
    let _ = events(&mut s);
    s
}

#[test]
fn higher_priority_stream_goes_first() {
    let now = Instant::now();
    let mut s = state(Side::Client);
    let low = s.open(Dir::Uni, None).unwrap();
    let high = s.open(Dir::Uni, None).unwrap();
    s.write_copy(low, &[1; 4000]).unwrap();
    s.write_copy(high, &[2; 4000]).unwrap();
    s.set_priority(high, 5).unwrap();
    let order: Vec<_> = std::iter::from_fn(|| s.poll_data(PathId::INITIAL))
        .map(|t| t.stream)
        .collect();
    assert_eq!(order, [high, low], "{order:?}");
    let st = s.send_stream_stats(high).unwrap();
    assert_eq!((st.written, st.bytes_sent, st.priority), (4000, 4000, 5));
    let _ = now;
}

#[test]
fn weights_split_the_bytes() {
    let now = Instant::now();
    let mut s = two_path_client(now);
    assert!(s.set_path_weight(PathId::INITIAL, Some(3)));
    let id = s
        .open(
            Dir::Uni,
            Some(crate::proto::scheduler::Scheduler::Aggregate),
        )
        .unwrap();
    let mut sent = [0u64; 2];
    // Small segments, pulled by both paths in turn, acknowledged at once.
    for round in 0..400u64 {
        let _ = s.write_copy(id, &[7; 1000]);
        for p in [0u64, 1] {
            if let Some(t) = s.poll_data(PathId::new(p)) {
                sent[p as usize] += t.data.len() as u64;
                let end = t.offset + t.data.len() as u64;
                s.handle_frame(
                    PathId::new(p),
                    Frame::Ack {
                        stream: id,
                        fin: false,
                        ranges: vec![0..end],
                    },
                    now,
                )
                .unwrap();
            }
        }
        let _ = round;
    }
    let share = sent[0] as f64 / (sent[0] + sent[1]) as f64;
    assert!((share - 0.75).abs() < 0.02, "{sent:?}");
}

#[test]
fn failed_client_paths_are_redialled_removed_ones_are_not() {
    let now = Instant::now();
    let mut s = two_path_client(now);
    s.path_failed(PathId::new(1), now);
    assert!(s.is_recreating(PathId::new(1)));
    let due = s.next_deadline().unwrap();
    s.handle_timeout(due.max(now + std::time::Duration::from_secs(1)));
    let ev = events(&mut s);
    assert!(ev.contains(&Event::Dial(PathId::new(1))), "{ev:?}");
    assert!(ev.contains(&Event::Path(PathEvent::Recreating {
        path: PathId::new(1),
        attempt: 1
    })));
    // The peer removes it meanwhile: the re-creation is dropped.
    s.handle_frame(
        PathId::INITIAL,
        Frame::PathAbandon {
            path: PathId::new(1),
        },
        now,
    )
    .unwrap();
    assert!(!s.is_recreating(PathId::new(1)));
    assert!(!s.recreated(PathId::new(1), PathId::new(2)));

    // Removal by the application is never re-created; servers never dial.
    let mut c = two_path_client(now);
    c.remove_path(PathId::new(1), now).unwrap();
    assert!(!c.is_recreating(PathId::new(1)));
    let mut srv = state(Side::Server);
    srv.add_path(
        PathId::new(1),
        crate::proto::wire::frame::PathStatus::Available,
        now,
    );
    srv.path_failed(PathId::new(1), now);
    assert!(!srv.is_recreating(PathId::new(1)));
}
