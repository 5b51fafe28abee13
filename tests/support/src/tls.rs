//! A throw-away certificate authority for loopback tests and benches.
//!
//! [`TestPki::generate`] creates a fresh CA and a server leaf certificate for
//! `localhost`, `127.0.0.1` and `::1`, signed by that CA. Clients built with
//! [`TestPki::client_config`] trust only that CA root and verify the server normally, so
//! tests exercise real certificate verification rather than a "skip verification" hack.
//!
//! Every call to [`TestPki::generate`] makes a new, unrelated CA: a client configured from
//! one `TestPki` rejects a server configured from another, which is how tests check that
//! verification is on.
//!
//! All rustls configurations use the `ring` crypto provider explicitly (never the process
//! default) and TLS 1.3 only, as QUIC requires.
//!
//! ```
//! use kwik_testbed::tls::TestPki;
//!
//! let pki = TestPki::generate().expect("generate test CA");
//! let alpn: &[&[u8]] = &[b"kwik/1"];
//! let client = pki.client_config(alpn).expect("client config");
//! let server = pki.server_config(alpn).expect("server config");
//! assert_eq!(client.alpn_protocols, vec![b"kwik/1".to_vec()]);
//! assert_eq!(server.alpn_protocols, vec![b"kwik/1".to_vec()]);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The DNS name the leaf certificate is issued for; use it as the `server_name` when
/// connecting.
pub const SERVER_NAME: &str = "localhost";

/// A test certificate authority and one server identity signed by it.
///
/// Owns DER copies of everything; accessors hand out clones so callers can move them into
/// rustls or quinn configurations freely.
pub struct TestPki {
    ca_root: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// Why a [`TestPki`] could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen failed to create a key pair or to sign a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Why a rustls or quinn configuration could not be built from a [`TestPki`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// rustls refused the protocol versions, the root certificate or the key.
    #[error("rustls configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    /// The rustls configuration cannot serve QUIC (no TLS 1.3 initial cipher suite).
    #[error("configuration unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

impl TestPki {
    /// Generates a new CA and a leaf certificate for `localhost`, `127.0.0.1` and `::1`.
    ///
    /// Takes a few milliseconds (two ECDSA P-256 key pairs).
    pub fn generate() -> Result<Self, PkiError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name = distinguished_name("KWIK test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::default();
        leaf_params.subject_alt_names = vec![
            SanType::DnsName(SERVER_NAME.try_into()?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ];
        leaf_params.distinguished_name = distinguished_name(SERVER_NAME);
        leaf_params.is_ca = IsCa::NoCa;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.use_authority_key_identifier_extension = true;
        let leaf_cert = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;

        Ok(Self {
            ca_root: ca_cert.der().clone(),
            chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        })
    }

    /// The CA root certificate (DER) that clients must trust.
    pub fn ca_root(&self) -> CertificateDer<'static> {
        self.ca_root.clone()
    }

    /// The server's certificate chain (DER): the leaf first, then the CA certificate.
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain.clone()
    }

    /// The server leaf's private key (PKCS#8 DER).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// A root store that contains only this CA.
    pub fn root_store(&self) -> Result<RootCertStore, TlsConfigError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_root())?;
        Ok(roots)
    }

    /// A TLS 1.3 client configuration that verifies servers against this CA only and offers
    /// the given ALPN protocols (in order of preference).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<ClientConfig, TlsConfigError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.root_store()?)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// A TLS 1.3 server configuration presenting this PKI's leaf certificate, without client
    /// authentication, accepting the given ALPN protocols.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<ServerConfig, TlsConfigError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain(), self.private_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// [`client_config`](Self::client_config) wrapped for quinn, with quinn's default
    /// transport settings.
    pub fn quinn_client_config(
        &self,
        alpn: &[&[u8]],
    ) -> Result<quinn::ClientConfig, TlsConfigError> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(self.client_config(alpn)?)?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }

    /// [`server_config`](Self::server_config) wrapped for quinn, with quinn's default
    /// transport settings.
    pub fn quinn_server_config(
        &self,
        alpn: &[&[u8]],
    ) -> Result<quinn::ServerConfig, TlsConfigError> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(self.server_config(alpn)?)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is test material, but keep it out of logs anyway.
        f.debug_struct("TestPki")
            .field("chain_len", &self.chain.len())
            .field("ca_root_len", &self.ca_root.len())
            .finish_non_exhaustive()
    }
}

/// The `ring` crypto provider, chosen explicitly so that another crate enabling a second
/// provider in the same build cannot make rustls' process-default lookup ambiguous.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "KWIK testbed");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_is_leaf_then_ca() {
        let pki = TestPki::generate().unwrap();
        let chain = pki.cert_chain();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], pki.ca_root());
        assert_ne!(chain[0], chain[1]);
    }

    #[test]
    fn two_pkis_are_unrelated() {
        let a = TestPki::generate().unwrap();
        let b = TestPki::generate().unwrap();
        assert_ne!(a.ca_root(), b.ca_root());
    }

    #[test]
    fn configs_build_for_quinn() {
        let pki = TestPki::generate().unwrap();
        pki.quinn_client_config(&[b"kwik/1"]).unwrap();
        pki.quinn_server_config(&[b"kwik/1"]).unwrap();
    }
}
