//! The backup engine: takes an etcd snapshot from one member and stores it in S3 or a local
//! directory, deletes and lists stored snapshots, and fetches one back for a restore.
//!
//! The snapshot is streamed from etcd's `Maintenance.Snapshot` RPC to the destination as it
//! arrives (optionally compressed on the way), so memory stays flat whatever the size of the
//! database. Uncompressed snapshots to S3 stream each multipart part too (etcd announces the
//! size, so each part's length is known before its body): a few of etcd's 32 KiB messages are
//! all a backup holds. Compressed ones gather each part in memory first: at most
//! [`MAX_PARTS_IN_FLIGHT`] parts of [`PART_SIZE`] bytes plus one being filled.
//! The stream is stored whole, including the sha256 etcd appends after the database, so
//! `etcdutl snapshot restore` verifies it without `--skip-hash-check`; the engine checks that
//! digest itself too, before it makes the object visible.
//!
//! Every store is written atomically: S3 through a multipart upload that is completed only
//! after the last byte arrived and the digest checked out (aborted on any failure; an upload
//! never completed is not an object), a directory through a staged file renamed into place.

mod cli;
mod store;
mod stream;
mod streamed;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncWriteExt;

pub use cli::{
    BackupDeleteArgs, BackupRunArgs, Finished, RestoreFetchArgs, RestoreFinishArgs, backup_delete,
    backup_run, finish_restore, restore_fetch, restore_finish,
};
use store::Destination;
use stream::{Decoder, Encoder, EtcdDigestCheck, Sha256Count};

use crate::etcd::{ClientTls, EtcdApi, EtcdError};

/// Size of one multipart part: the least S3 accepts for every part but the last, so the
/// memory a backup holds stays small.
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts uploaded while the next one fills; together with [`PART_SIZE`] this bounds the
/// memory a backup takes, whatever the size of the database. One is enough to keep etcd's
/// stream and the upload both busy.
pub const MAX_PARTS_IN_FLIGHT: usize = 1;

/// How an S3 upload is cut: [`PART_SIZE`] and [`MAX_PARTS_IN_FLIGHT`] by default (what the
/// operator uses); the benchmark compares others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload {
    /// Bytes per multipart part (S3 wants at least 5 MiB for every part but the last).
    pub part_size: usize,
    /// Parts still uploading while the next one fills; 0 uploads each part before reading on.
    pub parts_in_flight: usize,
    /// Uncompressed snapshots to S3 stream each part as etcd sends it, instead of gathering
    /// it in memory first.
    pub streamed: bool,
    /// For streamed parts: the longest S3 may go without taking the next piece of a part, or
    /// without answering a part whose body is sent; the backup fails after it.
    pub stall_timeout: Duration,
}

impl Default for Upload {
    fn default() -> Self {
        Upload {
            part_size: PART_SIZE,
            parts_in_flight: MAX_PARTS_IN_FLIGHT,
            streamed: true,
            stall_timeout: STREAM_IDLE_TIMEOUT,
        }
    }
}
/// Connecting to the member and its status call.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest etcd may go without sending the next piece of the snapshot.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole snapshot RPC (a deadline is needed; the idle timeout above is what bites).
const SNAPSHOT_RPC_TIMEOUT: Duration = Duration::from_secs(6 * 60 * 60);

/// An S3 bucket (AWS or any S3-compatible service) and a key prefix inside it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix; keys are `prefix/key` (empty: keys at the bucket's root).
    pub prefix: String,
    /// Endpoint URL for S3-compatible services (`http://` is allowed for those); AWS if unset.
    pub endpoint: Option<String>,
    /// Region; `us-east-1` if unset.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted ones
    /// (`bucket.endpoint/key`); most self-hosted services want this.
    pub force_path_style: bool,
}

/// Static S3 credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where snapshots are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An S3 bucket. Without credentials the usual AWS environment is used (`AWS_*`
    /// variables, web identity, instance metadata).
    S3 {
        /// Bucket, prefix and endpoint.
        location: S3Location,
        /// Static credentials, if any.
        credentials: Option<S3Credentials>,
    },
    /// A local directory that must exist (a mounted volume); keys are paths below it.
    Directory(PathBuf),
}

