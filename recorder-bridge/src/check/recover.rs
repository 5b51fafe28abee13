//! `recover`: repairs a recording whose process died. Cuts each data file back to its
//! last whole row (or LabVIEW block), adds the missing footer, and finalises the
//! sidecar with state `recovered`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::format::compat::{find_xiao_totals, xiao_totals};
use crate::format::footer::Footer;

use crate::check::verify::parse_part;
use crate::format::labview::LABVIEW_ROWS;
use crate::format::schema::{EfieldSample, ImuRow, SchemaKind, StagePosition};
use crate::store::file_writer::part_path;
use crate::store::mcap::{McapLayout, recover_mcap};
use crate::store::parquet::recover_parquet;
use crate::store::sidecar::{PartMeta, RecordingState, Sidecar, SidecarError, sidecar_path};

/// Why a recording could not be recovered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError {
    /// The sidecar is missing or unreadable.
    #[error("{0}; recover needs the recording's .meta.json next to the data file")]
    Sidecar(#[from] SidecarError),
    /// A data file could not be read or repaired.
    #[error("{path}: {source}; check that the file exists and is writable")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A data file is damaged beyond a cut last row (not a crash artefact).
    #[error("{path}: {what}; the damage is not a cut-off last row, so recover leaves it alone")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// What [`recover`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecoverReport {
    /// The sidecar updated.
    pub sidecar: PathBuf,
    /// False when the recording was already finished (nothing done).
    pub repaired: bool,
    /// Bytes cut from the ends of the files (partial rows).
    pub truncated_bytes: u64,
    /// Footers added.
    pub footers_added: usize,
    /// Samples in the files after repair.
    pub samples: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecoverError + '_ {
    move |source| RecoverError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What repairing one columnar part did.
struct Repaired {
    samples: u64,
    truncated_bytes: u64,
}

/// Repairs `file` in place when the recording is Parquet or MCAP (`None` for the text
/// layouts, which the caller cuts and footers itself).
fn repair_columnar(sc: &Sidecar, file: &Path) -> Result<Option<Repaired>, RecoverError> {
    let damaged = |what| RecoverError::Damaged {
        path: file.to_path_buf(),
        what,
    };
    let repaired = match sc.format.as_str() {
        "parquet" => {
            let extra = [("kwik.dropped".to_owned(), sc.dropped.total().to_string())];
            let r = recover_parquet(file, &extra).map_err(damaged)?;
            Repaired {
                samples: r.rows,
                truncated_bytes: r.truncated_bytes,
            }
        }
        "mcap" => {
            let fallback = match SchemaKind::from_name(&sc.schema) {
                Some(SchemaKind::Imu) => McapLayout::of::<ImuRow>(&sc.stream),
                Some(SchemaKind::Efield) => McapLayout::of::<EfieldSample>(&sc.stream),
                Some(SchemaKind::Stage) => McapLayout::of::<StagePosition>(&sc.stream),
                None => return Err(damaged(format!("unknown schema {:?}", sc.schema))),
            };
            let extra = [("dropped".to_owned(), sc.dropped.total().to_string())];
            let r = recover_mcap(file, &fallback, &extra).map_err(damaged)?;
            Repaired {
                samples: r.messages,
                truncated_bytes: r.truncated_bytes,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(repaired))
}

/// Makes the counts of a crashed recording balance (`produced = samples +
/// filtered_inactive + dropped`, as `verify` checks) once the files are known to hold
/// `samples` rows. The last sidecar refresh before the crash may predate rows that
/// reached the files (it then says fewer were produced than recorded: they were
/// produced after all), or count samples that never reached a file (still in the
/// ring or the exporter's buffers when the process died: lost, counted with the
/// writer's losses). A remote recording (`device.transport = kwik`) loses none that
/// way: the server confirms a sample to its gateway only once it is in the file, so
/// the gateway still holds every sample that is not, and sends it again to the next
/// recording.
fn settle_counts(sc: &mut Sidecar, samples: u64) {
    sc.samples = samples;
    let accounted = samples
        .saturating_add(sc.filtered_inactive)
        .saturating_add(sc.dropped.total());
    let remote = sc.device.get("transport").is_some_and(|t| t == "kwik");
    if sc.produced < accounted || remote {
        sc.produced = accounted;
    } else {
        sc.dropped.writer = sc.dropped.writer.saturating_add(sc.produced - accounted);
    }
}

/// Repairs every recording below the recordings folder `root` (`<device>/<day>/`)
/// whose sidecar still says it is being recorded: the ones a killed process left. Call
/// it only when nothing records into `root` (a server at start-up, before it listens).
/// Returns each repaired recording's sidecar with the outcome.
pub fn recover_interrupted(root: &Path) -> Vec<(PathBuf, Result<RecoverReport, RecoverError>)> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    for device in dirs(root) {
        for day in dirs(&device) {
            let Ok(files) = std::fs::read_dir(&day) else {
                continue;
            };
            let mut sidecars: Vec<PathBuf> = files
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".meta.json"))
                .collect();
            sidecars.sort();
            for sc in sidecars {
                if Sidecar::read(&sc).is_ok_and(|s| s.state == RecordingState::Recording) {
                    let r = recover(&sc);
                    out.push((sc, r));
                }
            }
        }
    }
    out
}

