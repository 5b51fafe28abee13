//! Live taps: a sensor stream's ring seen by the dashboard. A tap keeps a reader of the
//! ring as a template; every plot gets its own cursor (an independent reader) and every
//! recording started from the dashboard its own reader at the head. Readers never slow
//! the ring's writer (see [`ring`](crate::capture::ring)): a plot that falls behind
//! loses plot columns, never a sample of the file.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::capture::ring::{RingReader, SampleIndex};
use crate::dashboard::channels::Channels;
use crate::recording::group::RecordingGroup;

/// What a cursor read: samples handed out and samples it had lost (overwritten before
/// it got to them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CursorRead {
    /// Samples handed to the callback.
    pub read: usize,
    /// Samples overwritten before this cursor reached them.
    pub missed: u64,
}

/// An independent reading position in a tap's ring, whatever the schema.
pub trait Cursor: Send {
    /// Hands at most `max` samples to `each` as `(ring index, time in s, values)` and
    /// advances past them.
    fn read(&mut self, max: usize, each: &mut dyn FnMut(u64, f64, &[f64])) -> CursorRead;
}

/// A sensor stream the dashboard can plot and record, whatever its schema.
pub trait LiveStream: Send + Sync + fmt::Debug {
    /// Stream name (also the name of the stream in a recording group).
    fn name(&self) -> &str;
    /// Schema name.
    fn schema(&self) -> &'static str;
    /// Channel names.
    fn channels(&self) -> &'static [&'static str];
    /// Channel units.
    fn units(&self) -> &'static [&'static str];
    /// Nominal sample rate in Hz.
    fn rate_hz(&self) -> f64;
    /// Samples the ring holds.
    fn capacity(&self) -> usize;
    /// Index the next sample will get.
    fn head(&self) -> u64;
    /// A cursor `history` samples before the head (as far back as the ring holds).
    fn cursor(&self, history: u64) -> Box<dyn Cursor>;
    /// Adds this stream to `group`, read from the current head on.
    fn add_to(&self, group: &mut RecordingGroup);
}

/// A description of a live stream, as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// Stream name.
    pub name: String,
    /// Schema name.
    pub schema: &'static str,
    /// Channel names.
    pub channels: &'static [&'static str],
    /// Channel units.
    pub units: &'static [&'static str],
    /// Nominal rate in Hz.
    pub rate_hz: f64,
    /// Samples the ring holds (the history a plot can start with).
    pub ring_capacity: usize,
    /// Samples pushed into the ring so far.
    pub head: u64,
}

/// The live tap of one ring of samples of schema `S`.
pub struct Tap<S: Channels> {
    name: String,
    rate_hz: f64,
    reader: RingReader<S>,
}

impl<S: Channels> Tap<S> {
    /// A tap named `name` (nominal rate `rate_hz`) on the ring `reader` reads.
    pub fn new(name: &str, rate_hz: f64, reader: &RingReader<S>) -> Self {
        Tap {
            name: name.to_owned(),
            rate_hz,
            reader: reader.clone(),
        }
    }
}

impl<S: Channels> fmt::Debug for Tap<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tap")
            .field("name", &self.name)
            .field("schema", &S::NAME)
            .field("rate_hz", &self.rate_hz)
            .finish()
    }
}

struct TapCursor<S> {
    reader: RingReader<S>,
    buf: Vec<S>,
    values: Vec<f64>,
}

impl<S: Channels> Cursor for TapCursor<S> {
    fn read(&mut self, max: usize, each: &mut dyn FnMut(u64, f64, &[f64])) -> CursorRead {
        self.buf.clear();
        let first = self.reader.position().0;
        let r = self.reader.read(&mut self.buf, max);
        // Indices of the samples read: the run before `next` (drops happen only at the
        // oldest end or on a slot overwritten mid-copy, both counted in `dropped`).
        let start = r.next.0 - r.read as u64;
        debug_assert!(start >= first);
        for (k, s) in self.buf.iter().enumerate() {
            s.values(&mut self.values);
            each(start + k as u64, s.time_s(), &self.values);
        }
        CursorRead {
            read: r.read,
            missed: r.dropped,
        }
    }
}

