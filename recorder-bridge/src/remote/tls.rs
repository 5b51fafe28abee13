//! A small certificate authority for recorder servers: a CA and a server certificate
//! signed by it (rcgen), saved as DER files so gateways can verify the server.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The DNS name server certificates are issued for by default.
pub const DEFAULT_SERVER_NAME: &str = "localhost";

/// File name of the CA certificate inside a TLS folder.
pub const CA_FILE: &str = "ca.der";
/// File name of the server certificate.
pub const CERT_FILE: &str = "server.der";
/// File name of the server key (PKCS#8).
pub const KEY_FILE: &str = "server.key.der";

/// A CA certificate and a server identity it signed.
pub struct ServerIdentity {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity").finish_non_exhaustive()
    }
}

/// Why certificates could not be made, saved or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Key or certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl ServerIdentity {
    /// A new CA and a server certificate for `localhost`, 127.0.0.1, ::1 and the given
    /// extra names (DNS names or IP addresses).
    pub fn generate(extra_names: &[String]) -> Result<Self, IdentityError> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name = name("kwik-record CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut leaf = CertificateParams::default();
        let mut sans = vec![
            SanType::DnsName(DEFAULT_SERVER_NAME.try_into()?),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
            SanType::IpAddress(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
        ];
        for n in extra_names {
            sans.push(match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.as_str().try_into()?),
            });
        }
        leaf.subject_alt_names = sans;
        leaf.distinguished_name = name(DEFAULT_SERVER_NAME);
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;
        Ok(ServerIdentity {
            ca: ca_cert.der().clone(),
            chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The CA certificate gateways must trust.
    pub fn ca(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// A KWIK server configuration serving this identity.
    pub fn server_config(&self) -> Result<kwik::ServerConfig, kwik::TlsConfigError> {
        kwik::ServerConfig::with_single_cert(
            self.chain.clone(),
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
    }

    /// A KWIK client configuration trusting only this identity's CA.
    pub fn client_config(&self) -> Result<kwik::ClientConfig, kwik::TlsConfigError> {
        kwik::ClientConfig::with_root_certificates([self.ca()])
    }

    /// Writes `ca.der`, `server.der` and `server.key.der` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|source| IdentityError::Io { path, source })
        };
        write(CA_FILE, &self.ca)?;
        write(CERT_FILE, &self.chain[0])?;
        write(KEY_FILE, self.key.secret_pkcs8_der())
    }

    /// Reads an identity saved by [`ServerIdentity::save`].
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| IdentityError::Io { path, source })
        };
        let ca = CertificateDer::from(read(CA_FILE)?);
        let leaf = CertificateDer::from(read(CERT_FILE)?);
        let key = PrivatePkcs8KeyDer::from(read(KEY_FILE)?);
        Ok(ServerIdentity {
            chain: vec![leaf, ca.clone()],
            ca,
            key,
        })
    }
}

/// Reads a CA certificate (DER) for a gateway.
pub fn load_ca(path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    std::fs::read(path)
        .map(CertificateDer::from)
        .map_err(|source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn name(cn: &str) -> DistinguishedName {
    let mut n = DistinguishedName::new();
    n.push(DnType::CommonName, cn);
    n.push(DnType::OrganizationName, "kwik-record");
    n
}
