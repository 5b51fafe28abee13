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
        (sid, v.clone(), v.clone(), v.clone(), 1..VARINT_MAX).prop_map(|(s, p, a, b, ver)| {
            Frame::Welcome {
                session: s,
                path: PathId::new(p),
                max_data: a,
                stream_credit: b,
                version: ver,
            }
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
        (
            proptest::option::of(stream()),
            any::<bool>(),
            proptest::option::of(0u64..5)
        )
            .prop_map(|(s, on, r)| Frame::Backpressure {
                stream: s,
                on,
                reason: r.map(|c| BackpressureReason::from_code(c).expect("codes 0-4"))
            }),
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
        // A version-2 field cut off whole leaves the version-1 frame (see
        // `version_1_forms_decode`).
        prop_assume!(!matches!(f, Frame::Welcome { version, .. } if version > BASE_VERSION));
        prop_assume!(!matches!(f, Frame::Backpressure { reason: Some(_), .. }));
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

/// The frames version 2 extended keep their version-1 bytes when the new field
/// is absent, and a version-2 field decodes.
#[test]
fn version_1_forms_decode() {
    let decode = |bytes: &[u8]| {
        let mut r = FrameReader::new();
        r.push(bytes);
        r.next_frame()
    };
    // BACKPRESSURE, stream 4, on: version 1 has no reason.
    assert_eq!(
        decode(&[0x13, 3, 1, 4, 1]),
        Ok(Some(Frame::Backpressure {
            stream: Some(StreamId::new(4)),
            on: true,
            reason: None
        }))
    );
    assert_eq!(
        decode(&[0x13, 3, 0, 1, 1]),
        Ok(Some(Frame::Backpressure {
            stream: None,
            on: true,
            reason: Some(BackpressureReason::SlowReader)
        }))
    );
    assert_eq!(
        decode(&[0x13, 3, 0, 1, 9]),
        Err(DecodeError::InvalidValue("backpressure reason"))
    );
    let mut welcome = vec![0x03, 19];
    welcome.extend_from_slice(&[7; 16]);
    welcome.extend_from_slice(&[0, 5, 6]);
    let v1 = Frame::Welcome {
        session: SessionId::from_bytes([7; 16]),
        path: PathId::INITIAL,
        max_data: 5,
        stream_credit: 6,
        version: BASE_VERSION,
    };
    assert_eq!(decode(&welcome), Ok(Some(v1.clone())));
    let mut wire = BytesMut::new();
    v1.encode(&mut wire);
    assert_eq!(&wire[..], &welcome[..], "a version-1 WELCOME is unchanged");
    welcome[1] = 20;
    welcome.push(2);
    assert!(matches!(
        decode(&welcome),
        Ok(Some(Frame::Welcome { version: 2, .. }))
    ));
    // A version field that names version 1 (or 0) is not a version-2 field.
    *welcome.last_mut().unwrap() = 1;
    assert_eq!(
        decode(&welcome),
        Err(DecodeError::InvalidValue("welcome version"))
    );
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
