//! Samples into a ring, from any [`SampleSource`]: a thread that moves a source's
//! samples into the ring the recorder reads, reports the device's sequence gaps and
//! corrupt frames as losses upstream of the ring (so the recording's sidecar accounts
//! for every sample the device numbered), and writes what the device says of itself
//! into the recording's device notes. Simulators, a board on a serial port and a board
//! over BLE all record through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::capture::device_notes::DeviceNotes;
use crate::capture::ring::RingWriter;
use crate::capture::sample_source::{SampleSource, SourceEvent};
use crate::capture::sources::xiao::device_entries;

/// What a [`Producer`] moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ProducerReport {
    /// Samples pushed into the ring.
    pub samples: u64,
    /// Samples the device numbered that never arrived intact (reported to the ring as
    /// lost upstream).
    pub lost: u64,
    /// Frames rejected as corrupt (their samples are in `lost` once a later sequence
    /// number shows the gap).
    pub corrupt_frames: u64,
    /// The source ended by itself (device gone, end of input) rather than being stopped.
    pub ended: bool,
}

/// The thread feeding one source into one ring: the simulator, a board on a serial
/// port and a board over BLE alike. Dropping it stops the thread.
#[derive(Debug)]
pub struct Producer(FeedThread<ProducerReport>);

impl Producer {
    /// Starts reading `source` into `ring` on a thread of its own. The thread checks
    /// for a stop request whenever the source is idle (at most about every 100 ms, the
    /// [`SampleSource`] contract). What the device announces (firmware version, rate,
    /// sensor ranges) is written into `notes`.
    pub fn spawn<Src>(
        mut source: Src,
        mut ring: RingWriter<Src::Sample>,
        notes: DeviceNotes,
    ) -> std::io::Result<Self>
    where
        Src: SampleSource,
    {
        let thread = FeedThread::spawn("kwik-producer", move |stop| {
            let mut report = ProducerReport::default();
            while !stop.load(Ordering::Relaxed) {
                match source.next_event() {
                    Some(SourceEvent::Sample { sample, .. }) => {
                        ring.push(sample);
                        report.samples += 1;
                    }
                    Some(SourceEvent::Lost(n)) => {
                        ring.count_lost_upstream(n);
                        report.lost += n;
                    }
                    Some(SourceEvent::DecodeError) => report.corrupt_frames += 1,
                    Some(SourceEvent::Device(info)) => notes.set_all(device_entries(&info)),
                    Some(SourceEvent::Idle) => {}
                    None => {
                        report.ended = true;
                        break;
                    }
                }
            }
            report
        })?;
        Ok(Producer(thread))
    }

    /// True once the source has ended by itself.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Stops the thread (if the source has not ended) and reports what it moved.
    pub fn stop(self) -> ProducerReport {
        self.0.stop()
    }
}

/// A thread that feeds a ring until it is stopped or its source ends, and reports
/// what it fed. Dropping it stops the thread and waits for it.
#[derive(Debug)]
struct FeedThread<R> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<R>>,
}

impl<R: Default + Send + 'static> FeedThread<R> {
    /// Runs `body` on a thread named `name`; `body` returns once the flag it is given
    /// is set (or its source has ended).
    fn spawn(
        name: &str,
        body: impl FnOnce(&AtomicBool) -> R + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))?;
        Ok(FeedThread {
            stop,
            handle: Some(handle),
        })
    }

    /// True once the thread has returned.
    fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops the thread and returns its report (the default if it panicked).
    fn stop(mut self) -> R {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl<R> Drop for FeedThread<R> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::ring::ring;
    use crate::capture::sources::frames::sim_imu_with;
    use crate::capture::sources::xiao::imu_row;

    /// The firmware's simulator with dropped and corrupted samples, through the frame
    /// decoder: every sample it sent intact reaches the ring, in order, and every one
    /// it numbered is either there or counted lost.
    #[test]
    fn device_gaps_and_corrupt_frames_are_counted_as_upstream_losses() {
        let n = 3_000u64;
        let mut sim = xiao_sim::SimConfig::new(7, std::num::NonZeroU32::new(1000).unwrap());
        sim.faults.drop = xiao_sim::Probability::try_from(0.02).unwrap();
        sim.faults.corrupt = xiao_sim::Probability::try_from(0.02).unwrap();
        // The ground truth: which samples the simulator sent intact.
        let mut truth = xiao_sim::Simulator::new(sim);
        let fates: Vec<_> = (0..n).map(|_| truth.tick()).collect();
        let intact: Vec<_> = fates
            .iter()
            .filter(|t| t.fate == xiao_sim::Fate::Sent)
            .map(|t| imu_row(&t.sample))
            .collect();
        // Losses after the last intact sample show no gap; count only those before it.
        let last_sent = fates
            .iter()
            .rposition(|t| t.fate == xiao_sim::Fate::Sent)
            .unwrap() as u64;
        let (w, mut r) = ring(n as usize);
        let notes = DeviceNotes::default();
        let feed = Producer::spawn(sim_imu_with(sim, false, Some(n)), w, notes.clone()).unwrap();
        while !feed.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let report = feed.stop();
        let mut rows = Vec::new();
        r.read(&mut rows, usize::MAX);
        assert!(report.ended);
        assert_eq!(rows, intact);
        assert!(report.lost > 0 && report.corrupt_frames > 0, "{report:?}");
        assert_eq!(report.samples + report.lost, last_sent + 1, "{report:?}");
        assert_eq!(r.lost_upstream(), report.lost);
        // The board's self-description (sent at start) reached the notes.
        let device = notes.over(&Default::default());
        let [major, minor, patch] = xiao_sim::SIM_FIRMWARE_VERSION;
        assert_eq!(device["firmware"], format!("{major}.{minor}.{patch}"));
        assert_eq!(device["device_rate_hz"], "1000");
    }
}
