//! Delivery to the application and what the peer hears of it: reads of
//! stream data from the session's presentation, and the presentation's
//! outputs after every call that may produce them — signals for the senders
//! (credit, backpressure, gap timeouts) become frames, and streams whose
//! blocked reader may read now become [`Event::Readable`] for the driver.

use bytes::Bytes;
use kwik_presentation::{BackpressureScope, PresentationEvent, ReadError, StreamId};

use super::SessionState;
use super::events::Event;
use super::recv::{RecvSide, RecvStreamStats, Signal};
use crate::proto::wire::frame::Frame;

impl SessionState {
    /// Up to `max_len` contiguous bytes of `stream` for the application, without
    /// copying; `Ok(None)` at its end. [`ReadError::Blocked`]: nothing yet, an
    /// [`Event::Readable`] follows when that changes. Credit the read releases
    /// is queued for the peer at once.
    pub(crate) fn read_chunk(
        &mut self,
        stream: StreamId,
        max_len: usize,
    ) -> Result<Option<Bytes>, ReadError> {
        let r = self.recv.read_chunk(stream, max_len);
        if matches!(r, Ok(Some(_))) {
            self.pump_recv();
        }
        r
    }

    /// Copies readable bytes of `stream` into `buf`; `Ok(0)` at its end (for a
    /// non-empty `buf`). Otherwise as [`Self::read_chunk`].
    pub(crate) fn read(&mut self, stream: StreamId, buf: &mut [u8]) -> Result<usize, ReadError> {
        let r = self.recv.read(stream, buf);
        if matches!(r, Ok(n) if n > 0) {
            self.pump_recv();
        }
        r
    }

    /// Takes the presentation's outputs: its signals go to the peer, its ready
    /// streams to the driver ([`Event::Readable`]). If frames were queued,
    /// [`Event::Transmit`] tells the driver to wake the control writers (a read
    /// wakes nothing else).
    pub(super) fn pump_recv(&mut self) {
        let mut queued = false;
        while let Some(event) = self.recv.poll_event() {
            queued |= self.handle_presentation_event(event);
        }
        while let Some(stream) = self.recv.poll_readable() {
            self.events.push_back(Event::Readable(stream));
        }
        if queued {
            self.events.push_back(Event::Transmit);
        }
    }

    /// Something the receive side wants the peer to hear. Returns whether a
    /// frame was queued.
    fn handle_presentation_event(&mut self, event: PresentationEvent) -> bool {
        if self.closed.is_some() {
            return false;
        }
        let frame = match RecvSide::signal(event) {
            Some(Signal::StreamCredit(stream, max_offset)) => {
                if self.holds.is_held(BackpressureScope::Stream(stream)) {
                    // Sent when the application releases the stream.
                    return false;
                }
                if self.links.has_grants() {
                    for path in self.links.holders(stream) {
                        self.events.push_back(Event::ToSecondary(
                            path,
                            Frame::StreamCredit { stream, max_offset },
                        ));
                    }
                }
                Frame::StreamCredit { stream, max_offset }
            }
            Some(Signal::Broadcast(frame)) => match self.holds.gate(frame) {
                Some(frame) => frame,
                None => return false,
            },
            Some(Signal::Backpressure(scope, reason)) => {
                match self.holds.on_signal(scope, reason, self.version) {
                    Some(frame) => frame,
                    None => return false,
                }
            }
            Some(Signal::Ack(stream)) => {
                self.queue_ack(stream);
                return true;
            }
            None => return false,
        };
        self.paths.broadcast(frame, None);
        true
    }

    /// The application holds `scope` back by hand: the peer hears
    /// BACKPRESSURE (reason manual) and the scope's credit stays where it is
    /// until [`Self::release_hold`]. `false`: no such receive stream.
    pub(crate) fn hold(&mut self, scope: BackpressureScope) -> bool {
        let credit = match scope {
            BackpressureScope::Session => Some(self.recv.presentation().session_credit()),
            BackpressureScope::Stream(s) => self.recv.stream_credit(s),
        };
        let Some(credit) = credit else {
            return false;
        };
        if self.closed.is_none() {
            if let Some(frame) = self.holds.hold(scope, credit, self.version) {
                self.paths.broadcast(frame, None);
            }
        }
        true
    }

    /// Ends a hand hold of `scope`: the peer hears the signal end (unless
    /// the presentation's own backpressure is on) and gets the credit it
    /// missed.
    pub(crate) fn release_hold(&mut self, scope: BackpressureScope) {
        if !self.holds.is_held(scope) {
            return;
        }
        let frame = self.holds.release(scope, self.version);
        if self.closed.is_some() {
            return;
        }
        if let Some(frame) = frame {
            self.paths.broadcast(frame, None);
        }
        match scope {
            BackpressureScope::Session => {
                let max_data = self.recv.presentation().session_credit();
                self.paths
                    .broadcast(Frame::SessionCredit { max_data }, None);
            }
            BackpressureScope::Stream(stream) => {
                if let Some(max_offset) = self.recv.stream_credit(stream) {
                    for path in self.links.holders(stream) {
                        self.events.push_back(Event::ToSecondary(
                            path,
                            Frame::StreamCredit { stream, max_offset },
                        ));
                    }
                    self.paths
                        .broadcast(Frame::StreamCredit { stream, max_offset }, None);
                }
            }
        }
    }

    /// Figures of a receive stream the application has not released yet;
    /// `time_blocked` is the caller's (its reads measure it).
    pub(crate) fn recv_stream_stats(&self, stream: StreamId) -> Option<RecvStreamStats> {
        let mut stats = self.recv.stream_stats(stream)?;
        stats.backpressure = self.holds.signalled(BackpressureScope::Stream(stream));
        Some(stats)
    }
}