impl<S: Channels> LiveStream for Tap<S> {
    fn name(&self) -> &str {
        &self.name
    }
    fn schema(&self) -> &'static str {
        S::NAME
    }
    fn channels(&self) -> &'static [&'static str] {
        S::NAMES
    }
    fn units(&self) -> &'static [&'static str] {
        S::UNITS
    }
    fn rate_hz(&self) -> f64 {
        self.rate_hz
    }
    fn capacity(&self) -> usize {
        self.reader.capacity()
    }
    fn head(&self) -> u64 {
        self.reader.head().0
    }
    fn cursor(&self, history: u64) -> Box<dyn Cursor> {
        let mut reader = self.reader.clone();
        let head = reader.head().0;
        // Keep a margin below the capacity: the oldest slots are the next overwritten.
        let back = history.min((self.reader.capacity() as u64).saturating_mul(3) / 4);
        reader.seek(SampleIndex(head.saturating_sub(back)));
        Box::new(TapCursor {
            reader,
            buf: Vec::new(),
            values: vec![0.0; S::NAMES.len()],
        })
    }
    fn add_to(&self, group: &mut RecordingGroup) {
        let mut reader = self.reader.clone();
        reader.seek(reader.head());
        group.add_stream(&self.name, reader);
    }
}

/// The live streams of one recorder, in the order they were added.
#[derive(Debug, Clone, Default)]
pub struct Taps(Vec<Arc<dyn LiveStream>>);

impl Taps {
    /// No streams yet.
    pub fn new() -> Self {
        Taps::default()
    }

    /// Adds the ring `reader` reads as stream `name` at nominal rate `rate_hz`.
    pub fn add<S: Channels>(&mut self, name: &str, rate_hz: f64, reader: &RingReader<S>) {
        self.0.push(Arc::new(Tap::new(name, rate_hz, reader)));
    }

    /// The stream named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn LiveStream>> {
        self.0.iter().find(|t| t.name() == name)
    }

    /// Every stream.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn LiveStream>> {
        self.0.iter()
    }

    /// True when there is no stream.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the API lists.
    pub fn infos(&self) -> Vec<StreamInfo> {
        self.0
            .iter()
            .map(|t| StreamInfo {
                name: t.name().to_owned(),
                schema: t.schema(),
                channels: t.channels(),
                units: t.units(),
                rate_hz: t.rate_hz(),
                ring_capacity: t.capacity(),
                head: t.head(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::ring::ring;
    use crate::capture::sources::signal::{RateHz, SignalGenerator, SimStage};

    #[test]
    fn cursors_are_independent_and_report_ring_indices() {
        let g = SimStage {
            rate: RateHz::try_from(100).unwrap(),
        };
        let (mut w, r) = ring(64);
        let mut taps = Taps::new();
        taps.add("stage", 100.0, &r);
        for i in 0..40 {
            w.push(g.sample(i));
        }
        let tap = taps.get("stage").unwrap();
        let mut c = tap.cursor(10);
        let mut seen = Vec::new();
        let got = c.read(100, &mut |i, t, v| seen.push((i, t, v[0])));
        assert_eq!(
            got,
            CursorRead {
                read: 10,
                missed: 0
            }
        );
        assert_eq!(seen[0].0, 30);
        assert_eq!(seen[0].2, g.sample(30).x);
        assert_eq!(seen[9].1, g.sample(39).t_rel.as_secs_f64());
        let mut other = tap.cursor(1000);
        assert_eq!(other.read(1000, &mut |_, _, _| {}).read, 40);
        for i in 40..200 {
            w.push(g.sample(i));
        }
        let late = c.read(1000, &mut |_, _, _| {});
        assert_eq!(late.read as u64 + late.missed, 160);
        assert!(late.missed > 0);
    }
}
