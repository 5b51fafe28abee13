//! `s3://bucket/prefix` addresses and the object keys of a recording's files.
//!
//! The key of a file is the prefix followed by the file's path below the recordings
//! folder (`prefix/<device>/<day>/<file>` for `serve`, `prefix/<day>/<file>` for
//! `record`): deterministic, so the parts of one logical recording written by several
//! machines with the same layout land side by side, and a sidecar finds its parts next
//! to it exactly as on disk.

use std::fmt;
use std::path::{Component, Path};

/// Why a text is not an `s3://bucket/prefix` address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreUrlError {
    /// It does not start with `s3://`.
    #[error("{0:?} is not an object-store address; write s3://BUCKET/PREFIX")]
    Scheme(String),
    /// The bucket name is empty or not a valid S3 bucket name.
    #[error(
        "{0:?} names no valid bucket; write s3://BUCKET/PREFIX (3-63 characters of a-z 0-9 . -)"
    )]
    Bucket(String),
    /// A path segment of the prefix is empty, `.` or `..`.
    #[error("{0:?} has an empty, `.` or `..` segment in its prefix")]
    Prefix(String),
}

/// A bucket and a key prefix (without leading or trailing `/`; may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    bucket: String,
    prefix: String,
}

impl StoreUrl {
    /// Parses `s3://bucket` or `s3://bucket/some/prefix` (a trailing `/` is ignored).
    ///
    /// # Errors
    /// [`StoreUrlError`] naming what is wrong with `s`.
    pub fn parse(s: &str) -> Result<Self, StoreUrlError> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| StoreUrlError::Scheme(s.to_owned()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err(StoreUrlError::Bucket(s.to_owned()));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(StoreUrlError::Prefix(s.to_owned()));
        }
        Ok(StoreUrl {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix (no leading or trailing `/`; empty for the bucket's root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key of the file at `relative` below the recordings folder, or `None`
    /// if `relative` leaves the folder (`..`, an absolute path) or is not UTF-8.
    pub fn key_for(&self, relative: &Path) -> Option<String> {
        let mut segs = Vec::new();
        for c in relative.components() {
            match c {
                Component::Normal(s) => segs.push(s.to_str()?),
                Component::CurDir => {}
                _ => return None,
            }
        }
        if segs.is_empty() {
            return None;
        }
        let tail = segs.join("/");
        Some(if self.prefix.is_empty() {
            tail
        } else {
            format!("{}/{tail}", self.prefix)
        })
    }

    /// The key below the prefix that `s3://bucket/<key>` names, for commands given the
    /// address of one object (`verify s3://bucket/prefix/day/file.csv`): the part after
    /// the bucket.
    pub fn object_key(&self) -> &str {
        &self.prefix
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_prefix_and_keys() {
        let u = StoreUrl::parse("s3://lab-data/site-a/run1/").unwrap();
        assert_eq!(u.bucket(), "lab-data");
        assert_eq!(u.prefix(), "site-a/run1");
        assert_eq!(u.to_string(), "s3://lab-data/site-a/run1");
        assert_eq!(
            u.key_for(Path::new("xiao-1/2026-01-02/rec_x.csv"))
                .as_deref(),
            Some("site-a/run1/xiao-1/2026-01-02/rec_x.csv")
        );
        assert_eq!(u.key_for(Path::new("../x.csv")), None);
        assert_eq!(u.key_for(Path::new("/etc/x.csv")), None);
        let root = StoreUrl::parse("s3://lab-data").unwrap();
        assert_eq!(root.prefix(), "");
        assert_eq!(
            root.key_for(Path::new("d/f.csv")).as_deref(),
            Some("d/f.csv")
        );
    }

    #[test]
    fn bad_addresses_are_typed() {
        assert!(matches!(
            StoreUrl::parse("/tmp/x"),
            Err(StoreUrlError::Scheme(_))
        ));
        assert!(matches!(
            StoreUrl::parse("s3://"),
            Err(StoreUrlError::Bucket(_))
        ));
        assert!(matches!(
            StoreUrl::parse("s3://Upper/x"),
            Err(StoreUrlError::Bucket(_))
        ));
        assert!(matches!(
            StoreUrl::parse("s3://bucket/a//b"),
            Err(StoreUrlError::Prefix(_))
        ));
        assert!(matches!(
            StoreUrl::parse("s3://bucket/a/../b"),
            Err(StoreUrlError::Prefix(_))
        ));
    }
}
