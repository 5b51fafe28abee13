//! The server's way back to each gateway, per stream: the control stream of the session
//! that started it (to send [`Message::Control`]), that session's paths (for the remote
//! view), and the sending state a dashboard asked for and the gateway confirmed.
//!
//! A request outlives the session: a gateway that reconnects gets it again right after
//! `Started`. A gateway that does not know `Control` never confirms; the request then
//! stays visible as unconfirmed and the stream keeps recording.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::remote::wire::{Message, Sending, StreamKey};
use crate::sync::lock_std as lock;

/// One KWIK path of a gateway's session, as the server sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PathView {
    /// Path number within the session.
    pub id: u64,
    /// Life-cycle state (`Joined`, `Validated`, `Degraded`, `Abandoned`).
    pub state: String,
    /// `Available` or `Backup`.
    pub status: String,
    /// The gateway's address on this path.
    pub remote: Option<SocketAddr>,
    /// Smoothed round-trip time in milliseconds, once measured.
    pub rtt_ms: Option<f64>,
    /// Payload bytes received on this path.
    pub bytes_received: u64,
    /// Bytes per second received on this path (the gateway's send rate on it) since
    /// the previous look, `None` on the first.
    pub rate_bytes_per_s: Option<f64>,
}

/// What the remote view shows of a stream's gateway.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinkView {
    /// The session that started the stream is open.
    pub connected: bool,
    /// What a dashboard asked for (`None`: nothing asked).
    pub requested: Option<Sending>,
    /// What the gateway last said is in effect (`None`: it never said; an older
    /// gateway that does not know the request never does).
    pub confirmed: Option<Sending>,
    /// Samples of this run the gateway did not send by request, as it last said.
    pub filtered: u64,
    /// The session's paths.
    pub paths: Vec<PathView>,
}

struct Link {
    control: mpsc::Sender<Message>,
    session: kwik::Session,
}

#[derive(Default)]
struct LinkState {
    link: Option<Link>,
    requested: Option<Sending>,
    confirmed: Option<Sending>,
    filtered: u64,
    /// Per path: when its bytes were last looked at, how many, and the rate then.
    seen: HashMap<u64, (Instant, u64, Option<f64>)>,
}

/// Every stream's link, by stream key.
#[derive(Default)]
pub(crate) struct Links(Mutex<HashMap<StreamKey, LinkState>>);

impl Links {
    /// The session behind `control` started `key`. Returns the request to send it
    /// again (after `Started`), if one was made.
    pub(crate) fn attach(
        &self,
        key: &StreamKey,
        control: mpsc::Sender<Message>,
        session: kwik::Session,
    ) -> Option<Message> {
        let mut m = lock(&self.0);
        let st = m.entry(key.clone()).or_default();
        st.link = Some(Link { control, session });
        st.seen.clear();
        st.requested.map(|sending| Message::Control {
            key: key.clone(),
            sending,
        })
    }

    /// The session behind `control` ended: its streams have no link until a new one.
    pub(crate) fn detach(&self, control: &mpsc::Sender<Message>) {
        for st in lock(&self.0).values_mut() {
            if st
                .link
                .as_ref()
                .is_some_and(|l| l.control.same_channel(control))
            {
                st.link = None;
            }
        }
    }

    /// The gateway said `sending` is in effect for `key`, with `filtered` so far.
    pub(crate) fn confirm(&self, key: &StreamKey, sending: Sending, filtered: u64) {
        let mut m = lock(&self.0);
        let st = m.entry(key.clone()).or_default();
        st.confirmed = Some(sending);
        st.filtered = filtered;
    }

    /// Asks every stream of `device` for `sending`; returns the streams asked (a
    /// stream without a session gets it when its gateway reconnects).
    pub(crate) fn request(&self, device: &str, sending: Sending) -> Vec<StreamKey> {
        let mut asked = Vec::new();
        for (key, st) in lock(&self.0).iter_mut() {
            if key.device != device {
                continue;
            }
            st.requested = Some(sending);
            if let Some(l) = &st.link {
                let m = Message::Control {
                    key: key.clone(),
                    sending,
                };
                // The control writer's queue is bounded; a full one means the session
                // is stuck, and the request goes out again on reconnect.
                if l.control.try_send(m).is_err() {
                    tracing::warn!(stream = %key, "control stream busy; the request waits for a reconnect");
                }
            }
            asked.push(key.clone());
        }
        asked
    }

    /// The link of `key` as the remote view shows it.
    pub(crate) fn view(&self, key: &StreamKey) -> Option<LinkView> {
        let mut m = lock(&self.0);
        let st = m.get_mut(key)?;
        let now = Instant::now();
        let mut paths = Vec::new();
        if let Some(l) = &st.link {
            for p in l.session.paths() {
                let id = p.stats.id.into_inner();
                let bytes = p.stats.bytes_received;
                let rate = match st.seen.get(&id) {
                    Some(&(at, before, rate)) => {
                        let dt = now.saturating_duration_since(at).as_secs_f64();
                        // Looks closer together than this keep the last figure.
                        if dt < 0.2 {
                            paths.push(path_view(&p, rate));
                            continue;
                        }
                        Some(bytes.saturating_sub(before) as f64 / dt)
                    }
                    None => None,
                };
                st.seen.insert(id, (now, bytes, rate));
                paths.push(path_view(&p, rate));
            }
        }
        Some(LinkView {
            connected: st
                .link
                .as_ref()
                .is_some_and(|l| l.session.close_reason().is_none()),
            requested: st.requested,
            confirmed: st.confirmed,
            filtered: st.filtered,
            paths,
        })
    }
}

fn path_view(p: &kwik::PathInfo, rate: Option<f64>) -> PathView {
    PathView {
        id: p.stats.id.into_inner(),
        state: format!("{:?}", p.stats.state),
        status: format!("{:?}", p.stats.status),
        remote: p.remote,
        rtt_ms: p.stats.srtt.map(|d| d.as_secs_f64() * 1e3),
        bytes_received: p.stats.bytes_received,
        rate_bytes_per_s: rate,
    }
}
