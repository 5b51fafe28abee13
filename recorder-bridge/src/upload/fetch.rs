//! Recordings read back from the store, for `kwik-record ls s3://…` and
//! `kwik-record verify s3://…`: the sidecars below a prefix, and one recording (its
//! sidecar and every part it lists) downloaded into a local folder, where the ordinary
//! [`verify`](crate::check::verify::verify) checks it.

use std::path::{Path, PathBuf};

use crate::store::sidecar::{Sidecar, sidecar_path};
use crate::upload::connection::{RecordingStore, StoreError};

/// One sidecar found in the store.
#[derive(Debug)]
pub struct StoredSidecar {
    /// Its object key.
    pub key: String,
    /// Its contents, or why they could not be read.
    pub sidecar: Result<Sidecar, String>,
}

/// Every sidecar (`*.meta.json`) below the store's prefix, sorted by key.
///
/// # Errors
/// [`StoreError`] if listing fails; an unreadable sidecar is returned as such.
pub async fn list_sidecars(store: &RecordingStore) -> Result<Vec<StoredSidecar>, StoreError> {
    let mut out = Vec::new();
    for (key, _) in store.list(store.url().prefix()).await? {
        if !key.ends_with(".meta.json") {
            continue;
        }
        let sidecar = match store.get(&key).await {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        out.push(StoredSidecar { key, sidecar });
    }
    Ok(out)
}

/// Downloads the recording that `key` belongs to (a data file's or a sidecar's key)
/// into `into`: its sidecar, then every part the sidecar lists that the store holds (a
/// part missing from the store stays missing, for `verify` to report). Returns the
/// local sidecar's path.
///
/// # Errors
/// [`StoreError::NotFound`] if the store has no sidecar for `key`, or another
/// [`StoreError`] of a download.
pub async fn fetch_recording(
    store: &RecordingStore,
    key: &str,
    into: &Path,
) -> Result<PathBuf, StoreError> {
    let sc_key = sidecar_path(Path::new(key)).to_string_lossy().into_owned();
    let name = Path::new(&sc_key)
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_default();
    let local = into.join(&name);
    store.download(&sc_key, &local).await?;
    let sidecar = Sidecar::read(&local).map_err(|e| StoreError::Local {
        path: local.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let dir = sc_key.rsplit_once('/').map_or("", |(d, _)| d);
    for part in &sidecar.parts {
        // A part name is a plain file name in the sidecar's folder; anything else would
        // leave `into`.
        if part.file.contains('/') || part.file.contains('\\') || part.file.starts_with('.') {
            continue;
        }
        let part_key = if dir.is_empty() {
            part.file.clone()
        } else {
            format!("{dir}/{}", part.file)
        };
        match store.download(&part_key, &into.join(&part.file)).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(local)
}
