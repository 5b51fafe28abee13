//! The remote view in a real browser: a recorder server in this process, two gateways
//! (one with two KWIK paths) streaming simulated boards over loopback, and headless
//! Chromium on its dashboard. The page shows each device's paths (state, RTT, send
//! rate); Stop for one device pauses its gateway (its samples are counted as filtered,
//! not lost) while the other keeps recording; Start resumes it; at the end both
//! recordings verify, and the paused device's file is the simulator's samples with
//! exactly the filtered ones left out. Screenshot: `target/dashboard-screenshots/`.
//! Skips like `dashboard_browser` without Chromium.

mod dashboard_rig;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use dashboard_rig::browser::{Driver, js, shot, wait_js};
use fantoccini::{Client, Locator};
use kwik_recorder::{
    Dashboard, DashboardConfig, DashboardParts, Gateway, GatewayConfig, ImuRow, RecorderServer,
    RecorderServerConfig, Sending, ServerIdentity, ServerReports, Sidecar, SimImuConfig, StreamKey,
    StreamReport, parse_csv, sim_imu, verify,
};

const RATE: u32 = 200;

fn local(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 0))
}

fn sim(seed: u64) -> SimImuConfig {
    SimImuConfig {
        seed,
        rate_hz: NonZeroU32::new(RATE).unwrap(),
        limit: None,
        real_time: true,
    }
}

fn report(reports: &ServerReports, device: &str) -> StreamReport {
    reports
        .reports()
        .into_iter()
        .find(|r| r.device == device)
        .unwrap_or_else(|| panic!("no report of {device}"))
}

