//! A real `kwik-record serve` faced with a third-party QUIC client (Python's aioquic,
//! `tests/peers/kwik_rogue.py`) that misbehaves in every way an operator should be able
//! to see: wrong ALPN, wrong KWIK version, a forged join token, garbage before and
//! after the handshake, a frame not allowed in a running session, silence after the
//! handshake, a peer that vanishes and one that opens 2000 streams it never reads. Each case must end with its documented close
//! code and reason phrase and produce its log line (JSON, `--log-format json`) naming
//! the remote address and the typed reason; a flood from one address is limited in the
//! log but fully counted in the metrics; and a real gateway records losslessly right
//! after.
//!
//! The client is found at `$KWIK_PYTHON` or `target/py-venv/bin/python` (made by
//! `tools/py-venv`); without it the test says so and skips, unless
//! `KWIK_REQUIRE_PYTHON=1`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kwik-record");

/// kwik's application close codes (docs/PROTOCOL.md §3.8).
const PROTOCOL_VIOLATION: u64 = 0x1_0000;
const PATH_ABANDONED: u64 = 0x1_0001;
/// TLS alert no_application_protocol as a QUIC CRYPTO_ERROR.
const CRYPTO_NO_APPLICATION_PROTOCOL: u64 = 0x178;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with aioquic, or `None` (after saying what is missing) when the test
/// may skip.
fn python() -> Option<PathBuf> {
    let py = std::env::var_os("KWIK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/py-venv/bin/python"));
    let ok = Command::new(&py)
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    let msg = format!(
        "no Python with aioquic at {} (run tools/py-venv, or set KWIK_PYTHON)",
        py.display()
    );
    assert!(
        std::env::var("KWIK_REQUIRE_PYTHON").as_deref() != Ok("1"),
        "{msg}"
    );
    println!("skipped: {msg}");
    None
}

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// The server's JSON log lines, collected as they come.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<serde_json::Value>>>);

