//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) opens the dashboard of simulator streams, checks that live points
//! arrive and show the simulator's values, records with Start/Stop, finds the recording
//! in the list, downloads it and compares the bytes, previews and deletes it, and meets
//! the 401 of a non-loopback bind without the token. Screenshots go to
//! `target/dashboard-screenshots/`. Without /usr/bin/chromium and /usr/bin/chromedriver
//! the test says what is missing and skips, unless KWIK_REQUIRE_BROWSER=1.

mod dashboard_rig;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dashboard_rig::{Rates, Rig};
use fantoccini::{Client, ClientBuilder, Locator};
use kwik_recorder::{LiveSettings, RateHz, SignalGenerator, SimImu};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromedriver on a free port, killed on drop.
#[derive(Debug)]
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
    profile: PathBuf,
}

impl Driver {
    /// None (after saying why) when the browser is not installed and not required.
    fn start() -> Option<Driver> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "browser test skipped: {} missing (Debian packages chromium and chromium-driver)",
                missing.join(" and ")
            );
            assert!(
                std::env::var("KWIK_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "{msg}"
            );
            println!("{msg}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Driver {
            child,
            port,
            profile: profile.path().to_path_buf(),
            _profile: profile,
        })
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1400,1700",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session in headless chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

async fn wait_js(c: &Client, what: &str, script: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = js(c, script).await;
        if !(v.is_null() || v == json!(false)) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(name), png).unwrap();
}

/// Fetches `url` from inside the page; returns (status, body as bytes, headers).
async fn fetch_in_page(c: &Client, url: &str) -> (u64, Vec<u8>, Value) {
    let v = c
        .execute_async(
            r#"const [url, done] = arguments;
               fetch(url).then(async r => {
                 const b = new Uint8Array(await r.arrayBuffer());
                 let s = ""; for (const x of b) s += String.fromCharCode(x);
                 done([r.status, btoa(s), r.headers.get("content-disposition")]);
               }).catch(e => done([0, "", String(e)]));"#,
            vec![json!(url)],
        )
        .await
        .unwrap();
    let body = base64_decode(v[1].as_str().unwrap());
    (v[0].as_u64().unwrap(), body, v[2].clone())
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| {
            acc | (u32::from(val(c)) << (18 - 6 * i))
        });
        let take = chunk.len() - 1;
        for i in 0..take {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1e-3)
}