async fn text(c: &Client, css: &str) -> String {
    let v = js(
        c,
        &format!(r#"const e = document.querySelector('{css}'); return e ? e.textContent : "";"#),
    )
    .await;
    v.as_str().unwrap_or_default().to_owned()
}

async fn number(c: &Client, css: &str) -> u64 {
    text(c, css).await.replace(',', "").parse().unwrap_or(0)
}

#[test]
fn stop_and_start_one_device_from_the_page() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recordings");
    rt.block_on(async {
        let id = ServerIdentity::generate(&[]).unwrap();
        let mut sc = RecorderServerConfig {
            out_dir: out.clone(),
            ..RecorderServerConfig::default()
        };
        sc.recording.min_free_bytes = 0;
        let server = RecorderServer::bind(local(1), id.server_config().unwrap(), sc).unwrap();
        let gateway = |device: &str, seed: u64, second_path: bool| {
            let key = StreamKey {
                device: device.into(),
                stream: "imu".into(),
            };
            let mut gc = GatewayConfig::new(
                server.local_addr().unwrap(),
                id.client_config().unwrap(),
                key,
            );
            gc.bind = local(1);
            if second_path {
                gc.extra_paths = vec![kwik::PathSpec::local(local(2))];
            }
            Gateway::start(gc, sim_imu(sim(seed))).unwrap()
        };
        let a = gateway("bench-a", 11, true);
        let b = gateway("bench-b", 12, false);
        let reports = server.reports_handle();
        let dashboard = Dashboard::bind(
            DashboardConfig {
                addr: local(1),
                out_dir: out.clone(),
                ..DashboardConfig::default()
            },
            DashboardParts {
                recorder: None,
                devices: Some(Arc::new(reports.clone())),
            },
        )
        .await
        .unwrap();

        let c = driver.browser().await;
        c.goto(&dashboard.url()).await.unwrap();
        // Both paths of bench-a with their RTT and a send rate, next to its stream.
        let paths = r#".device[data-device="bench-a"] .dev-paths tbody tr"#;
        wait_js(
            &c,
            "two paths of bench-a with RTT and rate",
            &format!(
                r#"const rows = [...document.querySelectorAll('{paths}')];
                   return rows.length === 2 && rows.every(r => r.cells[4].textContent.endsWith(" ms")
                     && r.cells[5].textContent.endsWith("/s"));"#
            ),
        )
        .await;
        let states = js(
            &c,
            &format!(r#"return [...document.querySelectorAll('{paths}')].map(r => r.cells[2].textContent);"#),
        )
        .await;
        assert_eq!(states, serde_json::json!(["Validated", "Validated"]));
        wait_js(
            &c,
            "bench-b recording",
            r#"return document.querySelector('.dev-state[data-device="bench-b"]')?.textContent === "sending";"#,
        )
        .await;
        js(&c, "document.getElementById('devices').scrollIntoView(); return true;").await;
        shot(&c, "devices.png").await;

        // Stop bench-a: its gateway confirms the pause.
        c.find(Locator::Css(r#"button.dev-stop[data-device="bench-a"]"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_js(
            &c,
            "bench-a paused",
            r#"return document.querySelector('.dev-state[data-device="bench-a"]')?.textContent === "paused";"#,
        )
        .await;
        assert_eq!(a.sending(), Sending::Paused);
        assert_eq!(b.sending(), Sending::On);
        let b_before = report(&reports, "bench-b").written;
        let a_filtered_before = report(&reports, "bench-a").counts.filtered;
        // While bench-a's samples are counted as filtered, bench-b keeps recording.
        let a_filtered = r#"tr[data-stream="bench-a/imu"] td.filtered"#;
        let b_written = r#"tr[data-stream="bench-b/imu"] td.written"#;
        let start = std::time::Instant::now();
        loop {
            let f = number(&c, a_filtered).await;
            let w = number(&c, b_written).await;
            if f >= a_filtered_before + 2 * u64::from(RATE) && w >= b_before + 2 * u64::from(RATE) {
                break;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "filtered {f}, bench-b written {w}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let paused = report(&reports, "bench-a");
        assert_eq!(paused.counts.missing, 0);
        assert!(paused.status.state == kwik_recorder::GroupState::Recording);
        js(&c, "document.getElementById('devices').scrollIntoView(); return true;").await;
        shot(&c, "devices-paused.png").await;

        // Start it again: it records anew.
        c.find(Locator::Css(r#"button.dev-start[data-device="bench-a"]"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_js(
            &c,
            "bench-a sending again",
            r#"return document.querySelector('.dev-state[data-device="bench-a"]')?.textContent === "sending";"#,
        )
        .await;
        let resumed_at = report(&reports, "bench-a").written;
        wait_js(
            &c,
            "bench-a recording again",
            &format!(
                r#"return parseInt(document.querySelector('tr[data-stream="bench-a/imu"] td.written').textContent.replace(/,/g, "")) > {};"#,
                resumed_at + u64::from(RATE)
            ),
        )
        .await;
        c.close().await.unwrap();

        // End both; the books and the files.
        a.stop_source();
        b.stop_source();
        let (ra, rb) = (a.finish().await, b.finish().await);
        let finals = server.shutdown().await;
        dashboard.shutdown().await;
        for (gw, device, seed) in [(&ra, "bench-a", 11), (&rb, "bench-b", 12)] {
            let r = finals.iter().find(|r| r.device == device).unwrap();
            let c = gw.counts;
            assert_eq!(gw.error, None, "{device}");
            assert_eq!(r.counts.missing, 0, "{device}");
            assert_eq!(r.recorder_dropped, 0, "{device}");
            assert_eq!(r.counts.filtered, c.filtered, "{device}");
            assert_eq!(r.written + c.filtered, c.device_samples, "{device}");
            let file = &r.files[0];
            let v = verify(file).unwrap();
            assert!(v.is_ok(), "{device}: {:?}", v.problems);
            let rows = parse_csv::<ImuRow>(&std::fs::read(file).unwrap())
                .unwrap()
                .rows;
            assert_eq!(rows.len() as u64, r.written);
            // The simulator's samples, in order, with the filtered ones left out.
            let expected = sim(seed).expected(c.device_samples);
            let mut rest = expected.iter();
            assert!(rows.iter().all(|row| rest.any(|e| e == row)), "{device}");
            let sc = Sidecar::read(&r.sidecar).unwrap();
            if device == "bench-a" {
                assert!(c.filtered >= 2 * u64::from(RATE));
                assert_eq!(
                    sc.device.get("filtered_by_request"),
                    Some(&c.filtered.to_string())
                );
            } else {
                assert_eq!(c.filtered, 0);
                assert_eq!(rows, expected);
            }
        }
    });
}
