//! Configuration: session behaviour ([`SessionConfig`]) and the TLS side of client
//! and server endpoints ([`ClientConfig`], [`ServerConfig`]).

use std::sync::Arc;
use std::time::Duration;

use kwik_presentation::PresentationConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::scheduler::Scheduler;
use crate::token::TokenKey;

/// The ALPN protocol name of KWIK version 1.
pub const ALPN: &[u8] = b"kwik/1";

/// How a session behaves: scheduling, liveness, acknowledgements, windows.
/// `Default` suits a LAN or WAN session; [`SessionConfig::lan`] detects dead paths
/// faster. Setters take and return `self`.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub(crate) scheduler: Scheduler,
    pub(crate) ping_interval: Duration,
    pub(crate) idle_ping_interval: Duration,
    pub(crate) missed_pong_threshold: u32,
    pub(crate) ack_delay: Duration,
    pub(crate) ack_threshold: u64,
    pub(crate) path_window: u64,
    pub(crate) max_segment: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) token_ttl: Duration,
    pub(crate) grant_ttl: Duration,
    pub(crate) max_paths: usize,
    pub(crate) presentation: PresentationConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            scheduler: Scheduler::MinRtt,
            ping_interval: Duration::from_millis(250),
            idle_ping_interval: Duration::from_secs(5),
            missed_pong_threshold: 4,
            ack_delay: Duration::from_millis(5),
            ack_threshold: 256 * 1024,
            path_window: 8 << 20,
            max_segment: 64 * 1024,
            idle_timeout: Duration::from_secs(10),
            token_ttl: Duration::from_secs(30),
            grant_ttl: Duration::from_secs(60),
            max_paths: 8,
            presentation: PresentationConfig::default(),
        }
    }
}

impl SessionConfig {
    /// A preset for local networks: pings every 50 ms, a path is abandoned after 4
    /// missed pongs (about 200 ms), QUIC idle timeout 2 s.
    pub fn lan() -> Self {
        Self::default()
            .ping_interval(Duration::from_millis(50))
            .missed_pong_threshold(4)
            .idle_timeout(Duration::from_secs(2))
    }

    /// Scheduling policy of streams opened without an explicit one. Default
    /// [`Scheduler::MinRtt`].
    pub fn scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// Interval between pings on each path while data moves. Default 250 ms.
    /// Shorter detects dead paths sooner at the cost of a few bytes per ping (and
    /// some CPU per session). Idle sessions ping less often, see
    /// [`idle_ping_interval`](Self::idle_ping_interval).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Longest interval between pings on a path while the session is idle (no
    /// stream data sent or received since the previous ping, nothing waiting for
    /// an acknowledgement). From `ping_interval`, the interval doubles with every
    /// idle ping up to this value, and drops back to `ping_interval` as soon as
    /// data moves. Default 5 s; the interval used never exceeds a third of the
    /// idle timeout (pings keep idle connections open). Longer saves CPU and
    /// packets with many idle sessions; the death of an idle path is noticed later
    /// (its streams have nothing in flight to lose). Set it to `ping_interval` to
    /// ping at a constant rate.
    pub fn idle_ping_interval(mut self, interval: Duration) -> Self {
        self.idle_ping_interval = interval;
        self
    }

    /// The ping interval ceiling for idle paths (never below `ping_interval`).
    pub(crate) fn idle_ping_cap(&self) -> Duration {
        self.idle_ping_interval
            .min(self.idle_timeout / 3)
            .max(self.ping_interval)
    }

    /// Overdue pongs after which a path is abandoned (its unacknowledged data is
    /// re-sent on the others). Default 4; minimum 1. The last healthy path is never
    /// abandoned for missed pongs (only for a QUIC error or idle timeout).
    pub fn missed_pong_threshold(mut self, threshold: u32) -> Self {
        self.missed_pong_threshold = threshold.max(1);
        self
    }

    /// Longest delay before received data is acknowledged. Default 5 ms. Longer
    /// means fewer ACK frames but more retained bytes at the sender.
    pub fn ack_delay(mut self, delay: Duration) -> Self {
        self.ack_delay = delay;
        self
    }

    /// Unacknowledged bytes of one stream after which an ACK goes out at once.
    /// Default 256 KiB.
    pub fn ack_threshold(mut self, bytes: u64) -> Self {
        self.ack_threshold = bytes.max(1);
        self
    }

    /// Most bytes one path may have in flight (sent, not acknowledged). Default
    /// 8 MiB. It should exceed the path's bandwidth × (RTT + ACK delay). While
    /// [`Scheduler::Aggregate`] spreads a stream over several paths, each path's
    /// limit is sized to its measured bandwidth × delay instead (at most this).
    pub fn path_window(mut self, bytes: u64) -> Self {
        self.path_window = bytes.max(1);
        self
    }

    /// Largest data segment in bytes. Default 64 KiB (at most 16 MiB).
    pub fn max_segment(mut self, bytes: usize) -> Self {
        self.max_segment = bytes.clamp(1, 1 << 24);
        self
    }

    /// QUIC idle timeout of each path. Default 10 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Lifetime of the join tokens a server issues. Default 30 s.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Lifetime of the delegation grants a primary server signs
    /// (`Session::delegate`). Default 60 s. A secondary refuses an expired
    /// grant and stops writing under it; the client accepts its data until 2 s
    /// after the expiry (in flight, clock skew). Longer suits slow secondaries;
    /// shorter reclaims sooner from a secondary that stalls.
    pub fn grant_ttl(mut self, ttl: Duration) -> Self {
        self.grant_ttl = ttl;
        self
    }

