//! Destinations as object stores, and what their failures mean.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::{S3Location, SnapshotError, Target, join_key};

/// A target opened as an object store.
pub(crate) struct Destination {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The same store as S3, for uploads whose parts stream; `None` for directories and when
    /// the AWS environment asks for a checksum or customer key on every part (which streamed
    /// parts do not send).
    pub(crate) s3: Option<Arc<AmazonS3>>,
    /// The target's prefix, without slashes at the ends.
    prefix: String,
    /// `s3://bucket` or `file:///dir`.
    root: String,
    kind: Kind,
}

enum Kind {
    S3,
    Directory,
}

/// What a storage failure means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Credentials,
    NoBucket,
    NoObject,
    Full,
    Other,
}

impl Destination {
    pub(crate) fn open(target: &Target) -> Result<Destination, SnapshotError> {
        match target {
            Target::S3 {
                location,
                credentials,
            } => open_s3(location, credentials.as_ref()),
            Target::Directory(dir) => {
                let root = format!("file://{}", dir.display());
                if !dir.is_dir() {
                    return Err(SnapshotError::BucketNotFound {
                        location: root,
                        message: "no such directory".into(),
                    });
                }
                let store =
                    LocalFileSystem::new_with_prefix(dir).map_err(|e| SnapshotError::StorageFailed {
                        location: root.clone(),
                        message: chain(&e),
                    })?;
                let root = std::fs::canonicalize(dir)
                    .map(|d| format!("file://{}", d.display()))
                    .unwrap_or(root);
                Ok(Destination {
                    store: Arc::new(store),
                    s3: None,
                    prefix: String::new(),
                    root,
                    kind: Kind::Directory,
                })
            }
        }
    }

    /// `s3://bucket` or `file:///dir`.
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    /// The object path of `key` below the prefix.
    pub(crate) fn path(&self, key: &str) -> Result<ObjectPath, SnapshotError> {
        let joined = join_key(&self.prefix, key)?;
        ObjectPath::parse(&joined).map_err(|e| SnapshotError::InvalidTarget(format!("key {joined:?}: {e}")))
    }

    /// The path of a "directory" below the prefix for listing (`None`: everything).
    pub(crate) fn dir_path(&self, prefix: &str) -> Result<Option<ObjectPath>, SnapshotError> {
        let sub = prefix.trim_matches('/');
        let joined = match (self.prefix.is_empty(), sub.is_empty()) {
            (true, true) => return Ok(None),
            (false, true) => self.prefix.clone(),
            (_, false) => join_key(&self.prefix, sub)?,
        };
        ObjectPath::parse(&joined)
            .map(Some)
            .map_err(|e| SnapshotError::InvalidTarget(format!("prefix {joined:?}: {e}")))
    }

    /// `s3://bucket/prefix/key` or `file:///dir/key`.
    pub(crate) fn location(&self, path: &ObjectPath) -> String {
        format!("{}/{}", self.root, path.as_ref())
    }

    /// A stored path relative to the prefix.
    pub(crate) fn relative(&self, path: &ObjectPath) -> String {
        let p = path.as_ref();
        if self.prefix.is_empty() {
            return p.to_string();
        }
        p.strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(p)
            .to_string()
    }

    /// Checks the bucket exists and the credentials are accepted before any data moves.
    /// Listing is the one S3 call whose answer says NoSuchBucket even from services that
    /// create buckets on write; a credential that may write but not list (AccessDenied)
    /// passes, the upload itself will tell.
    pub(crate) async fn preflight(&self) -> Result<(), SnapshotError> {
        if matches!(self.kind, Kind::Directory) {
            return Ok(());
        }
        let prefix = ObjectPath::parse(&self.prefix)
            .ok()
            .filter(|_| !self.prefix.is_empty());
        match self.store.list_with_delimiter(prefix.as_ref()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = chain(&e);
                if text.contains("AccessDenied") {
                    Ok(())
                } else {
                    Err(self.classify(e))
                }
            }
        }
    }

    /// The error for a storage failure.
    pub(crate) fn classify(&self, err: object_store::Error) -> SnapshotError {
        let message = chain(&err);
        let location = match &err {
            object_store::Error::NotFound { path, .. } => format!("{}/{path}", self.root),
            _ => self.root.clone(),
        };
        let class = match classify(&err, &message) {
            // Writing below a directory the process may not write to.
            Class::Credentials if matches!(self.kind, Kind::Directory) => Class::Other,
            c => c,
        };
        error_of(class, location, &self.root, message)
    }
}

