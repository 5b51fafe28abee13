//! Entry points for the coverage-guided fuzz targets in `fuzz/` (built only with
//! `--cfg fuzzing`, which `fuzz/run` sets). Each takes the fuzzer's bytes, drives a
//! sans-IO decoder or the session core with them, and panics only when a property
//! of the core breaks: a decoder that panics, a frame that does not survive
//! re-encoding, a piece that reaches past the 62-bit offset space, or buffered
//! bytes above the receive window.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kwik_presentation::{Dir, Presentation, PresentationConfig, Side};

use crate::proto::config::{SecondaryJoins, SessionConfig};
use crate::proto::handshake::{FirstFrame, on_first_frame};
use crate::proto::ids::{PathId, SessionId};
use crate::proto::session::SessionState;
use crate::proto::wire::frame::FrameReader;
use crate::proto::wire::segment::{Piece, SegmentReader};
use crate::proto::wire::varint::VARINT_MAX;

/// Splits `data` into chunks whose lengths come from the data itself (first byte of
/// each chunk, 1..=64), so the fuzzer also explores how the transport splits bytes.
fn chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&n, tail) = rest.split_first()?;
        let take = (usize::from(n % 64) + 1).min(tail.len());
        let (chunk, tail) = tail.split_at(take);
        rest = tail;
        Some(chunk)
    })
}

/// Control-stream bytes: every frame decoded re-encodes to bytes that decode to the
/// same frame; decoding stops at the first error (frame boundaries are lost then).
pub fn control_stream(data: &[u8]) {
    let mut reader = FrameReader::new();
    for chunk in chunks(data) {
        reader.push(chunk);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    let mut buf = BytesMut::new();
                    frame.encode(&mut buf);
                    let mut again = FrameReader::new();
                    again.push(&buf);
                    assert_eq!(again.next_frame(), Ok(Some(frame)));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Data-stream bytes: every piece lies inside the 62-bit offset space and pieces
/// of the stream follow each other without overlap.
pub fn data_stream(data: &[u8]) {
    let mut reader = SegmentReader::new();
    let mut out = Vec::new();
    for chunk in chunks(data) {
        if reader
            .feed(Bytes::copy_from_slice(chunk), &mut out)
            .is_err()
        {
            return;
        }
        for p in out.drain(..) {
            assert!(p.offset.saturating_add(p.data.len() as u64) <= VARINT_MAX + 1);
        }
    }
}

/// A server-side session fed what a hostile client can send after its first frame:
/// control frames and data pieces on the initial path, clock steps, and an
/// application that accepts and reads streams. Protocol errors are typed (the
/// session fails and ignores the rest); the buffered bytes never exceed the
/// receive window.
pub fn session(data: &[u8]) {
    let now0 = Instant::now();
    let mut now = now0;
    let config = SessionConfig::default();
    let mut ops = chunks(data);
    let Some(first) = ops.next() else { return };
    let mut reader = FrameReader::new();
    reader.push(first);
    let state = match reader.next_frame() {
        Ok(Some(frame)) => match on_first_frame(
            frame,
            &config,
            SecondaryJoins::default(),
            |_| false,
            || SessionId::from_bytes([7; 16]),
            now,
        ) {
            FirstFrame::Open { state, .. } => Some(state),
            _ => None,
        },
        _ => None,
    };
    let mut state = state.unwrap_or_else(|| {
        let presentation = Presentation::new(PresentationConfig::default(), now);
        Box::new(SessionState::new(
            SessionId::from_bytes([7; 16]),
            Side::Server,
            config.clone(),
            presentation,
            1 << 20,
            1 << 16,
            now,
        ))
    });
    let window = state.presentation().stats().session_window;
    let mut control = FrameReader::new();
    let mut segments = SegmentReader::new();
    let mut pieces: Vec<Piece> = Vec::new();
    let path = PathId::INITIAL;
    for op in ops {
        let Some((&kind, body)) = op.split_first() else {
            continue;
        };
        match kind % 5 {
            0 => {
                control.push(body);
                while let Ok(Some(frame)) = control.next_frame() {
                    if let Err(e) = state.handle_frame(path, frame, now) {
                        state.fail(&e);
                    }
                }
            }
            1 => {
                if segments
                    .feed(Bytes::copy_from_slice(body), &mut pieces)
                    .is_err()
                {
                    segments = SegmentReader::new();
                }
                for piece in pieces.drain(..) {
                    if let Err(e) = state.handle_piece(path, piece, now) {
                        state.fail(&e);
                    }
                }
            }
            2 => {
                let step = body.first().map_or(1, |&b| u64::from(b));
                now += Duration::from_millis(step * 10);
                state.handle_timeout(now);
            }
            3 => {
                while state.poll_control(path).is_some() {}
                while state.poll_data(path).is_some() {}
                while state.poll_event().is_some() {}
            }
            _ => {
                for dir in [Dir::Bi, Dir::Uni] {
                    while let Some(id) = state.accept(dir) {
                        while let Ok(Some(_)) = state.read_chunk(id, 1 << 16) {}
                        state.release_recv(id, None);
                    }
                }
            }
        }
        let stats = state.presentation().stats();
        assert!(
            stats.buffered_bytes <= window.max(stats.session_window),
            "{} bytes buffered, window {window}",
            stats.buffered_bytes
        );
    }
}
