#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sha2::{Digest, Sha256};

use super::store::{Class, classify_text, virtual_hosted};
use super::stream::{Decoder, Encoder, EtcdDigestCheck};
use super::*;

#[test]
fn keys_join_prefix_and_key() {
    assert_eq!(join_key("", "a.db").unwrap(), "a.db");
    assert_eq!(join_key("backups", "a.db").unwrap(), "backups/a.db");
    assert_eq!(
        join_key("/backups/prod/", "/c1/a.db").unwrap(),
        "backups/prod/c1/a.db"
    );
    for bad in ["", "dir/", "../a.db", "a/./b", "a//b"] {
        let err = join_key("p", bad).unwrap_err();
        assert_eq!(err.reason(), "InvalidTarget", "{bad:?}: {err}");
    }
    assert!(join_key("x/../y", "a").is_err());
}

#[test]
fn keys_get_the_compression_extension() {
    assert_eq!(Compression::None.key_with_extension("snap"), "snap.db");
    assert_eq!(Compression::Gzip.key_with_extension("snap"), "snap.db.gz");
    assert_eq!(Compression::Gzip.key_with_extension("snap.db"), "snap.db.gz");
    assert_eq!(Compression::Zstd.key_with_extension("snap.db.gz"), "snap.db.zst");
    assert_eq!(Compression::None.key_with_extension("snap.db.zst"), "snap.db");
    assert_eq!(Compression::of_key("a/b.db.gz"), Compression::Gzip);
    assert_eq!(Compression::of_key("b.db.zst"), Compression::Zstd);
    assert_eq!(Compression::of_key("b.db"), Compression::None);
    assert_eq!("ZSTD".parse::<Compression>().unwrap(), Compression::Zstd);
    assert!("lz4".parse::<Compression>().is_err());
}

#[test]
fn s3_error_codes_are_classified() {
    let body = |status: &str, code: &str| {
        format!(
            "Generic S3 error: Error performing PUT http://127.0.0.1:9000/b/k in 2ms: Server \
             returned non-2xx status code: {status}: <?xml version=\"1.0\" \
             encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>m</Message></Error>"
        )
    };
    assert_eq!(
        classify_text(&body("404 Not Found", "NoSuchBucket")),
        Some(Class::NoBucket)
    );
    for code in [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
        "NotSignedUp",
    ] {
        assert_eq!(
            classify_text(&body("403 Forbidden", code)),
            Some(Class::Credentials),
            "{code}"
        );
    }
    // A refusal with a code we do not know is still about credentials.
    assert_eq!(
        classify_text(&body("403 Forbidden", "Whatever")),
        Some(Class::Credentials)
    );
    assert_eq!(
        classify_text("Server returned non-2xx status code: 401 Unauthorized: "),
        Some(Class::Credentials)
    );
    assert_eq!(
        classify_text(&body("404 Not Found", "NoSuchKey")),
        Some(Class::NoObject)
    );
    assert_eq!(
        classify_text(&body("507 Insufficient Storage", "XMinioStorageFull")),
        Some(Class::Full)
    );
    assert_eq!(
        classify_text("Unable to write file: No space left on device (os error 28)"),
        Some(Class::Full)
    );
    assert_eq!(
        classify_text(&body("500 Internal Server Error", "InternalError")),
        None
    );
    assert_eq!(classify_text(&body("503 Service Unavailable", "SlowDown")), None);
    assert_eq!(classify_text("error sending request: connection refused"), None);
}

#[test]
fn reasons_and_retryability() {
    let loc = || "s3://b".to_string();
    let cases: Vec<(SnapshotError, &str, bool)> = vec![
        (
            SnapshotError::EtcdUnreachable {
                endpoint: "e".into(),
                message: "m".into(),
            },
            "EtcdUnreachable",
            true,
        ),
        (
            SnapshotError::InvalidCredentials {
                location: loc(),
                message: "m".into(),
            },
            "InvalidCredentials",
            false,
        ),
        (
            SnapshotError::BucketNotFound {
                location: loc(),
                message: "m".into(),
            },
            "BucketNotFound",
            false,
        ),
        (
            SnapshotError::StorageFull {
                location: loc(),
                message: "m".into(),
            },
            "StorageFull",
            false,
        ),
        (
            SnapshotError::StorageFailed {
                location: loc(),
                message: "m".into(),
            },
            "StorageFailed",
            true,
        ),
        (
            SnapshotError::SnapshotCorrupt {
                location: "e (stream)".into(),
                message: "m".into(),
                in_storage: false,
            },
            "SnapshotCorrupt",
            true,
        ),
        (
            SnapshotError::SnapshotCorrupt {
                location: loc(),
                message: "m".into(),
                in_storage: true,
            },
            "SnapshotCorrupt",
            false,
        ),
        (
            SnapshotError::ChecksumMismatch {
                location: loc(),
                expected: "a".into(),
                actual: "b".into(),
            },
            "ChecksumMismatch",
            false,
        ),
    ];
    for (err, reason, retryable) in cases {
        assert_eq!(err.reason(), reason);
        assert_eq!(err.is_retryable(), retryable, "{reason}");
        assert!(!err.to_string().contains('\n'));
        assert_eq!(err.to_json()["reason"], reason);
    }
}

