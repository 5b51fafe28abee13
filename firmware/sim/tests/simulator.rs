//! The simulator's bytes decode with the host decoder, and injected faults are
//! detected and counted exactly.

use std::io::Read;
use std::num::NonZeroU32;
use xiao_proto::{
    Frame, FrameDecoder, FrameReader, ImuSample, SeqNo, SequenceTracker, StreamFormat,
    parse_csv_line,
};
use xiao_sim::{Fate, Faults, Pacing, Probability, Pty, SimConfig, Simulator};

fn rate(hz: u32) -> NonZeroU32 {
    NonZeroU32::new(hz).unwrap()
}

fn decode_all(bytes: &[u8]) -> (Vec<Frame>, FrameDecoder) {
    let mut decoder = FrameDecoder::new();
    let frames = decoder.decode(bytes).flatten().collect();
    (frames, decoder)
}

fn samples(frames: &[Frame]) -> Vec<ImuSample> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Sample(s) => Some(*s),
            _ => None,
        })
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let run = |seed| -> Vec<u8> {
        Simulator::new(SimConfig::new(seed, rate(100)))
            .take(200)
            .flatten()
            .collect()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn output_decodes_to_the_ticks_samples() {
    let mut sim = Simulator::new(SimConfig::new(3, rate(50)));
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..500 {
        let tick = sim.tick();
        assert_eq!(tick.fate, Fate::Sent);
        stream.extend_from_slice(&tick.bytes);
        expected.push(tick.sample);
    }
    let (frames, decoder) = decode_all(&stream);
    assert_eq!(decoder.stats().errors(), 0);
    // 500 samples at 50 Hz span 10 s: announcements at 0, 2, 4, 6 and 8 s.
    assert_eq!(sim.stats().info_frames, 5);
    assert_eq!(frames.len(), 505);
    assert!(matches!(frames[101], Frame::DeviceInfo(_)));
    let Frame::DeviceInfo(info) = frames[0] else {
        panic!("first frame is {:?}", frames[0])
    };
    assert_eq!(
        (info.rate_hz, info.accel_range_g, info.gyro_range_dps),
        (50, 4, 2000)
    );
    let got = samples(&frames);
    assert_eq!(got.len(), 500);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(g.bitwise_eq(e));
        assert_eq!(g.seq, SeqNo(i as u32));
        assert_eq!(g.millis, i as u32 * 20);
        // Plausible physical values from the synthetic sensors.
        assert!((g.accel_g[2] - 1.0).abs() < 0.1, "{g:?}");
        assert!(g.gyro_dps.iter().all(|d| d.abs() < 60.0), "{g:?}");
        assert!((20.0..28.0).contains(&g.temp_c), "{g:?}");
        assert!((0.0..3000.0).contains(&g.audio_rms), "{g:?}");
    }
    assert_eq!(sim.stats().bytes, stream.len() as u64);
}

#[test]
fn faults_are_detected_and_counted_exactly() {
    let config = SimConfig {
        faults: Faults {
            drop: Probability::try_from(0.03).unwrap(),
            corrupt: Probability::try_from(0.05).unwrap(),
        },
        ..SimConfig::new(11, rate(200))
    };
    let mut sim = Simulator::new(config);
    let mut stream = Vec::new();
    let mut delivered = Vec::new();
    for _ in 0..5000 {
        let tick = sim.tick();
        if tick.fate == Fate::Sent {
            delivered.push(tick.sample.seq);
        }
        stream.extend_from_slice(&tick.bytes);
    }
    let stats = *sim.stats();
    assert!(stats.dropped > 50 && stats.corrupted > 100, "{stats:?}");
    assert_eq!(stats.sent + stats.dropped + stats.corrupted, 5000);

    // Decode in uneven chunks, as from a serial port.
    let mut decoder = FrameDecoder::new();
    let mut tracker = SequenceTracker::new();
    let mut got = Vec::new();
    for chunk in stream.chunks(61) {
        for frame in decoder.decode(chunk).flatten() {
            if let Frame::Sample(s) = frame {
                tracker.observe(s.seq);
                got.push(s.seq);
            }
        }
    }
    assert_eq!(got, delivered);
    assert_eq!(decoder.stats().errors(), stats.corrupted);
    assert_eq!(
        decoder.stats().crc_errors + decoder.stats().cobs_errors,
        stats.corrupted
    );
    // Every lost sample between the first and last delivered shows up as missing.
    let first = delivered[0].0 as u64;
    let last = delivered.last().unwrap().0 as u64;
    let lost_inside = (last - first + 1) - delivered.len() as u64;
    assert_eq!(tracker.missing(), lost_inside);
    assert_eq!(
        tracker.missing() + first + (4999 - last),
        stats.dropped + stats.corrupted
    );
}

