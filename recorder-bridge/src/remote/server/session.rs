//! The tasks serving one gateway's KWIK session: the control stream (start, stop,
//! device notes, status requests), the acknowledgement ticker and one reader per
//! sensor stream, which stops reading while its recording has no room (credit).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::remote::server::state::ServerShared;
use crate::remote::server::stream::StreamSink;
use crate::remote::wire::{
    MIN_WIRE_VERSION, Message, MessageDecoder, StartRequest, StreamHeader, StreamKey, WIRE_VERSION,
    WireFormat,
};
use crate::sync::lock_std as lock;

pub(crate) async fn serve_session(shared: Arc<ServerShared>, session: kwik::Session) {
    let keys: Arc<Mutex<HashSet<StreamKey>>> = Arc::default();
    let uni = {
        let (shared, session, keys) = (shared.clone(), session.clone(), keys.clone());
        tokio::spawn(async move {
            while let Ok(recv) = session.accept_uni().await {
                tokio::spawn(sensor_stream(shared.clone(), recv, keys.clone()));
            }
        })
    };
    if let Ok((send, recv)) = session.accept_bi().await {
        let (tx, rx) = mpsc::channel::<Message>(256);
        let writer = tokio::spawn(control_writer(send, rx));
        let acker = tokio::spawn(ack_ticker(shared.clone(), keys.clone(), tx.clone()));
        control_reader(shared.clone(), &session, recv, tx.clone(), keys).await;
        shared.links.detach(&tx);
        drop(tx);
        acker.abort();
        let _ = writer.await;
    }
    let _ = session.closed().await;
    uni.abort();
}

