//! The send side of a session: one [`SendBuffer`] per local send stream, the
//! peer's credits, the queues of what to re-send (a dead path's share) and
//! what to fill in (positioned writes behind a stream's cursor), and the
//! round-robin order in which streams get a path's next chunk.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use bytes::Bytes;
use kwik_presentation::StreamId;

use super::send_buffer::{Outgoing, PositionError, SendBuffer};
use crate::proto::error::{DelegateError, WriteError};
use crate::proto::ids::{PathId, SessionId};
use crate::proto::multiserver::grant::Grant;
use crate::proto::multiserver::token::TokenKey;
use crate::proto::scheduler::{self, PathView, Scheduler};
use crate::proto::wire::frame::Frame;
use crate::proto::wire::varint::VARINT_MAX;

/// Figures of one send stream ([`SendStream::stats`](crate::SendStream::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendStreamStats {
    /// Bytes the application wrote (the highest offset written).
    pub written: u64,
    /// Payload bytes handed to paths: first sends, redundant copies, re-sends.
    pub bytes_sent: u64,
    /// Of `bytes_sent`, re-sends of dead paths' data.
    pub bytes_resent: u64,
    /// Bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Bytes written and not yet acknowledged (kept for re-sending).
    pub retained: u64,
    /// The peer's credit: the highest offset this stream may send up to.
    pub credit: u64,
    /// The stream's scheduling priority (higher goes first on a saturated path).
    pub priority: i32,
}

/// One chunk of stream data for a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DataTransmit {
    pub(crate) stream: StreamId,
    pub(crate) offset: u64,
    pub(crate) data: Bytes,
    pub(crate) fin: bool,
    /// The stream's priority: the driver gives the path's QUIC stream the
    /// same, so QUIC sends what it buffered in priority order as well.
    pub(crate) priority: i32,
}

/// A chunk [`SendSide::poll_data`] picked for a path.
#[derive(Debug)]
pub(crate) struct Picked {
    pub(crate) stream: StreamId,
    pub(crate) out: Outgoing,
    /// A re-send of a dead path's bytes.
    pub(crate) resend: bool,
    /// The stream's priority (filled in by `poll_data`).
    pub(crate) priority: i32,
}

/// What an ACK did to a send stream.
#[derive(Debug)]
pub(crate) struct Acked {
    /// Bytes no longer retained.
    pub(crate) bytes: u64,
    /// Bytes delivered, by the path that carried them.
    pub(crate) released: Vec<(PathId, u64)>,
    /// Every byte and the FIN are acknowledged: the stream is done.
    pub(crate) complete: bool,
}

/// Streams [`SendSide::may_have_data`] looks at one by one; with more it wakes.
const SCAN_LIMIT: usize = 32;

/// The send streams of a session and the peer's credits.
#[derive(Debug)]
pub(crate) struct SendSide {
    /// Boxed: the table grows in steps of whole buckets (four for a first
    /// stream), and most sessions send on one stream or a few.
    streams: HashMap<StreamId, Box<SendBuffer>>,
    order: VecDeque<StreamId>,
    resend: VecDeque<(StreamId, u64)>,
    /// Positioned writes behind a stream's send cursor, to schedule.
    fill: VecDeque<(StreamId, u64)>,
    /// Stop-sending codes for streams the peer stopped.
    stopped: HashMap<StreamId, u64>,
    peer_max_data: u64,
    peer_stream_credit: u64,
    written_total: u64,
    max_segment: usize,
    /// Some stream had a priority other than the default (picks compare them).
    prioritised: bool,
}

impl SendSide {
    /// `peer_max_data` and `peer_stream_credit` come from the peer's OPEN or
    /// WELCOME.
    pub(crate) fn new(peer_max_data: u64, peer_stream_credit: u64, max_segment: usize) -> Self {
        Self {
            streams: HashMap::new(),
            order: VecDeque::new(),
            resend: VecDeque::new(),
            fill: VecDeque::new(),
            stopped: HashMap::new(),
            peer_max_data,
            peer_stream_credit,
            written_total: 0,
            max_segment,
            prioritised: false,
        }
    }

