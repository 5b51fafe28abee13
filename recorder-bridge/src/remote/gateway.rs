//! The gateway next to the device: source thread → [`Outbox`] (bounded memory, then
//! the on-disk spool) → one KWIK sensor stream, with a control stream for start/stop,
//! acknowledgements and status. Reconnects after any failure and re-sends everything
//! the server has not confirmed on disk.
//!
//! The server may pause the stream ([`Message::Control`], the dashboard's per-device
//! Stop): the device is still read and every sample counted, but while paused samples
//! are not queued; each run of them goes to the server as one [`Message::Filtered`]
//! range in the sample order (through the queue, so it survives a reconnect), and the
//! server counts them as filtered, not lost.

pub mod outbox;
mod routes;
pub mod spool;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use crate::capture::sample_source::{SampleSource, SourceEvent};
use crate::capture::sources::xiao::device_entries;
use crate::remote::accounting::{GatewayCounters, GatewayCounts};
use crate::remote::gateway::outbox::{Outbox, Unsent};
use crate::remote::gateway::routes::{add_missing_paths, retry_wait, routes};
use crate::remote::gateway::spool::{Spool, SpoolError};
use crate::remote::sample::WireSample;
use crate::remote::wire::{
    MIN_WIRE_VERSION, Message, MessageDecoder, RunId, SamplesEncoder, Sending, StartRequest,
    StreamHeader, StreamKey, WIRE_VERSION, WireFormat,
};
use crate::sync::lock_std as lock;

/// Default [`GatewayConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`GatewayConfig::batch_delay`].
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_millis(10);
/// Unsent samples at which the gateway writes at once instead of waiting out the
/// batch delay (a backlog after a reconnect, or a fast device).
const FULL_BATCH: u64 = 1024;
/// Sample bodies taken from the outbox for one stream write.
const WRITE_BYTES: usize = 256 * 1024;

/// Settings of a gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The recorder server.
    pub server: SocketAddr,
    /// Further recorder servers of a fleet (sharing the server's CA and object
    /// store), tried in turn after `server` when a session cannot be opened or is
    /// lost; the outbox and spool carry what none has confirmed across the move.
    pub fallback_servers: Vec<SocketAddr>,
    /// Name the server's certificate must carry (default `localhost`).
    pub server_name: String,
    /// TLS roots and session behaviour.
    pub client: kwik::ClientConfig,
    /// Local address of the first path (default `0.0.0.0:0`).
    pub bind: SocketAddr,
    /// Further paths, each from its own local address (and optionally to another
    /// server address).
    pub extra_paths: Vec<kwik::PathSpec>,
    /// Scheduler of the sensor stream (`None`: the session's default, min-RTT).
    pub scheduler: Option<kwik::Scheduler>,
    /// Device id and stream name on the server.
    pub key: StreamKey,
    /// File-name prefix on the server (empty: the stream name).
    pub prefix: String,
    /// Recording duration limit on the server.
    pub duration_limit: Option<Duration>,
    /// Size limit per file on the server.
    pub size_limit: Option<u64>,
    /// File layout on the server.
    pub format: WireFormat,
    /// Samples held in memory before spooling (default 65 536).
    pub queue_capacity: usize,
    /// Spool file and its maximum size (default: none, overflow is dropped and counted).
    pub spool: Option<(PathBuf, u64)>,
    /// Wait after a failed session before the next attempt (default 500 ms). It
    /// doubles with each further failure in a row, up to 8 times this, and each wait
    /// is spread at random over ±50 % so that gateways cut off together (a server
    /// restart, a burst of starts) do not all come back in the same instant.
    pub reconnect_interval: Duration,
    /// How long one connection attempt (QUIC and TLS handshake, KWIK session
    /// opening) may take before it is abandoned and retried (default 10 s, as long as
    /// the QUIC idle timeout). Shorter notices a dead server sooner; too short turns a
    /// handshake slowed by a busy server or a lost packet (QUIC retransmits after 1 s,
    /// then 2 s, then 4 s) into a failed session and a new handshake that starts over.
    pub connect_timeout: Duration,
    /// How long to keep trying to deliver the rest after the source ended (default 60 s).
    pub drain_timeout: Duration,
    /// Longest a sample waits on the gateway for others to share its stream write
    /// (default 10 ms; zero: each write carries whatever is there). Samples then
    /// travel many to a message and many messages to a write, which is what lets one
    /// server take many devices; the delivery latency grows by at most this much.
    pub batch_delay: Duration,
}

