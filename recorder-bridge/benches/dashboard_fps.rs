//! The dashboard under load: frames per second in headless Chromium (requestAnimationFrame
//! callbacks counted by the page) while a 128 kHz E-field stream and a 1 kHz IMU stream
//! are recorded, the WebSocket bytes per second, the recorder process's CPU and the
//! recording's losses. The peer, in the same run: the same recording with no browser
//! attached. Needs /usr/bin/chromium and /usr/bin/chromedriver (skips without them).
//!
//! `cargo bench -p kwik-recorder --bench dashboard_fps` (KWIK_BENCH_SECONDS, default 10).

#[path = "../tests/dashboard_rig/mod.rs"]
mod dashboard_rig;

use std::time::{Duration, Instant};

use dashboard_rig::browser::{Driver, js, wait_js};
use dashboard_rig::{Rates, Rig};
use kwik_recorder::{LiveSettings, StartSettings};

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass; zeroed is a valid rusage.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

#[derive(Debug, Default)]
struct Outcome {
    fps: Option<f64>,
    draws_per_s: Option<f64>,
    ws_bytes_per_s: f64,
    ws_frames_per_s: f64,
    frames_dropped: u64,
    cpu_percent: f64,
    samples: u64,
    produced: u64,
    dropped: u64,
}

const RATES: Rates = Rates {
    imu: 1000,
    efield: 128_000,
};

fn run(driver: Option<&Driver>, secs: f64) -> Outcome {
    let rig = Rig::start("127.0.0.1:0", None, RATES, LiveSettings::default());
    rig.recorder
        .start(&StartSettings {
            prefix: Some("fps".into()),
            ..StartSettings::default()
        })
        .expect("recording starts");
    let client = driver.map(|d| {
        rig.rt.block_on(async {
            let c = d.browser().await;
            c.goto(&rig.url).await.unwrap();
            wait_js(
                &c,
                "live frames",
                "return window.__kwik && window.__kwik.frames > 30",
            )
            .await;
            c
        })
    });
    let page = |c: &fantoccini::Client| {
        let v = rig
            .rt
            .block_on(js(c, "return [window.__kwik.raf, window.__kwik.draws]"));
        (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
    };
    let dash = rig.dashboard.as_ref().unwrap();
    let before = client.as_ref().map(page);
    let ui0 = dash.ui_counts();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let ui1 = dash.ui_counts();
    let after = client.as_ref().map(page);
    let summary = rig.recorder.stop().expect("recording stops");
    if let Some(c) = client {
        rig.rt.block_on(c.close()).unwrap();
    }
    let mut out = Outcome {
        ws_bytes_per_s: (ui1.bytes_sent - ui0.bytes_sent) as f64 / wall,
        ws_frames_per_s: (ui1.frames_sent - ui0.frames_sent) as f64 / wall,
        frames_dropped: ui1.frames_dropped,
        cpu_percent: 100.0 * cpu / wall,
        ..Outcome::default()
    };
    if let (Some(b), Some(a)) = (before, after) {
        out.fps = Some((a.0 - b.0) / wall);
        out.draws_per_s = Some((a.1 - b.1) / wall);
    }
    for s in &summary.status.streams {
        out.samples += s.samples;
        out.produced += s.produced;
        out.dropped += s.dropped.total();
    }
    out
}

fn main() {
    let secs: f64 = std::env::var("KWIK_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let Some(driver) = Driver::start() else {
        return;
    };
    let peer = run(None, secs);
    let ui = run(Some(&driver), secs);
    // What the same streams would cost sent raw as f32 values, for scale.
    let raw = f64::from(RATES.efield) * 8.0 * 4.0 + f64::from(RATES.imu) * 8.0 * 4.0;
    println!(
        "dashboard_fps: {secs} s per run, E-field {} Hz + IMU {} Hz recorded",
        RATES.efield, RATES.imu
    );
    println!(
        "| run | FPS (rAF) | plot redraws/s | WS frames/s | WS bytes/s | UI frames dropped | recorder CPU | samples in files | produced | lost |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, o) in [
        ("recording only (peer)", &peer),
        ("recording + dashboard in Chromium", &ui),
    ] {
        let f = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
        println!(
            "| {name} | {} | {} | {:.1} | {:.0} | {} | {:.0} % | {} | {} | {} |",
            f(o.fps),
            f(o.draws_per_s),
            o.ws_frames_per_s,
            o.ws_bytes_per_s,
            o.frames_dropped,
            o.cpu_percent,
            o.samples,
            o.produced,
            o.dropped
        );
    }
    println!(
        "raw samples as f32 would be {raw:.0} B/s; the decimated feed is {:.1}% of that",
        100.0 * ui.ws_bytes_per_s / raw
    );
}
