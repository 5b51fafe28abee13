//! Join tokens: what a connection must show to join an existing session as a new
//! path. A token is issued by a server inside a path's TLS-protected control
//! channel and is bound to the session id, the path id and an expiry by an
//! HMAC-SHA256 tag under a key the server holds (and, for multi-server sessions,
//! shares with its secondaries). A token is accepted once.
//!
//! Wire form (57 bytes): `version (u8 = 1) | nonce (16) | expiry (u64 BE, Unix
//! milliseconds) | tag (32)`, with
//! `tag = HMAC-SHA256(key, "kwik/1 join" | session id (16) | path id (u64 BE) | nonce | expiry)`.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::proto::ids::{PathId, SessionId};

pub(crate) type HmacSha256 = Hmac<Sha256>;

const TOKEN_VERSION: u8 = 1;
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// Length of a join token on the wire.
pub const TOKEN_LEN: usize = 1 + NONCE_LEN + 8 + TAG_LEN;
const LABEL: &[u8] = b"kwik/1 join";

/// The secret that signs join tokens (32 bytes). Servers of one deployment that
/// accept joins for each other's sessions share it.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// Wraps a secret.
    pub const fn new(secret: [u8; 32]) -> Self {
        Self(secret)
    }

    /// A fresh random secret (tokens are then only valid on this process).
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// An HMAC-SHA256 keyed with this secret.
    pub(crate) fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length")
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Why a join token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Wrong length or version.
    #[error("malformed join token")]
    Malformed,
    /// The tag does not match: forged, or issued for another session or path.
    #[error("join token does not verify")]
    BadTag,
    /// The token's expiry has passed.
    #[error("join token expired")]
    Expired,
    /// The token was already used.
    #[error("join token already used")]
    Reused,
}

/// Issues and verifies join tokens; remembers used nonces until they expire so a
/// token works once. Time is passed in as Unix milliseconds (tokens may be checked
/// by another host, so a wall clock, not a monotonic one).
#[derive(Debug)]
pub struct TokenIssuer {
    key: TokenKey,
    used: HashMap<[u8; NONCE_LEN], u64>,
}

impl TokenIssuer {
    /// An issuer with `key`.
    pub fn new(key: TokenKey) -> Self {
        Self {
            key,
            used: HashMap::new(),
        }
    }

    fn tag(&self, session: SessionId, path: PathId, nonce: &[u8], expiry: u64) -> HmacSha256 {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.key.0).expect("HMAC takes any key length");
        mac.update(LABEL);
        mac.update(session.as_bytes());
        mac.update(&path.into_inner().to_be_bytes());
        mac.update(nonce);
        mac.update(&expiry.to_be_bytes());
        mac
    }

    /// A token for `path` of `session`, valid until `now_ms + ttl_ms`.
    pub fn issue(&self, session: SessionId, path: PathId, now_ms: u64, ttl_ms: u64) -> Bytes {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let expiry = now_ms.saturating_add(ttl_ms);
        let tag = self
            .tag(session, path, &nonce, expiry)
            .finalize()
            .into_bytes();
        let mut out = BytesMut::with_capacity(TOKEN_LEN);
        out.put_u8(TOKEN_VERSION);
        out.put_slice(&nonce);
        out.put_u64(expiry);
        out.put_slice(&tag);
        out.freeze()
    }

    /// Checks `token` for `path` of `session` at `now_ms` and consumes it.
    pub fn verify(
        &mut self,
        session: SessionId,
        path: PathId,
        token: &[u8],
        now_ms: u64,
    ) -> Result<(), TokenError> {
        self.used.retain(|_, expiry| *expiry >= now_ms);
        if token.len() != TOKEN_LEN || token[0] != TOKEN_VERSION {
            return Err(TokenError::Malformed);
        }
        let nonce = &token[1..1 + NONCE_LEN];
        let mut expiry_bytes = [0u8; 8];
        expiry_bytes.copy_from_slice(&token[1 + NONCE_LEN..1 + NONCE_LEN + 8]);
        let expiry = u64::from_be_bytes(expiry_bytes);
        let tag = &token[1 + NONCE_LEN + 8..];
        self.tag(session, path, nonce, expiry)
            .verify_slice(tag)
            .map_err(|_| TokenError::BadTag)?;
        if expiry < now_ms {
            return Err(TokenError::Expired);
        }
        let mut key = [0u8; NONCE_LEN];
        key.copy_from_slice(nonce);
        if self.used.insert(key, expiry).is_some() {
            return Err(TokenError::Reused);
        }
        Ok(())
    }

    /// Nonces remembered (used tokens not yet expired).
    pub fn remembered(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(TokenKey::new([7; 32]))
    }

    #[test]
    fn valid_once() {
        let mut i = issuer();
        let s = SessionId::from_bytes([1; 16]);
        let t = i.issue(s, PathId::new(1), 1000, 500);
        assert_eq!(i.verify(s, PathId::new(1), &t, 1200), Ok(()));
        assert_eq!(
            i.verify(s, PathId::new(1), &t, 1201),
            Err(TokenError::Reused)
        );
    }

    #[test]
    fn bound_to_session_and_path() {
        let mut i = issuer();
        let s = SessionId::from_bytes([1; 16]);
        let t = i.issue(s, PathId::new(1), 0, 500);
        let other = SessionId::from_bytes([2; 16]);
        assert_eq!(
            i.verify(other, PathId::new(1), &t, 1),
            Err(TokenError::BadTag)
        );
        assert_eq!(i.verify(s, PathId::new(2), &t, 1), Err(TokenError::BadTag));
        assert_eq!(i.verify(s, PathId::new(1), &t, 1), Ok(()));
    }

    #[test]
    fn forged_expired_malformed() {
        let mut i = issuer();
        let s = SessionId::from_bytes([1; 16]);
        let t = i.issue(s, PathId::new(1), 0, 100);
        assert_eq!(
            i.verify(s, PathId::new(1), &t, 101),
            Err(TokenError::Expired)
        );
        let mut forged = t.to_vec();
        forged[20] ^= 1;
        assert_eq!(
            i.verify(s, PathId::new(1), &forged, 1),
            Err(TokenError::BadTag)
        );
        assert_eq!(
            i.verify(s, PathId::new(1), &t[..10], 1),
            Err(TokenError::Malformed)
        );
        let other = TokenIssuer::new(TokenKey::new([8; 32]));
        let t2 = other.issue(s, PathId::new(1), 0, 100);
        assert_eq!(i.verify(s, PathId::new(1), &t2, 1), Err(TokenError::BadTag));
    }

    #[test]
    fn used_set_is_pruned() {
        let mut i = issuer();
        let s = SessionId::from_bytes([1; 16]);
        for n in 0..10 {
            let t = i.issue(s, PathId::new(n), 0, 100);
            i.verify(s, PathId::new(n), &t, 1).unwrap();
        }
        assert_eq!(i.remembered(), 10);
        let t = i.issue(s, PathId::new(99), 1000, 100);
        i.verify(s, PathId::new(99), &t, 1000).unwrap();
        assert_eq!(i.remembered(), 1);
    }
}
