//! Multi-server sessions, the protocol side: join tokens, signed grants, and
//! what the client and a secondary server keep and check about them.

pub(crate) mod client;
pub(crate) mod grant;
pub(crate) mod secondary;
pub(crate) mod token;
