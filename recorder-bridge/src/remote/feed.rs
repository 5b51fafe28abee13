//! A device recorded on this machine: a thread that moves a [`SampleSource`]'s samples
//! into a ring for the local recorder, and reports the device's sequence gaps and
//! corrupt frames as losses upstream of the ring, so the recording's sidecar accounts
//! for every sample the device numbered. What the device says of itself goes into the
//! recording's device notes.

use std::sync::atomic::Ordering;

use crate::capture::device_notes::DeviceNotes;
use crate::capture::ring::RingWriter;
use crate::remote::source::{SampleSource, SourceEvent, device_entries};
use crate::source::FeedThread;

/// What a [`SourceFeed`] moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct FeedReport {
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

/// The thread feeding one source into one ring. Dropping it stops the thread.
#[derive(Debug)]
pub struct SourceFeed(FeedThread<FeedReport>);

impl SourceFeed {
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
        Src::Sample: Copy,
    {
        let thread = FeedThread::spawn("kwik-source-feed", move |stop| {
            let mut report = FeedReport::default();
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
        Ok(SourceFeed(thread))
    }

    /// True once the source has ended by itself.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Stops the thread (if the source has not ended) and reports what it moved.
    pub fn stop(self) -> FeedReport {
        self.0.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::ring::ring;
    use crate::remote::source::sim_imu_with;

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
            .map(|t| crate::remote::imu_row(&t.sample))
            .collect();
        // Losses after the last intact sample show no gap; count only those before it.
        let last_sent = fates
            .iter()
            .rposition(|t| t.fate == xiao_sim::Fate::Sent)
            .unwrap() as u64;
        let (w, mut r) = ring(n as usize);
        let notes = DeviceNotes::default();
        let feed = SourceFeed::spawn(sim_imu_with(sim, false, Some(n)), w, notes.clone()).unwrap();
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
