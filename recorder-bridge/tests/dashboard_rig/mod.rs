//! A dashboard over real parts for the dashboard tests: simulator producers in real
//! time feeding rings, a live recorder writing into a temporary folder, and the HTTP
//! server on a real socket.

#![allow(dead_code, unreachable_pub)]

pub mod browser;

use std::sync::Arc;

use kwik_recorder::{
    AccessToken, Dashboard, DashboardConfig, DashboardParts, DeviceNotes, GeneratorSource,
    LiveRecorder, LiveSettings, Pacing, Producer, RateHz, RecordingConfig, SimEfield, SimImu, Taps,
    ring,
};

/// The rates of the simulated streams (0 leaves a stream out).
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub imu: u32,
    pub efield: u32,
}

pub struct Rig {
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub recorder: Arc<LiveRecorder>,
    pub dashboard: Option<Dashboard>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub url: String,
    producers: Vec<Producer>,
}

impl Rig {
    pub fn start(bind: &str, token: Option<&str>, rates: Rates, live: LiveSettings) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut taps = Taps::new();
        let mut producers = Vec::new();
        if rates.imu > 0 {
            let g = SimImu {
                rate: RateHz::try_from(rates.imu).unwrap(),
            };
            let (w, r) = ring(rates.imu as usize * 4);
            taps.add("xiao-imu", f64::from(rates.imu), &r);
            let src = GeneratorSource::new(g, None, Pacing::RealTime);
            producers.push(Producer::spawn(src, w, DeviceNotes::default()).unwrap());
        }
        if rates.efield > 0 {
            let g = SimEfield {
                rate: RateHz::try_from(rates.efield).unwrap(),
            };
            let (w, r) = ring(rates.efield as usize * 2);
            taps.add("efield", f64::from(rates.efield), &r);
            let src = GeneratorSource::new(g, None, Pacing::RealTime);
            producers.push(Producer::spawn(src, w, DeviceNotes::default()).unwrap());
        }
        let base = RecordingConfig {
            out_dir: dir.path().join("recordings"),
            min_free_bytes: 1 << 20,
            ..RecordingConfig::default()
        };
        let recorder = Arc::new(LiveRecorder::new(base, taps));
        let config = DashboardConfig {
            addr: bind.parse().unwrap(),
            token: token.map(|t| AccessToken::try_from(t).unwrap()),
            out_dir: dir.path().join("recordings"),
            live,
        };
        let parts = DashboardParts {
            recorder: Some(recorder.clone()),
            devices: None,
        };
        let dashboard = rt.block_on(Dashboard::bind(config, parts)).unwrap();
        let port = dashboard.local_addr().port();
        let base = format!("http://127.0.0.1:{port}");
        let url = dashboard.url();
        Rig {
            rt,
            dir,
            recorder,
            dashboard: Some(dashboard),
            base,
            url,
            producers,
        }
    }

    pub fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("recordings")
    }

    pub fn token(&self) -> Option<String> {
        self.dashboard
            .as_ref()
            .and_then(|d| d.token().map(|t| t.as_str().to_owned()))
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        call(ureq::get(&format!("{}{path}", self.base)))
    }

    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = self.get(path);
        (code, serde_json::from_slice(&body).unwrap_or_default())
    }

    pub fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = ureq::post(&format!("{}{path}", self.base))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        let (code, bytes) = response(r);
        (code, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    pub fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, bytes) = call(ureq::delete(&format!("{}{path}", self.base)));
        (code, serde_json::from_slice(&bytes).unwrap_or_default())
    }
}

pub fn call(req: ureq::Request) -> (u16, Vec<u8>) {
    response(req.call())
}

pub fn response(r: Result<ureq::Response, ureq::Error>) -> (u16, Vec<u8>) {
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("request failed: {e}"),
    };
    let code = resp.status();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
    (code, body)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.recorder.shutdown("stopped");
        for p in self.producers.drain(..) {
            p.stop();
        }
        if let Some(d) = self.dashboard.take() {
            self.rt.block_on(d.shutdown());
        }
    }
}
