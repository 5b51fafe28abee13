//! The state a recorder server's tasks share.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::remote::server::config::RecorderServerConfig;
use crate::remote::server::links::Links;
use crate::remote::server::stream::{StreamReport, StreamSink, open_sink};
use crate::remote::wire::{StartRequest, StreamKey};
use crate::sync::lock_std as lock;

/// What the server's tasks share: the settings, the streams being recorded and the
/// reports of finished ones.
pub(crate) struct ServerShared {
    pub(crate) config: RecorderServerConfig,
    pub(crate) streams: Mutex<HashMap<StreamKey, Arc<dyn StreamSink>>>,
    /// Finished streams' final reports, newest last.
    pub(crate) finished: Mutex<Vec<StreamReport>>,
    pub(crate) sessions: AtomicU64,
    /// Messages on sensor streams that could not be attributed to a stream.
    pub(crate) stray_malformed: AtomicU64,
    /// The way back to each stream's gateway (control requests, paths).
    pub(crate) links: Links,
}

impl ServerShared {
    /// The sink for `req`: the running one (same run: resume), or a new recording.
    pub(crate) async fn start(
        self: &Arc<Self>,
        req: StartRequest,
    ) -> Result<(Arc<dyn StreamSink>, u64), String> {
        let key = req.header.key.clone();
        let existing = lock(&self.streams).get(&key).cloned();
        if let Some(s) = existing {
            if s.run() == req.header.run && s.schema() == req.header.schema {
                let next = s.committed();
                if req.held_from.is_none_or(|held| held <= next) {
                    return Ok((s, next));
                }
                // The gateway has moved past what this recording holds: another
                // server of a fleet recorded the samples between. This part ends
                // here and the next starts where the gateway is.
            }
            // A new run of the device (or another schema), or the same run after
            // another server's part: finish the old recording.
            let me = self.clone();
            let k = key.clone();
            let _ = tokio::task::spawn_blocking(move || me.finish(&k)).await;
        }
        let me = self.clone();
        let r = tokio::task::spawn_blocking(move || open_sink(&me.config, &req))
            .await
            .map_err(|e| e.to_string())?;
        let sink = r.map_err(|e| e.to_string())?;
        let mut map = lock(&self.streams);
        let sink = map.entry(key).or_insert(sink).clone();
        let next = sink.committed();
        Ok((sink, next))
    }

    pub(crate) fn finish(&self, key: &StreamKey) -> Option<StreamReport> {
        let sink = lock(&self.streams).remove(key)?;
        let report = sink.stop();
        lock(&self.finished).push(report.clone());
        Some(report)
    }

    pub(crate) fn get(&self, key: &StreamKey) -> Option<Arc<dyn StreamSink>> {
        lock(&self.streams).get(key).cloned()
    }
}

impl std::fmt::Debug for ServerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerShared")
            .field("out_dir", &self.config.out_dir)
            .finish_non_exhaustive()
    }
}