impl Log {
    fn follow(&self, stderr: impl Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
                lines.lock().unwrap().push(v);
            }
        });
    }

    /// The refused-peer lines from `ip`.
    fn from(&self, ip: &str) -> Vec<serde_json::Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|v| {
                v["target"] == "kwik::driver::peer_log"
                    && v["remote"]
                        .as_str()
                        .is_some_and(|r| r.starts_with(&format!("{ip}:")))
            })
            .cloned()
            .collect()
    }

    /// Waits (a bounded wait, not a timing claim) for a line from `ip`.
    fn wait_for(&self, ip: &str) -> serde_json::Value {
        let t = Instant::now();
        loop {
            if let Some(v) = self.from(ip).into_iter().next() {
                return v;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no log line for {ip}; log: {:#?}",
                self.0.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `GET /metrics` of the Prometheus exporter.
fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The value of the `kwik_peer_faults_total` series with `reason`.
fn faults(metrics: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("kwik_peer_faults_total") && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn refused_peers_are_logged_closed_with_their_code_and_the_server_records_on() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(true), free_port(false));
    let out = dir.path().join("rec");
    let mut server = Command::new(BIN)
        .args(["serve", "--json", "--log-format", "json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--metrics")
        .arg(format!("127.0.0.1:{metrics}"))
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::default();
    log.follow(server.stderr.take().unwrap());
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("listening"), "{first}");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));

    let rogue = Command::new(&py)
        .arg(workspace_root().join("recorder-bridge/cli/tests/peers/kwik_rogue.py"))
        .args(["127.0.0.1", &port.to_string()])
        .output()
        .unwrap();
    assert!(
        rogue.status.success(),
        "{}",
        String::from_utf8_lossy(&rogue.stderr)
    );
    let cases: std::collections::HashMap<String, serde_json::Value> =
        String::from_utf8_lossy(&rogue.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["case"].as_str().unwrap().to_owned(), v)
            })
            .collect();
    for v in cases.values() {
        assert!(v["exception"].is_null(), "{v}");
    }
    // (case, close code seen by the client, words of its reason phrase, log reason)
    let expected: [(&str, Option<u64>, &str, &str); 7] = [
        ("alpn", Some(CRYPTO_NO_APPLICATION_PROTOCOL), "", "alpn"),
        (
            "version",
            Some(kwik::VERSION_REFUSED_CODE),
            "KWIK version 99 not supported",
            "version",
        ),
        (
            "forged-token",
            Some(kwik::JOIN_REFUSED_CODE),
            "join refused: forged or malformed token",
            "forged_token",
        ),
        (
            "first-garbage",
            Some(PROTOCOL_VIOLATION),
            "protocol violation (unknown type 0x3f frame)",
            "protocol_violation",
        ),
        (
            "garbage",
            Some(PATH_ABANDONED),
            "protocol violation on a path (unknown type 0x3f frame)",
            "protocol_violation",
        ),
        (
            "second-open",
            Some(PROTOCOL_VIOLATION),
            "protocol violation (OPEN frame): unexpected OPEN frame",
            "protocol_violation",
        ),
        (
            "silent",
            Some(kwik::HANDSHAKE_TIMEOUT_CODE),
            "no OPEN or JOIN within 10 s",
            "handshake_timeout",
        ),
    ];
    for (case, code, phrase, reason) in expected {
        let seen = &cases[case];
        assert_eq!(seen["error_code"].as_u64(), code, "{case}: {seen}");
        assert!(
            seen["reason"].as_str().unwrap().contains(phrase),
            "{case}: {seen}"
        );
        let source = seen["source"].as_str().unwrap();
        let line = log.wait_for(source);
        assert_eq!(line["reason"], reason, "{case}: {line}");
        assert_eq!(line["level"], "WARN", "{case}: {line}");
        match code {
            Some(c) if c != CRYPTO_NO_APPLICATION_PROTOCOL => {
                assert_eq!(line["close_code"], format!("{c:#x}"), "{case}: {line}")
            }
            _ => assert_eq!(line["close_code"], "-", "{case}: {line}"),
        }
        println!("{case}: {}", line["message"]);
    }
    // The REFUSED answers carry the reason codes of docs/PROTOCOL.md §3.2.
    assert_eq!(cases["version"]["answers"][0]["type"], 4);
    assert_eq!(cases["version"]["answers"][0]["payload"], "01");
    assert_eq!(cases["forged-token"]["answers"][0]["payload"], "03");
    // A refused join names the session it asked for.
    let forged = log.wait_for("127.0.0.13");
    let session = cases["forged-token"]["session"].as_str().unwrap();
    assert!(
        session.starts_with(forged["session"].as_str().unwrap()),
        "{forged}"
    );
    assert_eq!(forged["path"], "path1");
    // Inside a session the line names session and path.
    let garbage = log.wait_for("127.0.0.15");
    assert_eq!(garbage["path"], "path0", "{garbage}");
    // The peer that vanished: QUIC's idle timeout ends its path (after 10 s).
    let idle = log.wait_for("127.0.0.18");
    assert_eq!(idle["reason"], "idle_timeout", "{idle}");
    assert!(
        cases["idle"]["session"]
            .as_str()
            .unwrap()
            .starts_with(idle["session"].as_str().unwrap())
    );
    // 2000 logical streams opened and never read: the session ends at the receive
    // side's stream limit (1024), with the protocol code on the server's side.
    let streams = log.wait_for("127.0.0.20");
    assert_eq!(streams["reason"], "protocol_violation", "{streams}");
    assert_eq!(streams["close_code"], "0x10000", "{streams}");
    assert!(
        streams["message"]
            .as_str()
            .unwrap()
            .contains("too many streams"),
        "{streams}"
    );
    // Twenty bad connections from one address: all closed with the protocol code, five
    // lines in the log, all twenty counted.
    let flood = &cases["flood"]["error_codes"];
    assert_eq!(flood.as_array().unwrap().len(), 20);
    assert!(
        flood
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.as_u64() == Some(PROTOCOL_VIOLATION)),
        "{flood}"
    );
    assert_eq!(
        log.from("127.0.0.19").len(),
        5,
        "the log is limited per offender"
    );
    let m = scrape(metrics);
    // 20 from the flood, one each from first-garbage, garbage and second-open.
    assert!(faults(&m, "protocol_violation") >= 23, "{m}");
    assert_eq!(faults(&m, "forged_token"), 1, "{m}");
    assert_eq!(faults(&m, "alpn"), 1, "{m}");

    // A real gateway right after: everything recorded.
    let gw = Command::new(BIN)
        .args(["stream", "--json", "--source", "sim-imu", "--rate", "1000"])
        .args(["--duration", "1s", "--device", "after-rogues", "--to"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--ca")
        .arg(out.join("tls/ca.der"))
        .output()
        .unwrap();
    assert_eq!(
        gw.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&gw.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&gw.stdout).unwrap();
    assert_eq!(report["counts"]["device_samples"], 1000, "{report:#}");
    assert_eq!(report["counts"]["acked"], 1000, "{report:#}");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert_eq!(server.wait().unwrap().code(), Some(0));
    let device = out.join("after-rogues");
    let day = std::fs::read_dir(&device).unwrap().next().unwrap().unwrap();
    let csv: Vec<PathBuf> = std::fs::read_dir(day.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    assert_eq!(csv.len(), 1);
    let rows = kwik_recorder::parse_csv::<kwik_recorder::ImuRow>(&std::fs::read(&csv[0]).unwrap())
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 1000);
}
