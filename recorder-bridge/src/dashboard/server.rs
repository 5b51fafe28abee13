//! A running dashboard: one HTTP server (axum on the caller's tokio runtime) serving the
//! page, the API and the live WebSocket until shut down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::dashboard::access::{Access, AccessToken};
use crate::dashboard::api::{AppShared, router};
use crate::dashboard::devices::DeviceView;
use crate::dashboard::library::RecordingsRoot;
use crate::dashboard::live::{LiveSettings, UiCounters, UiCounts};
use crate::dashboard::recorder::LiveRecorder;

/// Settings of a dashboard.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Address to listen on (default `127.0.0.1:8080`). Any non-loopback address makes
    /// the access token mandatory.
    pub addr: SocketAddr,
    /// The access token; generated when `None` and the address is not loopback.
    pub token: Option<AccessToken>,
    /// Recordings root the browser lists (default `recordings`).
    pub out_dir: PathBuf,
    /// Live feed pacing and per-client queue bound.
    pub live: LiveSettings,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            out_dir: PathBuf::from("recordings"),
            live: LiveSettings::default(),
        }
    }
}

/// What a dashboard shows beyond the recordings on disk.
#[derive(Debug, Clone, Default)]
pub struct DashboardParts {
    /// Live streams and the recorder panel (record, demo).
    pub recorder: Option<Arc<LiveRecorder>>,
    /// The devices of a recorder server (serve).
    pub devices: Option<Arc<dyn DeviceView>>,
}

/// Why a dashboard could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// The recordings folder could not be created or resolved.
    #[error("cannot use recordings folder {path}: {source}")]
    Root {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr} for the dashboard: {source}; pick another --ui address")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A running dashboard.
#[derive(Debug)]
pub struct Dashboard {
    addr: SocketAddr,
    access: Access,
    counters: Arc<UiCounters>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Dashboard {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn bind(
        config: DashboardConfig,
        parts: DashboardParts,
    ) -> Result<Self, DashboardError> {
        let root = RecordingsRoot::new(&config.out_dir).map_err(|source| DashboardError::Root {
            path: config.out_dir.clone(),
            source,
        })?;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| DashboardError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DashboardError::Bind {
                addr: config.addr,
                source,
            })?;
        let access = Access::for_bind(addr, config.token);
        let counters = Arc::new(UiCounters::default());
        let app = router(Arc::new(AppShared {
            access: access.clone(),
            root,
            recorder: parts.recorder,
            devices: parts.devices,
            counters: counters.clone(),
            live: config.live,
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("dashboard server ended: {e}");
            }
        });
        tracing::info!(%addr, "dashboard listening");
        Ok(Dashboard {
            addr,
            access,
            counters,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access token, when one is required.
    pub fn token(&self) -> Option<&AccessToken> {
        self.access.token()
    }

    /// The URL to open (with `?token=` when one is required). An unspecified bind
    /// address (`0.0.0.0`) is shown as this machine's loopback.
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        match self.access.token() {
            Some(t) => format!("http://{addr}/?token={}", t.as_str()),
            None => format!("http://{addr}/"),
        }
    }

    /// The live feed's counters (clients, frames sent and dropped, bytes).
    pub fn ui_counts(&self) -> UiCounts {
        self.counters.snapshot()
    }

    /// Stops serving: open WebSockets are closed, requests in flight finish. Cancel-safe.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // WebSockets never end by themselves; give the graceful shutdown a bound.
        let task = &mut self.task;
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut *task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
