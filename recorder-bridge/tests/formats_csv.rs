//! CSV as other tools read it: the XIAO recorder's layout (`CsvCompat::Xiao`) and fixed
//! decimals, through real recordings, `verify`, `recover`, and a polars notebook.

mod py;

use std::path::Path;
use std::time::Duration;

use kwik_recorder::{
    CsvCompat, CsvOptions, Decimals, EfieldSample, FloatText, Format, ImuRow, RecordingConfig,
    RecordingGroup, RecordingState, RelMicros, Sidecar, StagePosition, XIAO_TITLE, parse_csv,
    recover, ring, sidecar_path, verify,
};

fn config(dir: &Path, format: Format) -> RecordingConfig {
    let mut c = RecordingConfig {
        out_dir: dir.to_path_buf(),
        format,
        sync_interval: Duration::from_millis(20),
        status_interval: Duration::from_millis(50),
        poll_interval: Duration::from_millis(1),
        ..RecordingConfig::default()
    };
    c.device.insert("name".into(), "XIAO Sense IMU".into());
    c.device.insert("kind".into(), "xiao-serial".into());
    c
}

fn xiao(comment_header: bool) -> Format {
    Format::Csv(CsvOptions {
        comment_header,
        compat: CsvCompat::Xiao,
        ..CsvOptions::default()
    })
}

fn imu(i: u64) -> ImuRow {
    let f = i as f32;
    ImuRow {
        millis: 1000 + 40 * i as u32,
        ax: f * 0.001,
        ay: -f * 0.25,
        az: 1.0,
        gx: f.sin(),
        gy: 1e-20 * f,
        gz: 3.5,
        temp_c: 24.5,
        audio_rms: f.sqrt(),
    }
}

fn record_imu(dir: &Path, format: Format, n: u64) -> std::path::PathBuf {
    let (mut w, r) = ring::<ImuRow>(n as usize + 1);
    w.push_slice(&(0..n).map(imu).collect::<Vec<_>>());
    let mut g = RecordingGroup::new(config(dir, format));
    g.add_stream("imu", r);
    let summary = g.start().unwrap().stop();
    summary.files[0][0].clone()
}

/// The XIAO header with real totals (patched at close), no footer, the XIAO sidecar
/// fields beside KWIK's, and `verify` content with all of it.
#[test]
fn xiao_compat_header_totals_and_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let file = record_imu(dir.path(), xiao(true), 251);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    assert_eq!(lines[0], format!("# {XIAO_TITLE}"));
    assert!(lines[1].starts_with("# Start Time: 20"), "{}", lines[1]);
    assert_eq!(lines[2], "# Device: XIAO Sense IMU");
    // 251 rows 40 ms apart: 10.0 s from first to last, 25.1 Hz.
    assert_eq!(lines[3], "# Recording Duration: 00:00:10.0");
    assert_eq!(lines[4], "# Total Samples: 251");
    assert_eq!(lines[5], "# Sample Rate: 25.1 Hz (average)");
    assert_eq!(lines[6], "millis,ax,ay,az,gx,gy,gz,tempC,audioRMS");
    assert_eq!(lines.len(), 7 + 251, "no footer line");
    let parsed = parse_csv::<ImuRow>(text.as_bytes()).unwrap();
    assert_eq!(parsed.rows, (0..251).map(imu).collect::<Vec<_>>());
    assert!(parsed.footer.is_none());
    let report = verify(&file).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar_path(&file)).unwrap()).unwrap();
    assert_eq!(meta["total_samples"], 251);
    assert_eq!(meta["samples"], 251);
    assert_eq!(meta["device_info"]["name"], "XIAO Sense IMU");
    assert_eq!(meta["device_info"]["connection_type"], "USB serial");
    assert_eq!(meta["file_size_bytes"], text.len() as u64);
    assert_eq!(meta["session_id"].as_str().unwrap().len(), 32);
    assert!(meta["recording_settings"]["compat"] == "xiao");
    if let Some(python) = py::python() {
        let out = py::run(&python, "xiao_notebook.py", &[&file, &sidecar_path(&file)]);
        assert!(out.contains("ok 251 rows"), "{out}");
    }
}

/// Without comment lines a XIAO-compatible file is the header row and the rows only:
/// what `pandas.read_csv(path)` with no options reads.
#[test]
fn xiao_compat_without_comments_is_header_and_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = record_imu(dir.path(), xiao(false), 30);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("millis,ax,"));
    assert!(!text.contains('#'));
    assert_eq!(text.lines().count(), 31);
    assert!(verify(&file).unwrap().is_ok());
}