/// How a stored snapshot is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Stored as etcd sends it.
    #[default]
    None,
    /// gzip (flate2).
    Gzip,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The name `FromStr` reads back: `none`, `gzip` or `zstd`.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The file extension of a snapshot stored with this compression.
    pub fn extension(&self) -> &'static str {
        match self {
            Compression::None => ".db",
            Compression::Gzip => ".db.gz",
            Compression::Zstd => ".db.zst",
        }
    }

    /// The compression a stored key's extension names (`.gz`, `.zst`; anything else is
    /// uncompressed).
    pub fn of_key(key: &str) -> Compression {
        if key.ends_with(".gz") {
            Compression::Gzip
        } else if key.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// `key` with this compression's extension: a known snapshot extension it already has
    /// (`.db`, `.db.gz`, `.db.zst`) is replaced, so `a` and `a.db` both become `a.db.gz`.
    pub fn key_with_extension(&self, key: &str) -> String {
        let stem = [".db.gz", ".db.zst", ".db"]
            .iter()
            .find_map(|ext| key.strip_suffix(ext))
            .unwrap_or(key);
        format!("{stem}{}", self.extension())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression {other:?}: use none, gzip or zstd")),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// What a successful backup stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Full location: `s3://bucket/prefix/key` or `file:///dir/key`.
    pub location: String,
    /// The key relative to the target's prefix, with the compression's extension.
    pub key: String,
    /// Size of the stored object in bytes (after compression).
    pub size_bytes: u64,
    /// Hex sha256 of the stored object (after compression).
    pub sha256: String,
    /// Revision of the snapshot: the header's revision when the member sends one (etcd 3.6
    /// and newer), otherwise the member's revision from a status call just before the
    /// snapshot started (the snapshot holds at least that revision).
    pub revision: i64,
    /// The member's etcd version.
    pub etcd_version: String,
    /// Size of the database snapshot as etcd sent it (before compression), in bytes.
    pub snapshot_bytes: u64,
}

/// A stored snapshot, as [`list`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Key relative to the target's prefix.
    pub key: String,
    /// Full location.
    pub location: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Last modification, seconds since the Unix epoch.
    pub last_modified_unix: i64,
}

