//! Who may use the dashboard. On a loopback address anyone on the machine may (as with
//! any local tool); on any other address every API request and the live WebSocket must
//! carry the access token, given (`--ui-token`) or generated at start. The token travels
//! as `Authorization: Bearer <token>` or, where a browser cannot set headers (the
//! WebSocket, download links), as the `token` query parameter.

use std::net::SocketAddr;

/// An access token: 1-128 visible ASCII characters.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// A token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an access token is 1-128 characters from A-Z a-z 0-9 - _ . ~")]
pub struct TokenError;

impl TryFrom<&str> for AccessToken {
    type Error = TokenError;
    fn try_from(s: &str) -> Result<Self, TokenError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        if ok {
            Ok(AccessToken(s.to_owned()))
        } else {
            Err(TokenError)
        }
    }
}

impl AccessToken {
    /// A fresh random token (128 bits, hex).
    pub fn random() -> Self {
        AccessToken(format!("{:032x}", rand::random::<u128>()))
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the strings differ.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The access rule of one dashboard.
#[derive(Debug, Clone)]
pub enum Access {
    /// Loopback bind without a token: every local request is allowed.
    Open,
    /// Requests must carry this token.
    Token(AccessToken),
}

impl Access {
    /// The rule for a dashboard on `addr`: a given token is always required; without
    /// one, loopback is open and any other address gets a generated token.
    pub fn for_bind(addr: SocketAddr, token: Option<AccessToken>) -> Self {
        match token {
            Some(t) => Access::Token(t),
            None if addr.ip().is_loopback() => Access::Open,
            None => Access::Token(AccessToken::random()),
        }
    }

    /// The token, when one is required.
    pub fn token(&self) -> Option<&AccessToken> {
        match self {
            Access::Open => None,
            Access::Token(t) => Some(t),
        }
    }

    /// Whether a request with this `Authorization` header value and `token` query
    /// parameter may proceed.
    pub fn allows(&self, authorization: Option<&str>, query_token: Option<&str>) -> bool {
        match self {
            Access::Open => true,
            Access::Token(t) => {
                let bearer = authorization.and_then(|h| h.strip_prefix("Bearer "));
                bearer.is_some_and(|b| t.matches(b.trim()))
                    || query_token.is_some_and(|q| t.matches(q))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_open_other_binds_need_the_token() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(Access::for_bind(lo, None).allows(None, None));
        let a = Access::for_bind(any, None);
        let t = a.token().unwrap().as_str().to_owned();
        assert!(!a.allows(None, None));
        assert!(!a.allows(Some("Bearer nope"), Some("nope")));
        assert!(a.allows(Some(&format!("Bearer {t}")), None));
        assert!(a.allows(None, Some(&t)));
        let given = AccessToken::try_from("s3cret").unwrap();
        assert!(!Access::for_bind(lo, Some(given)).allows(None, None));
        assert!(AccessToken::try_from("has space").is_err());
        assert!(AccessToken::try_from("").is_err());
    }
}