impl GatewayConfig {
    /// Defaults for a stream `key` to `server`, verifying it with `client`.
    pub fn new(server: SocketAddr, client: kwik::ClientConfig, key: StreamKey) -> Self {
        GatewayConfig {
            server,
            fallback_servers: Vec::new(),
            server_name: crate::remote::tls::DEFAULT_SERVER_NAME.into(),
            client,
            bind: if server.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            },
            extra_paths: Vec::new(),
            scheduler: None,
            key,
            prefix: String::new(),
            duration_limit: None,
            size_limit: None,
            format: WireFormat::Csv,
            queue_capacity: 65_536,
            spool: None,
            reconnect_interval: Duration::from_millis(500),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            drain_timeout: Duration::from_secs(60),
            batch_delay: DEFAULT_BATCH_DELAY,
        }
    }
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The client endpoint could not be created.
    #[error("cannot create the client endpoint: {0}")]
    Endpoint(#[from] kwik::EndpointError),
    /// The spool file could not be created.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The source thread could not be started.
    #[error("cannot start the source thread: {0}")]
    Thread(std::io::Error),
}

/// What a finished gateway did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GatewayReport {
    /// Every counter.
    pub counts: GatewayCounts,
    /// The server's final report of the stream (JSON), if it arrived.
    pub server_report: Option<serde_json::Value>,
    /// Why delivery ended early, if it did.
    pub error: Option<String>,
    /// Samples still unconfirmed at the end (0 after a complete delivery).
    pub undelivered: u64,
}

struct Anchor {
    device_time_us: u64,
    host_utc_us: i64,
    seq: u64,
    rate_hz: u32,
}

/// A device's self-description and how many times it changed (0: never seen).
#[derive(Clone, Default)]
struct DeviceDescription {
    version: u64,
    entries: BTreeMap<String, String>,
}

struct Shared {
    outbox: Mutex<Outbox>,
    notify: Notify,
    counters: Arc<GatewayCounters>,
    anchor: Mutex<Option<Anchor>>,
    /// What the device said of itself (each session sends the latest to the server).
    device: Mutex<DeviceDescription>,
    source_done: AtomicBool,
    stop: AtomicBool,
    session: Mutex<Option<kwik::Session>>,
    /// Protocol version this gateway offers in its Hello: [`WIRE_VERSION`], one less
    /// after each refusal of an older server, down to [`MIN_WIRE_VERSION`].
    version: AtomicU8,
    /// Paused by the server ([`Message::Control`]); kept across sessions.
    paused: AtomicBool,
    /// A `Control` arrived that this session has not answered yet.
    answer_control: AtomicBool,
}

/// Filtered samples since the last [`Message::Filtered`] went into the queue: one range
/// of consecutive sequence numbers, written out when it breaks, grows long or old,
/// sending resumes or the source ends.
#[derive(Debug, Default)]
struct FilteredRun(Option<(u64, u64, Instant)>);

impl FilteredRun {
    /// Longest range held before it is queued.
    const MAX: u64 = 4096;
    /// Oldest range held before it is queued, so the server's counts follow a pause
    /// within this much.
    const MAX_AGE: Duration = Duration::from_millis(500);

    /// Adds `seq`; returns a range to queue first: the held one when `seq` does not
    /// follow it, or the held one with `seq` when it is long or old enough.
    fn add(&mut self, seq: u64) -> Option<(u64, u64)> {
        if let Some((first, count, since)) = &mut self.0 {
            if first.checked_add(*count) == Some(seq) {
                *count += 1;
                if *count < Self::MAX && since.elapsed() < Self::MAX_AGE {
                    return None;
                }
                return self.take();
            }
        }
        let held = self.take();
        self.0 = Some((seq, 1, Instant::now()));
        held
    }

