//! The TLS and quinn side of endpoints: what a client or server endpoint
//! needs ([`ClientConfig`], [`ServerConfig`]) and the quinn configurations built
//! from them.

use std::sync::Arc;

use quinn::VarInt;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::proto::config::{ALPN, SecondaryJoins, SessionConfig};
use crate::proto::multiserver::token::TokenKey;

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

/// Concurrent QUIC data streams a peer may open on a new path.
pub(crate) const INITIAL_DATA_STREAMS: u32 = 16;

/// quinn's transport settings for a path of a session configured by `config`.
pub(crate) fn transport_config(config: &SessionConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // The idle timeout is clamped into QUIC's range; an out-of-range value means
    // "no timeout", which our pings make harmless.
    t.max_idle_timeout(quinn::IdleTimeout::try_from(config.idle_timeout).ok());
    // quinn allocates a map entry up front for every uni stream the peer may open
    // at once, so this limit is memory per path: start small and let the data
    // acceptor raise it while streams are in use (`data_acceptor`).
    t.max_concurrent_uni_streams(VarInt::from_u32(INITIAL_DATA_STREAMS));
    t.max_concurrent_bidi_streams(VarInt::from_u32(4));
    t.stream_receive_window(VarInt::from_u32(16 << 20));
    t.receive_window(VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    t
}

fn transport(config: &SessionConfig) -> Arc<quinn::TransportConfig> {
    Arc::new(transport_config(config))
}

/// quinn's client configuration for `config`.
pub(crate) fn quinn_client_config(
    config: &ClientConfig,
) -> Result<quinn::ClientConfig, TlsConfigError> {
    let crypto = QuicClientConfig::try_from(config.tls.clone())
        .map_err(|e| TlsConfigError::Quic(e.to_string()))?;
    let mut c = quinn::ClientConfig::new(Arc::new(crypto));
    c.transport_config(transport(&config.session));
    Ok(c)
}

/// quinn's server configuration for `config`.
pub(crate) fn quinn_server_config(
    config: &ServerConfig,
) -> Result<quinn::ServerConfig, TlsConfigError> {
    let crypto = QuicServerConfig::try_from(config.tls.clone())
        .map_err(|e| TlsConfigError::Quic(e.to_string()))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    sc.transport_config(transport(&config.session));
    Ok(sc)
}

/// `qc` for a client's link to a secondary server. The link carries no
/// session traffic of its own, so the client keeps it alive with QUIC
/// keep-alives (both ends would otherwise idle out).
pub(crate) fn link_client_config(
    qc: &quinn::ClientConfig,
    session: &SessionConfig,
) -> quinn::ClientConfig {
    let mut qc = qc.clone();
    let mut t = transport_config(session);
    t.keep_alive_interval(Some(
        (session.idle_timeout / 3).max(std::time::Duration::from_millis(50)),
    ));
    qc.transport_config(Arc::new(t));
    qc
}