async fn control_writer(mut send: kwik::SendStream, mut rx: mpsc::Receiver<Message>) {
    let mut buf = Vec::new();
    while let Some(m) = rx.recv().await {
        buf.clear();
        if m.encode(&mut buf).is_err() {
            continue;
        }
        while let Ok(more) = rx.try_recv() {
            let _ = more.encode(&mut buf);
        }
        if send
            .write_chunk(Bytes::copy_from_slice(&buf))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = send.finish();
}

async fn ack_ticker(
    shared: Arc<ServerShared>,
    keys: Arc<Mutex<HashSet<StreamKey>>>,
    tx: mpsc::Sender<Message>,
) {
    let mut last: HashMap<StreamKey, u64> = HashMap::new();
    let mut tick = tokio::time::interval(shared.config.ack_interval);
    loop {
        tick.tick().await;
        let ks: Vec<StreamKey> = lock(&keys).iter().cloned().collect();
        for key in ks {
            let Some(sink) = shared.get(&key) else {
                continue;
            };
            let sh = sink.clone();
            let next = match tokio::task::spawn_blocking(move || sh.committed()).await {
                Ok(n) => n,
                Err(_) => continue,
            };
            if last.get(&key) != Some(&next) {
                last.insert(key.clone(), next);
                if tx
                    .send(Message::Ack {
                        key,
                        next_seq: next,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn control_reader(
    shared: Arc<ServerShared>,
    session: &kwik::Session,
    mut recv: kwik::RecvStream,
    tx: mpsc::Sender<Message>,
    keys: Arc<Mutex<HashSet<StreamKey>>>,
) {
    let mut dec = MessageDecoder::new();
    loop {
        while let Some(m) = dec.next_message() {
            // A pause asked for before this session goes out again after `Started`.
            let mut again = None;
            let reply = match m {
                Ok(Message::Hello { version, gateway }) => {
                    tracing::info!(%gateway, version, "gateway connected");
                    if (MIN_WIRE_VERSION..=WIRE_VERSION).contains(&version) {
                        // A gateway of version 1 never reads this; from version 2 on it
                        // says what the server accepts (batched samples).
                        (version >= 2).then(|| Message::Hello {
                            version: WIRE_VERSION,
                            gateway: format!("kwik-record serve {}", env!("CARGO_PKG_VERSION")),
                        })
                    } else {
                        Some(Message::Error {
                            key: StreamKey::default(),
                            text: format!(
                                "protocol version {version} not supported (server speaks {MIN_WIRE_VERSION} to {WIRE_VERSION})"
                            ),
                        })
                    }
                }
                Ok(Message::Start(req)) => {
                    let key = req.header.key.clone();
                    match shared.start(req).await {
                        Ok((_, next_seq)) => {
                            lock(&keys).insert(key.clone());
                            again = shared.links.attach(&key, tx.clone(), session.clone());
                            Some(Message::Started { key, next_seq })
                        }
                        Err(text) => Some(Message::Error { key, text }),
                    }
                }
                Ok(Message::Stop(key)) => {
                    lock(&keys).remove(&key);
                    let sh = shared.clone();
                    let k = key.clone();
                    let report = tokio::task::spawn_blocking(move || sh.finish(&k))
                        .await
                        .ok()
                        .flatten();
                    Some(match report {
                        Some(r) => Message::Status {
                            key,
                            final_: true,
                            json: serde_json::to_string(&r).unwrap_or_default(),
                        },
                        None => Message::Error {
                            key,
                            text: "no such recording".into(),
                        },
                    })
                }
                Ok(Message::Device { key, entries }) => match shared.get(&key) {
                    Some(s) => {
                        s.note_device(entries);
                        None
                    }
                    None => Some(Message::Error {
                        key,
                        text: "no such recording".into(),
                    }),
                },
                Ok(Message::SendingState {
                    key,
                    sending,
                    filtered,
                }) => {
                    tracing::info!(stream = %key, ?sending, filtered, "gateway confirmed its sending state");
                    shared.links.confirm(&key, sending, filtered);
                    None
                }
                Ok(Message::StatusRequest(key)) => Some(match shared.get(&key) {
                    Some(s) => {
                        let r = tokio::task::spawn_blocking(move || s.report()).await.ok();
                        Message::Status {
                            key,
                            final_: false,
                            json: r
                                .and_then(|r| serde_json::to_string(&r).ok())
                                .unwrap_or_default(),
                        }
                    }
                    None => Message::Error {
                        key,
                        text: "no such recording".into(),
                    },
                }),
                Ok(other) => {
                    tracing::debug!(?other, "unexpected message on the control stream");
                    shared.stray_malformed.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(e) => {
                    tracing::debug!(error = %e, "malformed control message skipped");
                    shared.stray_malformed.fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
            for r in reply.into_iter().chain(again) {
                if tx.send(r).await.is_err() {
                    return;
                }
            }
        }
        match recv.read_chunk(64 * 1024).await {
            Ok(Some(chunk)) => dec.push(&chunk),
            _ => return,
        }
    }
}

async fn sensor_stream(
    shared: Arc<ServerShared>,
    mut recv: kwik::RecvStream,
    keys: Arc<Mutex<HashSet<StreamKey>>>,
) {
    let mut dec = MessageDecoder::new();
    let mut sink: Option<Arc<dyn StreamSink>> = None;
    loop {
        while let Some(m) = dec.next_message() {
            match (m, &sink) {
                (Ok(Message::Sample { seq, body }), Some(s)) => {
                    s.push_many(&mut std::iter::once((seq, body.as_slice())));
                }
                (Ok(m @ Message::Samples { .. }), Some(s)) => s.push_many(&mut m.sample_bodies()),
                (Ok(Message::Filtered { first_seq, count }), Some(s)) => {
                    s.filtered(first_seq, count);
                }
                (Ok(Message::Header(h)), None) => match attach(&shared, h.clone()).await {
                    Ok(s) => {
                        // This session's gateway gets acks for the stream.
                        lock(&keys).insert(h.key);
                        sink = Some(s);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sensor stream refused");
                        recv.stop(1);
                        return;
                    }
                },
                (Ok(_), Some(s)) | (Err(_), Some(s)) => s.count_malformed(),
                (_, None) => {
                    shared.stray_malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Credit: do not read on while the recorder is behind; KWIK's window then
        // fills and the gateway's sender waits (and spools).
        if let Some(s) = &sink {
            wait_for_room(s.as_ref()).await;
        }
        match recv.read_chunk(64 * 1024).await {
            Ok(Some(chunk)) => dec.push(&chunk),
            _ => return,
        }
    }
}

/// Returns once `sink` has room, counting one stall if it had none. The recording
/// wakes [`StreamSink::room_changed`] whenever samples leave its buffers, so this waits
/// exactly as long as the recorder is behind. Registering for the notification before
/// looking at the room means a wake between the two is not lost. Cancel-safe.
async fn wait_for_room(sink: &dyn StreamSink) {
    let mut stalled = false;
    loop {
        let changed = sink.room_changed().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if sink.has_room() {
            return;
        }
        if !stalled {
            stalled = true;
            sink.stall();
        }
        changed.await;
    }
}

/// Binds a sensor stream to its recording: the one its gateway started, or a new one
/// with default settings (a gateway that sends no Start).
async fn attach(
    shared: &Arc<ServerShared>,
    h: StreamHeader,
) -> Result<Arc<dyn StreamSink>, String> {
    if let Some(s) = shared.get(&h.key) {
        if s.run() == h.run && s.schema() == h.schema {
            return Ok(s);
        }
    }
    let req = StartRequest {
        header: h,
        prefix: String::new(),
        duration_limit_ms: 0,
        size_limit: 0,
        format: WireFormat::Csv,
        held_from: None,
    };
    shared.start(req).await.map(|(s, _)| s)
}
