//! Helpers shared by the `kwik-record` binary tests (each test file uses some of them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `kwik-record` binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_kwik-record");

/// The binary the long-running tests start: `KWIK_RECORD_BIN` if set (a copy that
/// a rebuild during a 30-minute soak does not replace), else [`BIN`].
pub(crate) fn bin() -> PathBuf {
    std::env::var_os("KWIK_RECORD_BIN").map_or_else(|| PathBuf::from(BIN), PathBuf::from)
}

/// Runs `kwik-record ARGS` in `cwd` to completion.
pub(crate) fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// The files of a recordings folder (`<dir>/<day>/<file>`) whose name ends with
/// `suffix`, sorted; none when `dir` does not exist yet.
pub(crate) fn find(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(days) = std::fs::read_dir(dir) else {
        return out;
    };
    for day in days.flatten() {
        if day.path().is_dir() {
            for f in std::fs::read_dir(day.path()).unwrap().flatten() {
                if f.path().to_string_lossy().ends_with(suffix) {
                    out.push(f.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// The CSV data files of one device directory (`<dir>/<day>/<file>.csv`).
pub(crate) fn csv_files(dir: &Path) -> Vec<PathBuf> {
    find(dir, ".csv")
}

/// A UDP port free on 127.0.0.1 at the time of the call.
pub(crate) fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `kwik-record serve --json --listen 127.0.0.1:PORT --out OUT EXTRA...` and
/// returns once it is listening. Its further output is read and discarded so that it
/// never writes into a closed pipe.
pub(crate) fn start_serve(out: &Path, port: u16, extra: &[&str]) -> std::process::Child {
    use std::io::BufRead;
    let mut child = Command::new(bin())
        .args(["serve", "--json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    child
}

/// SIGTERM to a `serve` child: it finalises its recordings and must exit cleanly.
pub(crate) fn stop_serve(mut server: std::process::Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
}

/// The test venv's interpreter, or `None` (with one line saying why) unless
/// `KWIK_REQUIRE_PYTHON=1`.
pub(crate) fn python() -> Option<PathBuf> {
    let p = match std::env::var_os("KWIK_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/py-venv/bin/python"),
    };
    if p.exists() {
        return Some(p);
    }
    let msg = format!(
        "no Python interpreter at {} (set KWIK_PYTHON or run tools/py-venv); skipping the reader check",
        p.display()
    );
    assert!(
        std::env::var("KWIK_REQUIRE_PYTHON").as_deref() != Ok("1"),
        "{msg}"
    );
    eprintln!("{msg}");
    None
}
