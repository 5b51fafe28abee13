//! The HTTP routes: the embedded page and its assets, the JSON API (documented in
//! docs/DASHBOARD.md) and the live WebSocket. Handlers only translate between HTTP and
//! the parts below them ([`LiveRecorder`], [`RecordingsRoot`], [`DeviceView`]); every
//! refusal is a typed [`ApiError`] with a status, a JSON message and a log line.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::io::AsyncReadExt as _;

use crate::check::verify::{VerifyError, verify};
use crate::dashboard::access::Access;
use crate::dashboard::devices::DeviceView;
use crate::dashboard::library::{DeleteError, PathError, PreviewError, RecordingsRoot};
use crate::dashboard::live::{LiveQuery, LiveSettings, UiCounters, serve_client};
use crate::dashboard::recorder::{LiveRecorder, PanelError, StartSettings};
use crate::dashboard::tap::LiveStream;
use crate::recording::config::StartError;
use crate::remote::Sending;

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The access token is missing or wrong (401).
    #[error(
        "missing or wrong access token; open the URL the recorder printed (it carries ?token=) or send Authorization: Bearer <token>"
    )]
    Unauthorized,
    /// A path was refused or not found (400/404).
    #[error(transparent)]
    Path(#[from] PathError),
    /// A delete was refused (409 while recording) or failed.
    #[error(transparent)]
    Delete(#[from] DeleteError),
    /// A preview could not be drawn (422).
    #[error(transparent)]
    Preview(#[from] PreviewError),
    /// The recorder panel refused (404 without streams, 409 on state, 400 on settings).
    #[error(transparent)]
    Panel(#[from] PanelError),
    /// Verification could not run (422).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// No device of a recorder server has this name (404).
    #[error("no device named {0:?}; GET /api/devices lists them")]
    NoDevice(String),
    /// No live stream has this name (404).
    #[error("no live stream named {0:?}; GET /api/streams lists them")]
    NoStream(String),
    /// `/ws/live` was asked without a WebSocket upgrade (400).
    #[error("/ws/live needs a WebSocket upgrade: {0}")]
    NotWebSocket(String),
    /// Reading a file or running a task failed (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        use ApiError as E;
        let path = |p: &PathError| match p {
            PathError::NotRelative(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::NOT_FOUND,
        };
        match self {
            E::Unauthorized => StatusCode::UNAUTHORIZED,
            E::Path(p) | E::Delete(DeleteError::Path(p)) | E::Preview(PreviewError::Path(p)) => {
                path(p)
            }
            E::Delete(DeleteError::InProgress(_)) => StatusCode::CONFLICT,
            E::Delete(DeleteError::Sidecar(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            E::Preview(_) | E::Verify(_) => StatusCode::UNPROCESSABLE_ENTITY,
            E::Panel(PanelError::NoStreams) | E::NoStream(_) | E::NoDevice(_) => {
                StatusCode::NOT_FOUND
            }
            E::Panel(PanelError::AlreadyRecording | PanelError::NotRecording) => {
                StatusCode::CONFLICT
            }
            E::Panel(PanelError::Prefix(_) | PanelError::Setting(_)) | E::NotWebSocket(_) => {
                StatusCode::BAD_REQUEST
            }
            E::Panel(PanelError::Start(StartError::DiskFull { .. })) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            E::Panel(PanelError::Start(StartError::Format(_))) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        if status.is_server_error() {
            tracing::error!(%status, "dashboard: {message}");
        } else {
            tracing::warn!(%status, "dashboard refused a request: {message}");
        }
        metrics::counter!("kwik_record_ui_refused_total", "status" => status.as_str().to_owned())
            .increment(1);
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppShared {
    pub(crate) access: Access,
    pub(crate) root: RecordingsRoot,
    pub(crate) recorder: Option<Arc<LiveRecorder>>,
    pub(crate) devices: Option<Arc<dyn DeviceView>>,
    pub(crate) counters: Arc<UiCounters>,
    pub(crate) live: LiveSettings,
}

type AppState = Arc<AppShared>;

impl AppShared {
    fn recorder(&self) -> Result<&Arc<LiveRecorder>, ApiError> {
        self.recorder
            .as_ref()
            .ok_or(ApiError::Panel(PanelError::NoStreams))
    }

    fn live_sidecars(&self) -> Vec<PathBuf> {
        let mut v = self
            .recorder
            .as_ref()
            .map(|r| r.live_sidecars())
            .unwrap_or_default();
        if let Some(d) = &self.devices {
            v.extend(d.live_sidecars());
        }
        v
    }

    fn tap(&self, name: &str) -> Option<Arc<dyn LiveStream>> {
        self.recorder
            .as_ref()
            .and_then(|r| r.taps().get(name).cloned())
            .or_else(|| self.devices.as_ref().and_then(|d| d.tap(name)))
    }
}

/// The router of a dashboard.
pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/streams", get(streams))
        .route("/api/recorder", get(panel))
        .route("/api/recorder/start", post(start))
        .route("/api/recorder/stop", post(stop))
        .route("/api/recordings", get(list).delete(delete))
        .route("/api/recordings/file", get(download))
        .route("/api/recordings/verify", get(verify_one))
        .route("/api/recordings/preview", get(preview))
        .route("/api/devices", get(devices))
        .route("/api/devices/start", post(device_start))
        .route("/api/devices/stop", post(device_stop))
        .route("/api/ui", get(ui_counts))
        .route("/ws/live", get(live))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .merge(api)
        .with_state(state)
}

async fn require_token(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_owned)
    });
    if st.access.allows(auth, query.as_deref()) {
        next.run(req).await
    } else {
        tracing::warn!(path = %req.uri().path(), "dashboard: request without a valid token");
        ApiError::Unauthorized.into_response()
    }
}

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const UPLOT_JS: &str = include_str!("assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uplot/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("assets/uplot/LICENSE");

async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "uPlot.iife.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uPlot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        "uPlot.LICENSE" => (UPLOT_LICENSE, "text/plain; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn streams(State(st): State<AppState>) -> Response {
    let mut v = st
        .recorder
        .as_ref()
        .map(|r| r.taps().infos())
        .unwrap_or_default();
    if let Some(d) = &st.devices {
        v.extend(d.taps().infos());
    }
    Json(v).into_response()
}

async fn panel(State(st): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(st.recorder()?.panel()).into_response())
}

async fn start(
    State(st): State<AppState>,
    Json(settings): Json<StartSettings>,
) -> Result<Response, ApiError> {
    let rec = st.recorder()?.clone();
    let started = blocking(move || rec.start(&settings).map(|_| rec.panel())).await??;
    tracing::info!("dashboard: recording started");
    Ok(Json(started).into_response())
}

async fn stop(State(st): State<AppState>) -> Result<Response, ApiError> {
    let rec = st.recorder()?.clone();
    let summary = blocking(move || rec.stop()).await??;
    tracing::info!("dashboard: recording stopped");
    Ok(Json(summary).into_response())
}

#[derive(Debug, Deserialize)]
struct PathQuery {
    path: String,
}

async fn list(State(st): State<AppState>) -> Result<Response, ApiError> {
    let live = st.live_sidecars();
    let shared = st.clone();
    let entries = blocking(move || shared.root.list(&live)).await?;
    Ok(Json(entries).into_response())
}

async fn delete(
    State(st): State<AppState>,
    Query(q): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let live = st.live_sidecars();
    let shared = st.clone();
    let removed = blocking(move || shared.root.delete(&q.path, &live)).await??;
    tracing::info!(?removed, "dashboard: recording deleted");
    Ok(Json(serde_json::json!({ "removed": removed })).into_response())
}

async fn download(
    State(st): State<AppState>,
    Query(q): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let real = st.root.resolve(&q.path)?;
    let internal = |e: std::io::Error| ApiError::Internal(format!("cannot read {}: {e}", q.path));
    let file = tokio::fs::File::open(&real).await.map_err(internal)?;
    let len = file.metadata().await.map_err(internal)?.len();
    let name: String = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect();
    let kind = if name.ends_with(".json") {
        "application/json"
    } else {
        "text/csv; charset=utf-8"
    };
    // A file still being written grows: send the length it had when opened.
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(len)));
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

async fn verify_one(
    State(st): State<AppState>,
    Query(q): Query<PathQuery>,
) -> Result<Response, ApiError> {
    let real = st.root.resolve(&q.path)?;
    let report = blocking(move || verify(&real)).await??;
    let ok = report.is_ok();
    Ok(Json(serde_json::json!({ "ok": ok, "report": report })).into_response())
}

#[derive(Debug, Deserialize)]
struct PreviewQuery {
    path: String,
    width: Option<usize>,
}

async fn preview(
    State(st): State<AppState>,
    Query(q): Query<PreviewQuery>,
) -> Result<Response, ApiError> {
    let width = q.width.unwrap_or(1000).clamp(10, 4000);
    let shared = st.clone();
    let p = blocking(move || shared.root.preview(&q.path, width)).await??;
    Ok(Json(p).into_response())
}

async fn devices(State(st): State<AppState>) -> Response {
    match &st.devices {
        Some(d) => Json(d.devices()).into_response(),
        None => Json(serde_json::json!([])).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct DeviceQuery {
    device: String,
}

async fn device_start(
    State(st): State<AppState>,
    Query(q): Query<DeviceQuery>,
) -> Result<Response, ApiError> {
    set_sending(&st, q.device, Sending::On)
}

async fn device_stop(
    State(st): State<AppState>,
    Query(q): Query<DeviceQuery>,
) -> Result<Response, ApiError> {
    set_sending(&st, q.device, Sending::Paused)
}

/// Start/Stop of one device of a recorder server: its gateways resume or pause sending;
/// the recordings stay open.
fn set_sending(st: &AppShared, device: String, sending: Sending) -> Result<Response, ApiError> {
    let streams = st
        .devices
        .as_ref()
        .map(|d| d.set_sending(&device, sending))
        .unwrap_or_default();
    if streams.is_empty() {
        return Err(ApiError::NoDevice(device));
    }
    tracing::info!(%device, ?sending, "dashboard: device sending changed");
    Ok(
        Json(serde_json::json!({ "device": device, "sending": sending, "streams": streams }))
            .into_response(),
    )
}

async fn ui_counts(State(st): State<AppState>) -> Response {
    Json(st.counters.snapshot()).into_response()
}

async fn live(
    State(st): State<AppState>,
    Query(q): Query<LiveQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let tap = st
        .tap(&q.stream)
        .ok_or_else(|| ApiError::NoStream(q.stream.clone()))?;
    let upgrade = upgrade.map_err(|e| ApiError::NotWebSocket(e.body_text()))?;
    let (settings, counters) = (st.live, st.counters.clone());
    Ok(upgrade.on_upgrade(move |socket| serve_client(socket, tap, q, settings, counters)))
}

/// Runs blocking work (files, joins) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("task failed: {e}")))
}
