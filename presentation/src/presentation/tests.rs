use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{
    BackpressureReason, BackpressureScope, BackpressureState, Fraction, OpenError, Presentation,
    PresentationConfig, PresentationEvent, ReadError, StreamId, WriteError, WriteOutcome,
};

fn chunk(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

fn read_all(p: &mut Presentation, id: StreamId) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(b)) = p.read_chunk(id, usize::MAX) {
        out.extend_from_slice(&b);
    }
    out
}

fn small(t: Instant) -> Presentation {
    let config = PresentationConfig::default()
        .session_window(1000)
        .max_session_window(1000)
        .stream_window(400)
        .max_stream_window(400)
        .gap_timeout(Duration::from_millis(100))
        .idle_stream_timeout(Duration::from_secs(1));
    Presentation::new(config, t)
}

#[test]
fn open_write_read_fin() {
    let t = Instant::now();
    let mut p = small(t);
    let id = StreamId::new(0);
    assert_eq!(p.open_stream(id), Ok(400));
    assert_eq!(p.open_stream(id), Ok(400), "idempotent");
    let o = p.write(id, 10, chunk(10, 10), true, t).unwrap();
    assert_eq!(
        o,
        WriteOutcome {
            new_bytes: 10,
            duplicate_bytes: 0
        }
    );
    assert_eq!(p.read_chunk(id, 100), Err(ReadError::Blocked));
    let o = p.write(id, 0, chunk(15, 0), false, t).unwrap();
    assert_eq!(
        o,
        WriteOutcome {
            new_bytes: 10,
            duplicate_bytes: 5
        }
    );
    assert_eq!(
        p.received_ranges(id),
        Some(std::iter::once(0..20).collect())
    );
    assert_eq!(read_all(&mut p, id), chunk(20, 0).to_vec());
    assert_eq!(p.read_chunk(id, 100), Ok(None));
    let mut buf = [0u8; 8];
    assert_eq!(p.read(id, &mut buf), Ok(0));
    let s = p.stats();
    assert_eq!(
        (s.bytes_received, s.bytes_read, s.duplicate_bytes),
        (20, 20, 5)
    );
}

#[test]
fn late_fin_makes_the_waiting_reader_ready() {
    let t = Instant::now();
    let mut p = small(t);
    let id = StreamId::new(0);
    p.open_stream(id).unwrap();
    p.write(id, 0, chunk(10, 0), false, t).unwrap();
    assert_eq!(read_all(&mut p, id).len(), 10);
    assert_eq!(p.read_chunk(id, 10), Err(ReadError::Blocked));
    assert_eq!(p.poll_readable(), None);
    // An empty FIN segment (or a duplicate carrying the FIN) ends the stream.
    p.write(id, 10, Bytes::new(), true, t).unwrap();
    assert_eq!(p.poll_readable(), Some(id));
    assert_eq!(p.poll_readable(), None, "once per blocked read");
    assert_eq!(p.read_chunk(id, 10), Ok(None));

    let id2 = StreamId::new(4);
    p.open_stream(id2).unwrap();
    p.write(id2, 0, chunk(10, 0), false, t).unwrap();
    assert_eq!(read_all(&mut p, id2).len(), 10);
    assert_eq!(p.read_chunk(id2, 10), Err(ReadError::Blocked));
    p.write(id2, 0, chunk(10, 0), true, t).unwrap();
    assert_eq!(p.poll_readable(), Some(id2));
    assert_eq!(p.poll_readable(), None);
    assert_eq!(p.read_chunk(id2, 10), Ok(None));
}

#[test]
fn events_are_queued_by_the_call_that_caused_them() {
    let t = Instant::now();
    let mut p = small(t);
    let id = StreamId::new(0);
    p.open_stream(id).unwrap();
    assert_eq!(p.poll_event(), None);
    p.write(id, 0, chunk(350, 0), false, t).unwrap();
    assert!(matches!(
        p.poll_event(),
        Some(PresentationEvent::Backpressure { .. })
    ));
    assert_eq!(p.poll_event(), None);
}