/// Why a backup, delete, list or fetch failed. [`SnapshotError::reason`] is a CamelCase
/// condition reason, the Display text a one-line message for a status or an Event.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The member could not be reached or refused the snapshot before any data came.
    #[error("{message}")]
    EtcdUnreachable {
        /// Which member.
        endpoint: String,
        /// [`EtcdError::describe`] of the failure.
        message: String,
    },
    /// The snapshot stream broke off after data had started to flow (member died, network).
    #[error("snapshot from {endpoint} interrupted after {received} bytes: {message}")]
    SnapshotInterrupted {
        /// Which member.
        endpoint: String,
        /// Bytes received before the break.
        received: u64,
        /// What broke.
        message: String,
    },
    /// The snapshot's data does not match the sha256 etcd appends to it (truncated or
    /// corrupted on the way or in storage), or a stored object does not decompress.
    #[error("snapshot at {location} is corrupt: {message}")]
    SnapshotCorrupt {
        /// Where it came from.
        location: String,
        /// What is wrong.
        message: String,
        /// The stored object is corrupt (fetch; taking it again will not help), rather
        /// than a stream from etcd (take; worth another try).
        in_storage: bool,
    },
    /// The storage rejected the credentials (S3 403/401: InvalidAccessKeyId,
    /// SignatureDoesNotMatch, AccessDenied, expired token) or a directory is not writable.
    #[error("storage at {location} rejected the credentials: {message}")]
    InvalidCredentials {
        /// Which destination.
        location: String,
        /// The storage's answer.
        message: String,
    },
    /// The bucket (or the directory) does not exist.
    #[error("bucket {location} does not exist: {message}")]
    BucketNotFound {
        /// Which destination.
        location: String,
        /// The storage's answer.
        message: String,
    },
    /// No object at the key (fetch).
    #[error("no snapshot at {location}")]
    ObjectNotFound {
        /// Which object.
        location: String,
    },
    /// The storage is out of space or over its quota.
    #[error("storage at {location} is full: {message}")]
    StorageFull {
        /// Which destination.
        location: String,
        /// The storage's answer.
        message: String,
    },
    /// Any other storage failure (network, 5xx, throttling, local I/O).
    #[error("storage at {location} failed: {message}")]
    StorageFailed {
        /// Which destination.
        location: String,
        /// The storage's answer.
        message: String,
    },
    /// A fetched object's sha256 is not the expected one; nothing was written.
    #[error("sha256 of {location} is {actual}, expected {expected}")]
    ChecksumMismatch {
        /// Which object.
        location: String,
        /// What the caller expected.
        expected: String,
        /// What the object hashed to.
        actual: String,
    },
    /// The target or key is not usable (bad endpoint URL, `..` in a key, bad sha256).
    #[error("invalid backup target: {0}")]
    InvalidTarget(String),
    /// A local file could not be read or written (the fetched snapshot, TLS files).
    #[error("local file {path}: {source}", path = path.display())]
    LocalIo {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl SnapshotError {
    /// A CamelCase reason for a status condition and a Warning Event.
    pub fn reason(&self) -> &'static str {
        match self {
            SnapshotError::EtcdUnreachable { .. } => "EtcdUnreachable",
            SnapshotError::SnapshotInterrupted { .. } => "SnapshotInterrupted",
            SnapshotError::SnapshotCorrupt { .. } => "SnapshotCorrupt",
            SnapshotError::InvalidCredentials { .. } => "InvalidCredentials",
            SnapshotError::BucketNotFound { .. } => "BucketNotFound",
            SnapshotError::ObjectNotFound { .. } => "ObjectNotFound",
            SnapshotError::StorageFull { .. } => "StorageFull",
            SnapshotError::StorageFailed { .. } => "StorageFailed",
            SnapshotError::ChecksumMismatch { .. } => "ChecksumMismatch",
            SnapshotError::InvalidTarget(_) => "InvalidTarget",
            SnapshotError::LocalIo { .. } => "LocalIoFailed",
        }
    }

    /// Whether the same call may succeed if tried again soon without anyone changing the
    /// configuration: true for unreachable members, broken or corrupted streams from etcd
    /// and transient storage failures; false for credentials, missing buckets or objects,
    /// full storage, corrupt stored objects, checksum mismatches and invalid targets, which
    /// need a person.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SnapshotError::EtcdUnreachable { .. }
                | SnapshotError::SnapshotInterrupted { .. }
                | SnapshotError::SnapshotCorrupt {
                    in_storage: false,
                    ..
                }
                | SnapshotError::StorageFailed { .. }
        )
    }

    /// `{"reason": .., "message": .., "retryable": ..}` for a machine-read status line.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "reason": self.reason(),
            "message": self.to_string(),
            "retryable": self.is_retryable(),
        })
    }
}

fn etcd_unreachable(endpoint: &str, e: &EtcdError) -> SnapshotError {
    SnapshotError::EtcdUnreachable {
        endpoint: endpoint.to_string(),
        message: e.describe(),
    }
}

/// Joins a target's prefix and a key into the object's path: slashes at the ends of the
/// prefix and at the start of the key are dropped; empty keys, keys ending in `/`, and
/// `.`, `..` or empty segments are refused.
pub fn join_key(prefix: &str, key: &str) -> Result<String, SnapshotError> {
    let prefix = prefix.trim_matches('/');
    let key = key.trim_start_matches('/');
    if key.is_empty() || key.ends_with('/') {
        return Err(SnapshotError::InvalidTarget(format!(
            "key {key:?} does not name an object"
        )));
    }
    let joined = if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    };
    if joined.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(SnapshotError::InvalidTarget(format!(
            "{joined:?} has an empty, `.` or `..` segment"
        )));
    }
    Ok(joined)
}