#[test]
fn dashboard_in_headless_chromium() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let imu_hz = 200;
    let rig = Rig::start(
        "127.0.0.1:0",
        None,
        Rates {
            imu: imu_hz,
            efield: 4000,
        },
        LiveSettings::default(),
    );
    let imu = SimImu {
        rate: RateHz::try_from(imu_hz).unwrap(),
    };
    rig.rt.block_on(async {
        let c = driver.browser().await;
        c.goto(&rig.url).await.unwrap();
        wait_js(&c, "live frames", "return window.__kwik && window.__kwik.frames > 10").await;
        wait_js(&c, "plot redraws", "return window.__kwik.draws > 10").await;

        // The readout shows the simulator's sample for the index it names.
        let shown = js(
            &c,
            r#"const ids = ["index","ax","ay","az","gx","gy","gz","tempC","audioRMS"];
               return ids.map(i => document.getElementById("last-xiao-imu-" + i).textContent);"#,
        )
        .await;
        let shown: Vec<String> = serde_json::from_value(shown).unwrap();
        let index: u64 = shown[0].parse().unwrap();
        let s = imu.sample(index);
        let want = [s.ax, s.ay, s.az, s.gx, s.gy, s.gz, s.temp_c, s.audio_rms];
        for (k, w) in want.iter().enumerate() {
            let got: f64 = shown[k + 1].parse().unwrap();
            assert!(close(got, f64::from(*w)), "channel {k} of sample {index}: shown {got}, simulator {w}");
        }
        shot(&c, "live.png").await;

        // Record from the panel.
        let prefix = c.find(Locator::Id("prefix")).await.unwrap();
        prefix.clear().await.unwrap();
        prefix.send_keys("browser").await.unwrap();
        c.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
        wait_js(&c, "recording state", r#"return document.getElementById("indicator").textContent === "recording""#).await;
        wait_js(&c, "samples counted", r#"return parseInt(document.getElementById("st-samples").textContent.replace(/,/g, "")) > 500"#).await;
        shot(&c, "recording.png").await;
        c.find(Locator::Id("stop")).await.unwrap().click().await.unwrap();
        wait_js(&c, "ready state", r#"return document.getElementById("indicator").textContent === "ready""#).await;
        assert!(!rig.recorder.is_recording());

        // Find it in the list, download data and sidecar, compare with the disk.
        c.find(Locator::Id("refresh")).await.unwrap().click().await.unwrap();
        let paths = wait_js(
            &c,
            "the recording in the list",
            r#"const rows = [...document.querySelectorAll('tr[data-path*="browser"]')];
               return rows.length ? rows.map(r => r.dataset.path) : null;"#,
        )
        .await;
        let paths: Vec<String> = serde_json::from_value(paths).unwrap();
        assert_eq!(paths.len(), 2, "one sidecar per stream: {paths:?}");
        let sidecar = paths.iter().find(|p| p.contains("xiao-imu")).unwrap().clone();
        let links = js(
            &c,
            &format!(
                r#"return [...document.querySelectorAll('tr[data-path="{sidecar}"] a.dl')].map(a => a.href);"#
            ),
        )
        .await;
        let links: Vec<String> = serde_json::from_value(links).unwrap();
        assert_eq!(links.len(), 2);
        for link in &links {
            let (status, body, disposition) = fetch_in_page(&c, link).await;
            assert_eq!(status, 200);
            let rel = link.split("path=").nth(1).unwrap().replace("%2F", "/");
            let on_disk = std::fs::read(rig.root().join(&rel)).unwrap();
            assert_eq!(body, on_disk, "{rel}");
            let name = rel.rsplit('/').next().unwrap();
            assert_eq!(disposition, json!(format!("attachment; filename=\"{name}\"")));
        }

        // Verify and preview from the list.
        c.find(Locator::Css(&format!(r#"tr[data-path="{sidecar}"] td button"#)))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_js(&c, "verify OK", &format!(r#"return document.querySelector('tr[data-path="{sidecar}"] .ok') !== null"#)).await;
        let buttons = c
            .find_all(Locator::Css(&format!(r#"tr[data-path="{sidecar}"] td:last-child button"#)))
            .await
            .unwrap();
        buttons[0].click().await.unwrap();
        wait_js(&c, "preview plot", r##"return document.querySelector("#preview canvas") !== null"##).await;
        c.execute("document.getElementById('preview-box').scrollIntoView()", vec![]).await.unwrap();
        shot(&c, "recordings.png").await;

        // Delete it, confirming the dialog.
        buttons[1].click().await.unwrap();
        c.accept_alert().await.unwrap();
        wait_js(&c, "row gone", &format!(r#"return document.querySelector('tr[data-path="{sidecar}"]') === null"#)).await;
        assert!(!rig.root().join(&sidecar).exists());
        for l in &links {
            let rel = l.split("path=").nth(1).unwrap().replace("%2F", "/");
            assert!(!rig.root().join(rel).exists());
        }
        c.close().await.unwrap();
    });

    // Off loopback: the page without the token gets 401s, with it the live plots.
    let open = Rig::start(
        "0.0.0.0:0",
        None,
        Rates { imu: 50, efield: 0 },
        LiveSettings::default(),
    );
    open.rt.block_on(async {
        let c = driver.browser().await;
        c.goto(&format!("{}/", open.base)).await.unwrap();
        let (status, _, _) = fetch_in_page(&c, "/api/recordings").await;
        assert_eq!(status, 401);
        wait_js(
            &c,
            "the refusal shown",
            r#"return document.getElementById("conn").textContent.includes("token")"#,
        )
        .await;
        assert_eq!(js(&c, "return window.__kwik.frames").await, json!(0));
        c.goto(&open.url.replace("0.0.0.0", "127.0.0.1"))
            .await
            .unwrap();
        wait_js(
            &c,
            "live frames with the token",
            "return window.__kwik.frames > 3",
        )
        .await;
        c.close().await.unwrap();
    });
}