#[test]
fn reset_stop_and_remove_make_waiting_readers_ready() {
    let t = Instant::now();
    let mut p = small(t);
    let (a, b, c, d) = (
        StreamId::new(0),
        StreamId::new(4),
        StreamId::new(8),
        StreamId::new(12),
    );
    for id in [a, b, c, d] {
        p.open_stream(id).unwrap();
        assert_eq!(p.read_chunk(id, 10), Err(ReadError::Blocked));
        // A second blocked read does not queue the stream twice.
        assert_eq!(p.read_chunk(id, 10), Err(ReadError::Blocked));
    }
    p.reset(a, 20, 7, t).unwrap();
    p.stop(b);
    p.remove_stream(c);
    // Data behind a hole is not readable: the reader keeps waiting.
    p.write(d, 5, chunk(5, 0), false, t).unwrap();
    let ready: Vec<_> = std::iter::from_fn(|| p.poll_readable()).collect();
    assert_eq!(ready, vec![a, b, c]);
    assert_eq!(p.read_chunk(a, 10), Err(ReadError::Reset { error_code: 7 }));
    assert_eq!(p.read_chunk(b, 10), Err(ReadError::Stopped));
    assert_eq!(p.read_chunk(c, 10), Err(ReadError::UnknownStream(c)));
    p.write(d, 0, chunk(5, 0), false, t).unwrap();
    assert_eq!(p.poll_readable(), Some(d));
    assert_eq!(read_all(&mut p, d).len(), 10);
}

#[test]
fn protocol_violations_are_typed() {
    let t = Instant::now();
    let mut p = small(t);
    let id = StreamId::new(4);
    assert_eq!(
        p.write(id, 0, chunk(1, 0), false, t),
        Err(WriteError::UnknownStream(id))
    );
    p.open_stream(id).unwrap();
    assert!(matches!(
        p.write(id, 390, chunk(20, 0), false, t),
        Err(WriteError::FlowControl {
            limit: 400,
            end: 410,
            ..
        })
    ));
    p.write(id, 0, chunk(10, 0), true, t).unwrap();
    assert!(matches!(
        p.write(id, 0, chunk(11, 0), false, t),
        Err(WriteError::BeyondFinalSize { final_size: 10, .. })
    ));
    assert!(matches!(
        p.reset(id, 12, 0, t),
        Err(WriteError::FinalSizeChanged {
            previous: 10,
            new: 12,
            ..
        })
    ));
    assert!(matches!(
        p.write(id, u64::MAX - 1, chunk(10, 0), false, t),
        Err(WriteError::OffsetOverflow)
    ));
    assert_eq!(
        p.open_stream(StreamId::new(u64::MAX)),
        Err(OpenError::InvalidId(StreamId::new(u64::MAX)))
    );
    assert_eq!(p.stats().rejected_writes, 5);
    assert_eq!(p.stats().buffered_bytes, 10);
}

#[test]
fn session_flow_control_spans_streams() {
    let t = Instant::now();
    let mut p = small(t);
    let ids: Vec<_> = (0..4)
        .map(|i| StreamId::from_parts(i, crate::Side::Client, crate::Dir::Uni))
        .collect();
    for &id in &ids {
        p.open_stream(id).unwrap();
    }
    for &id in &ids[..2] {
        p.write(id, 0, chunk(400, 0), false, t).unwrap();
    }
    p.write(ids[2], 0, chunk(200, 0), false, t).unwrap();
    // 1000 received: the session window is exhausted.
    assert!(matches!(
        p.write(ids[3], 0, chunk(1, 0), false, t),
        Err(WriteError::SessionFlowControl {
            limit: 1000,
            received: 1001
        })
    ));
    // Reading releases credit once half the window is consumed.
    assert_eq!(read_all(&mut p, ids[0]).len(), 400);
    assert_eq!(p.session_credit(), 1000);
    assert_eq!(read_all(&mut p, ids[2]).len(), 200);
    assert_eq!(p.session_credit(), 1600);
    let events = p.drain_events();
    assert!(events.contains(&PresentationEvent::SessionCredit { max_data: 1600 }));
    assert!(events.contains(&PresentationEvent::StreamCredit {
        stream: ids[0],
        max_offset: 800
    }));
    p.write(ids[3], 0, chunk(1, 0), false, t).unwrap();
}

