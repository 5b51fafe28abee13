//! The connection to an S3-compatible store (`object_store`'s AWS client) and the few
//! requests the uploader and the `ls` / `verify` commands make, each with a typed error
//! that names the store, the request and the key.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore as _, ObjectStoreExt as _, PutPayload, RetryConfig};
use sha2::{Digest as _, Sha256};

use crate::upload::location::StoreUrl;

/// Where the store is and how to sign requests to it. Unset fields come from the usual
/// `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`), as the AWS tools read them.
#[derive(Clone)]
pub struct StoreConfig {
    /// Bucket and key prefix.
    pub url: StoreUrl,
    /// Endpoint URL of an S3-compatible server (e.g. `http://127.0.0.1:9000`); default
    /// AWS's own for the region. Requests use path-style addresses (`endpoint/bucket/key`).
    pub endpoint: Option<String>,
    /// Region (default `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// Access key id (default `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (default `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint (a store on the local machine or network); default
    /// `AWS_ALLOW_HTTP` (`true` or `1`).
    pub allow_http: bool,
    /// How long one request may take before it counts as failed (default 60 s).
    pub request_timeout: Duration,
    /// How long connecting may take (default 5 s).
    pub connect_timeout: Duration,
}

impl StoreConfig {
    /// A configuration for `url` with everything else from the environment.
    pub fn new(url: StoreUrl) -> Self {
        StoreConfig {
            url,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: std::env::var("AWS_ALLOW_HTTP")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    // The secret stays out of logs and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

/// Why a request to the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The configuration cannot make a client (bad endpoint URL, bad region, ...).
    #[error("cannot use the object store {url}: {source}")]
    Config {
        /// The store.
        url: String,
        /// What the client said.
        source: Box<object_store::Error>,
    },
    /// The store refused the credentials or the permission (HTTP 401/403): retrying
    /// cannot help until the credentials are fixed.
    #[error(
        "the object store {url} refused the credentials for {op} {key} (check AWS_ACCESS_KEY_ID / \
         AWS_SECRET_ACCESS_KEY or --store-access-key-id, and the bucket's permissions): {source}"
    )]
    Credentials {
        /// The store.
        url: String,
        /// The request.
        op: &'static str,
        /// The object key.
        key: String,
        /// What the client said.
        source: Box<object_store::Error>,
    },
    /// The object (or multipart upload) does not exist.
    #[error("{key} is not in the object store {url}")]
    NotFound {
        /// The store.
        url: String,
        /// The object key.
        key: String,
    },
    /// Any other failure: the store is unreachable, timed out or answered with an error.
    #[error("the object store {url} failed {op} {key}: {source}")]
    Request {
        /// The store.
        url: String,
        /// The request.
        op: &'static str,
        /// The object key.
        key: String,
        /// What the client said.
        source: Box<object_store::Error>,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when retrying the same request cannot succeed (bad configuration or refused
    /// credentials).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StoreError::Config { .. } | StoreError::Credentials { .. }
        )
    }
}

/// A connected S3-compatible store (no request is made until one is needed).
#[derive(Debug)]
pub struct RecordingStore {
    url: StoreUrl,
    s3: AmazonS3,
}

/// Bytes read per request when a stored object is hashed or downloaded.
const READ_CHUNK: u64 = 8 << 20;

impl RecordingStore {
    /// Builds the client.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a configuration the client rejects.
    pub fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        // reqwest is built without a crypto provider of its own: https uses the
        // process-wide rustls provider, which is ring here as everywhere in the workspace.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(config.url.bucket())
            .with_retry(RetryConfig {
                // The uploader retries with its own capped backoff and journal; the
                // client retries a failed request only briefly.
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(config.request_timeout)
                    .with_connect_timeout(config.connect_timeout)
                    .with_allow_http(config.allow_http),
            );
        if let Some(e) = &config.endpoint {
            b = b.with_endpoint(e);
        }
        if config.allow_http {
            b = b.with_allow_http(true);
        }
        if let Some(r) = &config.region {
            b = b.with_region(r);
        }
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &config.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let s3 = b.build().map_err(|source| StoreError::Config {
            url: config.url.to_string(),
            source: Box::new(source),
        })?;
        Ok(RecordingStore {
            url: config.url.clone(),
            s3,
        })
    }

