//! The dashboard from the command line: `record --ui` (the recording it started is
//! stopped and another started from the API, the process stays up until SIGTERM),
//! `ui --out` (browsing only, the token off loopback) and `serve --ui` (the devices).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kwik-record");

/// Starts `kwik-record ARGS` in `cwd`; returns the child, the dashboard URL it printed
/// and a channel of its later stdout lines.
fn spawn(args: &[&str], cwd: &Path) -> (Child, String, mpsc::Receiver<String>) {
    let (child, url, rx, _) = spawn_with_preamble(args, cwd);
    (child, url, rx)
}

/// Like [`spawn`], also returning the lines printed before the dashboard URL.
fn spawn_with_preamble(
    args: &[&str],
    cwd: &Path,
) -> (Child, String, mpsc::Receiver<String>, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut before = Vec::new();
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the dashboard URL is printed");
        if let Some(u) = line.strip_prefix("dashboard: ") {
            break u.to_owned();
        }
        before.push(line);
    };
    (child, url, rx, before)
}

fn base(url: &str) -> String {
    url.split("/?")
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}

fn call(r: Result<ureq::Response, ureq::Error>) -> (u16, serde_json::Value) {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let code = resp.status();
    let mut body = String::new();
    resp.into_reader().read_to_string(&mut body).unwrap();
    (code, serde_json::from_str(&body).unwrap_or_default())
}

fn get(url: &str) -> (u16, serde_json::Value) {
    call(ureq::get(url).call())
}

fn post(url: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    call(
        ureq::post(url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string()),
    )
}

fn terminate(mut child: Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn record_with_ui_is_driven_from_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "record",
        "--source",
        "sim-imu",
        "--rate",
        "200",
        "--out",
        "r",
        "--quiet",
        "--ui",
        "127.0.0.1:0",
    ];
    let (child, url, lines) = spawn(&args, dir.path());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let b = base(&url);
    let (code, page) = call(ureq::get(&format!("{b}/")).call());
    assert_eq!(code, 200, "{page}");
    let (code, p) = get(&format!("{b}/api/recorder"));
    assert_eq!(
        (code, p["indicator"].as_str()),
        (200, Some("recording")),
        "{p}"
    );
    let (_, streams) = get(&format!("{b}/api/streams"));
    assert_eq!(streams[0]["name"], "xiao-imu");
    let (code, s) = post(&format!("{b}/api/recorder/stop"), serde_json::json!({}));
    assert_eq!(code, 200, "{s}");
    let (code, s) = post(
        &format!("{b}/api/recorder/start"),
        serde_json::json!({"prefix": "second", "duration_s": 0.5}),
    );
    assert_eq!(code, 200, "{s}");
    wait_until("the duration limit", || {
        let (_, p) = get(&format!("{b}/api/recorder"));
        p["indicator"] == "ready" && p["reason"] == "duration limit"
    });
    let (_, list) = get(&format!("{b}/api/recordings"));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(
        list.iter()
            .any(|e| e["path"].as_str().unwrap().contains("second_"))
    );
    assert!(list.iter().all(|e| e["meta"]["state"] == "finished"));
    terminate(child);
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("duration limit")),
        "the last recording's summary: {rest:?}"
    );
}

#[test]
fn ui_browses_and_needs_the_token_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args([
            "record",
            "--source",
            "sim-stage",
            "--duration",
            "300ms",
            "--out",
            "r",
            "--quiet",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    let (child, url, _) = spawn(&["ui", "--out", "r", "--ui", "0.0.0.0:0"], dir.path());
    let token = url
        .split("token=")
        .nth(1)
        .expect("a generated token")
        .to_owned();
    let b = base(&url);
    assert_eq!(get(&format!("{b}/api/recordings")).0, 401);
    let (code, list) = get(&format!("{b}/api/recordings?token={token}"));
    assert_eq!(code, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["meta"]["schema"], "stage");
    let (code, _) = get(&format!("{b}/api/recorder?token={token}"));
    assert_eq!(code, 404, "nothing to record in a browser-only dashboard");
    terminate(child);

    // With --duration it stops by itself, exit 0.
    let start = Instant::now();
    let o = Command::new(BIN)
        .args([
            "ui",
            "--out",
            "r",
            "--ui",
            "127.0.0.1:0",
            "--duration",
            "1s",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("dashboard: http://127.0.0.1:"), "{stdout}");
}

#[test]
fn serve_with_ui_shows_its_devices_and_their_live_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url, _, before) = spawn_with_preamble(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--out",
            "r",
            "--ui",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let addr = before
        .iter()
        .find_map(|l| l.strip_prefix("recorder server listening on "))
        .and_then(|l| l.split(',').next())
        .expect("the server's address")
        .to_owned();
    let b = base(&url);
    let (code, devices) = get(&format!("{b}/api/devices"));
    assert_eq!((code, devices), (200, serde_json::json!([])));
    assert_eq!(get(&format!("{b}/api/recorder")).0, 404);
    let ca = dir.path().join("r/tls/ca.der");
    let mut gateway = Command::new(BIN)
        .args(["stream", "--source", "sim-imu", "--to", &addr, "--ca"])
        .arg(&ca)
        .args([
            "--device",
            "bench1",
            "--stream",
            "imu",
            "--rate",
            "200",
            "--seconds",
            "4",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the device recording", || {
        let (_, d) = get(&format!("{b}/api/devices"));
        d[0]["device"] == "bench1" && d[0]["streams"][0]["recording"] == true
    });
    let (_, streams) = get(&format!("{b}/api/streams"));
    let imu = streams
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "bench1/imu")
        .unwrap_or_else(|| panic!("the device's live stream in {streams}"));
    assert_eq!(imu["channels"].as_array().unwrap().len(), 8);
    let (_, list) = get(&format!("{b}/api/recordings"));
    let entry = &list[0];
    assert_eq!(entry["live"], true, "{entry}");
    let path = entry["path"].as_str().unwrap();
    let (code, _) = call(ureq::delete(&format!("{b}/api/recordings?path={path}")).call());
    assert_eq!(
        code, 409,
        "a device's recording in progress cannot be deleted"
    );
    assert!(gateway.wait().unwrap().success());
    terminate(child);
}

/// `demo --ui`: the page gets the demo's internal server as its remote view: the
/// simulated board's live stream (what the live plots read), its two paths, and after
/// the run the recording; the process stays up until SIGTERM.
#[test]
fn demo_with_ui_shows_its_live_stream_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url, rx) = spawn(
        &[
            "demo",
            "--duration",
            "4s",
            "--out",
            "r",
            "--ui",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let b = base(&url);
    wait_until("the board's live stream", || {
        let (_, s) = get(&format!("{b}/api/streams"));
        s.as_array()
            .is_some_and(|a| a.iter().any(|s| s["name"] == "xiao-sim-1/imu"))
    });
    wait_until("both paths of the demo's gateway", || {
        let (_, d) = get(&format!("{b}/api/devices"));
        d[0]["device"] == "xiao-sim-1"
            && d[0]["streams"][0]["link"]["paths"]
                .as_array()
                .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["rtt_ms"].is_number()))
    });
    let line = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo ends");
        if l.starts_with("OK:") || l.starts_with("FAILED:") {
            break l;
        }
    };
    assert!(line.starts_with("OK: nothing was lost"), "{line}");
    // After the run: no live stream any more, the recording in the list.
    let (_, list) = get(&format!("{b}/api/recordings"));
    assert_eq!(list[0]["meta"]["samples"], 4000, "{list}");
    terminate(child);
}
