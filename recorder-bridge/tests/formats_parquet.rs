//! Parquet, live and exported: every schema recorded to CSV and to Parquet from the same
//! samples, read back with pyarrow and polars value by value; `verify`; `recover` of a
//! file whose writer never closed it; bad CSV input to `export`.

mod fixtures;
mod py;

use fixtures::{Fixture, record};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kwik_recorder::{
    BatchWriter, EfieldSample, ExportError, Format, ImuRow, ParquetConfig, ParquetOptions,
    ParquetWriter, Sidecar, StagePosition, default_output, export, journal_path, read_parquet,
    recover_parquet, sidecar_path, verify,
};

fn compare(parquet: &Path, csv: &Path) {
    let session = Sidecar::read(&sidecar_path(parquet)).unwrap().session_id;
    if let Some(python) = py::python() {
        let out = py::run(
            &python,
            "parquet_vs_csv.py",
            &[parquet, csv, Path::new(&session)],
        );
        assert!(out.starts_with("ok "), "{out}");
    }
}

/// The same samples live to CSV and to Parquet, and the CSV exported to Parquet: both
/// Parquet files verify and hold the CSV's values exactly, as pyarrow and polars read
/// them.
fn live_and_exported<S: Fixture>() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<S> = (0..3000).map(S::make).collect();
    let csv = record(&dir.path().join("csv"), Format::default(), &samples);
    let live = record(
        &dir.path().join("pq"),
        Format::Parquet(ParquetOptions::default()),
        &samples,
    );
    assert_eq!(live.extension().unwrap(), "parquet");
    assert!(!journal_path(&live).exists());
    let report = verify(&live).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let contents = read_parquet(&live).unwrap();
    assert_eq!(contents.rows, 3000);
    let format = Format::Parquet(ParquetOptions::default());
    let out = default_output(&csv, &format);
    let exported = export(&csv, &format, &out).unwrap();
    assert_eq!(exported.samples, 3000);
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let csv_bytes = std::fs::metadata(&csv).unwrap().len();
    assert!(
        exported.bytes < csv_bytes,
        "{} vs {csv_bytes}",
        exported.bytes
    );
    // A second export to the same place is refused, not overwritten.
    assert!(matches!(
        export(&csv, &format, &out),
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

/// A writer that never closed its file (its process died): the file has no footer and
/// ends in a half-written row group. `recover_parquet` cuts it after the last journalled
/// row group, and the file then opens with exactly those rows.
#[test]
fn recover_closes_a_file_that_was_never_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.parquet");
    let config = ParquetConfig {
        path: path.clone(),
        sync_interval: Duration::ZERO,
        start_utc_us: 1_700_000_000_000_000,
        metadata: vec![("kwik.session_id".into(), "s".into())],
        options: ParquetOptions::default(),
        size_limit: None,
    };
    let mut w = ParquetWriter::<EfieldSample>::create(config, Arc::new(|| 0)).unwrap();
    let samples: Vec<EfieldSample> = (0..2500).map(EfieldSample::make).collect();
    for chunk in samples.chunks(1000) {
        w.write_batch(chunk);
        w.tick(); // sync interval zero: one row group per tick
    }
    // The process dies here: no footer; the page cache holds a torn write after it.
    std::mem::forget(w);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0x5a; 777]).unwrap();
    drop(f);
    assert!(read_parquet(&path).is_err(), "no footer yet");
    let r = recover_parquet(&path, &[("kwik.dropped".into(), "0".into())]).unwrap();
    assert_eq!(r.rows, 2500);
    assert_eq!(r.truncated_bytes, 777);
    assert!(!journal_path(&path).exists());
    let c = read_parquet(&path).unwrap();
    assert_eq!((c.rows, c.row_groups), (2500, 3));
    assert!(c.metadata.contains(&("kwik.session_id".into(), "s".into())));
    assert!(c.metadata.contains(&("kwik.dropped".into(), "0".into())));
    // Recovering again changes nothing.
    assert_eq!(recover_parquet(&path, &[]).unwrap().rows, 2500);
}

/// Export of a damaged CSV fails with the line named and leaves nothing at the output
/// (no file, no `.partial`, no journal, no sidecar).
#[test]
fn export_of_bad_csv_names_the_line_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<EfieldSample> = (0..200_000).map(EfieldSample::make).collect();
    let csv = record(dir.path(), Format::default(), &samples);
    let good = std::fs::read(&csv).unwrap();
    let format = Format::Parquet(ParquetOptions::default());
    let out = dir.path().join("out.parquet");
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
    // A row corrupted deep in the file (after the first row groups were written).
    let text = String::from_utf8(good.clone()).unwrap();
    let line = 150_010;
    let mut lines: Vec<&str> = text.lines().collect();
    let bad_row = lines[line - 1].replacen(',', ",x", 1);
    lines[line - 1] = &bad_row;
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let e = export(&csv, &format, &out).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("line {line}")), "{msg}");
    assert!(left(&out).is_empty(), "{:?}", left(&out));
    // A file cut in the middle of a row.
    std::fs::write(&csv, &good[..good.len() - 40]).unwrap();
    let e = export(&csv, &format, &out).unwrap_err();
    assert!(matches!(e, ExportError::CutLine { .. }), "{e}");
    assert!(e.to_string().contains("recover"), "{e}");
    assert!(left(&out).is_empty(), "{:?}", left(&out));
}

/// A size limit with splitting: the writer closes each part with its footer before a
/// row group would take it past the limit; every part is a complete Parquet file under
/// the limit, and the rows continue from part to part.
#[test]
fn size_limit_splits_into_complete_parts() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let dir = tempfile::tempdir().unwrap();
    let limit = 200_000;
    let config = ParquetConfig {
        path: dir.path().join("split.parquet"),
        sync_interval: Duration::ZERO,
        start_utc_us: 1_700_000_000_000_000,
        metadata: vec![("kwik.session_id".into(), "s".into())],
        options: ParquetOptions::default(),
        size_limit: Some(limit),
    };
    let mut w = ParquetWriter::<EfieldSample>::create(config, Arc::new(|| 0)).unwrap();
    let samples: Vec<EfieldSample> = (0..30_000).map(EfieldSample::make).collect();
    for chunk in samples.chunks(1000) {
        w.write_batch(chunk);
        w.tick(); // sync interval zero: one row group per tick
    }
    let report = w.finish();
    assert_eq!(report.stop, None);
    assert!(report.parts.len() >= 3, "{:?}", report.parts);
    assert_eq!(
        report.parts[1].path,
        dir.path().join("split_part002.parquet")
    );
    let mut next = 0u64;
    for part in &report.parts {
        let len = std::fs::metadata(&part.path).unwrap().len();
        assert!(len <= limit, "{len} bytes");
        assert_eq!(len, part.bytes);
        assert!(!journal_path(&part.path).exists());
        let c = read_parquet(&part.path).unwrap();
        assert_eq!(c.rows, part.samples);
        assert!(c.metadata.contains(&("kwik.session_id".into(), "s".into())));
        let reader = SerializedFileReader::new(std::fs::File::open(&part.path).unwrap()).unwrap();
        for row in reader.get_row_iter(None).unwrap() {
            assert_eq!(row.unwrap().get_ulong(0).unwrap(), next);
            next += 1;
        }
    }
    assert_eq!(next, 30_000);
}