    /// A new send stream scheduled with `policy`.
    pub(crate) fn insert(&mut self, id: StreamId, policy: Scheduler) {
        self.streams.insert(
            id,
            Box::new(SendBuffer::new(
                policy,
                self.peer_stream_credit,
                self.max_segment,
            )),
        );
        self.order.push_back(id);
    }

    /// The error a write to `stream` gets once the peer asked it to stop.
    fn not_stopped(&self, stream: StreamId) -> Result<(), WriteError> {
        match self.stopped.get(&stream) {
            Some(code) => Err(WriteError::Stopped { error_code: *code }),
            None => Ok(()),
        }
    }

    /// The buffer of a stream that exists and was not reset.
    fn live_mut(&mut self, stream: StreamId) -> Result<&mut SendBuffer, WriteError> {
        match self.streams.get_mut(&stream) {
            Some(buf) if buf.reset.is_none() => Ok(buf),
            _ => Err(WriteError::ClosedStream),
        }
    }

    fn session_room(&self) -> u64 {
        self.peer_max_data.saturating_sub(self.written_total)
    }

    /// Bytes `stream` may accept now (0: blocked on credit).
    pub(crate) fn writable(&self, stream: StreamId) -> Result<u64, WriteError> {
        self.not_stopped(stream)?;
        let buf = self.streams.get(&stream).ok_or(WriteError::ClosedStream)?;
        if buf.is_finished() || buf.reset.is_some() {
            return Err(WriteError::ClosedStream);
        }
        Ok(buf.stream_room().min(self.session_room()))
    }

    /// Appends a copy of `data` (up to the credit). Returns bytes accepted.
    pub(crate) fn write_copy(
        &mut self,
        stream: StreamId,
        data: &[u8],
    ) -> Result<usize, WriteError> {
        let room = self.writable(stream)?;
        let n = (data.len() as u64).min(room) as usize;
        if n > 0 {
            // `writable` succeeded, so the stream exists.
            if let Some(buf) = self.streams.get_mut(&stream) {
                buf.push_copy(&data[..n]);
            }
            self.written_total += n as u64;
        }
        Ok(n)
    }

    /// Appends `data` without copying (up to the credit). Returns what was not
    /// accepted (empty when everything was).
    pub(crate) fn write_bytes(
        &mut self,
        stream: StreamId,
        mut data: Bytes,
    ) -> Result<Bytes, WriteError> {
        let room = self.writable(stream)?;
        let n = (data.len() as u64).min(room) as usize;
        if n > 0 {
            let head = data.split_to(n);
            if let Some(buf) = self.streams.get_mut(&stream) {
                buf.push_bytes(head);
            }
            self.written_total += n as u64;
        }
        Ok(data)
    }

    /// Changes the scheduling policy of a stream from its next chunk on.
    pub(crate) fn set_scheduler(
        &mut self,
        stream: StreamId,
        policy: Scheduler,
    ) -> Result<(), WriteError> {
        let buf = self.live_mut(stream)?;
        buf.set_policy(policy);
        Ok(())
    }

    /// Ends the stream after what was written.
    pub(crate) fn finish(&mut self, stream: StreamId) -> Result<(), WriteError> {
        self.not_stopped(stream)?;
        let buf = self.live_mut(stream)?;
        if buf.is_finished() {
            return Err(WriteError::ClosedStream);
        }
        buf.finish();
        Ok(())
    }

