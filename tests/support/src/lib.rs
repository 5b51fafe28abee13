//! Test fixtures shared by the workspace's loopback tests and benches.
//!
//! * [`tls`] — a throw-away certificate authority ([`TestPki`]) and verifying rustls /
//!   quinn configurations built from it.
//! * [`relay`] — a loopback UDP [`Relay`] that impairs the datagrams it forwards (delay,
//!   jitter, seeded loss, rate limit with a bounded queue, blackhole), switchable at run
//!   time through a [`RelayHandle`]. One relay per path gives multipath tests real sockets.
//! * [`loopback`] — kwik server and client endpoints on 127.0.0.1 that trust one test CA
//!   ([`Loopback`]), and the seeded test data ([`loopback::pattern`]) the transfers check.
//! * [`impairment`] — the relay's per-direction model as pure logic ([`Link`]), usable on a
//!   virtual clock.
//!
//! Nothing here is meant for production use; the crate is `publish = false`.

pub mod impairment;
pub mod loopback;
pub mod relay;
pub mod tls;

pub use impairment::{
    BitRate, DropReason, Impairment, InvalidLossRate, Link, LossRate, Verdict, ZeroBitRate,
};
pub use loopback::Loopback;
pub use relay::{
    Direction, LinkStats, Relay, RelayConfig, RelayHandle, RelayStartError, RelayStats,
};
pub use tls::{PkiError, SERVER_NAME, TestPki, TlsConfigError};
