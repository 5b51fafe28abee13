//! Headless Chromium for the dashboard tests and bench: chromedriver on a free port and
//! WebDriver sessions with the flags CI uses, plus small page helpers. Downloads go
//! through Chromium's own download manager into a folder of the driver's
//! ([`Driver::download`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromedriver on a free port, killed on drop.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
    profile: PathBuf,
    _downloads: tempfile::TempDir,
    downloads: PathBuf,
}

impl Driver {
    /// None (after saying why) when the browser is not installed and not required.
    pub fn start() -> Option<Driver> {
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
        let downloads = tempfile::tempdir().unwrap();
        Some(Driver {
            child,
            port,
            profile: profile.path().to_path_buf(),
            _profile: profile,
            downloads: downloads.path().to_path_buf(),
            _downloads: downloads,
        })
    }

    pub async fn browser(&self) -> Client {
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
                "prefs": {
                    "download.default_directory": self.downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session in headless chromium");
        // Headless Chromium takes its download folder from the DevTools protocol; the
        // prefs above cover a headed one. chromedriver relays the command.
        let session = c.session_id().await.unwrap().expect("a session id");
        let url = format!(
            "http://127.0.0.1:{}/session/{session}/goog/cdp/execute",
            self.port
        );
        let body = json!({
            "cmd": "Browser.setDownloadBehavior",
            "params": {
                "behavior": "allow",
                "downloadPath": self.downloads,
                "eventsEnabled": false,
            },
        });
        let answer = tokio::task::spawn_blocking(move || {
            ureq::post(&url)
                .set("Content-Type", "application/json")
                .send_string(&body.to_string())
                .map(|r| r.status())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap();
        assert_eq!(answer, Ok(200), "Browser.setDownloadBehavior");
        c
    }

    /// Clicks `link` and waits until Chromium's download manager has written the file
    /// into the download folder; returns its name and bytes (the folder is emptied
    /// first, so it holds only this download).
    pub async fn download(&self, link: &fantoccini::elements::Element) -> (String, Vec<u8>) {
        for f in std::fs::read_dir(&self.downloads).unwrap().flatten() {
            std::fs::remove_file(f.path()).unwrap();
        }
        link.click().await.unwrap();
        let start = Instant::now();
        loop {
            let files: Vec<PathBuf> = std::fs::read_dir(&self.downloads)
                .unwrap()
                .flatten()
                .map(|f| f.path())
                .collect();
            // Chromium writes `NAME.crdownload` and renames it when complete.
            let done: Vec<&PathBuf> = files
                .iter()
                .filter(|p| p.extension().is_none_or(|e| e != "crdownload"))
                .collect();
            if let [file] = done[..] {
                if files.len() == 1 {
                    let name = file.file_name().unwrap().to_string_lossy().into_owned();
                    return (name, std::fs::read(file).unwrap());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no finished download in {}: {files:?}",
                self.downloads.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

pub async fn wait_js(c: &Client, what: &str, script: &str) -> Value {
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

pub async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(name), png).unwrap();
}

/// Fetches `url` from inside the page; returns (status, body as bytes, headers).
pub async fn fetch_in_page(c: &Client, url: &str) -> (u64, Vec<u8>, Value) {
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
    let body = base64::engine::general_purpose::STANDARD
        .decode(v[1].as_str().unwrap())
        .unwrap();
    (v[0].as_u64().unwrap(), body, v[2].clone())
}