    /// Writes `data` at `offset` of `stream` (up to the credit): at or past the
    /// write offset (a jump leaves a hole), or into holes. Returns what was
    /// not accepted.
    pub(crate) fn write_at(
        &mut self,
        stream: StreamId,
        offset: u64,
        mut data: Bytes,
    ) -> Result<Bytes, WriteError> {
        self.not_stopped(stream)?;
        let session_room = self.session_room();
        let buf = self.live_mut(stream)?;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= VARINT_MAX)
            .ok_or(WriteError::BeyondFinalSize)?;
        if data.is_empty() {
            return Ok(data);
        }
        buf.check_position(&(offset..end)).map_err(|e| match e {
            PositionError::AlreadyWritten => WriteError::AlreadyWritten { offset },
            PositionError::BeyondFinalSize => WriteError::BeyondFinalSize,
        })?;
        let limit = end
            .min(buf.max_offset())
            .min(buf.write_offset().saturating_add(session_room));
        if limit <= offset {
            return Ok(data);
        }
        let head = data.split_to((limit - offset) as usize);
        let growth = buf.growth_to(limit);
        for key in buf.write_at(offset, head) {
            self.fill.push_back((stream, key));
        }
        self.written_total += growth;
        Ok(data)
    }

    /// Leaves `range` of `stream` to the secondary on `path`: reserves session
    /// credit up to the range's end, signs a grant under `key` for `session`
    /// expiring at `expiry_ms`. Returns the grant and its signed form;
    /// `Ok(None)`: not enough session credit yet.
    pub(crate) fn delegate(
        &mut self,
        stream: StreamId,
        range: Range<u64>,
        path: PathId,
        (key, session): (&TokenKey, SessionId),
        expiry_ms: u64,
    ) -> Result<Option<(Grant, Bytes)>, DelegateError> {
        if range.is_empty() || range.end > VARINT_MAX {
            return Err(DelegateError::EmptyRange);
        }
        let session_room = self.session_room();
        let buf = self
            .streams
            .get_mut(&stream)
            .filter(|b| b.reset.is_none())
            .ok_or(DelegateError::UnknownStream(stream))?;
        buf.check_position(&range).map_err(|e| match e {
            PositionError::AlreadyWritten => DelegateError::AlreadyWritten,
            PositionError::BeyondFinalSize => DelegateError::BeyondFinalSize,
        })?;
        let growth = buf.growth_to(range.end);
        if growth > session_room {
            return Ok(None);
        }
        let grant = Grant::new(path, stream, range.clone(), expiry_ms);
        let signed = grant.sign(key, session);
        buf.delegate(path, range, signed.clone(), expiry_ms);
        self.written_total += growth;
        Ok(Some((grant, signed)))
    }

    /// The parts of `range` of `stream` that the peer has not acknowledged and
    /// that this side does not hold itself.
    pub(crate) fn missing(&self, stream: StreamId, range: &Range<u64>) -> Vec<Range<u64>> {
        self.streams
            .get(&stream)
            .map(|b| b.missing(range))
            .unwrap_or_default()
    }

    /// The ranges delegated to `path` that the peer has not acknowledged.
    pub(crate) fn missing_from(&self, path: PathId) -> Vec<(StreamId, Range<u64>)> {
        let mut out: Vec<(StreamId, Range<u64>)> = self
            .streams
            .iter()
            .flat_map(|(id, b)| b.missing_from(path).into_iter().map(|r| (*id, r)))
            .collect();
        out.sort_by_key(|(id, r)| (*id, r.start));
        out
    }

    /// Abandons the stream: retained data is dropped. Returns the final size
    /// and the bytes that left the paths.
    pub(crate) fn reset(
        &mut self,
        stream: StreamId,
        error_code: u64,
    ) -> Result<(u64, Vec<(PathId, u64)>), WriteError> {
        let buf = self.live_mut(stream)?;
        let final_size = buf.write_offset();
        let released = buf.abandon(error_code);
        Ok((final_size, released))
    }

    /// The peer asked to stop `stream`; false if it is not a send stream here.
    pub(crate) fn stop(&mut self, stream: StreamId, error_code: u64) -> bool {
        if !self.streams.contains_key(&stream) {
            return false;
        }
        self.stopped.insert(stream, error_code);
        true
    }

    /// Forgets a stream that is done (acknowledged or reset).
    pub(crate) fn retire(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
        self.order.retain(|s| *s != stream);
    }

    /// True while some stream still has data or a FIN the peer has not
    /// acknowledged.
    pub(crate) fn has_unacknowledged(&self) -> bool {
        self.streams
            .values()
            .any(|b| b.reset.is_none() && (b.retained() > 0 || b.is_finished()))
    }

    /// Bytes of `stream` written but not yet acknowledged (None: stream done).
    pub(crate) fn retained(&self, stream: StreamId) -> Option<u64> {
        self.streams.get(&stream).map(|b| b.retained())
    }

    /// Bytes written and not yet acknowledged, over every stream.
    pub(crate) fn total_retained(&self) -> u64 {
        self.streams.values().map(|b| b.retained()).sum()
    }

    /// `path` died: what it carried and nobody acknowledged is re-sent.
    pub(crate) fn path_lost(&mut self, path: PathId) {
        for (stream, buf) in &mut self.streams {
            for key in buf.path_lost(path) {
                self.resend.push_back((*stream, key));
            }
        }
    }

    /// The signed grants of every live delegation (re-sent after a path loss).
    pub(crate) fn grant_frames(&self, out: &mut Vec<Frame>) {
        for buf in self.streams.values() {
            for d in buf.delegations() {
                out.push(Frame::Grant {
                    grant: d.signed.clone(),
                });
            }
        }
    }

    /// Paths whose delegated grants lapsed at `now_ms` (plus `grace_ms`) with
    /// bytes missing, each at most once.
    pub(crate) fn lapsed(&mut self, now_ms: u64, grace_ms: u64) -> Vec<PathId> {
        let mut lapsed: Vec<PathId> = Vec::new();
        for buf in self.streams.values_mut() {
            for p in buf.lapsed(now_ms, grace_ms) {
                if !lapsed.contains(&p) {
                    lapsed.push(p);
                }
            }
        }
        lapsed
    }

    /// Figures of a stream still sent here.
    pub(crate) fn stream_stats(&self, stream: StreamId) -> Option<SendStreamStats> {
        let b = self.streams.get(&stream)?;
        Some(SendStreamStats {
            written: b.write_offset(),
            bytes_sent: b.bytes_sent,
            bytes_resent: b.bytes_resent,
            bytes_acked: b.bytes_acked,
            retained: b.retained(),
            credit: b.max_offset(),
            priority: b.priority,
        })
    }

    /// The next chunk `path` should carry, as the scheduler sees `views`
    /// (see [`Self::pick`]); counted on its stream.
    pub(crate) fn poll_data(&mut self, path: PathId, views: &[PathView]) -> Option<Picked> {
        let mut picked = self.pick(path, views)?;
        if let Some(b) = self.streams.get_mut(&picked.stream) {
            picked.priority = b.priority;
            let len = picked.out.data.len() as u64;
            b.bytes_sent += len;
            if picked.resend {
                b.bytes_resent += len;
            }
        }
        Some(picked)
    }

    /// Whether [`Self::poll_data`] might pick something for `path`: false only
    /// when nothing waits to be re-sent or filled in and no stream has new data
    /// for it. A superset of what `poll_data` picks (credit, windows and the
    /// scheduler may still hold data back), so a writer woken on it may find
    /// nothing, but one left asleep on `false` misses nothing. It runs after every
    /// core call, so past [`SCAN_LIMIT`] streams it answers true instead of
    /// looking at each (a spare wake-up costs less than the scan).
    pub(crate) fn may_have_data(&self, path: PathId) -> bool {
        !self.resend.is_empty()
            || !self.fill.is_empty()
            || self.streams.len() > SCAN_LIMIT
            || self.streams.values().any(|b| b.has_new_data(path))
    }

    /// Re-sends first, then positioned writes, then new data round-robin.
    fn pick(&mut self, path: PathId, views: &[PathView]) -> Option<Picked> {
        if scheduler::may_resend(path, views) {
            while let Some((stream, key)) = self.resend.pop_front() {
                if let Some(out) = self
                    .streams
                    .get_mut(&stream)
                    .and_then(|b| b.take_resend(key, path))
                {
                    return Some(Picked {
                        stream,
                        out,
                        resend: true,
                        priority: 0,
                    });
                }
            }
        }
        for _ in 0..self.fill.len() {
            let Some((stream, key)) = self.fill.pop_front() else {
                break;
            };
            let Some(buf) = self.streams.get_mut(&stream) else {
                continue;
            };
            if !scheduler::may_send(buf.policy, path, views) {
                self.fill.push_back((stream, key));
                continue;
            }
            if let Some(out) = buf.take_resend(key, path) {
                return Some(Picked {
                    stream,
                    out,
                    resend: false,
                    priority: 0,
                });
            }
        }
        if self.prioritised {
            return self.pick_by_priority(path, views);
        }
        for _ in 0..self.order.len() {
            let Some(stream) = self.order.pop_front() else {
                break;
            };
            self.order.push_back(stream);
            let Some(buf) = self.streams.get_mut(&stream) else {
                continue;
            };
            if !buf.has_new_data(path) || !scheduler::may_send(buf.policy, path, views) {
                continue;
            }
            if let Some(out) = buf.take_new(path) {
                return Some(Picked {
                    stream,
                    out,
                    resend: false,
                    priority: 0,
                });
            }
        }
        None
    }

    /// New data of the highest-priority stream `path` may carry; streams of
    /// equal priority take turns (round-robin order).
    fn pick_by_priority(&mut self, path: PathId, views: &[PathView]) -> Option<Picked> {
        let mut best: Option<(usize, i32)> = None;
        for (i, s) in self.order.iter().enumerate() {
            let Some(buf) = self.streams.get(s) else {
                continue;
            };
            if best.is_some_and(|(_, p)| buf.priority <= p)
                || !buf.has_new_data(path)
                || !scheduler::may_send(buf.policy, path, views)
            {
                continue;
            }
            best = Some((i, buf.priority));
        }
        let stream = self.order.remove(best?.0)?;
        self.order.push_back(stream);
        let out = self.streams.get_mut(&stream)?.take_new(path)?;
        Some(Picked {
            stream,
            out,
            resend: false,
            priority: 0,
        })
    }

    /// Sets a stream's priority (higher first; default 0).
    pub(crate) fn set_priority(
        &mut self,
        stream: StreamId,
        priority: i32,
    ) -> Result<(), WriteError> {
        let buf = self.live_mut(stream)?;
        buf.priority = priority;
        if priority != 0 {
            self.prioritised = true;
        }
        Ok(())
    }

    /// SESSION_CREDIT: true if the credit grew.
    pub(crate) fn on_session_credit(&mut self, max_data: u64) -> bool {
        if max_data > self.peer_max_data {
            self.peer_max_data = max_data;
            return true;
        }
        false
    }

    /// STREAM_CREDIT: true if the stream's credit grew.
    pub(crate) fn on_stream_credit(&mut self, stream: StreamId, max_offset: u64) -> bool {
        self.streams
            .get_mut(&stream)
            .is_some_and(|buf| buf.raise_credit(max_offset))
    }

    /// ACK for `stream`; `None` for a stream that is not (any more) sent here.
    pub(crate) fn on_ack(
        &mut self,
        stream: StreamId,
        ranges: &[Range<u64>],
        fin: bool,
    ) -> Option<Acked> {
        let buf = self.streams.get_mut(&stream)?;
        let before = buf.retained();
        let released = buf.on_ack(ranges, fin);
        let bytes = before - buf.retained();
        buf.bytes_acked += bytes;
        Some(Acked {
            bytes,
            released,
            complete: buf.is_complete(),
        })
    }
}