#[test]
fn backpressure_withholds_credit_with_hysteresis() {
    let t = Instant::now();
    let mut p = small(t);
    let id = StreamId::new(0);
    p.open_stream(id).unwrap();
    p.write(id, 0, chunk(300, 0), false, t).unwrap();
    let on = PresentationEvent::Backpressure {
        scope: BackpressureScope::Stream(id),
        state: BackpressureState::On(BackpressureReason::SlowReader),
    };
    assert_eq!(p.drain_events(), vec![on]);
    // Read 120 of 300: 180 buffered (45 %), below the off threshold (50 %).
    match p.read_chunk(id, 120) {
        Ok(Some(b)) => assert_eq!(b.len(), 120),
        other => panic!("unexpected {other:?}"),
    }
    let events = p.drain_events();
    assert!(events.contains(&PresentationEvent::Backpressure {
        scope: BackpressureScope::Stream(id),
        state: BackpressureState::Off,
    }));
    let s = p.stats();
    assert_eq!(s.stream_backpressure.activations, 1);
    assert_eq!(s.stream_backpressure.slow_reader, 1);

    // A hole in front of the data: reason is the gap.
    let g = StreamId::new(8);
    p.open_stream(g).unwrap();
    p.write(g, 10, chunk(300, 0), false, t).unwrap();
    assert!(p.drain_events().contains(&PresentationEvent::Backpressure {
        scope: BackpressureScope::Stream(g),
        state: BackpressureState::On(BackpressureReason::HeadOfLineGap),
    }));
}

#[test]
fn gap_timeout_and_idle_cleanup() {
    let t = Instant::now();
    let mut p = small(t);
    let id = StreamId::new(0);
    p.open_stream(id).unwrap();
    p.write(id, 50, chunk(50, 0), true, t).unwrap();
    assert_eq!(p.next_deadline(), Some(t + Duration::from_millis(100)));
    p.handle_timeout(t + Duration::from_millis(50));
    assert!(
        p.drain_events()
            .iter()
            .all(|e| !matches!(e, PresentationEvent::GapTimeout { .. }))
    );
    p.handle_timeout(t + Duration::from_millis(100));
    assert_eq!(
        p.drain_events(),
        vec![PresentationEvent::GapTimeout {
            stream: id,
            gap: 0..50,
            age: Duration::from_millis(100)
        }]
    );
    assert_eq!(p.next_deadline(), Some(t + Duration::from_millis(200)));
    let later = t + Duration::from_millis(150);
    p.write(id, 0, chunk(50, 0), false, later).unwrap();
    assert_eq!(read_all(&mut p, id).len(), 100);
    assert_eq!(p.read_chunk(id, 1), Ok(None));
    // Closed: removed after idle_stream_timeout; late duplicates are absorbed.
    assert_eq!(p.next_deadline(), Some(later + Duration::from_secs(1)));
    p.handle_timeout(later + Duration::from_secs(1));
    assert_eq!(p.stream_credit(id), None);
    assert_eq!(
        p.write(id, 0, chunk(10, 0), false, later),
        Ok(WriteOutcome {
            new_bytes: 0,
            duplicate_bytes: 10
        })
    );
    assert_eq!(p.open_stream(id), Err(OpenError::Closed(id)));
    let s = p.stats();
    assert_eq!((s.open_streams, s.gap_timeouts, s.late_bytes), (0, 1, 10));
}

