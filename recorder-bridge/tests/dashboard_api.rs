//! The dashboard's JSON API and live WebSocket over a real socket, with simulator
//! streams, real recordings on disk and every refusal: traversal, symlinks out of the
//! root, deleting a recording in progress, and the token on a non-loopback bind.

mod dashboard_rig;

use std::time::{Duration, Instant};

use dashboard_rig::{Rates, Rig, call, enc};
use futures_util::StreamExt as _;
use kwik_recorder::{LiveSettings, RateHz, SignalGenerator, SimEfield};

const IMU_ONLY: Rates = Rates {
    imu: 200,
    efield: 0,
};

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn start_stop_list_download_verify_preview_delete() {
    let rig = Rig::start("127.0.0.1:0", None, IMU_ONLY, LiveSettings::default());
    let (code, streams) = rig.get_json("/api/streams");
    assert_eq!(code, 200);
    assert_eq!(streams[0]["name"], "xiao-imu");
    assert_eq!(streams[0]["channels"].as_array().unwrap().len(), 8);
    let (code, panel) = rig.get_json("/api/recorder");
    assert_eq!((code, panel["indicator"].as_str()), (200, Some("ready")));

    let (code, bad) = rig.post_json("/api/recorder/start", serde_json::json!({"prefix": "../x"}));
    assert_eq!(code, 400, "{bad}");
    let (code, bad) = rig.post_json("/api/recorder/start", serde_json::json!({"format": "xls"}));
    assert_eq!(code, 400, "{bad}");
    let (code, started) = rig.post_json(
        "/api/recorder/start",
        serde_json::json!({"prefix": "apitest"}),
    );
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["indicator"], "recording");
    let (code, _) = rig.post_json("/api/recorder/start", serde_json::json!({}));
    assert_eq!(code, 409);

    // The recording in progress is listed as live and cannot be deleted.
    let (_, list) = rig.get_json("/api/recordings");
    let entry = &list[0];
    assert_eq!(entry["live"], true);
    let sidecar = entry["path"].as_str().unwrap().to_owned();
    assert!(sidecar.ends_with(".meta.json") && sidecar.contains("apitest_"));
    let (code, refused) = rig.delete(&format!("/api/recordings?path={}", enc(&sidecar)));
    assert_eq!(code, 409, "{refused}");
    let data = entry["data"][0].as_str().unwrap().to_owned();
    let (code, _) = rig.delete(&format!("/api/recordings?path={}", enc(&data)));
    assert_eq!(code, 409);
    assert!(rig.root().join(&data).exists());

    wait_until("samples on disk", Duration::from_secs(20), || {
        let (_, p) = rig.get_json("/api/recorder");
        p["current"]["streams"][0]["samples"].as_u64().unwrap_or(0) >= 100
    });
    let (code, summary) = rig.post_json("/api/recorder/stop", serde_json::json!({}));
    assert_eq!(code, 200, "{summary}");
    let samples = summary["status"]["streams"][0]["samples"].as_u64().unwrap();
    assert!(samples >= 100);
    assert_eq!(summary["status"]["streams"][0]["dropped"]["ring"], 0);
    let (code, _) = rig.post_json("/api/recorder/stop", serde_json::json!({}));
    assert_eq!(code, 409);

    let (_, list) = rig.get_json("/api/recordings");
    let entry = &list[0];
    assert_eq!(entry["live"], false);
    assert_eq!(entry["meta"]["samples"].as_u64(), Some(samples));
    assert_eq!(entry["meta"]["state"], "finished");
    assert_eq!(entry["meta"]["stop_reason"], "stopped");

    // Downloads are the files' bytes, named for them.
    for rel in [&data, &sidecar] {
        let resp = ureq::get(&format!(
            "{}/api/recordings/file?path={}",
            rig.base,
            enc(rel)
        ))
        .call()
        .unwrap();
        let disposition = resp.header("Content-Disposition").unwrap().to_owned();
        let name = rel.rsplit('/').next().unwrap();
        assert_eq!(disposition, format!("attachment; filename=\"{name}\""));
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
        assert_eq!(body, std::fs::read(rig.root().join(rel)).unwrap());
    }

    let (code, v) = rig.get_json(&format!("/api/recordings/verify?path={}", enc(&sidecar)));
    assert_eq!((code, v["ok"].as_bool()), (200, Some(true)), "{v}");
    let (code, p) = rig.get_json(&format!(
        "/api/recordings/preview?path={}&width=50",
        enc(&sidecar)
    ));
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["samples"].as_u64(), Some(samples));
    let cols = p["columns"]["t"].as_array().unwrap().len();
    assert!((1..=50).contains(&cols), "{cols} columns");
    assert_eq!(p["columns"]["min"].as_array().unwrap().len(), 8);

    let (code, removed) = rig.delete(&format!("/api/recordings?path={}", enc(&sidecar)));
    assert_eq!(code, 200, "{removed}");
    assert_eq!(removed["removed"].as_array().unwrap().len(), 2);
    assert!(!rig.root().join(&data).exists());
    assert!(!rig.root().join(&sidecar).exists());
    let (_, list) = rig.get_json("/api/recordings");
    assert_eq!(list.as_array().unwrap().len(), 0);
    let (code, _) = rig.get_json(&format!("/api/recordings/verify?path={}", enc(&sidecar)));
    assert_eq!(code, 404);
}

