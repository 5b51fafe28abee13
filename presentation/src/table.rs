//! The sharded stream table: a fixed array of `RwLock<HashMap>` shards.
//!
//! Writers of different streams rarely share a shard, and lookups take only a read
//! lock; each stream then has its own mutex. Built from the crate's `sync` module
//! so that loom checks it too.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::StreamId;
use crate::sync::RwLock;

/// Number of shards (fewer under loom to keep the model small).
const SHARDS: usize = if cfg!(all(loom, test)) { 2 } else { 16 };

/// Hashes a `StreamId` (a single `u64`) with one multiply; ids are not chosen by an
/// attacker in a way that matters here (they are bounded by `max_streams`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type IdMap<V> = HashMap<StreamId, V, BuildHasherDefault<IdHasher>>;

/// Streams spread over `SHARDS` read-write-locked maps by stream index.
#[derive(Debug)]
pub(crate) struct StreamTable<V> {
    shards: Box<[RwLock<IdMap<V>>]>,
}

impl<V> StreamTable<V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(IdMap::default())).collect(),
        }
    }

    /// The shard holding `id`. Consecutive stream indices land in different shards.
    pub(crate) fn shard(&self, id: StreamId) -> &RwLock<IdMap<V>> {
        &self.shards[(id.index() % SHARDS as u64) as usize]
    }

    pub(crate) fn shards(&self) -> impl Iterator<Item = &RwLock<IdMap<V>>> {
        self.shards.iter()
    }
}
