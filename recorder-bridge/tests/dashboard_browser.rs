//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) opens the dashboard of simulator streams, checks that live points
//! arrive and show the simulator's values, records with Start/Stop, finds the recording
//! in the list, downloads it and compares the bytes, previews and deletes it, and meets
//! the 401 of a non-loopback bind without the token. Screenshots go to
//! `target/dashboard-screenshots/`. Without /usr/bin/chromium and /usr/bin/chromedriver
//! the test says what is missing and skips, unless KWIK_REQUIRE_BROWSER=1.

mod dashboard_rig;

use dashboard_rig::browser::{Driver, fetch_in_page, js, shot, wait_js};
use dashboard_rig::{Rates, Rig};
use fantoccini::Locator;
use kwik_recorder::{LiveSettings, RateHz, SignalGenerator, SimImu};
use serde_json::json;

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
        let link_css = format!(r#"tr[data-path="{sidecar}"] a.dl"#);
        let links = js(
            &c,
            &format!(r#"return [...document.querySelectorAll('{link_css}')].map(a => a.href);"#),
        )
        .await;
        let links: Vec<String> = serde_json::from_value(links).unwrap();
        assert_eq!(links.len(), 2);
        // Clicked, as a user would: Chromium's download manager saves each file under
        // the name the server gave it; the saved bytes are the file's on disk.
        let elements = c.find_all(Locator::Css(&link_css)).await.unwrap();
        for (link, element) in links.iter().zip(&elements) {
            let (name, body) = driver.download(element).await;
            let rel = link.split("path=").nth(1).unwrap().replace("%2F", "/");
            let on_disk = std::fs::read(rig.root().join(&rel)).unwrap();
            assert_eq!(name, rel.rsplit('/').next().unwrap());
            assert_eq!(body.len(), on_disk.len(), "{rel}");
            assert!(body == on_disk, "{rel}: the downloaded bytes differ from the file");
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