/// Takes a snapshot from the member at `endpoint` and stores it at `key` (relative to the
/// target's prefix; its extension is set to `compression`'s, see
/// [`Compression::key_with_extension`]).
///
/// The destination is checked first (bucket exists, credentials accepted) so a
/// misconfigured target fails before etcd is asked for anything. A failure anywhere leaves
/// no object at the key: the upload is aborted (or, if the process dies, never completed).
pub async fn take(
    endpoint: &str,
    tls: Option<&ClientTls>,
    target: &Target,
    key: &str,
    compression: Compression,
) -> Result<Outcome, SnapshotError> {
    take_with(endpoint, tls, target, key, compression, Upload::default()).await
}

/// [`take`] with S3 uploads cut as `upload` says.
pub async fn take_with(
    endpoint: &str,
    tls: Option<&ClientTls>,
    target: &Target,
    key: &str,
    compression: Compression,
    upload: Upload,
) -> Result<Outcome, SnapshotError> {
    let key = compression.key_with_extension(key);
    let dest = Destination::open(target)?;
    let path = dest.path(&key)?;
    dest.preflight().await?;

    let api = EtcdApi::new(tls.cloned(), CONNECT_TIMEOUT);
    let mut client = api
        .connect_with(&[endpoint.to_string()], SNAPSHOT_RPC_TIMEOUT)
        .await
        .map_err(|e| etcd_unreachable(endpoint, &e))?;
    let status = match tokio::time::timeout(CONNECT_TIMEOUT, client.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(etcd_unreachable(
                endpoint,
                &EtcdError::Request { op: "status", source },
            ));
        }
        Err(_) => return Err(etcd_unreachable(endpoint, &EtcdError::Timeout("status"))),
    };
    let etcd_version = status.version().to_string();
    let mut revision = status.header().map_or(0, |h| h.revision());

    let mut snap = match tokio::time::timeout(CONNECT_TIMEOUT, client.snapshot()).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(etcd_unreachable(
                endpoint,
                &EtcdError::Request {
                    op: "snapshot",
                    source,
                },
            ));
        }
        Err(_) => return Err(etcd_unreachable(endpoint, &EtcdError::Timeout("snapshot"))),
    };
    // The first message proves the member is sending before anything is created in storage.
    let first = match next_message(&mut snap).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Err(SnapshotError::SnapshotInterrupted {
                endpoint: endpoint.to_string(),
                received: 0,
                message: "the member closed the snapshot stream without sending data".into(),
            });
        }
        Err(e) => return Err(etcd_unreachable(endpoint, &e)),
    };
    if let Some(h) = first.header()
        && h.revision() > 0
    {
        revision = h.revision();
    }

    let mut sink = if upload.streamed
        && compression == Compression::None
        && let Some(s3) = dest.s3.clone()
    {
        // etcd announces the database's size up front and appends its sha256: the object's
        // length is known, so every part streams.
        let total = first.blob().len() as u64 + first.remaining_bytes() + stream::DIGEST_LEN as u64;
        Sink::Streamed(streamed::StreamedUpload::begin(&dest, s3, path.clone(), total, &upload).await?)
    } else {
        let multipart = dest
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| dest.classify(e))?;
        Sink::Buffered {
            writer: WriteMultipart::new_with_chunk_size(multipart, upload.part_size),
            parts_in_flight: upload.parts_in_flight,
        }
    };
    let (stored, snapshot_bytes) = match pump(endpoint, &dest, first, &mut snap, &mut sink, compression).await
    {
        Ok(v) => v,
        Err(e) => {
            // Best effort: an upload that is neither completed nor aborted is still no object.
            sink.abort().await;
            return Err(e);
        }
    };
    sink.finish(&dest).await?;
    let (size_bytes, sha256) = stored.finish();
    Ok(Outcome {
        location: dest.location(&path),
        key,
        size_bytes,
        sha256,
        revision,
        etcd_version,
        snapshot_bytes,
    })
}

