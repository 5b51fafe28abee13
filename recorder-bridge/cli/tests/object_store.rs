//! `--store s3://…`, `upload`, `ls s3://…` and `verify s3://…` against a real
//! S3-compatible server process (`s3s-fs`, started per test on a free port of
//! 127.0.0.1 with its own temporary folder). Without the server binary the tests say
//! how to get it and pass as skipped, unless `KWIK_REQUIRE_S3=1`.

mod support;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use support::{BIN, free_udp_port};

const BUCKET: &str = "kwik-test";
const ACCESS_KEY: &str = "kwik-access";
const SECRET_KEY: &str = "kwik-secret-key";

/// The `s3s-fs` binary: `$KWIK_S3_SERVER`, else `target/tools/bin/s3s-fs` as `.ci/run`
/// installs it.
fn server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KWIK_S3_SERVER") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/bin/s3s-fs");
    p.exists().then_some(p)
}

/// The server binary, or `None` (with a note on how to get it) when absent and not
/// required.
fn require_server() -> Option<PathBuf> {
    match server_binary() {
        Some(p) => Some(p),
        None if std::env::var("KWIK_REQUIRE_S3").is_ok_and(|v| v == "1") => {
            panic!("KWIK_REQUIRE_S3=1 but no s3s-fs binary (set KWIK_S3_SERVER or run .ci/run)")
        }
        None => {
            eprintln!(
                "skipped: no S3-compatible server; install it with `cargo install s3s-fs --version 0.14.1 \
                 --features binary --locked --root target/tools` (as .ci/run does) or set \
                 KWIK_S3_SERVER"
            );
            None
        }
    }
}