#[test]
fn virtual_hosted_endpoints_carry_the_bucket() {
    assert_eq!(
        virtual_hosted("https://s3.example.com:9000", "b"),
        "https://b.s3.example.com:9000"
    );
}

#[test]
fn credentials_debug_hides_secrets() {
    let c = S3Credentials {
        access_key_id: "AKIA".into(),
        secret_access_key: "very-secret".into(),
        session_token: Some("tok".into()),
    };
    let text = format!("{c:?}");
    assert!(text.contains("AKIA") && !text.contains("very-secret") && !text.contains("tok\""));
}

/// A fake snapshot stream: a "database" of whole 512-byte blocks and its sha256.
fn etcd_stream(db_len: usize) -> Vec<u8> {
    let db: Vec<u8> = (0..db_len).map(|i| (i * 7 % 251) as u8).collect();
    let mut s = db.clone();
    s.extend_from_slice(&Sha256::digest(&db));
    s
}

#[test]
fn etcd_digest_check_accepts_any_chunking_and_refuses_truncation() {
    let stream = etcd_stream(4096 * 3);
    for chunk in [1, 7, 31, 32, 33, 4096, 5000, stream.len()] {
        let mut c = EtcdDigestCheck::default();
        stream.chunks(chunk).for_each(|p| c.update(p));
        assert_eq!(c.bytes(), stream.len() as u64);
        c.finish().unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
    }
    let mut short = EtcdDigestCheck::default();
    short.update(&stream[..stream.len() - 4096]);
    assert!(short.finish().is_err());
    let mut flipped = stream.clone();
    flipped[100] ^= 1;
    let mut c = EtcdDigestCheck::default();
    c.update(&flipped);
    assert!(c.finish().unwrap_err().contains("sha256"));
    assert!(EtcdDigestCheck::default().finish().is_err());
}

#[test]
fn compression_round_trips_chunk_by_chunk() {
    let stream = etcd_stream(4096 * 40);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut enc = Encoder::new(compression).unwrap();
        let mut stored = Vec::new();
        for chunk in stream.chunks(1000) {
            stored.extend(enc.write(chunk).unwrap());
        }
        stored.extend(enc.finish().unwrap());
        if compression != Compression::None {
            assert!(stored.len() < stream.len() / 2, "{compression}: {}", stored.len());
        }
        let mut dec = Decoder::new(compression);
        let mut back = Vec::new();
        for chunk in stored.chunks(777) {
            back.extend(dec.write(chunk).unwrap());
        }
        back.extend(dec.finish().unwrap());
        assert!(back == stream, "{compression}");
    }
}

/// `restore-finish` moves the restored data into an empty data dir, keeps a data dir that
/// already holds a member (an init container run again), and refuses a staging directory
/// without a restored member; the staging directory is gone after a success.
#[test]
fn restore_finish_moves_once_and_never_overwrites_a_member() {
    use super::{Finished, finish_restore};
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("restore");
    let restored = staging.join("data");
    let data = dir.path().join("data");
    std::fs::create_dir_all(restored.join("member/snap")).unwrap();
    std::fs::write(restored.join("member/snap/db"), b"restored").unwrap();
    // An empty data dir (a pod's volume before etcd ever ran) is replaced.
    std::fs::create_dir_all(&data).unwrap();
    assert_eq!(
        finish_restore(&staging, &restored, &data).unwrap(),
        Finished::Moved
    );
    assert_eq!(std::fs::read(data.join("member/snap/db")).unwrap(), b"restored");
    assert!(!staging.exists());

    // Run again with another staged copy: the member that exists wins.
    std::fs::create_dir_all(restored.join("member/snap")).unwrap();
    std::fs::write(restored.join("member/snap/db"), b"other").unwrap();
    assert_eq!(
        finish_restore(&staging, &restored, &data).unwrap(),
        Finished::Kept
    );
    assert_eq!(std::fs::read(data.join("member/snap/db")).unwrap(), b"restored");
    assert!(!staging.exists());

    // Nothing staged and no member: an error, and nothing is touched.
    let fresh = dir.path().join("fresh");
    assert!(finish_restore(&staging, &restored, &fresh).is_err());
    assert!(!fresh.exists());
}
