//! What the examples share: the one way they make a certificate
//! ([`self_signed_localhost`]), and for the three multi-server examples
//! (`primary`, `secondary`, `fetch`) the material a real deployment provisions out
//! of band, kept in one folder.
//!
//! * `cert.der` / `key.der`: one self-signed certificate for `localhost` and its
//!   key; both servers present it and the client trusts exactly it.
//! * `token.key`: the 32-byte secret that signs join tokens and delegation
//!   grants, shared by the primary and its secondaries (never by the client).

// Each example is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::path::Path;

use kwik::TokenKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The servers' shared material.
pub(crate) struct Material {
    /// The certificate both servers present.
    pub(crate) cert: CertificateDer<'static>,
    /// Its private key.
    pub(crate) key: PrivateKeyDer<'static>,
    /// The join-token and grant key.
    pub(crate) token_key: TokenKey,
}

impl Material {
    /// Loads the material from `dir`, creating it there on first use.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        if !dir.join("cert.der").exists() {
            std::fs::create_dir_all(dir)?;
            let (cert, key) = self_signed_localhost()?;
            std::fs::write(dir.join("key.der"), key.secret_der())?;
            std::fs::write(dir.join("token.key"), rand::random::<[u8; 32]>())?;
            // Written last: its presence means the folder is complete.
            std::fs::write(dir.join("cert.der"), &cert)?;
            println!("created the shared material in {}", dir.display());
        }
        let secret: [u8; 32] = std::fs::read(dir.join("token.key"))?
            .try_into()
            .map_err(|_| "token.key must hold exactly 32 bytes")?;
        Ok(Self {
            cert: certificate(dir)?,
            key: PrivateKeyDer::Pkcs8(std::fs::read(dir.join("key.der"))?.into()),
            token_key: TokenKey::new(secret),
        })
    }
}

/// A fresh self-signed certificate for the name `localhost` (DER) and its private
/// key: the server presents it, and the client is given the certificate to trust,
/// so verification stays on.
pub(crate) fn self_signed_localhost()
-> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), rcgen::Error> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let key = PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    Ok((cert.cert.der().clone(), key))
}

/// The certificate the client trusts.
pub(crate) fn certificate(
    dir: &Path,
) -> Result<CertificateDer<'static>, Box<dyn std::error::Error>> {
    let path = dir.join("cert.der");
    let der = std::fs::read(&path)
        .map_err(|e| format!("{}: {e} (start the primary first)", path.display()))?;
    Ok(CertificateDer::from(der))
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