/// One `s3s-fs` process serving a temporary folder with the bucket [`BUCKET`].
struct S3Server {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    fn start(bin: PathBuf) -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = free_tcp_port();
        let mut s = S3Server {
            bin,
            child: None,
            port,
            root,
        };
        s.restart();
        s
    }

    /// Starts the process (again, on the same port and folder) and waits until it
    /// accepts connections.
    fn restart(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the store goes away mid-request.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The stored objects (key, bytes), read from the server's own folder, where
    /// `s3s-fs` keeps each object as a plain file.
    fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let bucket = self.root.path().join(BUCKET);
        walk(&bucket, &mut |p| {
            let key = p
                .strip_prefix(&bucket)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((key, std::fs::read(p).unwrap()));
        });
        out.sort();
        out
    }

    /// The flags that point a command at this server.
    fn flags(&self) -> Vec<String> {
        vec![
            "--store-endpoint".into(),
            self.endpoint(),
            "--store-allow-http".into(),
        ]
    }

    /// Multipart uploads the server still holds open.
    fn open_uploads(&self) -> usize {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(".upload-") && n.ends_with(".json")
            })
            .count()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn walk(dir: &Path, f: &mut impl FnMut(&Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `kwik-record ARGS` with the store's credentials in the environment.
fn kwik(args: &[String], secret: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_ENDPOINT")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    c
}

fn run_ok(args: &[String]) -> Output {
    let out = kwik(args, SECRET_KEY).output().unwrap();
    assert!(
        out.status.success(),
        "kwik-record {args:?} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// `record --json` of `source` for `seconds` into `out` with `extra` flags.
fn record_args(out: &Path, source: &str, seconds: &str, extra: &[String]) -> Vec<String> {
    let mut a = strings(&[
        "record",
        "--json",
        "--quiet",
        "--source",
        source,
        "--duration",
        seconds,
    ]);
    a.push("--out".into());
    a.push(out.display().to_string());
    a.extend_from_slice(extra);
    a
}

fn store_flags(s3: &S3Server, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["--store".to_owned(), format!("s3://{BUCKET}/lab")];
    v.extend(s3.flags());
    v.extend(strings(extra));
    v
}

fn journal(out: &Path) -> serde_json::Value {
    match std::fs::read(out.join(".kwik-upload/journal.json")) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => serde_json::json!([]),
    }
}

/// Files below `dir` (recursively), relative, except the uploader's own folder.
fn local_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(dir, &mut |p| {
        let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        if !rel.starts_with(".kwik-upload") {
            out.push(rel);
        }
    });
    out.sort();
    out
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Each local file has exactly one object, `lab/<its path>`, with the same bytes; no
/// other object exists.
fn assert_mirrored(out: &Path, s3: &S3Server) {
    let local = local_files(out);
    let objects = s3.objects();
    let keys: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    let expected: Vec<String> = local.iter().map(|f| format!("lab/{f}")).collect();
    assert_eq!(keys, expected, "one object per local file, nothing else");
    for ((_, bytes), f) in objects.iter().zip(&local) {
        let mine = std::fs::read(out.join(f)).unwrap();
        assert_eq!(bytes.len(), mine.len(), "{f}: size");
        assert!(
            bytes == &mine,
            "{f}: stored bytes differ from the local file"
        );
    }
}

fn sidecar_key(out: &Path) -> String {
    let f = local_files(out)
        .into_iter()
        .find(|f| f.ends_with(".meta.json"))
        .expect("a sidecar");
    format!("s3://{BUCKET}/lab/{f}")
}

#[test]
fn a_recording_is_uploaded_verified_listed_and_checked_from_s3() {
    let Some(bin) = require_server() else { return };
    let s3 = S3Server::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let args = record_args(
        &out,
        "sim-imu@500",
        "2s",
        &store_flags(&s3, &["--keep-local"]),
    );
    let run = run_ok(&args);
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let up = &summary["upload"];
    assert_eq!(up["counts"]["files"], 2, "data file and sidecar: {up}");
    assert_eq!(up["counts"]["pending"], 0, "{up}");
    assert_eq!(up["error"], serde_json::Value::Null, "{up}");
    assert_eq!(journal(&out), serde_json::json!([]));
    // --keep-local: both copies exist, byte for byte the same (so every value is).
    assert_mirrored(&out, &s3);

    let ls = run_ok(
        &[
            vec!["ls".to_owned(), format!("s3://{BUCKET}/lab")],
            s3.flags(),
        ]
        .concat(),
    );
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(text.contains("finished"), "{text}");
    assert!(text.contains("rec_"), "{text}");
    let ls_json = run_ok(
        &[
            strings(&["ls", "--json"]),
            vec![format!("s3://{BUCKET}/lab")],
            s3.flags(),
        ]
        .concat(),
    );
    let rows: serde_json::Value = serde_json::from_slice(&ls_json.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    let local_sc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            out.join(sidecar_key(&out).trim_start_matches(&format!("s3://{BUCKET}/lab/"))),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rows[0]["meta"]["samples"], local_sc["samples"]);

    let key = sidecar_key(&out);
    let v = run_ok(&[vec!["verify".to_owned(), key.clone()], s3.flags()].concat());
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("OK "),
        "{v:?}"
    );
    // A data file's address finds its sidecar too.
    let data_key = key.replace(".meta.json", ".csv");
    run_ok(&[vec!["verify".to_owned(), data_key], s3.flags()].concat());

    // A damaged object is a mismatch (exit 1), found from the store alone.
    let (k, _) = s3
        .objects()
        .into_iter()
        .find(|(k, _)| k.ends_with(".csv"))
        .unwrap();
    let stored = s3.root.path().join(BUCKET).join(&k);
    let mut bytes = std::fs::read(&stored).unwrap();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&stored, &bytes).unwrap();
    let bad = kwik(
        &[vec!["verify".to_owned(), key], s3.flags()].concat(),
        SECRET_KEY,
    )
    .output()
    .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("MISMATCH"));
}