/// A LabVIEW layout recording previews like a CSV one: the columns hold the minimum and
/// maximum of what the file holds (read back with the LabVIEW parser), every sample
/// counted.
#[test]
fn labview_recordings_preview_from_their_blocks() {
    let rig = Rig::start(
        "127.0.0.1:0",
        None,
        Rates {
            imu: 0,
            efield: 2000,
        },
        LiveSettings::default(),
    );
    let (code, started) = rig.post_json(
        "/api/recorder/start",
        serde_json::json!({"prefix": "lv", "format": "labview"}),
    );
    assert_eq!(code, 200, "{started}");
    wait_until("samples on disk", Duration::from_secs(20), || {
        let (_, p) = rig.get_json("/api/recorder");
        p["current"]["streams"][0]["samples"].as_u64().unwrap_or(0) >= 2500
    });
    let (code, summary) = rig.post_json("/api/recorder/stop", serde_json::json!({}));
    assert_eq!(code, 200, "{summary}");
    let (_, list) = rig.get_json("/api/recordings");
    let entry = &list[0];
    assert_eq!(entry["meta"]["format"], "labview");
    let sidecar = entry["path"].as_str().unwrap().to_owned();
    let data = entry["data"][0].as_str().unwrap().to_owned();
    let (code, p) = rig.get_json(&format!(
        "/api/recordings/preview?path={}&width=40",
        enc(&sidecar)
    ));
    assert_eq!(code, 200, "{p}");
    let file = kwik_recorder::parse_labview(
        &std::fs::read(rig.root().join(&data)).unwrap(),
        &kwik_recorder::LabviewLayout::default(),
    )
    .unwrap();
    assert_eq!(p["samples"].as_u64(), Some(file.samples.len() as u64));
    assert_eq!(
        entry["meta"]["samples"].as_u64(),
        Some(file.samples.len() as u64)
    );
    assert_eq!(p["channels"].as_array().unwrap().len(), 7);
    let cols = p["columns"]["t"].as_array().unwrap().len();
    assert!((1..=40).contains(&cols), "{cols} columns");
    // Channel 0 is Ex real: its extremes over all columns are the file's (columns hold
    // f32).
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let col_min = p["columns"]["min"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(f)
        .fold(f64::INFINITY, f64::min);
    let col_max = p["columns"]["max"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(f)
        .fold(f64::NEG_INFINITY, f64::max);
    let ex: Vec<f64> = file.samples.iter().map(|s| s.ex_real).collect();
    let ex_min = ex.iter().copied().fold(f64::INFINITY, f64::min);
    let ex_max = ex.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(col_min as f32, ex_min as f32);
    assert_eq!(col_max as f32, ex_max as f32);
    assert_eq!(f(&p["columns"]["t"][0]), file.samples[0].time.as_secs_f64());
}

/// Records from the panel in `format` until every stream has `min` samples on disk,
/// stops, and gives the recordings' list entries.
fn record_in(rig: &Rig, format: &str, min: u64) -> Vec<serde_json::Value> {
    let (code, started) = rig.post_json(
        "/api/recorder/start",
        serde_json::json!({"prefix": format, "format": format}),
    );
    assert_eq!(code, 200, "{started}");
    wait_until("samples on disk", Duration::from_secs(30), || {
        let (_, p) = rig.get_json("/api/recorder");
        let streams = p["current"]["streams"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        streams.len() == 2
            && streams
                .iter()
                .all(|s| s["samples"].as_u64().unwrap_or(0) >= min)
    });
    let (code, summary) = rig.post_json("/api/recorder/stop", serde_json::json!({}));
    assert_eq!(code, 200, "{summary}");
    let (_, list) = rig.get_json("/api/recordings");
    let entries: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["meta"]["format"] == format && e["meta"]["settings"]["exported_from"].is_null()
        })
        .cloned()
        .collect();
    assert_eq!(entries.len(), 2, "{list}");
    entries
}

fn preview(rig: &Rig, sidecar: &str) -> serde_json::Value {
    let (code, p) = rig.get_json(&format!(
        "/api/recordings/preview?path={}&width=40",
        enc(sidecar)
    ));
    assert_eq!(code, 200, "{p}");
    p
}

/// A recording previews alike in every layout: a CSV recording and its Parquet and MCAP
/// exports (written by the export command's function, read back by the Parquet row
/// reader and the MCAP reader) give the same columns, value for value; recordings
/// started in Parquet and in MCAP from the panel preview every sample they hold.
#[test]
fn parquet_and_mcap_recordings_preview_as_their_csv_does() {
    let rig = Rig::start(
        "127.0.0.1:0",
        None,
        Rates {
            imu: 400,
            efield: 2000,
        },
        LiveSettings::default(),
    );
    for entry in record_in(&rig, "csv", 1500) {
        let sidecar = entry["path"].as_str().unwrap().to_owned();
        let data = rig.root().join(entry["data"][0].as_str().unwrap());
        let csv = preview(&rig, &sidecar);
        assert_eq!(csv["samples"], entry["meta"]["samples"]);
        for format in [
            kwik_recorder::Format::Parquet(Default::default()),
            kwik_recorder::Format::Mcap(Default::default()),
        ] {
            let out = kwik_recorder::default_output(&data, &format);
            let report = kwik_recorder::export(&data, &format, &out).unwrap();
            let rel = report.sidecar.strip_prefix(rig.root()).unwrap();
            let got = preview(&rig, rel.to_str().unwrap());
            let what = format!("{} as {}", entry["meta"]["stream"], format.name());
            for key in ["schema", "channels", "units", "samples", "per_column"] {
                assert_eq!(got[key], csv[key], "{what}: {key}");
            }
            assert_eq!(got["columns"]["min"], csv["columns"]["min"], "{what}");
            assert_eq!(got["columns"]["max"], csv["columns"]["max"], "{what}");
            let times = |p: &serde_json::Value| -> Vec<f64> {
                p["columns"]["t"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_f64().unwrap())
                    .collect()
            };
            let (a, b) = (times(&got), times(&csv));
            assert_eq!(a.len(), b.len(), "{what}");
            assert!(
                a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6),
                "{what}: {a:?} vs {b:?}"
            );
        }
    }
    for format in ["parquet", "mcap"] {
        for entry in record_in(&rig, format, 500) {
            let p = preview(&rig, entry["path"].as_str().unwrap());
            assert_eq!(p["samples"], entry["meta"]["samples"], "{format}: {p}");
            assert!(p["samples"].as_u64().unwrap() >= 500);
            let channels = p["channels"].as_array().unwrap().len();
            assert_eq!(p["columns"]["min"].as_array().unwrap().len(), channels);
            let (code, v) = rig.get_json(&format!(
                "/api/recordings/verify?path={}",
                enc(entry["path"].as_str().unwrap())
            ));
            assert_eq!((code, v["ok"].as_bool()), (200, Some(true)), "{v}");
        }
    }
}