#[test]
fn reset_stop_and_remove_release_window() {
    let t = Instant::now();
    let mut p = small(t);
    let (a, b, c) = (StreamId::new(0), StreamId::new(4), StreamId::new(8));
    for id in [a, b, c] {
        p.open_stream(id).unwrap();
        p.write(id, 0, chunk(200, 0), false, t).unwrap();
    }
    p.reset(a, 250, 42, t).unwrap();
    assert_eq!(
        p.read_chunk(a, 10),
        Err(ReadError::Reset { error_code: 42 })
    );
    p.stop(b);
    assert_eq!(p.read_chunk(b, 10), Err(ReadError::Stopped));
    let o = p.write(b, 150, chunk(100, 0), true, t).unwrap();
    assert_eq!(
        o,
        WriteOutcome {
            new_bytes: 50,
            duplicate_bytes: 50
        }
    );
    p.remove_stream(c);
    assert_eq!(p.read_chunk(c, 10), Err(ReadError::UnknownStream(c)));
    let s = p.stats();
    assert_eq!(s.buffered_bytes, 0);
    assert_eq!(s.session_received, 250 + 250 + 200);
    assert_eq!(s.discarded_bytes, 200 + 200 + 50 + 200);
    // 700 released; credit is raised when half a window (500) was consumed since
    // the last raise: once, at 500 consumed.
    assert_eq!(s.session_credit, 500 + 1000);
}

#[test]
fn blocked_read_is_reported_ready_then_reads() {
    let t = Instant::now();
    let mut p = small(t);
    let id = StreamId::new(0);
    p.open_stream(id).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(p.read(id, &mut buf), Err(ReadError::Blocked));
    assert_eq!(p.poll_readable(), None);
    p.write(id, 0, chunk(5, 1), true, t).unwrap();
    assert_eq!(p.poll_readable(), Some(id));
    assert_eq!(p.read(id, &mut buf), Ok(5));
    assert_eq!(&buf[..5], &chunk(5, 1)[..]);
    assert_eq!(p.read(id, &mut buf), Ok(0));
    assert_eq!(p.poll_readable(), None);
}

#[test]
fn window_auto_tunes_when_reader_keeps_up() {
    let t = Instant::now();
    let config = PresentationConfig::default()
        .session_window(1000)
        .max_session_window(8000)
        .stream_window(1000)
        .max_stream_window(8000)
        .backpressure_thresholds(Fraction::new(1.0).unwrap(), Fraction::new(1.0).unwrap());
    let mut p = Presentation::new(config, t);
    let id = StreamId::new(0);
    p.open_stream(id).unwrap();
    let mut offset = 0;
    for _ in 0..20 {
        p.write(id, offset, chunk(500, 0), false, t).unwrap();
        offset += 500;
        assert_eq!(read_all(&mut p, id).len(), 500);
    }
    let s = p.stats();
    assert!(s.session_window_growths >= 2, "{s:?}");
    assert!(s.session_window > 1000);
    assert!(p.stream_stats(id).unwrap().window > 1000);
}

