//! Fan-in benchmark (ignored by `cargo test`): N simulated XIAO boards, each behind
//! its own gateway and KWIK session, streaming at R Hz into one `kwik-record serve`
//! process. Reports, per rate, what the server wrote against what the boards produced,
//! the gateways' largest backlog, the server process's CPU time and peak RSS, how many
//! gateways had a session fail (at start-up: a failed first connection), and how long
//! after the start the gateways were streaming (first samples sent in a started
//! session) and saw their first samples confirmed on disk, and the datagrams the
//! kernel dropped at the server's socket (its queue was full).
//!
//! ```sh
//! FANIN_DEVICES=100 FANIN_RATES=1000,2000,4000 FANIN_SECONDS=60 \
//!   cargo test -p kwik-recorder --test remote_fanin -- --ignored --nocapture
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kwik_recorder::{Gateway, GatewayConfig, ServerIdentity, SimImuConfig, StreamKey, sim_imu};

const BIN: &str = env!("CARGO_BIN_EXE_kwik-record");

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

fn start_serve(out: &std::path::Path, port: u16) -> Server {
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

#[test]
#[ignore = "benchmark; run with --ignored --nocapture (see the file's docs)"]
fn fan_in() {
    let devices: usize = env_or("FANIN_DEVICES", 100);
    let seconds: f64 = env_or("FANIN_SECONDS", 10.0);
    let rates: Vec<u32> = std::env::var("FANIN_RATES")
        .unwrap_or_else(|_| "1000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    println!(
        "| devices | rate Hz | produced | written | lost | max backlog | server CPU % | server peak RSS MiB | gateway drain s | gateways with a failed session | streaming after s (median / last) | first ack after s (median / last) | server socket drops |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for rate in rates {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = start_serve(dir.path(), port);
        let pid = server.child.id();
        let id = ServerIdentity::load(&dir.path().join("tls")).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let n = (seconds * f64::from(rate)).round() as u64;
        let mut gws = Vec::new();
        for d in 0..devices {
            let mut gc = GatewayConfig::new(
                SocketAddr::from(([127, 0, 0, 1], port)),
                id.client_config().unwrap(),
                StreamKey {
                    device: format!("dev-{d:03}"),
                    stream: "imu".into(),
                },
            );
            gc.bind = SocketAddr::from(([127, 0, 0, 1], 0));
            gc.drain_timeout = Duration::from_secs(30);
            let sim = SimImuConfig {
                seed: d as u64,
                rate_hz: NonZeroU32::new(rate).unwrap(),
                limit: Some(n),
                real_time: true,
            };
            gws.push(Gateway::start(gc, sim_imu(sim)).unwrap());
        }
        let cpu0 = proc_cpu_ticks(pid);
        let t0 = Instant::now();
        let mut max_backlog = 0u64;
        // When each gateway's session was started (its first samples sent) and when
        // its first samples were confirmed on disk by the server.
        let mut first_sent: Vec<Option<f64>> = vec![None; gws.len()];
        let mut first_ack: Vec<Option<f64>> = vec![None; gws.len()];
        while gws.iter().any(|g| !g.source_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            for (i, g) in gws.iter().enumerate() {
                let c = g.counts();
                max_backlog = max_backlog.max(c.pending());
                if first_sent[i].is_none() && c.sent > 0 {
                    first_sent[i] = Some(t0.elapsed().as_secs_f64());
                }
                if first_ack[i].is_none() && c.acked > 0 {
                    first_ack[i] = Some(t0.elapsed().as_secs_f64());
                }
            }
        }
        let stream_s = t0.elapsed().as_secs_f64();
        let cpu1 = proc_cpu_ticks(pid);
        let drain0 = Instant::now();
        let reports: Vec<_> = rt.block_on(async {
            let mut v = Vec::new();
            for g in gws {
                v.push(g.finish().await);
            }
            v
        });
        let drain_s = drain0.elapsed().as_secs_f64();
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
        let produced = n * devices as u64;
        let ticks_per_s = 100.0; // USER_HZ on Linux
        let cpu_pct = (cpu1 - cpu0) as f64 / ticks_per_s / stream_s * 100.0;
        let gw_errors = reports.iter().filter(|r| r.error.is_some()).count();
        let reconnects: u64 = reports.iter().map(|r| r.counts.connect_failures).sum();
        let failed_first = reports
            .iter()
            .filter(|r| r.counts.connect_failures > 0)
            .count();
        let median_and_last = |firsts: &[Option<f64>]| {
            let mut at: Vec<f64> = firsts.iter().flatten().copied().collect();
            at.sort_by(f64::total_cmp);
            let median = at.get(at.len() / 2).copied().unwrap_or(0.0);
            let last = if at.len() == devices {
                format!("{:.1}", at.last().copied().unwrap_or(0.0))
            } else {
                format!("{} of {devices} never", devices - at.len())
            };
            (median, last)
        };
        let (median_sent, all_sent) = median_and_last(&first_sent);
        let (median_acked, all_acked) = median_and_last(&first_ack);
        println!(
            "| {devices} | {rate} | {produced} | {written} | {} | {max_backlog} | {cpu_pct:.0} | {:.1} | {drain_s:.1} | {failed_first} | {median_sent:.1} / {all_sent} | {median_acked:.1} / {all_acked} | {drops} |{}",
            produced.saturating_sub(written),
            hwm as f64 / 1024.0,
            if gw_errors > 0 || reconnects > 0 {
                format!(" {gw_errors} gateway errors, {reconnects} failed sessions")
            } else {
                String::new()
            }
        );
    }
}
