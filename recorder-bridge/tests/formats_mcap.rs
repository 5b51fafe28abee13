//! MCAP, live and exported: every schema recorded to CSV and to MCAP from the same
//! samples, read back with the Python `mcap` reader message by message; `verify`;
//! `recover` of a file whose writer never closed it (the loss is exactly what followed
//! the last synced chunk); LabVIEW recordings exported; bad input to `export`.

mod fixtures;
mod py;

use fixtures::{Fixture, record};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kwik_recorder::{
    BatchWriter, EfieldSample, ExportError, Format, ImuRow, LabviewLayout, McapConfig, McapLayout,
    McapOptions, McapWriter, Sidecar, StagePosition, default_output, export, read_mcap,
    recover_mcap, sidecar_path, verify,
};

fn mcap() -> Format {
    Format::Mcap(McapOptions::default())
}

/// Runs the Python reader check of `file` against `csv` (skips without the venv).
fn compare(file: &Path, csv: &Path) {
    let sc = Sidecar::read(&sidecar_path(file)).unwrap();
    if let Some(python) = py::python() {
        let out = py::run(
            &python,
            "mcap_vs_csv.py",
            &[
                file,
                csv,
                Path::new(&sc.session_id),
                Path::new(&sc.stream),
                Path::new(&sc.schema),
            ],
        );
        assert!(out.starts_with("ok "), "{out}");
    }
}

/// The same samples live to CSV and to MCAP, and the CSV exported to MCAP: both MCAP
/// files verify, hold a summary, and every message equals the CSV row, as the Python
/// `mcap` reader reads them.
fn live_and_exported<S: Fixture>() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<S> = (0..3000).map(S::make).collect();
    let csv = record(&dir.path().join("csv"), Format::default(), &samples);
    let live = record(&dir.path().join("mcap"), mcap(), &samples);
    assert_eq!(live.extension().unwrap(), "mcap");
    let report = verify(&live).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let c = read_mcap(&live).unwrap();
    assert_eq!(c.messages, 3000);
    assert!(c.summary && c.damage.is_none(), "{c:?}");
    assert_eq!(c.summary_messages, Some(3000));
    assert_eq!(c.channels.len(), 1);
    assert_eq!(c.channels[0].1, format!("kwik.{}", S::NAME));
    let out = default_output(&csv, &mcap());
    let exported = export(&csv, &mcap(), &out).unwrap();
    assert_eq!(exported.samples, 3000);
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // A second export to the same place is refused, not overwritten.
    assert!(matches!(
        export(&csv, &mcap(), &out),
        Err(ExportError::Exists(_))
    ));
    compare(&live, &csv);
    compare(&out, &csv);
}

#[test]
fn imu_live_and_exported() {
    live_and_exported::<ImuRow>();
}

#[test]
fn efield_live_and_exported() {
    live_and_exported::<EfieldSample>();
}

#[test]
fn stage_live_and_exported() {
    live_and_exported::<StagePosition>();
}

/// A LabVIEW recording exported to MCAP and to Parquet: the messages and rows are the
/// LabVIEW rows (time, scan state, the six channels it carries), equal to the CSV of the
/// same samples.
#[test]
fn labview_exported() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<EfieldSample> = (0..2500).map(EfieldSample::make).collect();
    let csv = record(&dir.path().join("csv"), Format::default(), &samples);
    let layout = LabviewLayout::default().with_block(1000).unwrap();
    let lv = record(&dir.path().join("lv"), Format::Labview(layout), &samples);
    let out = dir.path().join("lv.mcap");
    let exported = export(&lv, &mcap(), &out).unwrap();
    assert_eq!(exported.samples, 2500);
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let sc = Sidecar::read(&sidecar_path(&out)).unwrap();
    assert_eq!(sc.schema, "efield-labview");
    compare(&out, &csv);
    // To Parquet too: the same rows as typed columns, read by pyarrow and polars.
    let pq = dir.path().join("lv-pq.parquet");
    let exported = export(&lv, &Format::Parquet(Default::default()), &pq).unwrap();
    assert_eq!(exported.samples, 2500);
    let report = verify(&pq).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        Sidecar::read(&sidecar_path(&pq)).unwrap().schema,
        "efield-labview"
    );
    assert_eq!(kwik_recorder::read_parquet(&pq).unwrap().rows, 2500);
    if let Some(python) = py::python() {
        let session = Sidecar::read(&sidecar_path(&pq)).unwrap().session_id;
        let out = py::run(
            &python,
            "parquet_vs_csv.py",
            &[&pq, &csv, Path::new(&session)],
        );
        assert!(out.starts_with("ok 2500 rows"), "{out}");
    }
    // A damaged block names its first line; nothing is left behind.
    let text = std::fs::read_to_string(&lv).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[16 + 3] = lines[16 + 3].replacen(',', ",x", 1);
    std::fs::write(&lv, lines.join("\n") + "\n").unwrap();
    let bad = dir.path().join("bad.mcap");
    let e = export(&lv, &mcap(), &bad).unwrap_err();
    assert!(e.to_string().contains("line 17:"), "{e}");
    assert!(!bad.exists());
    assert!(!dir.path().join("bad.mcap.partial").exists());
}

