//! kwik endpoints on 127.0.0.1 that trust each other through one [`TestPki`]: the set-up
//! every kwik loopback test and bench starts from.
//!
//! The pieces compose: [`server_config`] / [`client_config`] give configurations a test
//! can still adjust (token key, secondary joins), [`server_endpoint`] /
//! [`client_endpoint`] bind them to [`LOCALHOST`], [`connect`] opens a session and
//! accepts it on the server side. [`Loopback`] is the common case of all of these: one
//! server, one client, one session configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use kwik::{ClientConfig, Endpoint, EndpointError, ServerConfig, Session, SessionConfig};

use crate::tls::{PkiError, SERVER_NAME, TestPki, TlsConfigError};

/// 127.0.0.1 with any free port: where every loopback endpoint binds.
pub const LOCALHOST: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// A kwik server configuration presenting `pki`'s server certificate, with `session`.
pub fn server_config(
    pki: &TestPki,
    session: SessionConfig,
) -> Result<ServerConfig, TlsConfigError> {
    Ok(ServerConfig::from_rustls(pki.server_config(&[])?).session(session))
}

/// A kwik client configuration that trusts `pki`'s CA only, with `session`.
pub fn client_config(
    pki: &TestPki,
    session: SessionConfig,
) -> Result<ClientConfig, TlsConfigError> {
    Ok(ClientConfig::from_rustls(pki.client_config(&[])?).session(session))
}

/// A server endpoint on [`LOCALHOST`].
pub fn server_endpoint(config: ServerConfig) -> Result<Endpoint, EndpointError> {
    Endpoint::server(LOCALHOST, config)
}

/// A client endpoint on [`LOCALHOST`].
pub fn client_endpoint(config: ClientConfig) -> Result<Endpoint, EndpointError> {
    Endpoint::client(LOCALHOST, config)
}

/// Opens a session from `client` to `to` (the `server` endpoint's address, or a relay in
/// front of it) and accepts it at `server`. Returns (client side, server side).
///
/// The server side is the next session `server` accepts: connect one session at a time
/// to an endpoint whose sessions are accepted here.
pub async fn connect(
    client: &Endpoint,
    to: SocketAddr,
    server: &Endpoint,
) -> Result<(Session, Session), ConnectError> {
    let client_side = client.connect(to, SERVER_NAME).await?;
    let server_side = server.accept().await.ok_or(ConnectError::NotAccepted)?;
    Ok((client_side, server_side))
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The client could not open the session.
    #[error(transparent)]
    Connect(#[from] kwik::ConnectError),
    /// The server endpoint closed before it accepted a session.
    #[error("the server endpoint closed before accepting the session")]
    NotAccepted,
}

/// A fresh test CA, and a server and a client endpoint on [`LOCALHOST`] built from it.
#[derive(Debug)]
pub struct Loopback {
    /// The CA both endpoints trust (for raw quinn connections to the server, too).
    pub pki: TestPki,
    /// The server endpoint.
    pub server: Endpoint,
    /// The client endpoint.
    pub client: Endpoint,
}

/// Why [`Loopback::new`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The test CA could not be generated.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A TLS configuration could not be built from it.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// An endpoint could not be bound.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

impl Loopback {
    /// A new CA and both endpoints, each with `session`.
    pub fn new(session: SessionConfig) -> Result<Self, SetupError> {
        let pki = TestPki::generate()?;
        let server = server_endpoint(server_config(&pki, session.clone())?)?;
        let client = client_endpoint(client_config(&pki, session)?)?;
        Ok(Self {
            pki,
            server,
            client,
        })
    }

    /// The server endpoint's address.
    pub fn server_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// [`connect`] from this client to this server, through `to` (the server's
    /// address or a relay in front of it).
    pub async fn connect(&self, to: SocketAddr) -> Result<(Session, Session), ConnectError> {
        connect(&self.client, to, &self.server).await
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64 from `seed`): test data that
/// does not repeat with any chunk size, so a misplaced chunk changes the hash.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_seeded() {
        assert_eq!(pattern(1000, 5), pattern(1000, 5));
        assert_ne!(pattern(1000, 5), pattern(1000, 6));
        assert_eq!(pattern(13, 5), pattern(1000, 5).slice(..13));
        assert!(pattern(0, 1).is_empty());
    }
}