/// A XIAO-compatible recording cut by a crash: `recover` cuts the partial row, fills
/// the totals from the rows that survived and adds no footer.
#[test]
fn recover_fills_the_xiao_totals() {
    let dir = tempfile::tempdir().unwrap();
    let file = record_imu(dir.path(), xiao(true), 100);
    // Make it look like a crash: placeholders back, half a row on the end, sidecar
    // still recording.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = kwik_recorder::find_xiao_totals(&bytes).unwrap();
    let zero = kwik_recorder::xiao_totals(0, 0);
    bytes[at..at + zero.len()].copy_from_slice(&zero);
    let cut = bytes.len() - 10;
    bytes.truncate(cut);
    std::fs::write(&file, &bytes).unwrap();
    let sc_path = sidecar_path(&file);
    let mut sc = Sidecar::read(&sc_path).unwrap();
    sc.state = RecordingState::Recording;
    sc.write_atomic(&sc_path).unwrap();
    let r = recover(&file).unwrap();
    assert_eq!(r.samples, 99);
    assert_eq!(r.footers_added, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("# Total Samples: 99 "), "{text}");
    // 99 rows 40 ms apart: 3.92 s.
    assert!(text.contains("# Recording Duration: 00:00:03.9 "), "{text}");
    assert!(!text.contains("# end"));
    let report = verify(&file).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let sc = Sidecar::read(&sc_path).unwrap();
    assert_eq!(sc.xiao.unwrap().total_samples, 99);
}

/// The XIAO layout is refused for schemas the XIAO recorder never wrote.
#[test]
fn xiao_compat_is_for_imu_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_w, r) = ring::<EfieldSample>(4);
    let mut g = RecordingGroup::new(config(dir.path(), xiao(true)));
    g.add_stream("efield", r);
    let e = g.start().unwrap_err().to_string();
    assert!(e.contains("xiao-imu") && e.contains("efield"), "{e}");
}

/// `--decimals 6`: every float cell of every schema has exactly six decimals and no
/// exponent, reads back within half a unit of the sixth decimal, and the recording
/// verifies.
#[test]
fn fixed_decimals_in_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let format = Format::Csv(CsvOptions {
        floats: FloatText::Fixed(Decimals::try_from(6).unwrap()),
        ..CsvOptions::default()
    });
    let samples: Vec<EfieldSample> = (0..200u64)
        .map(|i| EfieldSample {
            index: i,
            t_rel: RelMicros(i * 125),
            channels: [
                2.449_293_5e-17 * i as f64,
                -0.1 * i as f64,
                1e6 + 0.123_456_7,
                -1e-9,
                i as f64 / 3.0,
                0.0,
                -0.0,
                12_345.678_912_5,
            ],
            ..EfieldSample::default()
        })
        .collect();
    let (mut w, r) = ring::<EfieldSample>(256);
    w.push_slice(&samples);
    let (mut ws, rs) = ring::<StagePosition>(16);
    ws.push_slice(&[StagePosition {
        x: 1e-7,
        y: -2.5,
        ..StagePosition::default()
    }]);
    let mut g = RecordingGroup::new(config(dir.path(), format));
    g.add_stream("efield", r).add_stream("stage", rs);
    let summary = g.start().unwrap().stop();
    for files in &summary.files {
        let text = std::fs::read_to_string(&files[0]).unwrap();
        for line in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
            for cell in line.split(',').skip(4) {
                assert!(!cell.contains('e'), "{cell} in {line}");
                let (_, frac) = cell.split_once('.').unwrap();
                assert_eq!(frac.len(), 6, "{cell}");
            }
        }
        assert!(verify(&files[0]).unwrap().is_ok());
        let sc = Sidecar::read(&sidecar_path(&files[0])).unwrap();
        assert_eq!(sc.csv.unwrap().decimals, Some(6));
        assert_eq!(sc.settings["decimals"], "6");
    }
    let text = std::fs::read(&summary.files[0][0]).unwrap();
    let back = parse_csv::<EfieldSample>(&text).unwrap().rows;
    assert_eq!(back.len(), samples.len());
    for (a, b) in back.iter().zip(&samples) {
        for (x, y) in a.channels.iter().zip(&b.channels) {
            assert!((x - y).abs() <= 0.5e-6 + y.abs() * 1e-15, "{x} vs {y}");
        }
    }
    let stage = std::fs::read_to_string(&summary.files[1][0]).unwrap();
    assert!(stage.contains(",0.000000,-2.500000\n"), "{stage}");
}