#[test]
fn csv_format_parses() {
    let config = SimConfig {
        format: StreamFormat::Csv,
        ..SimConfig::new(5, rate(25))
    };
    let mut sim = Simulator::new(config);
    for i in 0..100u32 {
        let tick = sim.tick();
        let mut line = std::str::from_utf8(&tick.bytes).unwrap();
        if i == 0 {
            let header = format!("{}\r\n", xiao_proto::CSV_HEADER);
            line = line.strip_prefix(header.as_str()).unwrap();
        }
        assert!(line.ends_with("\r\n"));
        let r = parse_csv_line(line).unwrap();
        assert_eq!(r.millis, i * 40);
        assert!((r.accel_g[2] - tick.sample.accel_g[2]).abs() < 1e-4);
    }
}

#[test]
fn threaded_stream_reads_like_a_serial_port() {
    let stream = Simulator::new(SimConfig::new(9, rate(1000))).spawn(Pacing::Unpaced, Some(3000));
    let mut reader = FrameReader::new(stream);
    let mut tracker = SequenceTracker::new();
    for item in &mut reader {
        if let Frame::Sample(s) = item.unwrap().unwrap() {
            tracker.observe(s.seq);
        }
    }
    assert_eq!(reader.stats().errors(), 0);
    let stats = reader.into_inner().stop();
    assert_eq!(stats.samples, 3000);
    assert_eq!(tracker.received(), 3000);
    assert_eq!(tracker.missing(), 0);
}

#[test]
fn raw_read_returns_every_byte() {
    let mut stream = Simulator::new(SimConfig::new(4, rate(100))).spawn(Pacing::Unpaced, Some(300));
    let mut got = Vec::new();
    let mut buf = [0u8; 33];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let expected: Vec<u8> = {
        let mut sim = Simulator::new(SimConfig::new(4, rate(100)));
        (0..300).flat_map(|_| sim.tick().bytes).collect()
    };
    assert_eq!(got, expected);
    assert_eq!(stream.stop().bytes, expected.len() as u64);
}

#[test]
fn real_time_stream_runs_and_stops_early() {
    let mut stream = Simulator::new(SimConfig::new(1, rate(500))).spawn(Pacing::RealTime, None);
    let mut decoder = FrameDecoder::new();
    let mut seen = 0;
    while seen < 20 {
        let chunk = stream.recv_chunk().unwrap();
        seen += decoder
            .decode(&chunk)
            .flatten()
            .filter(|f| matches!(f, Frame::Sample(_)))
            .count();
    }
    let stats = stream.stop();
    assert!(stats.samples >= 20);
}

#[test]
fn pty_carries_the_bytes_unchanged() {
    let mut pty = Pty::open().unwrap();
    let path = pty.slave_path().to_owned();
    let mut reader = std::fs::File::open(&path).unwrap();
    let mut sim = Simulator::new(SimConfig::new(2, rate(100)));
    let mut sent = Vec::new();
    let writer = std::thread::spawn({
        let chunks: Vec<Vec<u8>> = (&mut sim).take(50).collect();
        move || {
            use std::io::Write;
            for c in &chunks {
                pty.write_all(c).unwrap();
            }
            pty.flush().unwrap();
            (chunks, pty)
        }
    });
    let (chunks, _pty) = writer.join().unwrap();
    for c in &chunks {
        sent.extend_from_slice(c);
    }
    let mut got = vec![0u8; sent.len()];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(got, sent);
    let (frames, decoder) = decode_all(&got);
    assert_eq!(decoder.stats().errors(), 0);
    assert_eq!(samples(&frames).len(), 50);
}

#[test]
fn pty_is_not_inherited_by_child_processes() {
    let pty = Pty::open().unwrap();
    // A child holding the master would keep the "board" alive after the Pty is dropped.
    let out = std::process::Command::new("ls")
        .args(["-l", "/proc/self/fd"])
        .output()
        .unwrap();
    let fds = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!fds.contains("ptmx"), "the master leaked: {fds}");
    assert!(
        !fds.contains(&*pty.slave_path().to_string_lossy()),
        "the slave leaked: {fds}"
    );
}