    fn take(&mut self) -> Option<(u64, u64)> {
        self.0.take().map(|(first, count, _)| (first, count))
    }
}

/// A running gateway. Must be started inside a tokio runtime.
pub struct Gateway {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<GatewayReport>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("counts", &self.shared.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Starts reading `source` on a thread and delivering to the server.
    pub fn start<Src>(config: GatewayConfig, source: Src) -> Result<Self, GatewayError>
    where
        Src: SampleSource,
        Src::Sample: WireSample,
    {
        let counters = Arc::new(GatewayCounters::default());
        let spool = match &config.spool {
            Some((path, max)) => Some(Spool::create(path, *max)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::new(config.queue_capacity, spool, counters.clone())),
            notify: Notify::new(),
            counters,
            anchor: Mutex::new(None),
            device: Mutex::new(DeviceDescription::default()),
            source_done: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            session: Mutex::new(None),
            version: AtomicU8::new(WIRE_VERSION),
            paused: AtomicBool::new(false),
            answer_control: AtomicBool::new(false),
        });
        let endpoint = kwik::Endpoint::client(config.bind, config.client.clone())?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kwik-gw-source".into())
            .spawn(move || read_source(source, &sh))
            .map_err(GatewayError::Thread)?;
        let sh = shared.clone();
        let run = RunId::random();
        let task =
            tokio::spawn(async move { deliver::<Src::Sample>(config, endpoint, sh, run).await });
        Ok(Gateway {
            shared,
            task,
            thread: Some(thread),
        })
    }

    /// Counters now.
    pub fn counts(&self) -> GatewayCounts {
        self.shared.counters.snapshot()
    }

    /// The current KWIK session, while connected.
    pub fn session(&self) -> Option<kwik::Session> {
        lock(&self.shared.session).clone()
    }

    /// Samples held (memory and spool), not yet confirmed by the server.
    pub fn pending(&self) -> u64 {
        lock(&self.shared.outbox).len()
    }

    /// Samples in the spool now.
    pub fn spooled_now(&self) -> u64 {
        lock(&self.shared.outbox).spooled()
    }

    /// True once the source has ended (limit, end of file, device gone, or stop).
    pub fn source_finished(&self) -> bool {
        self.shared.source_done.load(Ordering::Acquire)
    }

    /// Whether the server has paused this stream (samples counted as filtered).
    pub fn sending(&self) -> Sending {
        if self.shared.paused.load(Ordering::Acquire) {
            Sending::Paused
        } else {
            Sending::On
        }
    }

    /// Asks the source to stop; the gateway then delivers what it holds and stops the
    /// remote recording.
    pub fn stop_source(&self) {
        self.shared.stop.store(true, Ordering::Release);
    }

    /// Waits until the source ended and everything was delivered (or the drain timed
    /// out), then returns the report. Cancel-safe only in the sense that dropping the
    /// future leaves the gateway running.
    pub async fn finish(mut self) -> GatewayReport {
        let report = match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => GatewayReport {
                counts: self.shared.counters.snapshot(),
                server_report: None,
                error: Some(format!("gateway task failed: {e}")),
                undelivered: lock(&self.shared.outbox).len(),
            },
        };
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        report
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.task.abort();
    }
}

