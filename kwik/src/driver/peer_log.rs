//! The one log line per refused or failed peer: remote address, session and path
//! when known, the fault's class (`reason`), its close code and its text. Every fault
//! is counted (`kwik_peer_faults_total{reason}`); the log is limited per remote IP
//! address ([`OffenderLog`]) so that a peer retrying in a loop cannot flood it.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Instant;

use parking_lot::Mutex;
use tracing::warn;

use crate::driver::control::HANDSHAKE_TIMEOUT;
use crate::driver::error::ConnectError;
use crate::proto::ids::{PathId, SessionId};
use crate::proto::offenders::{OffenderLog, Verdict};
use crate::proto::peer_fault::PeerFault;

/// The process's offenders: one budget per remote address whichever endpoint it
/// reached.
static OFFENDERS: LazyLock<Mutex<OffenderLog>> =
    LazyLock::new(|| Mutex::new(OffenderLog::default()));

/// Counts `fault` of the peer at `remote` and logs it unless that peer has used up
/// its lines for now.
pub(crate) fn report(
    remote: SocketAddr,
    session: Option<SessionId>,
    path: Option<PathId>,
    fault: &PeerFault,
) {
    metrics::counter!("kwik_peer_faults_total", "reason" => fault.kind()).increment(1);
    let verdict = OFFENDERS.lock().check(remote.ip(), Instant::now());
    let Verdict::Log { suppressed } = verdict else {
        return;
    };
    let session = session.map(|s| s.to_string());
    let path = path.map(|p| p.to_string());
    let close_code = fault
        .application_close()
        .map(|(code, _)| format!("{code:#x}"));
    warn!(
        %remote,
        session = session.as_deref().unwrap_or("-"),
        path = path.as_deref().unwrap_or("-"),
        reason = fault.kind(),
        close_code = close_code.as_deref().unwrap_or("-"),
        suppressed,
        "peer refused or failed: {fault}"
    );
}

/// Closes `conn` with the application close (code, reason phrase) of `fault`.
pub(crate) fn close_for(conn: &quinn::Connection, fault: &PeerFault) {
    if let Some((code, reason)) = fault.application_close() {
        let code = quinn::VarInt::from_u64(code).unwrap_or(quinn::VarInt::from_u32(0));
        conn.close(code, reason.as_bytes());
    }
}

/// Where a connection was when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// In the QUIC/TLS handshake.
    Handshake,
    /// After the handshake.
    Established,
}

/// TLS alert `no_application_protocol` as a QUIC CRYPTO_ERROR (0x100 + 120).
const NO_APPLICATION_PROTOCOL: u64 = 0x178;

/// The fault of a connection that ended with `e` at `stage`.
pub(crate) fn connection_fault(e: &quinn::ConnectionError, stage: Stage) -> PeerFault {
    use quinn::ConnectionError as E;
    let code = match e {
        E::TransportError(t) => Some(u64::from(t.code)),
        E::ConnectionClosed(c) => Some(u64::from(c.error_code)),
        _ => None,
    };
    match (e, stage) {
        _ if code == Some(NO_APPLICATION_PROTOCOL) => PeerFault::Alpn,
        (E::TimedOut, Stage::Established) => PeerFault::IdleTimeout,
        (_, Stage::Handshake) => PeerFault::Handshake(e.to_string()),
        (_, Stage::Established) => PeerFault::Transport(e.to_string()),
    }
}

/// The fault behind a failed path handshake (reading the first frame, answering it).
pub(crate) fn connect_fault(e: ConnectError) -> PeerFault {
    match e {
        ConnectError::Connection(e)
        | ConnectError::Read(quinn::ReadError::ConnectionLost(e))
        | ConnectError::Write(quinn::WriteError::ConnectionLost(e)) => {
            connection_fault(&e, Stage::Established)
        }
        ConnectError::TimedOut => PeerFault::HandshakeTimeout(HANDSHAKE_TIMEOUT),
        ConnectError::Protocol(e) => PeerFault::protocol(&e),
        ConnectError::Refused(reason) => PeerFault::JoinRefused(reason),
        ConnectError::ControlClosed => PeerFault::Protocol {
            frame: None,
            detail: "control stream closed before OPEN or JOIN".into(),
        },
        other => PeerFault::Protocol {
            frame: None,
            detail: other.to_string(),
        },
    }
}
