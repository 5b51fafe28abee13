//! The free-disk guard with a real reserve, on a real small filesystem: a tmpfs that
//! the test mounts (it needs root, as in CI; elsewhere each test prints why it skips).
//! A recording refuses to start below the reserve, and one that eats into the
//! reserve stops cleanly with "disk nearly full" after warning of the time to full,
//! leaving files that verify.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kwik_recorder::{
    EfieldSample, Format, RateHz, RecordingConfig, RecordingGroup, RecordingState, Sidecar,
    SignalGenerator, SimEfield, StartError, parse_csv, ring, sidecar_path, verify,
};

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB, or says why it cannot (and the test skips).
    fn mount(mib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here (needs root, as in CI)");
            return None;
        }
        Some(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

fn config(dir: &Path, reserve: u64) -> RecordingConfig {
    let mut c = RecordingConfig {
        out_dir: dir.to_path_buf(),
        format: Format::default(),
        min_free_bytes: reserve,
        sync_interval: Duration::from_millis(50),
        status_interval: Duration::from_millis(50),
        poll_interval: Duration::from_millis(1),
        ..RecordingConfig::default()
    };
    c.export.batch = 256;
    c
}

#[test]
fn refuses_to_start_below_the_reserve() {
    let Some(disk) = Tmpfs::mount(4) else { return };
    let (_w, r) = ring::<EfieldSample>(16);
    let mut g = RecordingGroup::new(config(&disk.path, 8 << 20));
    g.add_stream("efield", r);
    let Err(e) = g.start() else {
        panic!("a 4 MiB disk is below an 8 MiB reserve");
    };
    assert!(
        matches!(e, StartError::DiskFull { min, free, .. } if min == 8 << 20 && free <= 4 << 20),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("below the 8388608 byte reserve"), "{text}");
    // No data file or sidecar was created (the day folder may have been).
    let mut files = Vec::new();
    let mut dirs = vec![disk.path.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn stops_with_disk_nearly_full_and_files_that_verify() {
    // 64 MiB disk, 48 MiB reserve: 16 MiB may be written; the source offers about
    // 30 MiB of rows, paced so the guard sees the disk fill (and warns first). The
    // reserve is never reached by the writer, so this is the guard, not ENOSPC.
    let Some(disk) = Tmpfs::mount(64) else { return };
    let reserve = 48 << 20;
    let (mut w, r) = ring::<EfieldSample>(1 << 16);
    let mut g = RecordingGroup::new(config(&disk.path, reserve));
    g.add_stream("efield", r);
    let rec = g.start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let source = SimEfield {
                rate: RateHz::try_from(100_000).unwrap(),
            };
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if i < 200_000 {
                    for _ in 0..1000 {
                        w.push(source.sample(i));
                        i += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            i
        })
    };
    let summary = rec.wait();
    stop.store(true, Ordering::Relaxed);
    let pushed = producer.join().unwrap();
    assert_eq!(
        summary.status.stop_reason.as_deref(),
        Some("disk nearly full")
    );
    let st = &summary.status.streams[0];
    // Stopped by the guard well before the source's 200 000 samples, with everything
    // pushed until then recorded or counted.
    assert!(st.samples > 0 && st.samples < 200_000, "{st:?}");
    assert_eq!(st.samples + st.dropped.total(), st.produced, "{st:?}");
    assert!(st.produced <= pushed, "{st:?}");
    let file = &summary.files[0][0];
    let report = verify(file).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let sc = Sidecar::read(&sidecar_path(file)).unwrap();
    assert_eq!(sc.state, RecordingState::Finished);
    assert_eq!(sc.stop_reason.as_deref(), Some("disk nearly full"));
    assert!(
        sc.warnings
            .iter()
            .any(|w| w.contains("disk projected full in")),
        "{:?}",
        sc.warnings
    );
    // The rows are the source's samples, value by value, in order (a ring overrun on
    // a loaded machine would skip some: counted, and checked by verify above).
    let rows = parse_csv::<EfieldSample>(&std::fs::read(file).unwrap())
        .unwrap()
        .rows;
    assert_eq!(rows.len() as u64, sc.samples);
    let source = SimEfield {
        rate: RateHz::try_from(100_000).unwrap(),
    };
    let mut last = None;
    for row in &rows {
        assert_eq!(*row, source.sample(row.index));
        assert!(last.is_none_or(|l| row.index > l));
        last = Some(row.index);
    }
    assert!(available(&disk.path) >= reserve / 2);
}

/// Bytes still available on the test disk (the writer never came near ENOSPC).
fn available(path: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}