fn read_source<Src>(mut source: Src, shared: &Shared)
where
    Src: SampleSource,
    Src::Sample: WireSample,
{
    let c = &shared.counters;
    let mut body = Vec::with_capacity(64);
    let mut filtered = FilteredRun::default();
    while !shared.stop.load(Ordering::Acquire) {
        match source.next_event() {
            Some(SourceEvent::Sample { seq, sample }) => {
                {
                    let mut a = lock(&shared.anchor);
                    if a.is_none() {
                        *a = Some(Anchor {
                            device_time_us: sample.device_time_us(),
                            host_utc_us: chrono::Utc::now().timestamp_micros(),
                            seq,
                            rate_hz: source.rate_hz(),
                        });
                    }
                }
                GatewayCounters::add(&c.device_samples, 1);
                GatewayCounters::add(&c.device_produced, 1);
                if shared.paused.load(Ordering::Acquire) {
                    GatewayCounters::add(&c.filtered, 1);
                    if let Some(range) = filtered.add(seq) {
                        queue_filtered(shared, range);
                    }
                    continue;
                }
                if let Some(range) = filtered.take() {
                    queue_filtered(shared, range);
                }
                body.clear();
                sample.encode_body(seq, &mut body);
                lock(&shared.outbox).push(seq, &body);
                shared.notify.notify_one();
            }
            Some(SourceEvent::Lost(n)) => {
                GatewayCounters::add(&c.device_lost, n);
                GatewayCounters::add(&c.device_produced, n);
            }
            Some(SourceEvent::DecodeError) => GatewayCounters::add(&c.device_errors, 1),
            Some(SourceEvent::Device(info)) => {
                let entries = device_entries(&info);
                let mut device = lock(&shared.device);
                if device.entries != entries {
                    device.version += 1;
                    device.entries = entries;
                    drop(device);
                    shared.notify.notify_one();
                }
            }
            Some(SourceEvent::Idle) => {}
            None => break,
        }
    }
    if let Some(range) = filtered.take() {
        queue_filtered(shared, range);
    }
    shared.source_done.store(true, Ordering::Release);
    shared.notify.notify_one();
}

/// Queues the [`Message::Filtered`] of `(first_seq, count)` in sample order, under the
/// range's last sequence number (acknowledged once the server passed it).
fn queue_filtered(shared: &Shared, (first_seq, count): (u64, u64)) {
    // A range's fixed 16 bytes always encode.
    if let Ok(b) = (Message::Filtered { first_seq, count }).to_bytes() {
        lock(&shared.outbox).push_marker(first_seq + count - 1, &b);
        shared.notify.notify_one();
    }
}

enum Outcome {
    Done(Option<serde_json::Value>),
}