    /// Most paths of one session (alive at once). Default 8.
    pub fn max_paths(mut self, paths: usize) -> Self {
        self.max_paths = paths.max(1);
        self
    }

    /// Receive-side settings (windows, backpressure). Default
    /// [`PresentationConfig::default`].
    pub fn presentation(mut self, config: PresentationConfig) -> Self {
        self.presentation = config;
        self
    }
}

/// What a client endpoint needs: TLS settings (server certificates are verified)
/// and the session behaviour.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) session: SessionConfig,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A certificate could not be parsed or added.
    #[error("bad certificate: {0}")]
    Certificate(rustls::Error),
    /// rustls refused the configuration (e.g. no TLS 1.3 cipher suite).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn cannot use the rustls configuration.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClientConfig {
    /// Trusts the given root certificates (DER). Certificates are verified against
    /// them; the ALPN is set to [`ALPN`].
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    /// let config = kwik::ClientConfig::with_root_certificates([ca.cert.der().clone()])?;
    /// # let _ = config; Ok(()) }
    /// ```
    pub fn with_root_certificates(
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, TlsConfigError> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store.add(root).map_err(TlsConfigError::Certificate)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Self::from_rustls(tls))
    }

    /// Uses a rustls configuration as given, except that the ALPN list is set to
    /// [`ALPN`]. It must allow TLS 1.3.
    pub fn from_rustls(mut tls: rustls::ClientConfig) -> Self {
        tls.alpn_protocols = vec![ALPN.to_vec()];
        Self {
            tls: Arc::new(tls),
            session: SessionConfig::default(),
        }
    }

    /// Replaces the session behaviour.
    pub fn session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }
}

/// What a server endpoint needs: its certificate chain and key, the secret that
/// signs join tokens, and the session behaviour.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) session: SessionConfig,
    pub(crate) token_key: TokenKey,
    pub(crate) secondary_joins: SecondaryJoins,
    pub(crate) socket_buffer: usize,
}

/// Default size requested for a server endpoint's UDP receive and send buffers.
///
/// Every client's handshake and data arrive on the server's one socket. The kernel's
/// default receive buffer (`net.core.rmem_default`, often 208 KiB: about a hundred
/// datagrams at the kernel's accounting) overflows when many clients connect at once
/// while the server is briefly busy; each dropped handshake packet costs its client a
/// QUIC retransmission timeout (1 s, then 2 s, then 4 s). Linux caps the request at
/// `net.core.rmem_max` / `net.core.wmem_max`.
pub const DEFAULT_SERVER_SOCKET_BUFFER: usize = 8 << 20;

/// Whether a server endpoint serves as a *secondary* server of sessions that
/// another server (the primary) opened: a JOIN for a session this endpoint does
/// not know is then accepted when its token verifies under the shared
/// [`TokenKey`], and the path comes out of `Endpoint::accept_secondary`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecondaryJoins {
    /// JOINs for unknown sessions are refused (`UnknownSession`). The default.
    #[default]
    Refuse,
    /// JOINs for unknown sessions with a valid token become secondary sessions.
    Accept,
}

impl ServerConfig {
    /// Serves `chain` (leaf first) with `key`; ALPN [`ALPN`]; no client
    /// certificates. The join-token key is random.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    /// let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    /// let config = kwik::ServerConfig::with_single_cert(vec![cert.cert.der().clone()], key)?;
    /// # let _ = config; Ok(()) }
    /// ```
    pub fn with_single_cert(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsConfigError> {
        let tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(TlsConfigError::Certificate)?;
        Ok(Self::from_rustls(tls))
    }

    /// Uses a rustls configuration as given, except that the ALPN list is set to
    /// [`ALPN`]. It must allow TLS 1.3.
    pub fn from_rustls(mut tls: rustls::ServerConfig) -> Self {
        tls.alpn_protocols = vec![ALPN.to_vec()];
        Self {
            tls: Arc::new(tls),
            session: SessionConfig::default(),
            token_key: TokenKey::random(),
            secondary_joins: SecondaryJoins::Refuse,
            socket_buffer: DEFAULT_SERVER_SOCKET_BUFFER,
        }
    }

    /// Replaces the session behaviour.
    pub fn session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }

    /// Sets the secret that signs join tokens (share it between servers that accept
    /// joins for each other's sessions). Default: random per endpoint.
    pub fn token_key(mut self, key: TokenKey) -> Self {
        self.token_key = key;
        self
    }

    /// Whether this endpoint accepts secondary paths of sessions opened at another
    /// server that shares its [`token_key`](Self::token_key). Default
    /// [`SecondaryJoins::Refuse`].
    pub fn secondary_joins(mut self, joins: SecondaryJoins) -> Self {
        self.secondary_joins = joins;
        self
    }

    /// Bytes requested for the UDP socket's receive and send buffers. Default
    /// [`DEFAULT_SERVER_SOCKET_BUFFER`] (8 MiB). Larger rides out longer bursts (many
    /// clients connecting at once, a server busy for a moment) without dropping
    /// datagrams, at the cost of kernel memory and of queueing delay when the server
    /// is overloaded for long. Linux caps it at `net.core.rmem_max` and
    /// `net.core.wmem_max`; raise those (`sysctl`) to get more. 0 keeps the kernel's
    /// defaults.
    pub fn socket_buffer(mut self, bytes: usize) -> Self {
        self.socket_buffer = bytes;
        self
    }
}
