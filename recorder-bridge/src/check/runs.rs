//! One gateway run recorded as several recordings — by one server across restarts,
//! or by several servers of a fleet after failovers — checked as a whole: each sample
//! number of the run is in exactly one recording, from the first recording's start to
//! the last one's end.
//!
//! A remote recording's sidecar names its run (`device.run`) and its first sample
//! number (`settings.first_seq`); the recording covers `first_seq` up to `first_seq +
//! produced + filtered_by_request` (every sample it wrote, counted lost or was asked
//! to leave out). Local recordings carry no run and are left out.
//!
//! Within a run a sample number names one sample, so two recordings that both cover
//! a number hold the same sample twice. That happens after a failover: the server
//! that died had written samples it had not yet confirmed, and the gateway sent them
//! again to the next server. Such overlaps are reported as duplicates, not as
//! problems; a hole (numbers in no recording) is a problem.

use serde::Serialize;

use crate::store::sidecar::Sidecar;

/// The sample numbers one recording of a run covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunPiece {
    /// The recording (its sidecar's name or address).
    pub recording: String,
    /// Device id and stream, `device/stream`.
    pub stream: String,
    /// The gateway run (hex).
    pub run: String,
    /// First sample number covered.
    pub first_seq: u64,
    /// One past the last sample number covered.
    pub end_seq: u64,
}

impl RunPiece {
    /// The piece a remote recording's sidecar describes; `None` for a recording with
    /// no run (a local one) or unreadable numbers.
    pub fn of(recording: &str, sc: &Sidecar) -> Option<Self> {
        let run = sc.device.get("run")?.clone();
        let first_seq: u64 = sc.settings.get("first_seq")?.parse().ok()?;
        let filtered: u64 = sc
            .device
            .get("filtered_by_request")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let end_seq = first_seq.checked_add(sc.produced)?.checked_add(filtered)?;
        let device = sc.device.get("id").map_or("?", String::as_str);
        Some(RunPiece {
            recording: recording.to_owned(),
            stream: format!("{device}/{}", sc.stream),
            run,
            first_seq,
            end_seq,
        })
    }
}

/// What [`check_runs`] found: one line per run, and the problems.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunsReport {
    /// Per run: stream, run, first and end sample numbers, recordings.
    pub runs: Vec<RunSummary>,
    /// Holes: samples of a run in no recording.
    pub problems: Vec<String>,
    /// Overlaps: samples of a run in two recordings (the same samples twice).
    pub duplicates: Vec<String>,
    /// Samples in two recordings, over all runs.
    pub duplicate_samples: u64,
}

/// One run's extent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// `device/stream`.
    pub stream: String,
    /// The gateway run (hex).
    pub run: String,
    /// First sample number of the first recording.
    pub first_seq: u64,
    /// One past the last sample number of the last recording.
    pub end_seq: u64,
    /// Recordings of the run, in sample order.
    pub recordings: usize,
}

/// Groups `pieces` by stream and run, orders each run's pieces by their first sample
/// number and reports any hole or overlap between neighbours.
pub fn check_runs(mut pieces: Vec<RunPiece>) -> RunsReport {
    pieces.sort_by(|a, b| {
        (&a.stream, &a.run, a.first_seq, a.end_seq).cmp(&(
            &b.stream,
            &b.run,
            b.first_seq,
            b.end_seq,
        ))
    });
    let mut report = RunsReport::default();
    for run in pieces.chunk_by(|a, b| a.stream == b.stream && a.run == b.run) {
        for pair in run.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.first_seq > a.end_seq {
                report.problems.push(format!(
                    "{} run {}: samples {}..{} are in no recording (between {} and {})",
                    a.stream, a.run, a.end_seq, b.first_seq, a.recording, b.recording
                ));
            } else if b.first_seq < a.end_seq {
                let end = a.end_seq.min(b.end_seq);
                report.duplicate_samples += end - b.first_seq;
                report.duplicates.push(format!(
                    "{} run {}: samples {}..{} are in two recordings ({} and {})",
                    a.stream, a.run, b.first_seq, end, a.recording, b.recording
                ));
            }
        }
        let (first, last) = (&run[0], &run[run.len() - 1]);
        report.runs.push(RunSummary {
            stream: first.stream.clone(),
            run: first.run.clone(),
            first_seq: first.first_seq,
            end_seq: run.iter().map(|p| p.end_seq).max().unwrap_or(last.end_seq),
            recordings: run.len(),
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(name: &str, run: &str, first_seq: u64, end_seq: u64) -> RunPiece {
        RunPiece {
            recording: name.into(),
            stream: "xiao/imu".into(),
            run: run.into(),
            first_seq,
            end_seq,
        }
    }

    #[test]
    fn neighbours_that_meet_pass_holes_and_overlaps_are_named() {
        let ok = check_runs(vec![
            piece("b", "r1", 100, 250),
            piece("a", "r1", 0, 100),
            piece("c", "r2", 7, 9),
        ]);
        assert!(ok.problems.is_empty(), "{ok:?}");
        assert_eq!(ok.runs.len(), 2);
        assert_eq!(
            (
                ok.runs[0].first_seq,
                ok.runs[0].end_seq,
                ok.runs[0].recordings
            ),
            (0, 250, 2)
        );
        let bad = check_runs(vec![
            piece("a", "r1", 0, 100),
            piece("b", "r1", 120, 200),
            piece("c", "r1", 190, 300),
        ]);
        assert_eq!(bad.problems.len(), 1, "{bad:?}");
        assert!(
            bad.problems[0].contains("samples 100..120 are in no recording"),
            "{bad:?}"
        );
        assert_eq!(bad.duplicate_samples, 10);
        assert!(
            bad.duplicates[0].contains("samples 190..200 are in two recordings"),
            "{bad:?}"
        );
    }

    #[test]
    fn a_sidecar_gives_its_run_and_extent_and_a_local_one_none() {
        let mut sc = crate::store::sidecar::tests::finished(40, 40, Default::default());
        assert_eq!(RunPiece::of("x", &sc), None);
        sc.device.insert("id".into(), "xiao".into());
        sc.device.insert("run".into(), "00ab".into());
        sc.device.insert("filtered_by_request".into(), "2".into());
        sc.settings.insert("first_seq".into(), "10".into());
        assert_eq!(RunPiece::of("x", &sc), Some(piece("x", "00ab", 10, 52)));
    }
}
