//! The `xiao-sim` binary: stdout and pseudo-terminal outputs carry decodable streams.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use xiao_proto::{Frame, FrameReader, SequenceTracker, parse_csv_line};

const BIN: &str = env!("CARGO_BIN_EXE_xiao-sim");

#[test]
fn stdout_frames_with_faults_decode_and_match_the_summary() {
    let out = Command::new(BIN)
        .args(["--seed", "5", "--rate", "1000", "--count", "2000", "--fast"])
        .args(["--drop", "0.02", "--corrupt", "0.02"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = FrameReader::new(out.stdout.as_slice());
    let mut tracker = SequenceTracker::new();
    for item in &mut reader {
        if let Ok(Frame::Sample(s)) = item.unwrap() {
            tracker.observe(s.seq);
        }
    }
    // "xiao-sim: 2000 samples, S sent, D dropped, C corrupted, ..."
    let summary = String::from_utf8(out.stderr).unwrap();
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (samples, sent, corrupted) = (numbers[0], numbers[1], numbers[3]);
    assert_eq!(samples, 2000);
    assert_eq!(tracker.received(), sent);
    assert_eq!(reader.stats().errors(), corrupted);
    assert!(corrupted > 0);
}

#[test]
fn stdout_csv_lines_parse() {
    let out = Command::new(BIN)
        .args(["--format", "csv", "--count", "50", "--fast"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(xiao_proto::CSV_HEADER));
    let rows: Vec<_> = lines.map(|l| parse_csv_line(l).unwrap()).collect();
    assert_eq!(rows.len(), 50);
    assert!(rows.windows(2).all(|w| w[1].millis == w[0].millis + 40));
}

#[test]
fn pty_output_is_readable_as_a_device() {
    let mut child = Command::new(BIN)
        .args([
            "--output",
            "pty",
            "--count",
            "100",
            "--rate",
            "1000",
            "--announce-ms",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let path = first.trim().to_owned();
    assert!(path.starts_with("/dev/"), "{path}");
    let device = std::fs::File::open(&path).unwrap();
    let mut reader = FrameReader::new(device.take(u64::MAX));
    let mut samples = 0;
    let mut infos = 0;
    while samples < 100 {
        let item = reader.next().unwrap();
        let Ok(item) = item else {
            panic!("after {samples} samples, {infos} infos: {item:?}")
        };
        match item.unwrap() {
            Frame::Sample(s) => {
                assert_eq!(s.seq.0, samples);
                samples += 1;
            }
            Frame::DeviceInfo(_) => infos += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(infos, 1);
    assert!(child.wait().unwrap().success());
}
