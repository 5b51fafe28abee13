//! The live feed of one browser: a WebSocket that carries min/max columns of one
//! stream. A producer task reads its own cursor of the stream's ring every frame
//! interval, decimates on the server (so the traffic follows the plot's width, not the
//! sample rate) and offers each frame to a bounded queue; the socket task sends what
//! the queue holds. A slow or vanished browser fills its queue: frames are dropped and
//! counted, the ring and the recording never wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::dashboard::decimate::{Columns, MinMax, samples_per_column};
use crate::dashboard::tap::LiveStream;

/// Shortest and longest plot window a client may ask for, seconds.
pub const WINDOW_RANGE_S: (f64, f64) = (1.0, 60.0);
/// Narrowest and widest plot a client may ask for, columns.
pub const WIDTH_RANGE: (usize, usize) = (50, 4000);

/// What a client subscribes to (query of `/ws/live`).
#[derive(Debug, Clone, Deserialize)]
pub struct LiveQuery {
    /// Stream name.
    pub stream: String,
    /// Plot window in seconds (clamped to [`WINDOW_RANGE_S`]; default 10).
    pub window: Option<f64>,
    /// Plot width in columns (clamped to [`WIDTH_RANGE`]; default 1000).
    pub width: Option<usize>,
}

/// Counters of every live client of a dashboard.
#[derive(Debug, Default)]
pub struct UiCounters {
    clients: AtomicU64,
    frames_sent: AtomicU64,
    frames_dropped: AtomicU64,
    bytes_sent: AtomicU64,
    ring_missed: AtomicU64,
}

/// A snapshot of [`UiCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UiCounts {
    /// Live clients connected now.
    pub clients: u64,
    /// Frames sent over all clients.
    pub frames_sent: u64,
    /// Frames dropped because a client's queue was full (UI frames only, never samples).
    pub frames_dropped: u64,
    /// WebSocket payload bytes sent.
    pub bytes_sent: u64,
    /// Samples a plot cursor found overwritten (the plot skipped them; the recording
    /// has its own reader).
    pub ring_missed: u64,
}

impl UiCounters {
    /// A snapshot.
    pub fn snapshot(&self) -> UiCounts {
        UiCounts {
            clients: self.clients.load(Ordering::Relaxed),
            frames_sent: self.frames_sent.load(Ordering::Relaxed),
            frames_dropped: self.frames_dropped.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            ring_missed: self.ring_missed.load(Ordering::Relaxed),
        }
    }
}

/// One frame: the columns completed since the previous frame.
#[derive(Debug, Serialize)]
struct Frame<'a> {
    stream: &'a str,
    per_column: u64,
    #[serde(flatten)]
    columns: &'a Columns,
    /// Ring index of the newest sample read, and its values.
    last_index: Option<u64>,
    last: &'a [f64],
    /// This client's frames dropped so far.
    dropped_frames: u64,
}

/// How a live client is served.
#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    /// Time between frames (default 33 ms, 30 frames per second).
    pub frame_interval: Duration,
    /// Frames a client's queue holds (default 4).
    pub queue: usize,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            frame_interval: Duration::from_millis(33),
            queue: 4,
        }
    }
}

/// Serves one WebSocket client until it leaves. Cancel-safe: dropping the future closes
/// the socket and stops the producer.
pub(crate) async fn serve_client(
    mut socket: WebSocket,
    stream: Arc<dyn LiveStream>,
    query: LiveQuery,
    settings: LiveSettings,
    counters: Arc<UiCounters>,
) {
    counters.clients.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<String>(settings.queue.max(1));
    let producer = tokio::spawn(produce(stream, query, settings, counters.clone(), tx));
    let hello = serde_json::json!({ "hello": true }).to_string();
    let mut alive = socket.send(Message::Text(hello.into())).await.is_ok();
    while alive {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(text) => {
                    let n = text.len() as u64;
                    alive = socket.send(Message::Text(text.into())).await.is_ok();
                    if alive {
                        counters.frames_sent.fetch_add(1, Ordering::Relaxed);
                        counters.bytes_sent.fetch_add(n, Ordering::Relaxed);
                        metrics::counter!("kwik_record_ui_bytes_total").increment(n);
                    }
                }
                None => alive = false,
            },
            msg = socket.recv() => {
                alive = matches!(msg, Some(Ok(m)) if !matches!(m, Message::Close(_)));
            }
        }
    }
    producer.abort();
    counters.clients.fetch_sub(1, Ordering::Relaxed);
}

async fn produce(
    stream: Arc<dyn LiveStream>,
    query: LiveQuery,
    settings: LiveSettings,
    counters: Arc<UiCounters>,
    tx: mpsc::Sender<String>,
) {
    let window = query
        .window
        .filter(|w| w.is_finite())
        .unwrap_or(10.0)
        .clamp(WINDOW_RANGE_S.0, WINDOW_RANGE_S.1);
    let width = query
        .width
        .unwrap_or(1000)
        .clamp(WIDTH_RANGE.0, WIDTH_RANGE.1);
    let per_column = samples_per_column(stream.rate_hz(), window, width);
    let channels = stream.channels().len();
    let history = (stream.rate_hz() * window) as u64;
    let mut cursor = stream.cursor(history);
    let mut dec = MinMax::new(channels, per_column);
    let mut columns = Columns::new(channels);
    let mut last = vec![0.0; channels];
    let mut last_index = None;
    let mut dropped = 0u64;
    let max_read = stream.capacity().max(1);
    let mut tick = tokio::time::interval(settings.frame_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        loop {
            let r = cursor.read(max_read, &mut |i, t, v| {
                dec.push(t, v, &mut columns);
                last.copy_from_slice(v);
                last_index = Some(i);
            });
            if r.missed > 0 {
                counters.ring_missed.fetch_add(r.missed, Ordering::Relaxed);
            }
            if r.read < max_read {
                break;
            }
        }
        if columns.is_empty() {
            continue;
        }
        let frame = Frame {
            stream: stream.name(),
            per_column,
            columns: &columns,
            last_index,
            last: &last,
            dropped_frames: dropped,
        };
        // Serialising numbers and strings cannot fail; if it ever did, the frame is
        // skipped (empty).
        let text = serde_json::to_string(&frame).unwrap_or_default();
        columns.clear();
        if text.is_empty() {
            continue;
        }
        match tx.try_send(text) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("kwik_record_ui_frames_dropped_total").increment(1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
