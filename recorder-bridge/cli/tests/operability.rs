//! The `kwik-record` binary as an operator runs it: a config file for `serve` and
//! `stream` (round trip through `config print` and a real recording, flags over the
//! file, the messages of bad files), the documented exit codes, `--duration` on every
//! long-running command, and the generated completions and man page.

mod support;

use support::{BIN, csv_files, free_udp_port};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The value and source of `key` in a `config print --json` answer.
fn setting(v: &serde_json::Value, key: &str) -> (Vec<String>, String) {
    let s = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {v:#}"));
    let values = s["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    (values, s["source"].as_str().unwrap().to_owned())
}

/// One config file drives a server and a gateway: `config print` shows each value
/// from the file with its line, a flag overrides the file, and the recording made
/// with the file's settings is complete.
#[test]
fn config_file_round_trip_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let out = dir.path().join("rec");
    let config = dir.path().join("kwik.toml");
    std::fs::write(
        &config,
        format!(
            "# lab server and gateway\n[serve]\nlisten = \"127.0.0.1:{port}\"\nout = {out:?}\n\n\
             [stream]\nto = \"127.0.0.1:{port}\"\nsource = \"sim-imu\"\nca = {ca:?}\n\
             rate = 500\nduration = \"30s\"\ndevice = \"bench-1\"\nscheduler = \"redundant\"\n",
            out = out.display().to_string(),
            ca = out.join("tls/ca.der").display().to_string(),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let print = run(&[
        "config",
        "print",
        "--json",
        "--config",
        config,
        "stream",
        "--duration",
        "1s",
    ]);
    assert!(print.status.success(), "{}", text(&print.stderr));
    let v: serde_json::Value = serde_json::from_slice(&print.stdout).unwrap();
    assert_eq!(v["command"], "stream");
    assert_eq!(setting(&v, "to").0, [format!("127.0.0.1:{port}")]);
    assert_eq!(setting(&v, "to").1, "file");
    assert_eq!(setting(&v, "rate"), (vec!["500".into()], "file".into()));
    // The flag wins over the file's 30s.
    assert_eq!(setting(&v, "duration"), (vec!["1s".into()], "flag".into()));
    assert_eq!(
        setting(&v, "stream"),
        (vec!["imu".into()], "default".into())
    );
    let line = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "device")
        .unwrap()["line"]
        .clone();
    assert_eq!(line, 12, "{v:#}");
    // The text form says the same.
    let human = run(&["config", "print", "--config", config, "serve"]);
    let h = text(&human.stdout);
    assert!(
        h.contains(&format!("127.0.0.1:{port}  (file, line 3)")),
        "{h}"
    );
    assert!(h.contains("duration"), "{h}");

    // The server and the gateway run from the file alone (plus the gateway's
    // --duration flag), and nothing is lost.
    let mut server = Command::new(BIN)
        .args(["serve", "--json", "--config", config])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("listening"), "{first}");
    let gw = Command::new(BIN)
        .args(["stream", "--json", "--config", config, "--duration", "1s"])
        .output()
        .unwrap();
    assert!(
        gw.status.success(),
        "{}\n{}",
        text(&gw.stdout),
        text(&gw.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&gw.stdout).unwrap();
    assert_eq!(report["counts"]["device_samples"], 500, "{report:#}");
    assert_eq!(report["counts"]["acked"], 500, "{report:#}");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert_eq!(server.wait().unwrap().code(), Some(0));
    let files = csv_files(&out.join("bench-1"));
    assert_eq!(files.len(), 1, "{files:?}");
    let rows =
        kwik_recorder::parse_csv::<kwik_recorder::ImuRow>(&std::fs::read(&files[0]).unwrap())
            .unwrap()
            .rows;
    assert_eq!(rows.len(), 500);
}

/// Bad config files are usage errors (exit 2) whose message names the file, the line
/// and the key, and for an unknown key the keys there are.
#[test]
fn bad_config_files_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let typo = write(
        "typo.toml",
        "[serve]\nout = \"r\"\nlisten-on = \"0.0.0.0:1\"\n",
    );
    let o = run(&["serve", "--config", &typo]);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("{typo}:3: unknown key `listen-on` in [serve]")),
        "{e}"
    );
    assert!(
        e.contains("known keys: listen, out, metrics, tls-dir"),
        "{e}"
    );

    let value = write("value.toml", "[stream]\nto = \"h:1\"\n\nrate = \"fast\"\n");
    let o = run(&["stream", "--source", "sim-imu", "--config", &value]);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("{value}:4: bad value for `rate` in [stream]")),
        "{e}"
    );
    assert!(e.contains("fast"), "{e}");

    let duration = write("duration.toml", "[record]\nduration = \"3 days\"\n");
    let o = run(&["--json", "record", "--config", &duration]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains(":2: bad value for `duration`"), "{msg}");

    let table = write("table.toml", "[server]\nlisten = \"0.0.0.0:1\"\n");
    let o = run(&["serve", "--config", &table]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains(":1: unknown table [server]"));

    let syntax = write("syntax.toml", "[serve]\nlisten = \n");
    let o = run(&["serve", "--config", &syntax]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("line 2"), "{}", text(&o.stderr));

    let o = run(&["serve", "--config", "/nonexistent/kwik.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("cannot read config file /nonexistent/kwik.toml"));
}

/// 0 ok, 1 data lost, 2 usage, 3 environment.
#[test]
fn exit_codes_tell_usage_from_environment_from_lost_data() {
    let dir = tempfile::tempdir().unwrap();
    // 2: clap's own usage errors, and the values it cannot check itself.
    assert_eq!(
        run(&["serve", "--listen", "nowhere"]).status.code(),
        Some(2)
    );
    assert_eq!(run(&["serve", "--duration", "soon"]).status.code(), Some(2));
    let o = run(&[
        "stream",
        "--to",
        "127.0.0.1:9",
        "--source",
        "sim-imu",
        "--rate",
        "0",
    ]);
    // The CA is checked first: a missing file is the environment's.
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("ca.der"), "{}", text(&o.stderr));
    let o = run(&["ls", "/nonexistent-folder"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // 0, then 1 once the recording no longer matches its sidecar.
    let out = dir.path().join("r");
    let rec = Command::new(BIN)
        .args([
            "record",
            "--json",
            "--source",
            "sim-imu",
            "--duration",
            "500ms",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec.stderr));
    let v: serde_json::Value = serde_json::from_slice(&rec.stdout).unwrap();
    let file = PathBuf::from(v["files"][0][0].as_str().unwrap());
    assert_eq!(
        run(&["verify", file.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let body = std::fs::read_to_string(&file).unwrap();
    let cut: Vec<&str> = body.lines().collect();
    // Drop one data row (keep comments, header and footer).
    let row = cut
        .iter()
        .position(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap();
    let mut lines = cut.clone();
    lines.remove(row);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    assert_eq!(
        run(&["verify", file.to_str().unwrap()]).status.code(),
        Some(1)
    );
}

/// `--duration` and its older name `--seconds` on `serve`: the server stops by itself
/// with its summary and exit 0.
#[test]
fn serve_stops_after_its_duration() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--duration", "--seconds"] {
        let port = free_udp_port();
        let o = Command::new(BIN)
            .args(["serve", "--json", flag, "0.5", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{flag}: {}", text(&o.stderr));
        let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
        assert!(lines[0].contains("listening"), "{lines:?}");
        let reports: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert!(reports.is_array(), "{reports}");
    }
}

/// Completions and the man page come from the parser's own definition.
#[test]
fn completions_and_man_page_are_generated() {
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success());
    let b = text(&bash.stdout);
    assert!(b.contains("complete -F _kwik__record"), "{b}");
    for word in ["serve", "stream", "--duration", "--config", "--log-format"] {
        assert!(b.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert!(
            o.status.success() && text(&o.stdout).contains("serve"),
            "{shell}"
        );
    }
    let man = run(&["man"]);
    assert!(man.status.success());
    let m = text(&man.stdout);
    assert!(m.starts_with(".ie") || m.contains(".TH kwik-record"), "{m}");
    assert!(m.contains("serve"), "{m}");
    let page = text(&run(&["man", "serve"]).stdout);
    assert!(page.contains(".TH kwik-record-serve"), "{page}");
    assert!(page.contains("duration"), "{page}");
    assert_eq!(run(&["man", "nothing"]).status.code(), Some(2));
}

/// The config files that go with the systemd units in docs/systemd are valid: every
/// key is a flag and every value parses.
#[test]
fn the_documented_service_configs_parse() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/systemd");
    for (file, command, key, value) in [
        ("serve.toml", "serve", "listen", "[::]:4433"),
        ("stream.toml", "stream", "source", "serial:/dev/ttyACM0"),
    ] {
        let path = docs.join(file);
        let o = run(&[
            "config",
            "print",
            "--json",
            "--config",
            path.to_str().unwrap(),
            command,
        ]);
        assert!(o.status.success(), "{file}: {}", text(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            setting(&v, key),
            (vec![value.to_owned()], "file".to_owned())
        );
    }
}
