//! Round trips and refusals of the control frame codec.

use super::*;
use proptest::prelude::*;

fn stream() -> impl Strategy<Value = StreamId> {
    (0..VARINT_MAX).prop_map(StreamId::new)
}

fn ranges() -> impl Strategy<Value = Vec<Range<u64>>> {
    proptest::collection::vec((0u64..1000, 1u64..1000), 0..MAX_ACK_RANGES).prop_map(|v| {
        let mut at = 0;
        v.into_iter()
            .map(|(gap, len)| {
                let start = at + gap;
                at = start + len + 1;
                start..start + len
            })
            .collect()
    })
}

fn frame() -> impl Strategy<Value = Frame> {
    let v = 0..VARINT_MAX;
    let bytes = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
    let sid = any::<[u8; 16]>().prop_map(SessionId::from_bytes);
    prop_oneof![
        (v.clone(), v.clone(), v.clone()).prop_map(|(a, b, c)| Frame::Open {
            version: a,
            max_data: b,
            stream_credit: c
        }),
        (sid.clone(), v.clone(), bytes.clone()).prop_map(|(s, p, t)| Frame::Join {
            session: s,
            path: PathId::new(p),
            token: t
        }),
        (sid, v.clone(), v.clone(), v.clone()).prop_map(|(s, p, a, b)| Frame::Welcome {
            session: s,
            path: PathId::new(p),
            max_data: a,
            stream_credit: b
        }),
        Just(Frame::Refused {
            reason: RefuseReason::ReusedToken
        }),
        v.clone().prop_map(|p| Frame::TokenRequest {
            path: PathId::new(p)
        }),
        (v.clone(), bytes.clone()).prop_map(|(p, t)| Frame::PathToken {
            path: PathId::new(p),
            token: t
        }),
        v.clone().prop_map(|m| Frame::SessionCredit { max_data: m }),
        (stream(), v.clone()).prop_map(|(s, m)| Frame::StreamCredit {
            stream: s,
            max_offset: m
        }),
        (stream(), any::<bool>(), ranges()).prop_map(|(s, f, r)| Frame::Ack {
            stream: s,
            fin: f,
            ranges: r
        }),
        (proptest::option::of(stream()), any::<bool>())
            .prop_map(|(s, on)| Frame::Backpressure { stream: s, on }),
        (stream(), v.clone(), v.clone()).prop_map(|(s, e, f)| Frame::ResetStream {
            stream: s,
            error_code: e,
            final_size: f
        }),
        (stream(), v.clone()).prop_map(|(s, e)| Frame::StopSending {
            stream: s,
            error_code: e
        }),
        (v.clone(), any::<bool>()).prop_map(|(p, b)| Frame::PathStatus {
            path: PathId::new(p),
            status: if b {
                PathStatus::Backup
            } else {
                PathStatus::Available
            }
        }),
        v.clone().prop_map(|s| Frame::Ping { seq: s }),
        v.clone().prop_map(|s| Frame::Pong { seq: s }),
        (v.clone(), bytes.clone()).prop_map(|(c, r)| Frame::Close { code: c, reason: r }),
        v.clone().prop_map(|p| Frame::PathAbandon {
            path: PathId::new(p)
        }),
        (
            v.clone(),
            (any::<IpAddr>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port)),
            proptest::collection::vec(any::<u8>(), 0..=MAX_SERVER_NAME_LEN),
            bytes.clone()
        )
            .prop_map(|(p, a, n, t)| Frame::AddPath {
                path: PathId::new(p),
                addr: a,
                server_name: Bytes::from(n),
                token: t
            }),
        (v.clone(), 0u8..4, 1u64..8).prop_map(|(p, o, r)| Frame::AddPathResult {
            path: PathId::new(p),
            outcome: match o {
                0 => AddPathOutcome::Joined,
                1 => AddPathOutcome::Unreachable,
                2 => AddPathOutcome::Refused(
                    RefuseReason::from_code(r).expect("codes 1-7 are defined")
                ),
                _ => AddPathOutcome::TimedOut,
            }
        }),
        (v, proptest::collection::vec(any::<u8>(), 0..=MAX_RELAY_LEN)).prop_map(|(p, m)| {
            Frame::Relay {
                path: PathId::new(p),
                payload: Bytes::from(m),
            }
        }),
        proptest::collection::vec(any::<u8>(), crate::GRANT_LEN).prop_map(|g| Frame::Grant {
            grant: Bytes::from(g)
        }),
    ]
}

proptest! {
    #[test]
    fn round_trip_any_split(frames in proptest::collection::vec(frame(), 1..8), split in 1usize..40) {
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let mut reader = FrameReader::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(split) {
            reader.push(chunk);
            while let Some(f) = reader.next_frame().unwrap() {
                out.push(f);
            }
        }
        prop_assert_eq!(out, frames);
        prop_assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut reader = FrameReader::new();
        reader.push(&bytes);
        for _ in 0..10 {
            match reader.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn truncated_payload_is_typed_error(f in frame()) {
        let mut wire = BytesMut::new();
        f.encode(&mut wire);
        // Rewrite the frame with its payload cut by one byte and a consistent length.
        let mut peek = &wire[..];
        let t = varint::decode(&mut peek).unwrap();
        let len = varint::decode(&mut peek).unwrap() as usize;
        prop_assume!(len > 0);
        let payload = &peek[..len - 1];
        let mut cut = BytesMut::new();
        varint::encode(&mut cut, t);
        varint::encode(&mut cut, payload.len() as u64);
        cut.put_slice(payload);
        let mut reader = FrameReader::new();
        reader.push(&cut);
        let r = reader.next_frame();
        prop_assert!(r.is_err(), "{:?}", r);
    }
}

#[test]
fn unknown_type_rejected() {
    let mut wire = BytesMut::new();
    varint::encode(&mut wire, 0x3f);
    varint::encode(&mut wire, 0);
    let mut r = FrameReader::new();
    r.push(&wire);
    assert_eq!(r.next_frame(), Err(DecodeError::UnknownFrame(0x3f)));
}

#[test]
fn oversized_frame_rejected() {
    let mut wire = BytesMut::new();
    varint::encode(&mut wire, ty::CLOSE);
    varint::encode(&mut wire, 1 << 20);
    let mut r = FrameReader::new();
    r.push(&wire);
    assert_eq!(r.next_frame(), Err(DecodeError::FrameTooLarge(1 << 20)));
}

#[test]
fn trailing_bytes_rejected() {
    let mut wire = BytesMut::new();
    varint::encode(&mut wire, ty::PING);
    varint::encode(&mut wire, 2);
    wire.put_slice(&[1, 2]);
    let mut r = FrameReader::new();
    r.push(&wire);
    assert_eq!(r.next_frame(), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn overlapping_ack_ranges_rejected() {
    let mut p = BytesMut::new();
    varint::encode(&mut p, 4);
    p.put_u8(0);
    varint::encode(&mut p, 2);
    for (s, l) in [(10u64, 10u64), (15, 10)] {
        varint::encode(&mut p, s);
        varint::encode(&mut p, l);
    }
    let mut wire = BytesMut::new();
    varint::encode(&mut wire, ty::ACK);
    varint::encode(&mut wire, p.len() as u64);
    wire.put_slice(&p);
    let mut r = FrameReader::new();
    r.push(&wire);
    assert_eq!(
        r.next_frame(),
        Err(DecodeError::InvalidValue("ack ranges order"))
    );
}