async fn next_message(
    snap: &mut etcd_client::SnapshotStreaming,
) -> Result<Option<etcd_client::SnapshotResponse>, EtcdError> {
    match tokio::time::timeout(STREAM_IDLE_TIMEOUT, snap.message()).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(source)) => Err(EtcdError::Request {
            op: "snapshot",
            source,
        }),
        Err(_) => Err(EtcdError::Timeout("snapshot stream")),
    }
}

/// Where the stored bytes go: parts gathered in memory (object_store's multipart writer, for
/// compressed snapshots and directories) or streamed to S3 as they come.
enum Sink {
    Buffered {
        writer: WriteMultipart,
        parts_in_flight: usize,
    },
    Streamed(streamed::StreamedUpload),
}

impl Sink {
    async fn put(&mut self, dest: &Destination, bytes: Bytes) -> Result<(), SnapshotError> {
        match self {
            Sink::Buffered {
                writer,
                parts_in_flight,
            } => {
                writer.put(bytes);
                writer
                    .wait_for_capacity(*parts_in_flight)
                    .await
                    .map_err(|e| dest.classify(e))
            }
            Sink::Streamed(upload) => upload.write(bytes).await,
        }
    }

    /// Publishes the object.
    async fn finish(self, dest: &Destination) -> Result<(), SnapshotError> {
        match self {
            Sink::Buffered { writer, .. } => writer.finish().await.map(|_| ()).map_err(|e| dest.classify(e)),
            Sink::Streamed(upload) => upload.finish().await,
        }
    }

    async fn abort(self) {
        match self {
            Sink::Buffered { writer, .. } => {
                let _ = writer.abort().await;
            }
            Sink::Streamed(upload) => upload.abort().await,
        }
    }
}

/// Moves the stream into the upload; returns the stored bytes' digest and the snapshot size.
async fn pump(
    endpoint: &str,
    dest: &Destination,
    first: etcd_client::SnapshotResponse,
    snap: &mut etcd_client::SnapshotStreaming,
    sink: &mut Sink,
    compression: Compression,
) -> Result<(Sha256Count, u64), SnapshotError> {
    let mut check = EtcdDigestCheck::default();
    let corrupt = |message: String| SnapshotError::SnapshotCorrupt {
        location: format!("{endpoint} (stream)"),
        message,
        in_storage: false,
    };
    let mut encoder = Encoder::new(compression).map_err(|e| corrupt(format!("compressing: {e}")))?;
    let mut stored = Sha256Count::default();
    let mut remaining = first.remaining_bytes();
    let mut message = Some(first);
    while let Some(m) = message {
        let blob = m.blob();
        check.update(blob);
        remaining = m.remaining_bytes();
        let out = encoder
            .write(blob)
            .map_err(|e| corrupt(format!("compressing: {e}")))?;
        if !out.is_empty() {
            stored.update(&out);
            sink.put(dest, Bytes::from(out)).await?;
        }
        message = next_message(snap)
            .await
            .map_err(|e| SnapshotError::SnapshotInterrupted {
                endpoint: endpoint.to_string(),
                received: check.bytes(),
                message: e.describe(),
            })?;
    }
    if remaining != 0 {
        return Err(SnapshotError::SnapshotInterrupted {
            endpoint: endpoint.to_string(),
            received: check.bytes(),
            message: format!("the stream ended with {remaining} bytes still to come"),
        });
    }
    let snapshot_bytes = check.bytes();
    check.finish().map_err(corrupt)?;
    let out = encoder
        .finish()
        .map_err(|e| corrupt(format!("compressing: {e}")))?;
    if !out.is_empty() {
        stored.update(&out);
        sink.put(dest, Bytes::from(out)).await?;
    }
    Ok((stored, snapshot_bytes))
}

