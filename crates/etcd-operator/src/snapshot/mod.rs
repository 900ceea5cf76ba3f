//! placeholder, replaced by the engine branch
//!
//! The smallest implementation of the snapshot engine's API the backup controller needs to
//! build and be tested: `take` streams a snapshot to a `Target::Directory` (uncompressed
//! whatever `Compression` says), S3 is refused with `StorageFailed`.

use std::path::{Path, PathBuf};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// An S3 bucket and key prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Endpoint URL for S3-compatible stores.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Path-style addressing.
    pub force_path_style: bool,
}

/// Static S3 credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Where a snapshot is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An S3 bucket.
    S3 {
        /// Bucket and prefix.
        location: S3Location,
        /// Credentials; the default chain when `None`.
        credentials: Option<S3Credentials>,
    },
    /// A local directory.
    Directory(PathBuf),
}

/// Compression of the stored snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// None.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// File name extension of a snapshot stored with this compression.
    pub fn extension(&self) -> &'static str {
        match self {
            Compression::None => ".db",
            Compression::Gzip => ".db.gz",
            Compression::Zstd => ".db.zst",
        }
    }
}

/// A stored snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Where it is stored (URL or path).
    pub location: String,
    /// Its key.
    pub key: String,
    /// Stored size.
    pub size_bytes: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// etcd revision of the snapshot.
    pub revision: i64,
    /// Version of the member that produced it.
    pub etcd_version: String,
}

/// Why a snapshot could not be taken or deleted.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// etcd did not answer.
    #[error("cannot reach etcd at {endpoint}: {message}")]
    EtcdUnreachable {
        /// The member.
        endpoint: String,
        /// Cause.
        message: String,
    },
    /// Writing the snapshot failed.
    #[error("storing the snapshot failed: {0}")]
    StorageFailed(String),
}

impl SnapshotError {
    /// Reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            SnapshotError::EtcdUnreachable { .. } => "EtcdUnreachable",
            SnapshotError::StorageFailed(_) => "StorageFailed",
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SnapshotError::EtcdUnreachable { .. })
    }
}

/// Streams a snapshot of the member at `endpoint` to `target` under `key`.
pub async fn take(
    endpoint: &str,
    tls: Option<&crate::etcd::ClientTls>,
    target: &Target,
    key: &str,
    _compression: Compression,
) -> Result<Outcome, SnapshotError> {
    let Target::Directory(dir) = target else {
        return Err(SnapshotError::StorageFailed(
            "S3 is not implemented by the placeholder engine".into(),
        ));
    };
    let unreachable = |e: etcd_client::Error| SnapshotError::EtcdUnreachable {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    };
    let storage = |e: std::io::Error| SnapshotError::StorageFailed(e.to_string());
    let mut opts = ConnectOptions::new().with_connect_timeout(std::time::Duration::from_secs(5));
    if let Some(t) = tls {
        opts = opts.with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(&t.ca))
                .identity(Identity::from_pem(&t.cert, &t.key)),
        );
    }
    let mut client = Client::connect([endpoint], Some(opts))
        .await
        .map_err(unreachable)?;
    let status = client.status().await.map_err(unreachable)?;
    let revision = status.header().map_or(0, |h| h.revision());
    let path = dir.join(key);
    let tmp = PathBuf::from(format!("{}.partial", path.display()));
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(storage)?;
    }
    let mut file = tokio::fs::File::create(&tmp).await.map_err(storage)?;
    let mut stream = client.snapshot().await.map_err(unreachable)?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.message().await.map_err(unreachable)? {
        hash.update(chunk.blob());
        size += chunk.blob().len() as u64;
        file.write_all(chunk.blob()).await.map_err(storage)?;
    }
    file.sync_all().await.map_err(storage)?;
    tokio::fs::rename(&tmp, &path).await.map_err(storage)?;
    Ok(Outcome {
        location: path.display().to_string(),
        key: key.to_string(),
        size_bytes: size,
        sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        revision,
        etcd_version: status.version().to_string(),
    })
}

/// Deletes the snapshot stored under `key`; a missing one counts as deleted.
pub async fn delete(target: &Target, key: &str) -> Result<(), SnapshotError> {
    let Target::Directory(dir) = target else {
        return Err(SnapshotError::StorageFailed(
            "S3 is not implemented by the placeholder engine".into(),
        ));
    };
    match tokio::fs::remove_file(Path::new(dir).join(key)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::StorageFailed(e.to_string())),
    }
}