#[test]
fn paths_outside_the_root_are_refused() {
    let rig = Rig::start("127.0.0.1:0", None, IMU_ONLY, LiveSettings::default());
    let outside = rig.dir.path().join("secret.csv");
    std::fs::write(&outside, b"not yours\n").unwrap();
    std::fs::create_dir_all(rig.root().join("2026-01-01")).unwrap();
    std::os::unix::fs::symlink(&outside, rig.root().join("2026-01-01/link.csv")).unwrap();
    std::os::unix::fs::symlink(rig.dir.path(), rig.root().join("up")).unwrap();
    let cases = [
        ("../secret.csv", 400),
        ("2026-01-01/../../secret.csv", 400),
        (outside.to_str().unwrap(), 400),
        ("/etc/passwd", 400),
        ("2026-01-01/link.csv", 404),
        ("up/secret.csv", 404),
        ("2026-01-01/none.csv", 404),
    ];
    for (path, want) in cases {
        for endpoint in ["file", "verify", "preview"] {
            let (code, body) = rig.get(&format!("/api/recordings/{endpoint}?path={}", enc(path)));
            assert_eq!(
                code,
                want,
                "{endpoint} {path}: {}",
                String::from_utf8_lossy(&body)
            );
            assert!(!String::from_utf8_lossy(&body).contains("not yours"));
        }
        let (code, _) = rig.delete(&format!("/api/recordings?path={}", enc(path)));
        assert_eq!(code, want, "delete {path}");
    }
    assert!(outside.exists());
    // Symlinks are not followed when listing either.
    let (_, list) = rig.get_json("/api/recordings");
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn a_non_loopback_bind_needs_the_token_for_api_and_websocket() {
    let rig = Rig::start("0.0.0.0:0", None, IMU_ONLY, LiveSettings::default());
    let token = rig.token().expect("a token is generated off loopback");
    assert!(rig.url.contains(&format!("?token={token}")), "{}", rig.url);
    // The page itself loads (it carries no data); every API call needs the token.
    assert_eq!(rig.get("/").0, 200);
    for path in [
        "/api/recordings",
        "/api/recorder",
        "/api/streams",
        "/api/ui",
    ] {
        assert_eq!(rig.get(path).0, 401, "{path}");
        assert_eq!(rig.get(&format!("{path}?token=wrong")).0, 401, "{path}");
        assert_eq!(rig.get(&format!("{path}?token={token}")).0, 200, "{path}");
    }
    let (code, _) = rig.post_json("/api/recorder/start", serde_json::json!({}));
    assert_eq!(code, 401);
    assert!(!rig.recorder.is_recording());
    let (code, _) = rig.delete("/api/recordings?path=x.csv");
    assert_eq!(code, 401);
    let bearer = format!("Bearer {token}");
    let (code, _) =
        call(ureq::post(&format!("{}/api/recorder/stop", rig.base)).set("Authorization", &bearer));
    assert_eq!(code, 409, "authorised, but nothing is recording");

    let ws = |q: String| {
        let url = format!(
            "{}/ws/live?stream=xiao-imu{q}",
            rig.base.replace("http", "ws")
        );
        rig.rt.block_on(tokio_tungstenite::connect_async(url))
    };
    match ws(String::new()) {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!("websocket without token: {:?}", other.map(|_| ())),
    }
    let (mut socket, _) = ws(format!("&token={token}")).unwrap();
    let hello = rig.rt.block_on(socket.next()).unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("hello"));
}

