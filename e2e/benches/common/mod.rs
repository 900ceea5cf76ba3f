//! What the etcd backup and restore benches share: a local etcd member filled with a database
//! of incompressible values, and the test S3 server as a backup target.

use std::time::{Duration, Instant};

use e2e::bins::Release;
use e2e::local_etcd::{LocalEtcd, etcdctl};
use e2e::s3::S3Server;
use etcd_operator::snapshot::{S3Credentials, S3Location, Target};

/// One value: large, so filling is quick, and below etcd's 1.5 MiB request limit.
const VALUE_BYTES: usize = 512 * 1024;

/// Incompressible bytes (xorshift), so the database is as large on disk as its values.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A single-member etcd named `name` with data in `dir`, holding about `db_bytes` of values
/// under `bench/`; running until dropped.
pub async fn filled_member(name: &str, dir: &std::path::Path, db_bytes: usize) -> LocalEtcd {
    let mut member = LocalEtcd::plan(name, false);
    member
        .start(Release::Current, dir, &member.initial(), "new", None)
        .unwrap();
    let url = member.client_url.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(Release::Current, &["--endpoints", &url, "endpoint", "health"]).0 {
        assert!(Instant::now() < deadline, "etcd did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = etcd_client::Client::connect([url.as_str()], None).await.unwrap();
    for i in 0..db_bytes / VALUE_BYTES {
        client
            .put(format!("bench/{i:05}"), noise(i as u64 + 1, VALUE_BYTES), None)
            .await
            .unwrap();
    }
    member
}

/// Bucket `bucket` of the test S3 server as the backup engine's target, with its credentials.
pub fn s3_target(s3: &S3Server, bucket: &str) -> Target {
    Target::S3 {
        location: S3Location {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: Some(s3.endpoint.clone()),
            region: Some(S3Server::REGION.into()),
            force_path_style: true,
        },
        credentials: Some(S3Credentials {
            access_key_id: S3Server::ACCESS_KEY.into(),
            secret_access_key: S3Server::SECRET_KEY.into(),
            session_token: None,
        }),
    }
}
