//! What a device says of itself while it is recorded (firmware version, rate, sensor
//! ranges): written by whatever reads the device, laid over the configured device
//! description in every sidecar.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::sync::lock_std as lock;

/// What is learned about the device while a recording runs (e.g. the firmware version
/// a board announces): entries set here are merged over [`RecordingConfig::device`] in
/// every stream's sidecar from its next refresh on, the final one included. Cloning
/// gives another handle on the same entries; any thread may set them.
///
/// [`RecordingConfig::device`]: crate::recording::config::RecordingConfig::device
#[derive(Debug, Clone, Default)]
pub struct DeviceNotes(Arc<Mutex<BTreeMap<String, String>>>);

impl DeviceNotes {
    /// Sets every entry of `entries` (replacing earlier values or configured ones).
    pub fn set_all(&self, entries: impl IntoIterator<Item = (String, String)>) {
        lock(&self.0).extend(entries);
    }

    /// `configured` with these entries laid over it.
    pub(crate) fn over(&self, configured: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut device = configured.clone();
        device.extend(lock(&self.0).iter().map(|(k, v)| (k.clone(), v.clone())));
        device
    }
}
