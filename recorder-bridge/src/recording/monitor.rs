//! A recording group's monitor thread (limits, free-disk checks, sidecar refreshes, then
//! finalisation) and the status and sidecars it reads off the shared state.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};

use crate::format::csv::CsvOptions;
use crate::format::encoder::Format;
use crate::format::number::FloatText;
use crate::recording::config::settings_of;
use crate::recording::shared::{GroupShared, StreamShared};
use crate::recording::status::{GroupState, GroupStatus, RecordingSummary, StreamStatus};
use crate::store::disk;
use crate::store::file_writer::{WriterStop, part_path};
use crate::store::sidecar::{
    CsvMeta, LabviewMeta, PartMeta, RecordingState, SIDECAR_VERSION, Sidecar, SidecarError,
    file_name,
};
use crate::sync::lock_std as lock;

fn sidecar_of(group: &GroupShared, s: &StreamShared, state: RecordingState) -> Sidecar {
    let cfg = &group.config;
    let elapsed = group.elapsed();
    let report = lock(&s.report).clone();
    let parts: Vec<PartMeta> = match &report {
        Some(r) => r.parts.iter().map(PartMeta::from_part).collect(),
        None => (1..=s.progress.parts().max(1) as u32)
            .map(|n| PartMeta {
                file: file_name(&part_path(&s.base, n)),
                samples: 0,
                bytes: 0,
                sha256: None,
            })
            .collect(),
    };
    let samples = s.in_files();
    let file_size = match &report {
        Some(r) => r.parts.iter().map(|p| p.bytes).sum(),
        None => s.progress.bytes(),
    };
    let secs = elapsed.as_secs_f64();
    let now = Utc::now();
    let format = cfg.format.for_schema(s.schema);
    let mut sc = Sidecar {
        version: SIDECAR_VERSION,
        session_id: group.id.0.clone(),
        stream: s.name.clone(),
        schema: s.schema.to_owned(),
        format: format.name().to_owned(),
        labview: match &format {
            Format::Labview(l) => Some(LabviewMeta {
                block: l.block(),
                constants: l.constants().to_vec(),
            }),
            _ => None,
        },
        csv: csv_meta(&format),
        state,
        start_utc: group
            .start_utc
            .to_rfc3339_opts(SecondsFormat::Micros, false),
        end_utc: Some(now.to_rfc3339_opts(SecondsFormat::Micros, false)),
        duration_s: secs,
        samples,
        produced: s.produced.load(Ordering::Relaxed),
        filtered_inactive: s.filtered.load(Ordering::Relaxed),
        dropped: s.dropped(),
        average_rate_hz: if secs > 0.0 {
            samples as f64 / secs
        } else {
            0.0
        },
        file_size,
        sha256: match &parts[..] {
            [one] => one.sha256.clone(),
            _ => None,
        },
        parts,
        device: group.device_notes.over(&cfg.device),
        settings: settings_of(cfg),
        stop_reason: lock(&group.stop_reason).clone(),
        warnings: lock(&group.warnings).clone(),
        xiao: None,
    };
    sc.refresh_xiao_fields(&s.base);
    sc
}

/// The CSV settings a sidecar records, when they differ from the defaults.
pub(crate) fn csv_meta(format: &Format) -> Option<CsvMeta> {
    match format {
        Format::Csv(o) if *o != CsvOptions::default() => Some(CsvMeta {
            compat: o.compat.name().to_owned(),
            decimals: match o.floats {
                FloatText::Fixed(d) => Some(d.get()),
                FloatText::Shortest => None,
            },
            comment_header: o.comment_header,
        }),
        _ => None,
    }
}

pub(crate) fn write_sidecar(
    group: &GroupShared,
    s: &StreamShared,
    state: RecordingState,
) -> Result<(), SidecarError> {
    sidecar_of(group, s, state).write_atomic(&s.sidecar)
}

fn warn(group: &GroupShared, msg: String) {
    let mut w = lock(&group.warnings);
    if !w.contains(&msg) {
        w.push(msg);
    }
}