/// A writer that never closed its file (its process died) after 2 500 rows in synced
/// chunks and 300 more it had not synced, with a torn write after them: `read_mcap`
/// finds no summary, `recover_mcap` keeps exactly the synced rows (the loss is what
/// followed the last sync) and writes the summary, and the file then reads whole.
#[test]
fn recover_closes_a_file_that_was_never_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.mcap");
    let config = McapConfig {
        path: path.clone(),
        sync_interval: Duration::ZERO,
        start_utc_us: 1_700_000_000_000_000,
        stream: "efield".into(),
        metadata: vec![("session_id".into(), "s".into())],
        options: McapOptions::default(),
        size_limit: None,
    };
    let mut w = McapWriter::<EfieldSample>::create(config, Arc::new(|| 0)).unwrap();
    let samples: Vec<EfieldSample> = (0..2800).map(EfieldSample::make).collect();
    for chunk in samples[..2500].chunks(1000) {
        w.write_batch(chunk);
        w.tick(); // sync interval zero: one synced chunk per tick
    }
    w.write_batch(&samples[2500..]);
    // The process dies here: no summary; the page cache holds a torn write after it.
    std::mem::forget(w);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0x5a; 777]).unwrap();
    drop(f);
    let c = read_mcap(&path).unwrap();
    assert!(!c.summary && c.damage.is_some(), "{c:?}");
    assert_eq!(c.messages, 2500);
    let fallback = McapLayout::of::<EfieldSample>("efield");
    let extra = [("dropped".to_owned(), "0".to_owned())];
    let r = recover_mcap(&path, &fallback, &extra).unwrap();
    assert_eq!(r.messages, 2500);
    assert_eq!(r.truncated_bytes, 777);
    let c = read_mcap(&path).unwrap();
    assert!(c.summary && c.damage.is_none(), "{c:?}");
    assert_eq!((c.messages, c.summary_messages), (2500, Some(2500)));
    assert_eq!(
        c.channels,
        [("/efield".to_owned(), "kwik.efield".to_owned())]
    );
    assert!(c.metadata.contains(&("session_id".into(), "s".into())));
    assert!(c.metadata.contains(&("dropped".into(), "0".into())));
    // Recovering again changes nothing.
    assert_eq!(
        recover_mcap(&path, &fallback, &[]).unwrap(),
        kwik_recorder::McapRepair {
            messages: 2500,
            truncated_bytes: 0
        }
    );
}

/// Export of a damaged CSV fails with the line named and leaves nothing at the output
/// (no file, no `.partial`, no sidecar).
#[test]
fn export_of_bad_csv_names_the_line_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<StagePosition> = (0..200_000).map(StagePosition::make).collect();
    let csv = record(dir.path(), Format::default(), &samples);
    let good = std::fs::read(&csv).unwrap();
    let out = dir.path().join("out.mcap");
    let left = |out: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(out.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("out"))
            .collect();
        names.sort();
        names
    };
    // A row corrupted deep in the file (after the first chunks were written).
    let text = String::from_utf8(good.clone()).unwrap();
    let line = 150_010;
    let mut lines: Vec<&str> = text.lines().collect();
    let bad_row = lines[line - 1].replacen(',', ",x", 1);
    lines[line - 1] = &bad_row;
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let e = export(&csv, &mcap(), &out).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("line {line}")), "{msg}");
    assert!(left(&out).is_empty(), "{:?}", left(&out));
    // A file cut in the middle of a row.
    std::fs::write(&csv, &good[..good.len() - 40]).unwrap();
    let e = export(&csv, &mcap(), &out).unwrap_err();
    assert!(matches!(e, ExportError::CutLine { .. }), "{e}");
    assert!(left(&out).is_empty(), "{:?}", left(&out));
}

/// A size limit with splitting: the writer closes each part with its summary before
/// the next chunk could pass the limit; every part is a complete MCAP file under the
/// limit, and the messages continue from part to part.
#[test]
fn size_limit_splits_into_complete_parts() {
    let dir = tempfile::tempdir().unwrap();
    let limit = kwik_recorder::MIN_PART_BYTES;
    let config = McapConfig {
        path: dir.path().join("split.mcap"),
        sync_interval: Duration::ZERO,
        start_utc_us: 1_700_000_000_000_000,
        stream: "efield".into(),
        metadata: vec![("session_id".into(), "s".into())],
        options: McapOptions::default(),
        size_limit: Some(limit),
    };
    let mut w = McapWriter::<EfieldSample>::create(config, Arc::new(|| 0)).unwrap();
    let samples: Vec<EfieldSample> = (0..30_000).map(EfieldSample::make).collect();
    for chunk in samples.chunks(1000) {
        w.write_batch(chunk);
        w.tick();
    }
    let report = w.finish();
    assert_eq!(report.stop, None);
    assert!(report.parts.len() >= 3, "{:?}", report.parts);
    assert_eq!(report.parts[1].path, dir.path().join("split_part002.mcap"));
    let mut next = 0u64;
    for part in &report.parts {
        let bytes = std::fs::read(&part.path).unwrap();
        assert!(bytes.len() as u64 <= limit, "{} bytes", bytes.len());
        assert_eq!(bytes.len() as u64, part.bytes);
        let c = read_mcap(&part.path).unwrap();
        assert!(c.summary && c.damage.is_none(), "{c:?}");
        assert_eq!(c.messages, part.samples);
        for m in mcap::MessageStream::new(&bytes).unwrap() {
            let v: serde_json::Value = serde_json::from_slice(&m.unwrap().data).unwrap();
            assert_eq!(v["index"], next);
            next += 1;
        }
    }
    assert_eq!(next, 30_000);
}
