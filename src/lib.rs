//! Test fixtures shared by the workspace's loopback tests and benches.
//!
//! * [`tls`] — a throw-away certificate authority ([`TestPki`]) and verifying rustls /
//!   quinn configurations built from it.
//!
//! Nothing here is meant for production use; the crate is `publish = false`.

pub mod tls;

pub use tls::{PkiError, SERVER_NAME, TestPki, TlsConfigError};