/// Monitor thread: limits, disk checks, sidecar refresh, then finalisation.
pub(crate) fn monitor(group: Arc<GroupShared>, workers: Vec<JoinHandle<()>>) -> RecordingSummary {
    let cfg = &group.config;
    let step = Duration::from_millis(20).min(cfg.status_interval);
    let mut last_refresh = Instant::now();
    let mut last_bytes = 0u64;
    let mut last_check = Instant::now();
    let mut warned_ttf = false;
    while !group.stop.load(Ordering::Acquire) && !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(step);
        if let Some(limit) = cfg.duration_limit {
            if group.t0.elapsed() >= limit {
                group.request_stop("duration limit");
                break;
            }
        }
        if last_refresh.elapsed() >= cfg.status_interval {
            let bytes: u64 = group.streams.iter().map(|s| s.progress.bytes()).sum();
            let dt = last_check.elapsed().as_secs_f64();
            let rate = (bytes.saturating_sub(last_bytes)) as f64 / dt.max(1e-3);
            last_bytes = bytes;
            last_check = Instant::now();
            if let Ok(free) = disk::free_bytes(&group.day_dir) {
                group.free.store(free, Ordering::Relaxed);
                if free < cfg.min_free_bytes {
                    warn(
                        &group,
                        format!("free disk space fell to {free} bytes; recording stopped"),
                    );
                    group.request_stop("disk nearly full");
                    break;
                }
                let usable = free - cfg.min_free_bytes;
                if let Some(ttf) = disk::time_to_full(usable, rate) {
                    if ttf < cfg.warn_time_to_full && !warned_ttf {
                        warned_ttf = true;
                        warn(
                            &group,
                            format!(
                                "disk projected full in {:.0} s at {:.0} B/s",
                                ttf.as_secs_f64(),
                                rate
                            ),
                        );
                    }
                }
            }
            for s in &group.streams {
                // A failed refresh is retried at the next interval; the data files are
                // what matters.
                let _ = write_sidecar(&group, s, RecordingState::Recording);
            }
            last_refresh = Instant::now();
        }
    }
    group.request_stop("stopped");
    for w in workers {
        let _ = w.join();
    }
    *lock(&group.ended) = Some(group.t0.elapsed());
    let failed = group.streams.iter().any(|s| {
        matches!(
            lock(&s.report).as_ref().and_then(|r| r.stop.clone()),
            Some(WriterStop::Io { .. })
        )
    });
    let (gstate, fstate) = if failed {
        (GroupState::Failed, RecordingState::Failed)
    } else {
        (GroupState::Finished, RecordingState::Finished)
    };
    let mut sidecar_errors = Vec::new();
    for s in &group.streams {
        if let Err(e) = write_sidecar(&group, s, fstate) {
            sidecar_errors.push(e.to_string());
        }
    }
    for e in sidecar_errors {
        warn(&group, format!("sidecar not finalised: {e}"));
    }
    *lock(&group.state) = gstate;
    group.wake_progress();
    summary(&group)
}

pub(crate) fn status(group: &GroupShared) -> GroupStatus {
    let elapsed = group.elapsed().as_secs_f64();
    let free = group.free.load(Ordering::Relaxed);
    let streams: Vec<StreamStatus> = group
        .streams
        .iter()
        .map(|s| {
            let samples = s.in_files();
            StreamStatus {
                name: s.name.clone(),
                schema: s.schema,
                file: s.progress.current_file(),
                sidecar: s.sidecar.clone(),
                parts: s.progress.parts(),
                bytes: s.progress.bytes(),
                produced: s.produced.load(Ordering::Relaxed),
                samples,
                rate_hz: if elapsed > 0.0 {
                    samples as f64 / elapsed
                } else {
                    0.0
                },
                filtered_inactive: s.filtered.load(Ordering::Relaxed),
                dropped: s.dropped(),
            }
        })
        .collect();
    let bytes: u64 = streams.iter().map(|s| s.bytes).sum();
    let rate = if elapsed > 0.0 {
        bytes as f64 / elapsed
    } else {
        0.0
    };
    GroupStatus {
        session_id: group.id.clone(),
        state: *lock(&group.state),
        duration_s: elapsed,
        free_disk_bytes: free,
        time_to_full_s: disk::time_to_full(free.saturating_sub(group.config.min_free_bytes), rate)
            .map(|d| d.as_secs_f64()),
        stop_reason: lock(&group.stop_reason).clone(),
        warnings: lock(&group.warnings).clone(),
        streams,
    }
}

pub(crate) fn summary(group: &GroupShared) -> RecordingSummary {
    RecordingSummary {
        status: status(group),
        files: group
            .streams
            .iter()
            .map(|s| match &*lock(&s.report) {
                Some(r) => r.parts.iter().map(|p| p.path.clone()).collect(),
                None => vec![s.base.clone()],
            })
            .collect(),
    }
}