#[test]
fn a_part_larger_than_the_part_size_goes_up_in_parts_and_local_copies_are_removed() {
    let Some(bin) = require_server() else { return };
    let s3 = S3Server::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    // About 25 MB of E-field rows: four or more 5 MiB parts.
    let args = record_args(
        &out,
        "sim-efield@100000",
        "1.5s",
        &store_flags(&s3, &["--store-part-size", "5M"]),
    );
    let run = run_ok(&args);
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let up = &summary["upload"]["counts"];
    let size = summary["status"]["streams"][0]["bytes"].as_u64().unwrap();
    assert!(
        size > 3 * (5 << 20),
        "recording too small for the test: {size}"
    );
    assert_eq!(
        up["parts"].as_u64().unwrap(),
        size.div_ceil(5 << 20),
        "{up}"
    );
    assert_eq!(up["files"], 2, "{up}");
    // Default retention: removed locally once verified; only the uploader's folder stays.
    assert_eq!(local_files(&out), Vec::<String>::new());
    assert_eq!(journal(&out), serde_json::json!([]));
    assert_eq!(s3.open_uploads(), 0, "no multipart upload left open");
    let objects = s3.objects();
    assert_eq!(objects.len(), 2);
    let (_, data) = objects.iter().find(|(k, _)| k.ends_with(".csv")).unwrap();
    assert_eq!(data.len() as u64, size);
    let sc_key = objects
        .iter()
        .find(|(k, _)| k.ends_with(".meta.json"))
        .unwrap();
    let sidecar: serde_json::Value = serde_json::from_slice(&sc_key.1).unwrap();
    assert_eq!(sidecar["parts"][0]["sha256"].as_str().unwrap(), sha(data));
    let v = run_ok(
        &[
            vec!["verify".to_owned(), format!("s3://{BUCKET}/{}", sc_key.0)],
            s3.flags(),
        ]
        .concat(),
    );
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("OK "),
        "{v:?}"
    );
}

