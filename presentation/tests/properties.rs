//! Property tests against simple reference models.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kwik_presentation::{
    InsertError, Presentation, PresentationConfig, ReadError, StreamBuffer, StreamId, StreamRead,
    WriteError,
};
use proptest::prelude::*;

/// Content of byte `offset` of stream `stream`: every segment of a stream agrees.
fn byte_at(stream: u64, offset: u64) -> u8 {
    (offset.wrapping_mul(31) ^ stream.wrapping_mul(7) ^ (offset >> 8)) as u8
}

fn segment(stream: u64, offset: u64, len: u64) -> Bytes {
    (offset..offset + len)
        .map(|o| byte_at(stream, o))
        .collect::<Vec<_>>()
        .into()
}

/// A byte string, its cut into chunks, and a delivery schedule: every chunk at least
/// once, some several times, plus overlapping extra segments, in random order.
fn delivery() -> impl Strategy<Value = (u64, Vec<(u64, u64)>, Vec<usize>)> {
    (1u64..3000)
        .prop_flat_map(|len| {
            let cuts = proptest::collection::vec(1..len.max(2), 0..40);
            let extras = proptest::collection::vec((0..len, 1u64..500), 0..20);
            let dups = proptest::collection::vec(0usize..3, 60);
            (Just(len), cuts, extras, dups)
        })
        .prop_flat_map(|(len, mut cuts, extras, dups)| {
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            cuts.dedup();
            let mut segs: Vec<(u64, u64)> = Vec::new();
            for (i, w) in cuts.windows(2).enumerate() {
                for _ in 0..=dups[i % dups.len()] {
                    segs.push((w[0], w[1] - w[0]));
                }
            }
            for (o, l) in extras {
                segs.push((o, l.min(len - o)));
            }
            let n = segs.len();
            (
                Just(len),
                Just(segs),
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any permutation, overlap and duplication of the chunks reassembles to exactly
    /// the original bytes; every byte is counted new exactly once.
    #[test]
    fn stream_buffer_reassembles_exactly(
        (len, segs, order) in delivery(),
        read_every in 1usize..8,
        read_max in 1usize..700,
    ) {
        let now = Instant::now();
        let mut buf = StreamBuffer::new(len);
        let mut out = Vec::new();
        let (mut new, mut dup) = (0, 0);
        for (step, &i) in order.iter().enumerate() {
            let (o, l) = segs[i];
            let fin = o + l == len;
            let r = buf.insert(o, segment(1, o, l), fin, now).unwrap();
            new += r.new_bytes;
            dup += r.duplicate_bytes;
            prop_assert!(buf.buffered_bytes() <= len - buf.read_position());
            if step % read_every == 0 {
                while let StreamRead::Data(c) = buf.read_chunk(read_max) {
                    prop_assert!(c.len() <= read_max);
                    out.extend_from_slice(&c);
                }
            }
        }
        while let StreamRead::Data(c) = buf.read_chunk(read_max) {
            out.extend_from_slice(&c);
        }
        prop_assert_eq!(out, segment(1, 0, len).to_vec());
        prop_assert_eq!(buf.read_chunk(1), StreamRead::Finished);
        prop_assert_eq!(new, len);
        prop_assert_eq!(new + dup, segs.iter().map(|s| s.1).sum::<u64>());
        prop_assert_eq!(buf.buffered_bytes(), 0);
        prop_assert!(buf.gaps().is_empty());
    }

    /// Random offsets, lengths, FIN positions and resets never panic, and a refused
    /// segment leaves the buffer unchanged.
    #[test]
    fn stream_buffer_survives_garbage(
        ops in proptest::collection::vec(
            (any::<u64>(), 0u64..2000, any::<bool>(), 0u8..10, 0u64..5000), 1..60),
    ) {
        let now = Instant::now();
        let mut buf = StreamBuffer::new(4096);
        buf.set_max_segments(16);
        for (raw_offset, len, fin, kind, small) in ops {
            let offset = if kind < 7 { small } else { raw_offset };
            let before = (buf.buffered_bytes(), buf.highest_received(), buf.final_size());
            match kind {
                9 => {
                    if buf.reset(small, 3).is_err() {
                        prop_assert_eq!(before, (buf.buffered_bytes(), buf.highest_received(), buf.final_size()));
                    }
                }
                8 => { buf.stop(); }
                _ => {
                    let data = segment(2, offset.min(1 << 40), len);
                    match buf.insert(offset, data, fin, now) {
                        Ok(r) => prop_assert!(r.new_bytes + r.duplicate_bytes == len),
                        Err(e) => {
                            let _: InsertError = e;
                            prop_assert_eq!(before.0, buf.buffered_bytes());
                            prop_assert_eq!(before.1, buf.highest_received());
                            prop_assert_eq!(before.2, buf.final_size());
                        }
                    }
                }
            }
            prop_assert!(buf.buffered_bytes() <= 4096);
            prop_assert!(buf.highest_received() <= 4096 || buf.is_reset());
            let _ = buf.read_chunk(100);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write {
        stream: usize,
        offset: u64,
        len: u64,
        fin: bool,
    },
    Read {
        stream: usize,
        max: usize,
    },
    Reset {
        stream: usize,
        final_size: u64,
    },
    Stop {
        stream: usize,
    },
    Remove {
        stream: usize,
    },
    Timeout {
        advance_ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, 0u64..3000, 0u64..700, proptest::bool::weighted(0.1))
            .prop_map(|(stream, offset, len, fin)| Op::Write { stream, offset, len, fin }),
        4 => (0usize..3, 1usize..900).prop_map(|(stream, max)| Op::Read { stream, max }),
        1 => (0usize..3, 0u64..3000).prop_map(|(stream, final_size)| Op::Reset { stream, final_size }),
        1 => (0usize..3).prop_map(|stream| Op::Stop { stream }),
        1 => (0usize..3).prop_map(|stream| Op::Remove { stream }),
        1 => (0u64..300).prop_map(|advance_ms| Op::Timeout { advance_ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random traffic on three streams against the window model: data read is
    /// exactly the stream content at the read position; the window never goes
    /// negative; credits never shrink; buffered bytes never exceed the window; a
    /// write is refused exactly when it passes a credit the model knows.
    #[test]
    fn presentation_keeps_window_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        let t0 = Instant::now();
        let config = PresentationConfig::default()
            .session_window(2000)
            .max_session_window(8000)
            .stream_window(1000)
            .max_stream_window(4000)
            .gap_timeout(Duration::from_millis(100))
            .idle_stream_timeout(Duration::from_millis(500));
        let mut p = Presentation::new(config, t0);
        let ids: Vec<StreamId> = (0..3).map(|i| StreamId::new(i * 4 + 2)).collect();
        for &id in &ids {
            p.open_stream(id).unwrap();
        }
        let mut now = t0;
        let mut read_pos = [0u64; 3];
        let mut highest = [0u64; 3];
        // Removed explicitly, or closed (end, reset or stop seen) and so removable
        // by idle cleanup.
        let mut removed = [false; 3];
        let mut last_stream_credit = [1000u64; 3];
        let mut last_session_credit = p.session_credit();
        for op in ops {
            match op {
                Op::Write { stream, offset, len, fin } => {
                    let id = ids[stream];
                    let credit = p.stream_credit(id);
                    let session = p.stats();
                    let end = offset + len;
                    let r = p.write(id, offset, segment(id.into_inner(), offset, len), fin, now);
                    match (&r, credit) {
                        (Ok(o), Some(credit)) => {
                            prop_assert!(end <= credit, "accepted past credit");
                            prop_assert_eq!(o.new_bytes + o.duplicate_bytes, len);
                            let delta = end.saturating_sub(highest[stream]);
                            prop_assert!(session.session_received + delta <= session.session_credit);
                            highest[stream] = highest[stream].max(end);
                        }
                        (Err(WriteError::FlowControl { limit, .. }), Some(credit)) => {
                            prop_assert_eq!(*limit, credit);
                            prop_assert!(end > credit);
                        }
                        (Err(WriteError::SessionFlowControl { limit, received }), Some(_)) => {
                            prop_assert_eq!(*limit, session.session_credit);
                            prop_assert!(*received > *limit);
                        }
                        (Err(WriteError::BeyondFinalSize { .. } | WriteError::FinalSizeChanged { .. }
                            | WriteError::FinalSizeBelowReceived { .. }), Some(_)) => {}
                        (Ok(o), None) => prop_assert_eq!(o.new_bytes, 0),
                        (other, _) => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
                Op::Read { stream, max } => {
                    let id = ids[stream];
                    match p.read_chunk(id, max) {
                        Ok(Some(b)) => {
                            prop_assert!(!b.is_empty() && b.len() <= max);
                            prop_assert_eq!(&b[..], &segment(id.into_inner(), read_pos[stream], b.len() as u64)[..]);
                            read_pos[stream] += b.len() as u64;
                        }
                        Err(ReadError::Blocked) => {}
                        Err(ReadError::UnknownStream(_)) => prop_assert!(removed[stream]),
                        Ok(None) | Err(ReadError::Reset { .. } | ReadError::Stopped) => {
                            removed[stream] = true;
                        }
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Op::Reset { stream, final_size } => {
                    // A final size counts against the session credit whenever the
                    // stream still exists, even if the reader stopped it already.
                    let known = p.stream_stats(ids[stream]).is_some();
                    if p.reset(ids[stream], final_size, 9, now).is_ok() && known {
                        highest[stream] = highest[stream].max(final_size);
                    }
                }
                Op::Stop { stream } => {
                    p.stop(ids[stream]);
                    removed[stream] = true;
                }
                Op::Remove { stream } => {
                    p.remove_stream(ids[stream]);
                    removed[stream] = true;
                }
                Op::Timeout { advance_ms } => {
                    now += Duration::from_millis(advance_ms);
                    p.handle_timeout(now);
                    if let Some(d) = p.next_deadline() {
                        prop_assert!(d + Duration::from_millis(500) > now);
                    }
                }
            }
            let s = p.stats();
            prop_assert!(s.session_received <= s.session_credit, "window negative");
            prop_assert!(s.session_credit >= last_session_credit, "session credit shrank");
            last_session_credit = s.session_credit;
            prop_assert!(s.buffered_bytes <= s.session_window, "buffered beyond window");
            prop_assert!(s.readable_bytes <= s.buffered_bytes);
            let mut buffered = 0;
            for (i, &id) in ids.iter().enumerate() {
                if let Some(st) = p.stream_stats(id) {
                    prop_assert!(st.credit >= last_stream_credit[i], "stream credit shrank");
                    last_stream_credit[i] = st.credit;
                    prop_assert!(st.highest_received <= st.credit);
                    prop_assert!(st.buffered_bytes <= st.window);
                    prop_assert!(st.read_position + st.buffered_bytes <= st.highest_received.max(st.read_position));
                    buffered += st.buffered_bytes;
                }
            }
            prop_assert_eq!(buffered, s.buffered_bytes);
            let _ = p.drain_events();
        }
    }
}