fn open_s3(
    location: &S3Location,
    credentials: Option<&super::S3Credentials>,
) -> Result<Destination, SnapshotError> {
    let bucket = location.bucket.trim();
    if bucket.is_empty() || bucket.contains('/') {
        return Err(SnapshotError::InvalidTarget(format!("bucket name {bucket:?}")));
    }
    let root = format!("s3://{bucket}");
    // Explicit credentials: nothing from the environment. Without: the AWS environment.
    let mut builder = match credentials {
        Some(c) => {
            let mut b = AmazonS3Builder::new()
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
            if let Some(t) = &c.session_token {
                b = b.with_token(t);
            }
            b
        }
        None => AmazonS3Builder::from_env(),
    };
    // The payload is not hashed into the signature (`UNSIGNED-PAYLOAD`): that would be a
    // third SHA-256 pass over every part, on both ends. Integrity is ours end to end: the
    // stored object's SHA-256 is recorded and checked before any restore, and etcd's own
    // digest travels inside it.
    builder = builder
        .with_unsigned_payload(true)
        .with_bucket_name(bucket)
        .with_region(location.region.as_deref().unwrap_or("us-east-1"))
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(10))
                .with_timeout(Duration::from_secs(300)),
        );
    if let Some(endpoint) = location.endpoint.as_deref().map(|e| e.trim_end_matches('/')) {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(SnapshotError::InvalidTarget(format!(
                "endpoint {endpoint:?} is not an http:// or https:// URL"
            )));
        }
        builder = builder.with_allow_http(endpoint.starts_with("http://"));
        if location.force_path_style {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        } else {
            // Virtual-hosted style: object_store takes the endpoint as the bucket's own.
            builder = builder
                .with_endpoint(virtual_hosted(endpoint, bucket))
                .with_virtual_hosted_style_request(true);
        }
    } else {
        builder = builder.with_virtual_hosted_style_request(!location.force_path_style);
    }
    // object_store's HTTP client takes rustls' process-wide provider: ring, like every other
    // TLS client here (a no-op when one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = Arc::new(
        builder
            .build()
            .map_err(|e| SnapshotError::InvalidTarget(format!("S3 target {root}: {}", chain(&e))))?,
    );
    let per_part_headers = credentials.is_none()
        && ["AWS_CHECKSUM_ALGORITHM", "AWS_SSE_CUSTOMER_KEY_BASE64"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
    Ok(Destination {
        store: store.clone(),
        s3: (!per_part_headers).then_some(store),
        prefix: location.prefix.trim_matches('/').to_string(),
        root,
        kind: Kind::S3,
    })
}

/// `https://host:port` → `https://bucket.host:port`.
pub(crate) fn virtual_hosted(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => format!("{bucket}.{endpoint}"),
    }
}

/// The error for a storage failure known only by its text (an S3 answer of our own request).
pub(crate) fn classify_message(root: &str, message: String) -> SnapshotError {
    error_of(
        classify_text(&message).unwrap_or(Class::Other),
        root.to_string(),
        root,
        message,
    )
}

/// The error of class `class` at `location` (a missing bucket is reported at `root`).
fn error_of(class: Class, location: String, root: &str, message: String) -> SnapshotError {
    match class {
        Class::Credentials => SnapshotError::InvalidCredentials { location, message },
        Class::NoBucket => SnapshotError::BucketNotFound {
            location: root.to_string(),
            message,
        },
        Class::NoObject => SnapshotError::ObjectNotFound { location },
        Class::Full => SnapshotError::StorageFull { location, message },
        Class::Other => SnapshotError::StorageFailed { location, message },
    }
}

/// The error and all its causes on one line.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let t = e.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = e.source();
    }
    text.replace(['\n', '\r'], " ")
}

/// Classifies a storage failure by its kind and the S3 error code in its text.
pub(crate) fn classify(err: &object_store::Error, text: &str) -> Class {
    if let Some(c) = classify_text(text) {
        return c;
    }
    if io_kind(err) == Some(std::io::ErrorKind::StorageFull) {
        return Class::Full;
    }
    match err {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            Class::Credentials
        }
        object_store::Error::NotFound { .. } => Class::NoObject,
        _ => Class::Other,
    }
}

/// The S3 error codes (and local errors) that say what went wrong, whatever the status.
pub(crate) fn classify_text(text: &str) -> Option<Class> {
    const CREDENTIALS: &[&str] = &[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
        "MissingSecurityHeader",
        // An access key the service does not know (s3s, some S3-compatible services).
        "NotSignedUp",
        // Any other refusal of who is asking.
        "403 Forbidden",
        "401 Unauthorized",
    ];
    const FULL: &[&str] = &[
        "No space left on device",
        "Disk quota exceeded",
        "QuotaExceeded",
        "XMinioStorageFull",
        "StorageFull",
        "InsufficientStorage",
        "507 Insufficient Storage",
    ];
    if text.contains("NoSuchBucket") {
        Some(Class::NoBucket)
    } else if CREDENTIALS.iter().any(|c| text.contains(c)) {
        Some(Class::Credentials)
    } else if FULL.iter().any(|c| text.contains(c)) {
        Some(Class::Full)
    } else if text.contains("NoSuchKey") {
        Some(Class::NoObject)
    } else {
        None
    }
}

fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = e.source();
    }
    None
}
