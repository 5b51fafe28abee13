//! The remote view: what a recorder server (`kwik-record serve`) knows of every
//! connected device, as the dashboard shows it. The dashboard asks through
//! [`DeviceView`], so it depends on no server internals; [`ServerReports`] is the view
//! of a [`RecorderServer`](crate::remote::RecorderServer); its live streams are named
//! `<device>/<stream>`. Each stream carries its gateway's link (the session's paths with
//! state, RTT and receive rate, and the sending state), and a device's streams can be
//! paused and resumed ([`DeviceView::set_sending`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::dashboard::tap::{LiveStream, Taps};
use crate::remote::{Sending, ServerReports, StreamKey, StreamRing};

/// What a dashboard may ask of the devices of a remote recorder.
pub trait DeviceView: Send + Sync + fmt::Debug {
    /// Every device with its streams, as JSON (state, counts, files).
    fn devices(&self) -> serde_json::Value;
    /// Sidecars being written now (what may not be deleted).
    fn live_sidecars(&self) -> Vec<PathBuf>;
    /// The devices' live streams.
    fn taps(&self) -> Taps;
    /// Asks the gateways of `device` to send or pause its streams' samples; the names
    /// of the streams asked (empty: no such device).
    fn set_sending(&self, device: &str, sending: Sending) -> Vec<String>;
    /// The live stream named `name`.
    fn tap(&self, name: &str) -> Option<Arc<dyn LiveStream>> {
        self.taps().get(name).cloned()
    }
}

/// One device of a recorder server, with its streams.
#[derive(Debug, Serialize)]
struct Device {
    device: String,
    streams: Vec<serde_json::Value>,
}

impl DeviceView for ServerReports {
    fn devices(&self) -> serde_json::Value {
        let mut devices: Vec<Device> = Vec::new();
        for r in self.reports() {
            let key = StreamKey {
                device: r.device.clone(),
                stream: r.stream.clone(),
            };
            // A finished recording's link belongs to whatever records the key now.
            let link = (!r.finished).then(|| self.link(&key)).flatten();
            let v = serde_json::json!({
                "stream": r.stream,
                "schema": r.schema,
                "run": r.run,
                "recording": !r.finished,
                "state": r.status.state,
                "written": r.written,
                "rate_hz": r.status.streams.first().map(|s| s.rate_hz),
                "recorder_dropped": r.recorder_dropped,
                "counts": r.counts,
                "sidecar": r.sidecar,
                "stop_reason": r.status.stop_reason,
                "link": link,
            });
            match devices.iter_mut().find(|d| d.device == r.device) {
                Some(d) => d.streams.push(v),
                None => devices.push(Device {
                    device: r.device.clone(),
                    streams: vec![v],
                }),
            }
        }
        serde_json::to_value(devices).unwrap_or_default()
    }

    fn set_sending(&self, device: &str, sending: Sending) -> Vec<String> {
        self.request_sending(device, sending)
            .into_iter()
            .map(|k| k.stream)
            .collect()
    }

    fn live_sidecars(&self) -> Vec<PathBuf> {
        self.reports()
            .into_iter()
            .filter(|r| !r.finished)
            .map(|r| r.sidecar)
            .collect()
    }

    fn taps(&self) -> Taps {
        let mut taps = Taps::new();
        for (key, rate, ring) in self.live_streams() {
            let name = format!("{}/{}", key.device, key.stream);
            match ring {
                StreamRing::Imu(r) => taps.add(&name, rate, &r),
                StreamRing::Efield(r) => taps.add(&name, rate, &r),
                StreamRing::Stage(r) => taps.add(&name, rate, &r),
            }
        }
        taps
    }
}