/// Starts `record` in the background (stdout piped) with a slow upload, and waits until
/// its journal shows a multipart upload with at least one stored part.
// The child is handed to the caller, which waits for it (or kills and waits).
#[allow(clippy::zombie_processes)]
fn record_until_mid_multipart(out: &Path, s3: &S3Server, extra: &[&str]) -> Child {
    let mut flags = vec!["--store-part-size", "5M", "--store-bandwidth", "10M"];
    flags.extend_from_slice(extra);
    let args = record_args(out, "sim-efield@100000", "1.5s", &store_flags(s3, &flags));
    let mut child = kwik(&args, SECRET_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let j = journal(out);
        let mid = j
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["upload_id"].is_string() && !e["parts"].as_array().unwrap().is_empty());
        if mid {
            return child;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no multipart upload began: {j}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_output(mut child: Child) -> (std::process::ExitStatus, String, String) {
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (child.wait().unwrap(), stdout, stderr)
}

#[test]
fn the_store_going_down_mid_upload_and_coming_back_loses_and_duplicates_nothing() {
    let Some(bin) = require_server() else { return };
    let mut s3 = S3Server::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let child = record_until_mid_multipart(&out, &s3, &["--keep-local", "--store-retry-max", "1s"]);
    s3.kill();
    std::thread::sleep(Duration::from_secs(2));
    // Meanwhile every file is still on disk.
    assert!(local_files(&out).iter().any(|f| f.ends_with(".csv")));
    s3.restart();
    let (status, stdout, stderr) = wait_output(child);
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(stdout.as_bytes()).unwrap();
    let up = &summary["upload"]["counts"];
    assert!(up["retries"].as_u64().unwrap() >= 1, "{up}");
    assert_eq!(up["pending"], 0, "{up}");
    assert!(stderr.contains("retry"), "the failure is logged: {stderr}");
    assert_eq!(journal(&out), serde_json::json!([]));
    assert_mirrored(&out, &s3);
    assert_eq!(s3.open_uploads(), 0);
}

#[test]
fn an_uploader_killed_mid_multipart_resumes_after_a_restart() {
    let Some(bin) = require_server() else { return };
    let s3 = S3Server::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let mut child = record_until_mid_multipart(&out, &s3, &[]);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let j = journal(&out);
    let entry = &j[0];
    let done_before = entry["parts"].as_array().unwrap().len();
    assert!(done_before >= 1, "{j}");
    let csv = out.join(entry["path"].as_str().unwrap());
    let local_sha = sha(&std::fs::read(&csv).unwrap());
    assert_eq!(entry["sha256"].as_str().unwrap(), local_sha);
    assert!(
        s3.objects().is_empty(),
        "nothing is an object before the upload completes"
    );

    let mut args = vec![
        "upload".to_owned(),
        "--json".into(),
        out.display().to_string(),
    ];
    args.extend(store_flags(&s3, &["--store-part-size", "5M"]));
    let run = run_ok(&args);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let c = &report["counts"];
    assert_eq!(c["resumed"], 1, "{report}");
    assert_eq!(c["restarted"], 0, "continued, not begun again: {report}");
    let size = std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
    let _ = size;
    assert_eq!(
        c["files"], 2,
        "the data file and then its sidecar: {report}"
    );
    assert_eq!(journal(&out), serde_json::json!([]));
    assert_eq!(
        local_files(&out),
        Vec::<String>::new(),
        "removed once verified"
    );
    let objects = s3.objects();
    assert_eq!(objects.len(), 2, "one object per file");
    let (_, data) = objects.iter().find(|(k, _)| k.ends_with(".csv")).unwrap();
    assert_eq!(sha(data), local_sha);
    assert_eq!(s3.open_uploads(), 0);
}

#[test]
fn wrong_credentials_are_a_clear_error_naming_the_store_and_the_files_stay() {
    let Some(bin) = require_server() else { return };
    let s3 = S3Server::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let args = record_args(&out, "sim-imu@200", "1s", &store_flags(&s3, &[]));
    let run = kwik(&args, "not-the-secret").output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "environment error: {run:?}");
    assert!(stderr.contains(&format!("s3://{BUCKET}/lab")), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(
        stderr.contains("kwik-record upload"),
        "says how to finish: {stderr}"
    );
    let files = local_files(&out);
    assert!(files.iter().any(|f| f.ends_with(".csv")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with(".meta.json")), "{files:?}");
    assert!(s3.objects().is_empty());
    // With the right key, `upload` finishes the job.
    let mut up = vec!["upload".to_owned(), out.display().to_string()];
    up.extend(store_flags(&s3, &["--keep-local"]));
    run_ok(&up);
    assert_mirrored(&out, &s3);
}

#[test]
fn serve_uploads_each_finished_remote_recording_under_device_and_day() {
    let Some(bin) = require_server() else { return };
    let s3 = S3Server::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("srv");
    let port = free_udp_port();
    let mut serve_args = strings(&["serve", "--json", "--listen"]);
    serve_args.push(format!("127.0.0.1:{port}"));
    serve_args.push("--out".into());
    serve_args.push(out.display().to_string());
    serve_args.extend(store_flags(&s3, &["--keep-local"]));
    let mut server = kwik(&serve_args, SECRET_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    let gw = Command::new(BIN)
        .args([
            "stream",
            "--json",
            "--source",
            "sim-imu",
            "--rate",
            "500",
            "--seconds",
            "1.5",
        ])
        .arg("--to")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--ca")
        .arg(out.join("tls").join("ca.der"))
        .args(["--device", "xiao-s3"])
        .output()
        .unwrap();
    assert!(gw.status.success(), "{gw:?}");
    // The recording is finished at the gateway's Stop; the uploader finds it on its own.
    let until = Instant::now() + Duration::from_secs(30);
    while s3.objects().len() < 2 {
        assert!(
            Instant::now() < until,
            "serve uploaded nothing: {:?}",
            s3.objects()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(server.wait().unwrap().success(), "{rest}");
    let upload_line = rest
        .lines()
        .find(|l| l.contains("\"upload\""))
        .expect(&rest);
    let up: serde_json::Value = serde_json::from_str(upload_line).unwrap();
    assert_eq!(up["upload"]["counts"]["pending"], 0, "{up}");
    let keys: Vec<String> = s3.objects().into_iter().map(|(k, _)| k).collect();
    assert!(
        keys.iter().all(|k| k.starts_with("lab/xiao-s3/")),
        "{keys:?}"
    );
    let files: Vec<String> = local_files(&out)
        .into_iter()
        .filter(|f| f.ends_with(".csv") || f.ends_with(".meta.json"))
        .collect();
    assert_eq!(
        keys,
        files.iter().map(|f| format!("lab/{f}")).collect::<Vec<_>>()
    );
    let sc = keys.iter().find(|k| k.ends_with(".meta.json")).unwrap();
    let v = run_ok(
        &[
            vec!["verify".to_owned(), format!("s3://{BUCKET}/{sc}")],
            s3.flags(),
        ]
        .concat(),
    );
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("OK "),
        "{v:?}"
    );
}

/// `serve --out OUT --tls-dir TLS --store s3://BUCKET/lab EXTRA` on `port`, returning once it
/// listens; its further output is discarded.
fn start_fleet_server(s3: &S3Server, out: &Path, tls: &Path, port: u16, extra: &[&str]) -> Child {
    let mut args = strings(&["serve", "--json", "--listen"]);
    args.push(format!("127.0.0.1:{port}"));
    args.extend(["--out".into(), out.display().to_string()]);
    args.extend(["--tls-dir".into(), tls.display().to_string()]);
    args.extend(store_flags(s3, extra));
    let mut child = kwik(&args, SECRET_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    child
}

/// SIGTERM, and the server must exit cleanly (its recordings finished and uploaded).
fn stop_fleet_server(mut child: Child) {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// A gateway streams to a fleet of two servers sharing one CA and one bucket. Server A
/// is killed (SIGKILL) mid-run; the gateway moves to B and its queue bridges the gap;
/// A, started again, repairs and uploads the part it was writing. The recording in the
/// bucket is complete: `verify s3://…/device/` passes over both servers' parts, and the
/// rows equal the simulator's, value by value.
#[test]
fn a_fleet_keeps_recording_when_its_server_dies_and_the_bucket_holds_every_sample() {
    let Some(bin) = require_server() else { return };
    let s3 = S3Server::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let (out_a, out_b) = (dir.path().join("a"), dir.path().join("b"));
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let mut a = start_fleet_server(&s3, &out_a, &tls, port_a, &[]);
    let b = start_fleet_server(&s3, &out_b, &tls, port_b, &[]);
    const SECONDS: u64 = 6;
    const RATE: u64 = 1000;
    let gw = Command::new(BIN)
        .args(["stream", "--json", "--source", "sim-imu", "--seed", "5"])
        .args([
            "--rate",
            &RATE.to_string(),
            "--duration",
            &SECONDS.to_string(),
        ])
        .args(["--device", "xiao-fleet", "--connect-timeout", "1s"])
        .arg("--to")
        .arg(format!("127.0.0.1:{port_a}"))
        .arg("--to")
        .arg(format!("127.0.0.1:{port_b}"))
        .arg("--ca")
        .arg(tls.join("ca.der"))
        .arg("--spool")
        .arg(dir.path().join("spool"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A records for a while, then dies without a chance to finish anything.
    let t = Instant::now();
    while support::csv_files(&out_a.join("xiao-fleet")).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "A never started recording"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(2000));
    a.kill().unwrap();
    a.wait().unwrap();
    let done = gw.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "gateway: {:?}\n{stdout}",
        done.status
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["counts"]["device_samples"],
        SECONDS * RATE,
        "{report}"
    );
    assert_eq!(report["counts"]["acked"], SECONDS * RATE, "{report}");
    assert!(
        report["counts"]["connects"].as_u64().unwrap() >= 2,
        "{report}"
    );
    stop_fleet_server(b);
    // A comes back: it repairs the part it was writing and uploads it with the rest.
    let a = start_fleet_server(&s3, &out_a, &tls, port_a, &[]);
    let until = Instant::now() + Duration::from_secs(30);
    while !support::find(&out_a.join("xiao-fleet"), ".csv").is_empty() {
        assert!(Instant::now() < until, "A did not upload its repaired part");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_fleet_server(a);

    let verify = kwik(
        &[
            vec![
                "verify".to_owned(),
                format!("s3://{BUCKET}/lab/xiao-fleet/"),
            ],
            s3.flags(),
        ]
        .concat(),
        SECRET_KEY,
    )
    .arg("--json")
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "verify: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let runs = v["runs"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{v}");
    assert!(runs[0]["recordings"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(
        runs[0]["end_seq"].as_u64().unwrap() - runs[0]["first_seq"].as_u64().unwrap(),
        SECONDS * RATE,
        "{v}"
    );
    println!("fleet: {}", serde_json::to_string(&v["runs"]).unwrap());

    // Value by value, from the objects themselves: each recording's rows from its
    // first sample number on; a sample two recordings hold must be the same.
    let objects = s3.objects();
    let mut by_seq = std::collections::BTreeMap::new();
    for (key, bytes) in &objects {
        let Some(stem) = key.strip_suffix(".meta.json") else {
            continue;
        };
        let sc: kwik_recorder::Sidecar = serde_json::from_slice(bytes).unwrap();
        assert!(stem.starts_with("lab/xiao-fleet/"), "{key}");
        let first: u64 = sc.settings["first_seq"].parse().unwrap();
        let mut seq = first;
        for part in &sc.parts {
            let dir = key.rsplit_once('/').unwrap().0;
            let data = &objects
                .iter()
                .find(|(k, _)| *k == format!("{dir}/{}", part.file))
                .unwrap_or_else(|| panic!("{} not in the bucket", part.file))
                .1;
            for row in kwik_recorder::parse_csv::<kwik_recorder::ImuRow>(data)
                .unwrap()
                .rows
            {
                if let Some(old) = by_seq.insert(seq, row) {
                    assert_eq!(old, row, "sample {seq} differs between two recordings");
                }
                seq += 1;
            }
        }
    }
    let sim = kwik_recorder::SimImuConfig {
        seed: 5,
        rate_hz: std::num::NonZeroU32::new(RATE as u32).unwrap(),
        limit: None,
        real_time: false,
    };
    let got: Vec<_> = by_seq.into_values().collect();
    assert_eq!(got.len() as u64, SECONDS * RATE);
    assert!(
        got == sim.expected(SECONDS * RATE),
        "the rows differ from the simulator's"
    );
}

/// `serve --keep-hours H`: the local copy of an uploaded recording stays for H hours
/// after its upload was verified, then goes; the objects stay.
#[test]
fn keep_hours_keeps_the_local_copy_that_long_then_removes_it() {
    let Some(bin) = require_server() else { return };
    let s3 = S3Server::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("srv");
    let port = free_udp_port();
    // 0.002 h = 7.2 s.
    let server = start_fleet_server(
        &s3,
        &out,
        &out.join("tls"),
        port,
        &["--keep-hours", "0.002"],
    );
    let gw = Command::new(BIN)
        .args(["stream", "--json", "--source", "sim-imu", "--rate", "200"])
        .args(["--duration", "1", "--device", "xiao-keep"])
        .arg("--to")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--ca")
        .arg(out.join("tls").join("ca.der"))
        .output()
        .unwrap();
    assert!(gw.status.success(), "{gw:?}");
    let device = out.join("xiao-keep");
    let t = Instant::now();
    while s3.objects().len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(30), "nothing uploaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let uploaded = Instant::now();
    // Uploaded and verified, and still here for the hours asked.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(support::find(&device, ".csv").len(), 1, "removed too early");
    while !support::find(&device, ".csv").is_empty() {
        assert!(
            uploaded.elapsed() < Duration::from_secs(30),
            "never removed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kept = uploaded.elapsed();
    assert!(kept >= Duration::from_secs(6), "removed after {kept:?}");
    assert!(support::find(&device, ".meta.json").is_empty());
    let keys: Vec<String> = s3.objects().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    stop_fleet_server(server);
}