#[test]
fn live_frames_are_decimated_and_carry_the_simulator_values() {
    let rate = 20_000;
    let rig = Rig::start(
        "127.0.0.1:0",
        None,
        Rates {
            imu: 0,
            efield: rate,
        },
        LiveSettings::default(),
    );
    let (code, _) = rig.get("/ws/live?stream=nope");
    assert_eq!(code, 404, "an unknown stream is refused before the upgrade");
    let url = format!(
        "{}/ws/live?stream=efield&window=2&width=400",
        rig.base.replace("http", "ws")
    );
    let g = SimEfield {
        rate: RateHz::try_from(rate).unwrap(),
    };
    let (frames, columns, checked) = rig.rt.block_on(async {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let (mut frames, mut columns, mut checked) = (0, 0usize, 0);
        let start = Instant::now();
        let mut first_t = None;
        let mut last_t = 0.0;
        while start.elapsed() < Duration::from_secs(3) {
            let msg = socket.next().await.unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
            if v.get("hello").is_some() {
                continue;
            }
            frames += 1;
            assert_eq!(v["per_column"], 100, "2 s at 20 kHz over 400 columns");
            let t = v["t"].as_array().unwrap();
            columns += t.len();
            first_t.get_or_insert(t[0].as_f64().unwrap());
            last_t = t[t.len() - 1].as_f64().unwrap();
            // The newest sample's values are the simulator's for that index.
            let i = v["last_index"].as_u64().unwrap();
            let want = g.sample(i).channels;
            let got: Vec<f64> = v["last"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            // (serde_json's default float parsing may be one ulp off.)
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                    "sample {i}: {got:?} vs {want:?}"
                );
            }
            // Every column's envelope holds the simulator's values of its samples.
            let t0 = t[0].as_f64().unwrap();
            let k = (t0 * f64::from(rate)).round() as u64;
            for c in 0..8 {
                // Columns carry f32: compare in f32.
                let lo = v["min"][c][0].as_f64().unwrap() as f32;
                let hi = v["max"][c][0].as_f64().unwrap() as f32;
                for j in k..k + 100 {
                    let x = g.sample(j).channels[c] as f32;
                    assert!(lo <= x && x <= hi, "column at {t0}: {lo}..{hi} vs {x}");
                }
            }
            checked += 1;
        }
        assert!(last_t > first_t.unwrap());
        (frames, columns, checked)
    });
    assert!(frames > 10, "{frames} frames in 3 s");
    assert!(checked == frames);
    // 3 s of samples at 100 per column plus the 2 s of history: at most ~1000 columns
    // (not 100 000 samples).
    assert!(columns <= 1100, "{columns} columns");
}