/// Repairs a recording given any of its data files or its `.meta.json`.
pub fn recover(path: &Path) -> Result<RecoverReport, RecoverError> {
    let sc_path = sidecar_path(path);
    let mut sc = Sidecar::read(&sc_path)?;
    if matches!(
        sc.state,
        RecordingState::Finished | RecordingState::Recovered
    ) {
        return Ok(RecoverReport {
            sidecar: sc_path,
            repaired: false,
            truncated_bytes: 0,
            footers_added: 0,
            samples: sc.samples,
        });
    }
    let dir = sc_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    // Parts on disk: those listed, plus any later part the last refresh did not see.
    let first = dir.join(
        sc.parts
            .first()
            .map_or_else(String::new, |p| p.file.clone()),
    );
    let mut files = Vec::new();
    for n in 1u32.. {
        let p = part_path(&first, n);
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    if files.is_empty() {
        return Err(RecoverError::Io {
            path: first,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    // First read every part (nothing is written yet, one part in memory at a time),
    // so that the counts can be settled before the footers that carry them are
    // written.
    let mut read = Vec::new();
    let mut parts = Vec::new();
    let mut truncated = 0u64;
    let mut latest = None;
    for file in &files {
        // Parquet and MCAP parts are repaired in place from their own records; what
        // is left to do is to describe the repaired part.
        if let Some(r) = repair_columnar(&sc, file)? {
            truncated += r.truncated_bytes;
            let bytes = std::fs::read(file).map_err(io(file))?;
            if let Ok(m) = std::fs::metadata(file).and_then(|m| m.modified()) {
                latest = Some(latest.map_or(m, |l: std::time::SystemTime| l.max(m)));
            }
            parts.push(PartMeta {
                file: crate::store::sidecar::file_name(file),
                samples: r.samples,
                bytes: bytes.len() as u64,
                sha256: Some(hex::encode(Sha256::digest(&bytes))),
            });
            continue;
        }
        let bytes = std::fs::read(file).map_err(io(file))?;
        // Cut to the last whole row.
        let mut keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if sc.format == "labview" {
            // ... and to the last whole 16-row block.
            let ends: Vec<usize> = bytes[..keep]
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1)
                .collect();
            let whole = ends.len() / LABVIEW_ROWS * LABVIEW_ROWS;
            keep = if whole == 0 { 0 } else { ends[whole - 1] };
        }
        let contents = parse_part(&sc, &bytes[..keep]).map_err(|what| RecoverError::Damaged {
            path: file.clone(),
            what,
        })?;
        read.push((file, keep, contents));
    }
    // Parquet and MCAP parts are repaired as they are read (from the journal, from the
    // file's own records); their rows count with the text parts'.
    let read_samples: u64 = read.iter().map(|r| r.2.samples).sum();
    settle_counts(
        &mut sc,
        read_samples + parts.iter().map(|p: &PartMeta| p.samples).sum::<u64>(),
    );
    let mut footers = 0usize;
    for (file, keep, mut contents) in read {
        let bytes = std::fs::read(file).map_err(io(file))?;
        let f = OpenOptions::new()
            .write(true)
            .open(file)
            .map_err(io(file))?;
        if keep < bytes.len() {
            f.set_len(keep as u64).map_err(io(file))?;
            truncated += (bytes.len() - keep) as u64;
        }
        let mut data = bytes[..keep].to_vec();
        if sc.format == "csv" && !sc.csv_compat().has_footer() {
            if let Some(at) = find_xiao_totals(&data) {
                // The header's totals are still the placeholders: fill them in from the
                // rows that survived.
                let totals = xiao_totals(contents.samples, contents.span_us);
                use std::os::unix::fs::FileExt;
                f.write_all_at(&totals, at as u64).map_err(io(file))?;
                data[at..at + totals.len()].copy_from_slice(&totals);
            }
        } else if sc.format == "csv" && contents.footer.is_none() {
            let mut footer = Vec::new();
            Footer {
                samples: contents.samples,
                dropped: sc.dropped.total(),
            }
            .write_for(sc.csv_compat(), &mut footer);
            let mut f = OpenOptions::new()
                .append(true)
                .open(file)
                .map_err(io(file))?;
            f.write_all(&footer).map_err(io(file))?;
            data.extend_from_slice(&footer);
            footers += 1;
            contents.footer = Some(Footer::default());
        }
        let f = OpenOptions::new()
            .write(true)
            .open(file)
            .map_err(io(file))?;
        f.sync_all().map_err(io(file))?;
        if let Ok(m) = std::fs::metadata(file).and_then(|m| m.modified()) {
            latest = Some(latest.map_or(m, |l: std::time::SystemTime| l.max(m)));
        }
        parts.push(PartMeta {
            file: crate::store::sidecar::file_name(file),
            samples: contents.samples,
            bytes: data.len() as u64,
            sha256: Some(hex::encode(Sha256::digest(&data))),
        });
    }
    let samples: u64 = parts.iter().map(|p| p.samples).sum();
    sc.file_size = parts.iter().map(|p| p.bytes).sum();
    sc.sha256 = match &parts[..] {
        [one] => one.sha256.clone(),
        _ => None,
    };
    sc.parts = parts;
    if let (Some(m), Ok(start)) = (latest, DateTime::parse_from_rfc3339(&sc.start_utc)) {
        let end: DateTime<Utc> = m.into();
        sc.end_utc = Some(end.to_rfc3339_opts(SecondsFormat::Micros, false));
        let d = (end - start.with_timezone(&Utc))
            .num_microseconds()
            .unwrap_or(0);
        sc.duration_s = (d.max(0) as f64) / 1e6;
        if sc.duration_s > 0.0 {
            sc.average_rate_hz = samples as f64 / sc.duration_s;
        }
    }
    let first_file = sc.xiao.as_ref().map(|x| PathBuf::from(&x.file_path));
    sc.refresh_xiao_fields(&first_file.unwrap_or_else(|| files[0].clone()));
    if sc.state == RecordingState::Recording {
        sc.stop_reason = Some("the recorder process died; recovered".into());
    }
    sc.state = RecordingState::Recovered;
    sc.write_atomic(&sc_path)?;
    Ok(RecoverReport {
        sidecar: sc_path,
        repaired: true,
        truncated_bytes: truncated,
        footers_added: footers,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sidecar::DroppedCounts;
    use crate::store::sidecar::tests::finished;

    #[test]
    fn settled_counts_balance_both_ways() {
        let dropped = DroppedCounts {
            ring: 3,
            ..DroppedCounts::default()
        };
        // The last refresh said 100 produced; the files hold 120 rows: produced after all.
        let mut sc = finished(100, 90, dropped);
        sc.state = RecordingState::Recording;
        settle_counts(&mut sc, 120);
        sc.state = RecordingState::Recovered;
        assert_eq!((sc.produced, sc.samples, sc.dropped.writer), (123, 120, 0));
        assert_eq!(sc.accounting_problem(), None);
        // The last refresh said 100 produced; only 60 rows reached the files.
        let mut sc = finished(100, 90, dropped);
        settle_counts(&mut sc, 60);
        assert_eq!((sc.produced, sc.samples, sc.dropped.writer), (100, 60, 37));
        assert_eq!(sc.accounting_problem(), None);
        // A remote recording: what is not in the file is still at the gateway.
        let mut remote = finished(100, 90, dropped);
        remote.device.insert("transport".into(), "kwik".into());
        settle_counts(&mut remote, 60);
        assert_eq!((remote.produced, remote.dropped.writer), (63, 0));
        assert_eq!(remote.accounting_problem(), None);
    }
}