/// Deletes the object at `key` (relative to the target's prefix). A missing object is no
/// error: retention may run twice.
pub async fn delete(target: &Target, key: &str) -> Result<(), SnapshotError> {
    let dest = Destination::open(target)?;
    let path = dest.path(key)?;
    match dest.store.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(dest.classify(e)),
    }
}

/// Every object below `prefix` (relative to the target's prefix; matched on whole path
/// segments, so `a` lists `a/x` but not `ab`; empty lists the whole prefix), sorted by key.
pub async fn list(target: &Target, prefix: &str) -> Result<Vec<StoredObject>, SnapshotError> {
    let dest = Destination::open(target)?;
    let base = dest.dir_path(prefix)?;
    let mut stream = dest.store.list(base.as_ref());
    let mut out = Vec::new();
    while let Some(meta) = stream.next().await {
        let meta = meta.map_err(|e| dest.classify(e))?;
        out.push(StoredObject {
            key: dest.relative(&meta.location),
            location: dest.location(&meta.location),
            size_bytes: meta.size,
            last_modified_unix: meta.last_modified.timestamp(),
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Streams the object at `key` into the file `out`, decompressing per the key's extension,
/// and returns the size of the snapshot written.
///
/// The data goes to a temporary file next to `out` that is renamed into place only after
/// the stored object's sha256 matched `expected_sha256` (when given; a mismatch is
/// [`SnapshotError::ChecksumMismatch`]) and the snapshot's own digest (the sha256 etcd
/// appends) checked out, so a truncated or corrupted object is refused
/// ([`SnapshotError::SnapshotCorrupt`]). On any failure nothing is left at `out`.
pub async fn fetch(
    target: &Target,
    key: &str,
    out: &Path,
    expected_sha256: Option<&str>,
) -> Result<u64, SnapshotError> {
    let expected = expected_sha256.map(str::to_ascii_lowercase);
    if let Some(e) = &expected
        && (e.len() != 64 || !e.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(SnapshotError::InvalidTarget(format!(
            "expected sha256 {e:?} is not 64 hex digits"
        )));
    }
    let dest = Destination::open(target)?;
    let path = dest.path(key)?;
    let location = dest.location(&path);
    let io = |source: std::io::Error| SnapshotError::LocalIo {
        path: out.to_path_buf(),
        source,
    };
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempfile_in(&dir)
        .map_err(io)?;
    let mut file = tokio::fs::File::from_std(temp.reopen().map_err(io)?);

    let got = dest.store.get(&path).await.map_err(|e| dest.classify(e))?;
    let mut body = got.into_stream();
    let mut decoder = Decoder::new(Compression::of_key(key));
    let mut stored = Sha256Count::default();
    let mut check = EtcdDigestCheck::default();
    let corrupt = |message: String| SnapshotError::SnapshotCorrupt {
        location: location.clone(),
        message,
        in_storage: true,
    };
    // A stream that does not decompress is only reported after the whole object was
    // hashed: when the caller named the sha256 it expected, a mismatch says more.
    let mut undecodable: Option<String> = None;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| dest.classify(e))?;
        stored.update(&chunk);
        if undecodable.is_some() {
            continue;
        }
        match decoder.write(&chunk) {
            Ok(plain) => {
                check.update(&plain);
                file.write_all(&plain).await.map_err(io)?;
            }
            Err(e) => undecodable = Some(e.to_string()),
        }
    }
    if undecodable.is_none() {
        match decoder.finish() {
            Ok(plain) => {
                check.update(&plain);
                file.write_all(&plain).await.map_err(io)?;
            }
            Err(e) => undecodable = Some(e.to_string()),
        }
    }
    file.sync_all().await.map_err(io)?;
    drop(file);

    let (_, actual) = stored.finish();
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(SnapshotError::ChecksumMismatch {
            location,
            expected,
            actual,
        });
    }
    if let Some(e) = undecodable {
        return Err(corrupt(format!("decompressing: {e}")));
    }
    let written = check.bytes();
    check.finish().map_err(corrupt)?;
    temp.persist(out).map_err(|e| io(e.error))?;
    Ok(written)
}

#[cfg(test)]
mod tests;