    /// The bucket and prefix.
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    fn error(&self, op: &'static str, key: &str, source: object_store::Error) -> StoreError {
        let url = self.url.to_string();
        let key = key.to_owned();
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound { url, key },
            e @ (object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }) => StoreError::Credentials {
                url,
                op,
                key,
                source: Box::new(e),
            },
            e => StoreError::Request {
                url,
                op,
                key,
                source: Box::new(e),
            },
        }
    }

    /// Stores `data` as one object at `key` (a single PUT).
    ///
    /// # Errors
    /// [`StoreError`] naming the request.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.s3
            .put(&ObjectPath::from(key), PutPayload::from_bytes(data))
            .await
            .map(drop)
            .map_err(|e| self.error("PUT", key, e))
    }

    /// Starts a multipart upload of `key`; returns its upload id.
    ///
    /// # Errors
    /// [`StoreError`] naming the request.
    pub async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        self.s3
            .create_multipart(&ObjectPath::from(key))
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, e))
    }

    /// Uploads part `index` (from 0) of upload `id`; returns the part's ETag.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the store no longer knows the upload.
    pub async fn put_part(
        &self,
        key: &str,
        id: &str,
        index: usize,
        data: Bytes,
    ) -> Result<String, StoreError> {
        self.s3
            .put_part(
                &ObjectPath::from(key),
                &id.to_owned(),
                index,
                PutPayload::from_bytes(data),
            )
            .await
            .map(|p| p.content_id)
            .map_err(|e| self.error("UploadPart", key, e))
    }

    /// Completes upload `id` from the ETags of its parts, in order.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the store no longer knows the upload.
    pub async fn complete_multipart(
        &self,
        key: &str,
        id: &str,
        parts: &[String],
    ) -> Result<(), StoreError> {
        let parts = parts
            .iter()
            .map(|e| PartId {
                content_id: e.clone(),
            })
            .collect();
        self.s3
            .complete_multipart(&ObjectPath::from(key), &id.to_owned(), parts)
            .await
            .map(drop)
            .map_err(|e| self.error("CompleteMultipartUpload", key, e))
    }

    /// Abandons upload `id` and frees its parts.
    ///
    /// # Errors
    /// [`StoreError`] naming the request.
    pub async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), StoreError> {
        self.s3
            .abort_multipart(&ObjectPath::from(key), &id.to_owned())
            .await
            .map_err(|e| self.error("AbortMultipartUpload", key, e))
    }

    /// Size and SHA-256 (hex) of the stored object at `key`, read back from the store in
    /// ranges of 8 MiB; `None` if there is no such object.
    ///
    /// # Errors
    /// [`StoreError`] naming the request.
    pub async fn digest(&self, key: &str) -> Result<Option<(u64, String)>, StoreError> {
        let path = ObjectPath::from(key);
        let meta = match self.s3.head(&path).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("HEAD", key, e)),
        };
        let mut hash = Sha256::new();
        let mut at = 0u64;
        while at < meta.size {
            let end = (at + READ_CHUNK).min(meta.size);
            let chunk = self
                .s3
                .get_range(&path, at..end)
                .await
                .map_err(|e| self.error("GET", key, e))?;
            hash.update(&chunk);
            at = end;
        }
        Ok(Some((meta.size, hex::encode(hash.finalize()))))
    }

    /// Every object below `prefix` (a key prefix, `/`-separated), as (key, size), sorted.
    ///
    /// # Errors
    /// [`StoreError`] naming the request.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let p = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        let mut stream = self.s3.list(p.as_ref());
        let mut out = Vec::new();
        while let Some(m) = stream.next().await {
            let m = m.map_err(|e| self.error("LIST", prefix, e))?;
            out.push((m.location.to_string(), m.size));
        }
        out.sort();
        Ok(out)
    }

    /// The whole object at `key` (for small objects such as sidecars).
    ///
    /// # Errors
    /// [`StoreError`] naming the request; [`StoreError::NotFound`] if there is none.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let r = self
            .s3
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.error("GET", key, e))?;
        r.bytes().await.map_err(|e| self.error("GET", key, e))
    }

    /// Copies the object at `key` into the file `to` (created or truncated), streaming it;
    /// returns its size.
    ///
    /// # Errors
    /// [`StoreError`] naming the request or the local file.
    pub async fn download(&self, key: &str, to: &Path) -> Result<u64, StoreError> {
        let local = |source| StoreError::Local {
            path: to.to_path_buf(),
            source,
        };
        let r = self
            .s3
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.error("GET", key, e))?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(to).map_err(local)?);
        let mut stream = r.into_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error("GET", key, e))?;
            f.write_all(&chunk).map_err(local)?;
            n += chunk.len() as u64;
        }
        f.flush().map_err(local)?;
        Ok(n)
    }
}