#[test]
fn a_browser_that_stops_reading_loses_frames_not_samples() {
    let rig = Rig::start(
        "127.0.0.1:0",
        None,
        Rates {
            imu: 0,
            efield: 20_000,
        },
        LiveSettings {
            frame_interval: Duration::from_millis(5),
            queue: 2,
        },
    );
    let (code, _) = rig.post_json("/api/recorder/start", serde_json::json!({"prefix": "slow"}));
    assert_eq!(code, 200);
    let url = format!(
        "{}/ws/live?stream=efield&window=1&width=4000",
        rig.base.replace("http", "ws")
    );
    // Connected, then never read: the socket buffers fill, then the queue, then frames
    // are dropped.
    let socket = rig
        .rt
        .block_on(tokio_tungstenite::connect_async(url))
        .unwrap();
    wait_until("dropped UI frames", Duration::from_secs(60), || {
        rig.get_json("/api/ui").1["frames_dropped"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    let (_, panel) = rig.get_json("/api/recorder");
    assert_eq!(panel["indicator"], "recording", "{panel}");
    drop(socket);
    let (code, summary) = rig.post_json("/api/recorder/stop", serde_json::json!({}));
    assert_eq!(code, 200);
    let s = &summary["status"]["streams"][0];
    assert_eq!(s["dropped"]["ring"], 0, "{s}");
    assert_eq!(s["dropped"]["exporter"], 0, "{s}");
    assert_eq!(s["dropped"]["writer"], 0, "{s}");
    assert!(s["samples"].as_u64().unwrap() > 0);
}