/// Stream-window auto-tuning on an explicit clock, one step a second (so the
/// "two raises within 2 RTT" test never fires). Each step the sender sends
/// 100-byte pieces up to its credit (or 100 bytes short of it) while a reader
/// that keeps up lags 60 % of a window behind (bytes behind a gap), then reads
/// what it can; a slow reader reads only 100 bytes a step.
#[test]
fn stream_window_grows_only_when_the_sender_runs_out_and_the_reader_keeps_up() {
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// The sender uses the whole credit; then the reader catches up.
        Exhausted,
        /// The sender stops 100 bytes short of its credit; the reader catches up.
        CreditLeft,
        /// The sender uses the whole credit; the reader reads 100 bytes a step.
        SlowReader,
    }
    let config = PresentationConfig::default()
        .session_window(1 << 20)
        .max_session_window(1 << 20)
        .stream_window(1000)
        .max_stream_window(8000);
    for (step, want) in [
        (Step::Exhausted, 8000),
        (Step::CreditLeft, 1000),
        (Step::SlowReader, 1000),
    ] {
        let t = Instant::now();
        let mut p = Presentation::new(config.clone(), t);
        let id = StreamId::new(0);
        p.open_stream(id).unwrap();
        let (mut sent, mut read) = (0u64, 0u64);
        // Reads until `read` reaches `max` or nothing more is readable.
        let read_up_to = |p: &mut Presentation, read: &mut u64, max: u64| {
            while *read < max {
                match p.read_chunk(id, (max - *read) as usize) {
                    Ok(Some(b)) => *read += b.len() as u64,
                    _ => break,
                }
            }
        };
        for second in 1..=10 {
            let now = t + Duration::from_secs(second);
            let s = p.stream_stats(id).unwrap();
            let end = match step {
                Step::CreditLeft => s.credit - 100,
                Step::Exhausted | Step::SlowReader => s.credit,
            };
            while sent < end {
                let len = (end - sent).min(100);
                p.write(id, sent, chunk(len as usize, 0), false, now)
                    .unwrap();
                sent += len;
                if !matches!(step, Step::SlowReader) {
                    read_up_to(&mut p, &mut read, sent.saturating_sub(s.window * 6 / 10));
                }
            }
            match step {
                Step::SlowReader => {
                    let target = read + 100;
                    read_up_to(&mut p, &mut read, target);
                }
                Step::Exhausted | Step::CreditLeft => {
                    // In two parts half a second apart, so two raises in one
                    // catch-up never look like "two raises within 2 RTT".
                    read_up_to(&mut p, &mut read, sent - s.window / 2);
                    p.handle_timeout(now + Duration::from_millis(500));
                    read_up_to(&mut p, &mut read, sent);
                }
            }
        }
        let s = p.stream_stats(id).unwrap();
        assert_eq!(s.window, want, "{step:?}: {s:?}");
    }
}

/// Two paths (one sends every chunk, the other the even ones: duplicates),
/// last chunk first, their segments interleaved, over four streams; the reader
/// reads whenever a stream is reported ready, 7000 bytes at a time.
#[test]
fn interleaved_paths_and_reader() {
    let t = Instant::now();
    let mut p = Presentation::new(PresentationConfig::default(), t);
    let ids: Vec<_> = (0..4).map(StreamId::new).collect();
    let mut got = vec![Vec::new(); ids.len()];
    let mut buf = vec![0u8; 7000];
    for &id in &ids {
        p.open_stream(id).unwrap();
        assert_eq!(p.read(id, &mut buf), Err(ReadError::Blocked));
    }
    let data = chunk(300_000, 3);
    let n = data.len().div_ceil(1000);
    let mut finished = 0;
    for i in (0..n).rev() {
        let start = i * 1000;
        let end = (start + 1000).min(data.len());
        for path in 0..2 {
            for &id in &ids {
                if path == 0 || i % 2 == 0 {
                    let slice = data.slice(start..end);
                    p.write(id, start as u64, slice, end == data.len(), t)
                        .unwrap();
                }
            }
        }
        while let Some(id) = p.poll_readable() {
            let out = &mut got[id.into_inner() as usize];
            loop {
                match p.read(id, &mut buf) {
                    Ok(0) => {
                        finished += 1;
                        break;
                    }
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(ReadError::Blocked) => break,
                    Err(e) => panic!("read failed: {e}"),
                }
            }
        }
    }
    assert_eq!(finished, ids.len());
    for out in &got {
        assert_eq!(out, &data.to_vec());
    }
    let s = p.stats();
    assert_eq!(s.bytes_received, 4 * 300_000);
    assert_eq!(s.bytes_read, 4 * 300_000);
    assert_eq!(s.buffered_bytes, 0);
}
