//! Fan-in benchmark (ignored by `cargo test`): N simulated devices, each behind its
//! own gateway and KWIK session, streaming at R Hz into one `kwik-record serve`
//! process. The devices run in P load-generator processes (`kwik-record stream
//! --fleet`), so that the figure measured is the server's, not one generator's.
//! Reports, per rate, what the server wrote against what the devices produced, the
//! server process's CPU (and CPU per 100 k samples/s) and peak RSS, the gateways'
//! stream writes (batching), how many gateways had a session fail, the datagrams the
//! kernel dropped at the server's socket, and whether every device's file equals its
//! simulator value by value (`FANIN_VERIFY=0` skips the value check).
//!
//! ```sh
//! FANIN_DEVICES=1000 FANIN_PROCESSES=4 FANIN_RATES=1000 FANIN_SECONDS=60 \
//!   cargo test --release -p kwik-record --test remote_fanin -- --ignored --nocapture
//! ```
//! `FANIN_BATCH_DELAY` (default `10ms`) is the gateways' `--batch-delay`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kwik_recorder::{ImuRow, RateHz, SignalGenerator, SimImu, parse_csv};

mod support;
use support::{BIN, csv_files, free_udp_port};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0; utime 11, stime 12.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Datagrams the kernel dropped at the IPv4 UDP socket bound to `port` (the `drops`
/// column of `/proc/net/udp`).
fn udp_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&local))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

fn proc_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Server {
    child: Child,
    last_line: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

fn start_serve(out: &Path, port: u16) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    let last_line = Arc::new(Mutex::new(String::new()));
    let ll = last_line.clone();
    let reader = std::thread::spawn(move || {
        for l in reader.lines().map_while(Result::ok) {
            *ll.lock().unwrap() = l;
        }
    });
    Server {
        child,
        last_line,
        reader,
    }
}

/// One load-generator process: `devices` simulated IMU boards at `rate` for `seconds`.
fn start_fleet(
    ca: &Path,
    port: u16,
    group: usize,
    devices: usize,
    rate: u32,
    seconds: f64,
    batch_delay: &str,
) -> Child {
    Command::new(BIN)
        .args(["stream", "--json", "--source", "sim-imu"])
        .arg("--to")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--ca")
        .arg(ca)
        .args(["--fleet", &devices.to_string()])
        .args(["--device", &format!("dev{group}")])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &format!("{seconds}s")])
        .args(["--batch-delay", batch_delay])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Devices whose recorded rows differ from their simulator's (value by value), and
/// the rows checked.
fn check_values(out: &Path, rate: u32, n: u64) -> (Vec<String>, u64) {
    let sim = SimImu {
        rate: RateHz::try_from(rate).unwrap(),
    };
    let mut bad = Vec::new();
    let mut rows_checked = 0;
    let mut devices: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("dev"))
        .map(|d| d.path())
        .collect();
    devices.sort();
    for dir in devices {
        let mut files = csv_files(&dir);
        files.sort();
        let mut i = 0u64;
        let mut ok = true;
        for f in files {
            let parsed = parse_csv::<ImuRow>(&std::fs::read(&f).unwrap()).unwrap();
            for r in parsed.rows {
                ok &= r == sim.sample(i);
                i += 1;
            }
        }
        rows_checked += i;
        if !ok || i != n {
            bad.push(format!("{} ({i} rows)", dir.display()));
        }
    }
    (bad, rows_checked)
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture (see the file's docs)"]
fn fan_in() {
    let devices: usize = env_or("FANIN_DEVICES", 100);
    let processes: usize = env_or("FANIN_PROCESSES", 2).clamp(1, devices.max(1));
    let seconds: f64 = env_or("FANIN_SECONDS", 10.0);
    let verify: bool = env_or::<u8>("FANIN_VERIFY", 1) != 0;
    let batch_delay: String = env_or("FANIN_BATCH_DELAY", "10ms".to_owned());
    let rates: Vec<u32> = std::env::var("FANIN_RATES")
        .unwrap_or_else(|_| "1000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    println!(
        "| devices | processes | rate Hz | samples/s | produced | written | lost | server CPU % | CPU % per 100k samples/s | server peak RSS MiB | samples per write | gateways with a failed session | gateway drain s | server socket drops | values equal |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for rate in rates {
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let mut server = start_serve(dir.path(), port);
        let pid = server.child.id();
        let ca = dir.path().join("tls").join("ca.der");
        let n = (seconds * f64::from(rate)).round() as u64;
        let cpu0 = proc_cpu_ticks(pid);
        let t0 = Instant::now();
        let fleets: Vec<Child> = (0..processes)
            .map(|p| {
                let k = devices / processes + usize::from(p < devices % processes);
                start_fleet(&ca, port, p, k, rate, seconds, &batch_delay)
            })
            .collect();
        // The server's CPU over the streaming (the sources end after `seconds`; the
        // drain that follows is short and counted in the gateways' drain time).
        let reports: Vec<serde_json::Value> = fleets
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                serde_json::from_slice(&out.stdout).unwrap_or_default()
            })
            .collect();
        let wall_s = t0.elapsed().as_secs_f64();
        let cpu1 = proc_cpu_ticks(pid);
        let hwm = proc_hwm_kib(pid);
        let drops = udp_drops(port);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let _ = server.child.wait();
        let _ = server.reader.join();
        let final_json = server.last_line.lock().unwrap().clone();
        let finals: serde_json::Value = serde_json::from_str(&final_json).unwrap_or_default();
        let written: u64 = finals
            .as_array()
            .map(|a| a.iter().map(|r| r["written"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0);
        let sum = |f: &str| -> u64 {
            reports
                .iter()
                .map(|r| r["counts"][f].as_u64().unwrap_or(0))
                .sum()
        };
        let produced = n * devices as u64;
        let (sent, writes) = (sum("sent"), sum("writes").max(1));
        let failed: u64 = reports
            .iter()
            .map(|r| r["counts"]["connect_failures"].as_u64().unwrap_or(0))
            .sum();
        let drain_s = reports
            .iter()
            .filter_map(|r| r["drain_seconds"].as_f64())
            .fold(0.0, f64::max);
        let stream_s = reports
            .iter()
            .filter_map(|r| r["stream_seconds"].as_f64())
            .fold(0.0, f64::max)
            .max(1e-3);
        let ticks_per_s = 100.0; // USER_HZ on Linux
        let cpu_pct = (cpu1 - cpu0) as f64 / ticks_per_s / wall_s * 100.0;
        let rate_total = produced as f64 / stream_s;
        let values = if verify {
            let (bad, rows) = check_values(dir.path(), rate, n);
            if bad.is_empty() {
                format!("yes ({rows} rows)")
            } else {
                format!("NO: {} devices differ, e.g. {}", bad.len(), bad[0])
            }
        } else {
            "not checked".into()
        };
        println!(
            "| {devices} | {processes} | {rate} | {rate_total:.0} | {produced} | {written} | {} | {cpu_pct:.0} | {:.1} | {:.1} | {:.1} | {failed} | {drain_s:.1} | {drops} | {values} |",
            produced.saturating_sub(written),
            cpu_pct / (rate_total / 100_000.0),
            hwm as f64 / 1024.0,
            sent as f64 / writes as f64,
        );
    }
}
