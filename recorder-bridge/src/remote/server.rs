//! The recorder server: accepts KWIK sessions from gateways and records every sensor
//! stream to disk, one folder per device.
//!
//! Per stream: KWIK stream → [`MessageDecoder`] → sample decode → duplicate filter (by
//! sequence number) → ring buffer → [`Recording`] (exporter, writer thread, CSV and
//! sidecar). When the recorder's buffers hold more than a bound, the stream is not read
//! until they drain, so KWIK withholds credit and the gateway spools instead of the
//! server dropping. Every sample is counted at every stage ([`StreamReport`]).
//!
//! [`MessageDecoder`]: crate::remote::wire::MessageDecoder
//! [`Recording`]: crate::recording::group::Recording

pub mod arrivals;
pub mod config;
pub mod journal;
pub mod links;
mod session;
mod state;
pub mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::remote::server::config::{RecorderServerConfig, ServeError};
use crate::remote::server::links::LinkView;
use crate::remote::server::session::serve_session;
use crate::remote::server::state::ServerShared;
use crate::remote::server::stream::{StreamReport, StreamRing};
use crate::remote::wire::{Sending, StreamKey};
use crate::sync::lock_std as lock;

/// A running recorder server. Must be created inside a tokio runtime.
#[derive(Debug)]
pub struct RecorderServer {
    endpoint: kwik::Endpoint,
    shared: Arc<ServerShared>,
    accept: JoinHandle<()>,
}

/// A recorder server as a dashboard sees it (see [`RecorderServer::reports_handle`]):
/// its stream reports, its gateways' links, and the one request it can make of them,
/// to pause or resume a device's streams.
#[derive(Debug, Clone)]
pub struct ServerReports(Arc<ServerShared>);

impl ServerReports {
    /// Reports of every stream: running ones first, then finished ones.
    pub fn reports(&self) -> Vec<StreamReport> {
        let running: Vec<_> = lock(&self.0.streams).values().cloned().collect();
        let mut out: Vec<StreamReport> = running.iter().map(|s| s.report()).collect();
        out.extend(lock(&self.0.finished).iter().cloned());
        out
    }

    /// The link of a stream's gateway: connected or not, its session's paths, and the
    /// sending state asked for and confirmed. `None` for a stream no gateway started
    /// in this process.
    pub fn link(&self, key: &StreamKey) -> Option<LinkView> {
        self.0.links.view(key)
    }

    /// Asks the gateways of every stream of `device` to send (`Sending::On`) or pause
    /// (`Sending::Paused`) its samples; returns the streams asked, none for an
    /// unknown device. While paused a gateway counts the samples as filtered and the
    /// recording stays open; see `docs/RECORDING.md`.
    pub fn request_sending(&self, device: &str, sending: Sending) -> Vec<StreamKey> {
        self.0.links.request(device, sending)
    }

    /// The streams being recorded now, for live views: `(device, stream, rate in Hz, a
    /// reader of the stream's ring)`.
    pub fn live_streams(&self) -> Vec<(StreamKey, f64, StreamRing)> {
        lock(&self.0.streams)
            .iter()
            .map(|(k, s)| {
                let (ring, rate) = s.live();
                (k.clone(), rate, ring)
            })
            .collect()
    }
}

impl RecorderServer {
    /// Listens on `addr` and starts accepting gateways.
    pub fn bind(
        addr: SocketAddr,
        tls: kwik::ServerConfig,
        config: RecorderServerConfig,
    ) -> Result<Self, ServeError> {
        std::fs::create_dir_all(&config.out_dir).map_err(|source| ServeError::OutputDir {
            path: config.out_dir.clone(),
            source,
        })?;
        let endpoint = kwik::Endpoint::server(addr, tls)?;
        let shared = Arc::new(ServerShared {
            config,
            streams: Mutex::new(HashMap::new()),
            finished: Mutex::new(Vec::new()),
            sessions: AtomicU64::new(0),
            stray_malformed: AtomicU64::new(0),
            links: Default::default(),
        });
        let ep = endpoint.clone();
        let sh = shared.clone();
        let accept = tokio::spawn(async move {
            while let Some(session) = ep.accept().await {
                sh.sessions.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("kwik_record_sessions_total").increment(1);
                tokio::spawn(serve_session(sh.clone(), session));
            }
        });
        Ok(RecorderServer {
            endpoint,
            shared,
            accept,
        })
    }

    /// The UDP address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Reports of every stream: running ones first, then finished ones.
    pub fn reports(&self) -> Vec<StreamReport> {
        self.reports_handle().reports()
    }

    /// A handle that reads the reports from elsewhere (a dashboard) while the server
    /// runs; it outlives [`RecorderServer::shutdown`] and then shows the final reports.
    pub fn reports_handle(&self) -> ServerReports {
        ServerReports(self.shared.clone())
    }

    /// Sessions accepted so far.
    pub fn sessions(&self) -> u64 {
        self.shared.sessions.load(Ordering::Relaxed)
    }

    /// Messages that arrived on a sensor stream before its header (counted, skipped).
    pub fn stray_malformed(&self) -> u64 {
        self.shared.stray_malformed.load(Ordering::Relaxed)
    }

    /// Publishes every stream's counters as Prometheus gauges (call periodically).
    pub fn publish_metrics(&self) {
        for r in self.reports() {
            let labels = [("device", r.device.clone()), ("stream", r.stream.clone())];
            metrics::gauge!("kwik_record_received_samples", &labels).set(r.counts.received as f64);
            metrics::gauge!("kwik_record_written_samples", &labels).set(r.written as f64);
            metrics::gauge!("kwik_record_duplicate_samples", &labels)
                .set(r.counts.duplicates as f64);
            metrics::gauge!("kwik_record_missing_samples", &labels).set(r.counts.missing as f64);
            metrics::gauge!("kwik_record_malformed_messages", &labels)
                .set(r.counts.malformed as f64);
            metrics::gauge!("kwik_record_recorder_dropped_samples", &labels)
                .set(r.recorder_dropped as f64);
            metrics::gauge!("kwik_record_credit_stalls", &labels).set(r.counts.stalls as f64);
        }
    }

    /// Stops accepting, finalises every recording and returns all reports.
    pub async fn shutdown(self) -> Vec<StreamReport> {
        self.accept.abort();
        self.endpoint.close(0, b"server shutting down");
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let keys: Vec<StreamKey> = lock(&shared.streams).keys().cloned().collect();
            for k in keys {
                shared.finish(&k);
            }
        })
        .await;
        lock(&self.shared.finished).clone()
    }
}