async fn deliver<S: WireSample>(
    config: GatewayConfig,
    endpoint: kwik::Endpoint,
    shared: Arc<Shared>,
    run: RunId,
) -> GatewayReport {
    // The header needs the first sample's time anchor.
    let anchor = loop {
        if let Some(a) = lock(&shared.anchor).as_ref() {
            break Some((a.device_time_us, a.host_utc_us, a.seq, a.rate_hz));
        }
        if shared.source_done.load(Ordering::Acquire) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let Some((device_time_us, host_utc_us, anchor_seq, rate_hz)) = anchor else {
        return GatewayReport {
            counts: shared.counters.snapshot(),
            server_report: None,
            error: Some("the source ended before its first sample".into()),
            undelivered: 0,
        };
    };
    let header = StreamHeader {
        key: config.key.clone(),
        run,
        schema: S::WIRE,
        rate_hz,
        device_time_us,
        host_utc_us,
        anchor_seq,
    };
    let mut drain_started: Option<Instant> = None;
    let mut last_error = None;
    let mut failures_in_a_row = 0u32;
    // Counts the sessions tried: each failure moves on to the next route.
    let mut attempt = 0usize;
    loop {
        if shared.source_done.load(Ordering::Acquire) {
            let t0 = *drain_started.get_or_insert_with(Instant::now);
            if t0.elapsed() > config.drain_timeout {
                break;
            }
        }
        let connects_before = shared.counters.connects.load(Ordering::Relaxed);
        match connect_once(&config, &endpoint, &shared, &header, attempt).await {
            Ok(Outcome::Done(report)) => {
                endpoint.close(0, b"done");
                return GatewayReport {
                    counts: shared.counters.snapshot(),
                    server_report: report,
                    error: None,
                    undelivered: lock(&shared.outbox).len(),
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "connection to the recorder lost; retrying");
                GatewayCounters::add(&shared.counters.connect_failures, 1);
                last_error = Some(e);
                *lock(&shared.session) = None;
                // A session that got going resets the backoff; failed handshakes grow it.
                if shared.counters.connects.load(Ordering::Relaxed) > connects_before {
                    failures_in_a_row = 0;
                }
                failures_in_a_row = failures_in_a_row.saturating_add(1);
                attempt = attempt.wrapping_add(1);
                tokio::time::sleep(retry_wait(config.reconnect_interval, failures_in_a_row)).await;
            }
        }
    }
    endpoint.close(0, b"giving up");
    GatewayReport {
        counts: shared.counters.snapshot(),
        server_report: None,
        error: Some(format!(
            "could not deliver everything within {:?}: {}",
            config.drain_timeout,
            last_error.unwrap_or_default()
        )),
        undelivered: lock(&shared.outbox).len(),
    }
}

async fn write_msg(send: &mut kwik::SendStream, m: &Message) -> Result<(), String> {
    let b = m.to_bytes().map_err(|e| e.to_string())?;
    send.write_chunk(Bytes::from(b))
        .await
        .map_err(|e| e.to_string())
}

async fn connect_once(
    config: &GatewayConfig,
    endpoint: &kwik::Endpoint,
    shared: &Arc<Shared>,
    header: &StreamHeader,
    attempt: usize,
) -> Result<Outcome, String> {
    let (primary, extra_paths) = routes(config, attempt);
    let session = tokio::time::timeout(
        config.connect_timeout,
        endpoint.connect(primary, &config.server_name),
    )
    .await
    .map_err(|_| {
        format!(
            "connect to {primary} timed out after {:?}",
            config.connect_timeout
        )
    })?
    .map_err(|e| format!("connect to {primary}: {e}"))?;
    GatewayCounters::add(&shared.counters.connects, 1);
    let mut missing = Vec::new();
    for spec in extra_paths {
        if let Err(e) = session.add_path(spec).await {
            tracing::warn!(error = %e, "extra path not added; retrying while the session lasts");
            missing.push(spec);
        }
    }
    let adder = tokio::spawn(add_missing_paths(
        session.clone(),
        missing,
        config.reconnect_interval.saturating_mul(4),
    ));
    *lock(&shared.session) = Some(session.clone());
    let r = run_session(config, &session, shared, header).await;
    adder.abort();
    if r.is_err() {
        session.close(1, b"gateway reconnecting");
    }
    r
}

/// Reads the control stream until the server's message that `want` picks (its
/// answer), skipping others; an Error from the server (a refusal) or the stream's end
/// is an error. A refusal of the protocol version makes the next session offer one
/// version less.
async fn answer<T>(
    dec: &mut MessageDecoder,
    recv: &mut kwik::RecvStream,
    shared: &Shared,
    version: u8,
    mut want: impl FnMut(&Message) -> Option<T>,
) -> Result<T, String> {
    loop {
        while let Some(m) = dec.next_message() {
            match m {
                Ok(Message::Error { text, .. }) => {
                    if version > MIN_WIRE_VERSION && text.starts_with("protocol version") {
                        // An older server: offer one version less from the next
                        // session on, down to the oldest.
                        shared.version.store(version - 1, Ordering::Relaxed);
                    }
                    return Err(format!("server refused: {text}"));
                }
                Ok(m) => {
                    if let Some(t) = want(&m) {
                        return Ok(t);
                    }
                }
                Err(_) => {}
            }
        }
        match recv.read_chunk(64 * 1024).await {
            Ok(Some(c)) => dec.push(&c),
            Ok(None) => return Err("control stream closed".to_string()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn run_session(
    config: &GatewayConfig,
    session: &kwik::Session,
    shared: &Arc<Shared>,
    header: &StreamHeader,
) -> Result<Outcome, String> {
    let (mut ctl, mut ctl_recv) = session.open_bi().await.map_err(|e| e.to_string())?;
    let version = shared.version.load(Ordering::Relaxed);
    write_msg(
        &mut ctl,
        &Message::Hello {
            version,
            gateway: format!("kwik-record {}", env!("CARGO_PKG_VERSION")),
        },
    )
    .await?;
    let mut dec = MessageDecoder::new();
    // A server of version 2 or later answers the Hello at once (batched samples; from
    // version 3 the gateway's held range); one of version 1 never does.
    let server_version = if version >= 2 {
        let hello = |m: &Message| match m {
            Message::Hello { version, .. } => Some(*version),
            _ => None,
        };
        match tokio::time::timeout(
            Duration::from_secs(2),
            answer(&mut dec, &mut ctl_recv, shared, version, hello),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => MIN_WIRE_VERSION,
        }
    } else {
        MIN_WIRE_VERSION
    };
    let held_from = (server_version >= 3).then(|| lock(&shared.outbox).acked_below());
    write_msg(
        &mut ctl,
        &Message::Start(StartRequest {
            header: header.clone(),
            prefix: config.prefix.clone(),
            duration_limit_ms: config
                .duration_limit
                .map_or(0, |d| d.as_millis().max(1) as u64),
            size_limit: config.size_limit.unwrap_or(0),
            format: config.format,
            held_from,
        }),
    )
    .await?;
    // Wait for Started: the server's resume point.
    let started = |m: &Message| match m {
        Message::Started { next_seq, .. } => Some(*next_seq),
        _ => None,
    };
    let next_seq = tokio::time::timeout(
        Duration::from_secs(10),
        answer(&mut dec, &mut ctl_recv, shared, version, started),
    )
    .await
    .map_err(|_| "no answer to start".to_string())??;
    {
        let mut ob = lock(&shared.outbox);
        ob.ack(next_seq);
        let n = ob.rewind();
        GatewayCounters::add(&shared.counters.resent, n as u64);
    }
    // Control reader: acknowledgements and the final report.
    let (final_tx, final_rx) = oneshot::channel::<Option<serde_json::Value>>();
    let reader = {
        let shared = shared.clone();
        let own_key = header.key.clone();
        tokio::spawn(async move {
            let mut final_tx = Some(final_tx);
            loop {
                while let Some(m) = dec.next_message() {
                    match m {
                        Ok(Message::Ack { next_seq, .. }) => {
                            lock(&shared.outbox).ack(next_seq);
                            shared.notify.notify_one();
                        }
                        Ok(Message::Status {
                            final_: true, json, ..
                        }) => {
                            if let Some(tx) = final_tx.take() {
                                let _ = tx.send(serde_json::from_str(&json).ok());
                            }
                        }
                        Ok(Message::Error { text, .. }) => {
                            tracing::warn!(%text, "server error");
                        }
                        Ok(Message::Control { key, sending }) if key == own_key => {
                            let paused = sending == Sending::Paused;
                            if shared.paused.swap(paused, Ordering::AcqRel) != paused {
                                tracing::info!(stream = %key, ?sending, "the server changed sending");
                            }
                            shared.answer_control.store(true, Ordering::Release);
                            shared.notify.notify_one();
                        }
                        _ => {}
                    }
                }
                match ctl_recv.read_chunk(64 * 1024).await {
                    Ok(Some(c)) => dec.push(&c),
                    _ => return,
                }
            }
        })
    };
    let batched = version >= 2 && server_version >= 2;
    let result = stream_samples(config, session, shared, header, &mut ctl, final_rx, batched).await;
    reader.abort();
    result
}

/// Tells the server the sending state when it asked ([`Message::Control`]) and at the
/// start of a session while paused (a pause outlives a reconnect).
async fn send_sending_state(
    shared: &Shared,
    header: &StreamHeader,
    ctl: &mut kwik::SendStream,
    session_start: bool,
) -> Result<(), String> {
    let asked = shared.answer_control.swap(false, Ordering::AcqRel);
    let paused = shared.paused.load(Ordering::Acquire);
    if asked || (session_start && paused) {
        let m = Message::SendingState {
            key: header.key.clone(),
            sending: if paused { Sending::Paused } else { Sending::On },
            filtered: shared.counters.filtered.load(Ordering::Relaxed),
        };
        write_msg(ctl, &m).await?;
    }
    Ok(())
}

/// Sends the device's description on the control stream if it changed since
/// `sent` (the version this session sent last).
async fn send_device(
    shared: &Shared,
    header: &StreamHeader,
    ctl: &mut kwik::SendStream,
    sent: &mut u64,
) -> Result<(), String> {
    let device = {
        let d = lock(&shared.device);
        (d.version != *sent).then(|| d.clone())
    };
    if let Some(DeviceDescription { version, entries }) = device {
        let key = header.key.clone();
        write_msg(ctl, &Message::Device { key, entries }).await?;
        *sent = version;
    }
    Ok(())
}

/// Encodes what the outbox handed out as messages: runs of consecutive samples share a
/// [`Message::Samples`] when `batched`, otherwise (or for a body too long to batch)
/// each is a [`Message::Sample`]; a whole message (a filtered range) goes out as it is,
/// in its place. Returns the number of samples.
fn encode_samples(items: &[(u64, Unsent)], batched: bool, out: &mut Vec<u8>) -> u64 {
    let mut batch: Option<SamplesEncoder> = None;
    let mut samples = 0;
    for (seq, item) in items {
        let body = match item {
            Unsent::Sample(body) => body,
            Unsent::Message(m) => {
                if let Some(b) = batch.take() {
                    b.finish(out);
                }
                out.extend_from_slice(m);
                continue;
            }
        };
        samples += 1;
        if let Some(b) = batch.as_mut() {
            if b.push(*seq, body, out) {
                continue;
            }
        }
        if let Some(b) = batch.take() {
            b.finish(out);
        }
        if batched {
            let mut b = SamplesEncoder::begin(*seq, out);
            if b.push(*seq, body, out) {
                batch = Some(b);
                continue;
            }
            b.finish(out);
        }
        // Bodies come from our own encoders and fit a message.
        let _ = Message::encode_sample(*seq, body, out);
    }
    if let Some(b) = batch {
        b.finish(out);
    }
    samples
}

async fn stream_samples(
    config: &GatewayConfig,
    session: &kwik::Session,
    shared: &Arc<Shared>,
    header: &StreamHeader,
    ctl: &mut kwik::SendStream,
    final_rx: oneshot::Receiver<Option<serde_json::Value>>,
    batched: bool,
) -> Result<Outcome, String> {
    let mut data = session
        .open_uni_with(config.scheduler)
        .await
        .map_err(|e| e.to_string())?;
    write_msg(&mut data, &Message::Header(header.clone())).await?;
    // The device description this session has sent (version 0: none yet).
    let mut device_sent = 0;
    send_sending_state(shared, header, ctl, true).await?;
    loop {
        send_device(shared, header, ctl, &mut device_sent).await?;
        send_sending_state(shared, header, ctl, false).await?;
        // Let a few samples gather so that they share a message and a write, unless
        // there is a backlog already or nothing more is coming.
        let unsent = lock(&shared.outbox).unsent();
        if unsent > 0
            && unsent < FULL_BATCH
            && !config.batch_delay.is_zero()
            && !shared.source_done.load(Ordering::Acquire)
        {
            tokio::select! {
                _ = tokio::time::sleep(config.batch_delay) => {}
                r = session.closed() => return Err(format!("session closed: {r:?}")),
            }
        }
        // Empty also while everything in memory is sent but unconfirmed and the rest
        // waits in the spool: then the next acknowledgement makes room.
        let samples = lock(&shared.outbox).take_unsent(WRITE_BYTES);
        if samples.is_empty() {
            if shared.source_done.load(Ordering::Acquire) && lock(&shared.outbox).is_empty() {
                break;
            }
            tokio::select! {
                _ = shared.notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                r = session.closed() => return Err(format!("session closed: {r:?}")),
            }
            continue;
        }
        // Room for the bodies and each one's framing at worst (a Sample message of its
        // own: 4 bytes of header and 8 of sequence number); filtered ranges are small.
        let room: usize = samples
            .iter()
            .map(|(_, u)| match u {
                Unsent::Sample(b) | Unsent::Message(b) => b.len() + 12,
            })
            .sum();
        let mut buf = Vec::with_capacity(room);
        let n = encode_samples(&samples, batched, &mut buf);
        tokio::select! {
            r = data.write_chunk(Bytes::from(buf)) => r.map_err(|e| format!("write: {e}"))?,
            r = session.closed() => return Err(format!("session closed: {r:?}")),
        }
        GatewayCounters::add(&shared.counters.sent, n);
        GatewayCounters::add(&shared.counters.writes, 1);
    }
    // Everything is on disk at the server: stop the recording, get its final report
    // (with the device's latest description, if it changed at the very end).
    send_device(shared, header, ctl, &mut device_sent).await?;
    let _ = data.finish();
    write_msg(ctl, &Message::Stop(header.key.clone())).await?;
    let report = tokio::time::timeout(Duration::from_secs(30), final_rx)
        .await
        .map_err(|_| "no final report from the server".to_string())?
        .map_err(|_| "control stream closed before the final report".to_string())?;
    let _ = ctl.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), ctl.finished()).await;
    session.close(0, b"done");
    Ok(Outcome::Done(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Message> {
        let mut d = MessageDecoder::new();
        d.push(bytes);
        std::iter::from_fn(|| d.next_message().map(Result::unwrap)).collect()
    }

    #[test]
    fn consecutive_samples_share_a_message_and_gaps_start_a_new_one() {
        let s = |seq: u64, len: usize| (seq, Unsent::Sample(Bytes::from(vec![seq as u8; len])));
        let filtered = Message::Filtered {
            first_seq: 12,
            count: 3,
        };
        let marker = (
            14,
            Unsent::Message(Bytes::from(filtered.to_bytes().unwrap())),
        );
        let samples = vec![
            s(5, 3),
            s(6, 3),
            s(7, 0),
            s(9, 3),
            s(10, 300),
            s(11, 1),
            marker,
            s(15, 2),
        ];
        let mut out = Vec::new();
        assert_eq!(encode_samples(&samples, true, &mut out), 7);
        let msgs = decode_all(&out);
        // 5-7 together; 9 after the gap; 10 too long to batch; 11 starts again; the
        // filtered range in its place; 15 after it.
        assert_eq!(msgs.len(), 6);
        assert_eq!(msgs[4], filtered);
        let seqs: Vec<Vec<u64>> = msgs
            .iter()
            .map(|m| match m {
                Message::Sample { seq, .. } => vec![*seq],
                m => m.sample_bodies().map(|(s, _)| s).collect(),
            })
            .collect();
        assert_eq!(
            seqs,
            vec![vec![5, 6, 7], vec![9], vec![10], vec![11], vec![], vec![15]]
        );
        assert!(matches!(msgs[2], Message::Sample { seq: 10, ref body } if body.len() == 300));
        // Every body arrives as it was sent.
        let got: Vec<(u64, Unsent)> = msgs
            .iter()
            .flat_map(|m| match m {
                Message::Sample { seq, body } => {
                    vec![(*seq, Unsent::Sample(Bytes::from(body.clone())))]
                }
                m => m
                    .sample_bodies()
                    .map(|(s, b)| (s, Unsent::Sample(Bytes::copy_from_slice(b))))
                    .collect(),
            })
            .collect();
        let want: Vec<_> = samples
            .iter()
            .filter(|(_, u)| matches!(u, Unsent::Sample(_)))
            .cloned()
            .collect();
        assert_eq!(got, want);
        // For a version-1 server every sample is its own message.
        let mut out = Vec::new();
        encode_samples(&samples, false, &mut out);
        let msgs = decode_all(&out);
        assert_eq!(msgs.len(), samples.len());
        assert!(
            msgs.iter()
                .all(|m| matches!(m, Message::Sample { .. } | Message::Filtered { .. }))
        );
    }
}
