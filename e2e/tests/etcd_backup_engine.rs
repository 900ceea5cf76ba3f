//! The etcd backup engine (issue #14) against real etcd processes, a real S3 server
//! (s3s-fs) and the real `etcdutl snapshot restore`, which checks the sha256 etcd appends to
//! a snapshot (no `--skip-hash-check` anywhere here): round trips with every compression to
//! S3 and to a directory, a degraded cluster, failures classified by reason, interrupted
//! backups and S3 failing mid-part (dropped, refused, hung) that leave no object, fetches
//! that refuse wrong or truncated data, and the `backup-run` / `restore-fetch` subcommands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use e2e::bins::{self, Release};
use e2e::harness::wait_until;
use e2e::local_etcd::{LocalEtcd, LocalTls, free_port};
use e2e::s3::S3Server;
use etcd_client::{Client, GetOptions, Txn, TxnOp};
use etcd_operator::etcd::{ClientTls, EtcdApi};
use etcd_operator::snapshot::{self, Compression, Outcome, S3Credentials, S3Location, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUCKET: &str = "backups";

fn s3_target_as(s3: &S3Server, bucket: &str, prefix: &str, access: &str, secret: &str) -> Target {
    Target::S3 {
        location: S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: Some(s3.endpoint.clone()),
            region: Some(S3Server::REGION.to_string()),
            force_path_style: true,
        },
        credentials: Some(S3Credentials {
            access_key_id: access.to_string(),
            secret_access_key: secret.to_string(),
            session_token: None,
        }),
    }
}

fn s3_target(s3: &S3Server, bucket: &str, prefix: &str) -> Target {
    s3_target_as(s3, bucket, prefix, S3Server::ACCESS_KEY, S3Server::SECRET_KEY)
}

async fn wait_healthy(url: &str) {
    let api = EtcdApi::new(None, Duration::from_secs(5));
    wait_until(
        &format!("etcd at {url} healthy"),
        Duration::from_secs(30),
        || async { api.healthy(url).await.then_some(()) },
    )
    .await
    .unwrap();
}

/// A one-member cluster in `dir`.
async fn single_member(dir: &Path) -> LocalEtcd {
    let mut a = LocalEtcd::plan("a", false);
    a.start(Release::Current, dir, &a.initial(), "new", None).unwrap();
    wait_healthy(&a.client_url).await;
    a
}

/// A temporary directory, an S3 server with the bucket [`BUCKET`], and a one-member cluster.
async fn member_and_s3() -> (tempfile::TempDir, S3Server, LocalEtcd) {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).unwrap();
    let a = single_member(dir.path()).await;
    (dir, s3, a)
}

async fn client(url: &str) -> Client {
    Client::connect([url], None).await.unwrap()
}

/// Puts `n` keys `k/00000`.. in transactions of 100; returns what was written.
async fn put_keys(url: &str, n: usize) -> BTreeMap<String, String> {
    let mut c = client(url).await;
    let all: BTreeMap<String, String> = (0..n)
        .map(|i| (format!("k/{i:05}"), format!("value {i} {}", "x".repeat(i % 50))))
        .collect();
    let pairs: Vec<_> = all.iter().collect();
    for batch in pairs.chunks(100) {
        let ops: Vec<TxnOp> = batch
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
            .collect();
        c.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    all
}

/// Puts `count` values of 1 MiB that do not compress, for a database of `count` MiB and more.
async fn put_big_values(url: &str, count: usize) {
    let mut c = client(url).await;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count {
        let value: Vec<u8> = (0..1024 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        c.put(format!("big/{i:03}"), value, None).await.unwrap();
    }
}

async fn read_keys(url: &str) -> BTreeMap<String, String> {
    let mut c = client(url).await;
    let resp = c.get("k/", Some(GetOptions::new().with_prefix())).await.unwrap();
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn revision(url: &str) -> i64 {
    let mut c = client(url).await;
    c.status().await.unwrap().header().unwrap().revision()
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `etcdutl snapshot restore` (hash check on) into `base`, then a member on the restored
/// data; every key and value and the revision must be what was backed up.
async fn assert_restores(snapshot_file: &Path, base: &Path, expected: &BTreeMap<String, String>, rev: i64) {
    std::fs::create_dir_all(base).unwrap();
    let mut m = LocalEtcd::plan("restored", false);
    let out = Command::new(bins::etcdutl(Release::Current).unwrap())
        .arg("snapshot")
        .arg("restore")
        .arg(snapshot_file)
        .arg(format!("--data-dir={}", base.join("restored").display()))
        .arg("--name=restored")
        .arg(format!("--initial-cluster={}", m.initial()))
        .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdutl snapshot restore {}: {}{}",
        snapshot_file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    m.start(Release::Current, base, &m.initial(), "new", None)
        .unwrap();
    wait_healthy(&m.client_url).await;
    let got = read_keys(&m.client_url).await;
    assert_eq!(got.len(), expected.len(), "restored key count");
    assert!(got == *expected, "restored keys or values differ");
    assert_eq!(revision(&m.client_url).await, rev, "restored revision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip_with_each_compression_restores_every_key() {
    let (dir, s3, a) = member_and_s3().await;
    let expected = put_keys(&a.client_url, 10_000).await;
    let rev = revision(&a.client_url).await;
    let target = s3_target(&s3, BUCKET, "prod/cluster-a/");
    let version = bins::version("ETCD_CURRENT").unwrap();

    let mut outcomes: Vec<Outcome> = Vec::new();
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let out = snapshot::take(&a.client_url, None, &target, "nightly", compression)
            .await
            .unwrap_or_else(|e| panic!("{compression}: {e}\n{}", s3.log_text()));
        assert_eq!(out.key, format!("nightly{}", compression.extension()));
        assert_eq!(out.location, format!("s3://{BUCKET}/prod/cluster-a/{}", out.key));
        let stored = s3.object_file(BUCKET, &format!("prod/cluster-a/{}", out.key));
        assert_eq!(
            sha256sum(&stored),
            out.sha256,
            "{compression}: sha256 of the stored object"
        );
        assert_eq!(std::fs::metadata(&stored).unwrap().len(), out.size_bytes);
        assert_eq!(out.revision, rev);
        assert_eq!(out.etcd_version, version);
        if compression == Compression::None {
            assert_eq!(out.size_bytes, out.snapshot_bytes);
        } else {
            assert!(out.size_bytes < out.snapshot_bytes / 2, "{compression}: {out:?}");
        }

        let file = dir.path().join(format!("fetched-{compression}.db"));
        let written = snapshot::fetch(&target, &out.key, &file, Some(&out.sha256))
            .await
            .unwrap();
        assert_eq!(written, out.snapshot_bytes);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), written);
        assert_restores(
            &file,
            &dir.path().join(format!("restore-{compression}")),
            &expected,
            rev,
        )
        .await;
        outcomes.push(out);
    }

    // Retention's view: list and delete (twice: a missing object is no error).
    let listed = snapshot::list(&target, "").await.unwrap();
    let summary: Vec<(String, u64)> = listed.iter().map(|o| (o.key.clone(), o.size_bytes)).collect();
    let mut want: Vec<(String, u64)> = outcomes.iter().map(|o| (o.key.clone(), o.size_bytes)).collect();
    want.sort();
    assert_eq!(summary, want);
    assert_eq!(
        listed[0].location,
        format!("s3://{BUCKET}/prod/cluster-a/{}", listed[0].key)
    );
    snapshot::delete(&target, "nightly.db").await.unwrap();
    snapshot::delete(&target, "nightly.db").await.unwrap();
    assert_eq!(snapshot::list(&target, "").await.unwrap().len(), 2);
    assert!(!s3.object_file(BUCKET, "prod/cluster-a/nightly.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_round_trip_restores_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = single_member(dir.path()).await;
    let expected = put_keys(&a.client_url, 500).await;
    let rev = revision(&a.client_url).await;
    let store = dir.path().join("volume");
    std::fs::create_dir_all(&store).unwrap();
    let target = Target::Directory(store.clone());

    let out = snapshot::take(
        &a.client_url,
        None,
        &target,
        "cluster-a/20260101.db",
        Compression::Gzip,
    )
    .await
    .unwrap();
    assert_eq!(out.key, "cluster-a/20260101.db.gz");
    let stored = store.join("cluster-a/20260101.db.gz");
    let canonical = std::fs::canonicalize(&store).unwrap();
    assert_eq!(
        out.location,
        format!("file://{}/cluster-a/20260101.db.gz", canonical.display())
    );
    assert_eq!(sha256sum(&stored), out.sha256);
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), out.size_bytes);
    assert_eq!(out.revision, rev);
    // Only the object: no staging files left beside it.
    let names: Vec<String> = std::fs::read_dir(store.join("cluster-a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["20260101.db.gz".to_string()]);

    let file = dir.path().join("fetched.db");
    snapshot::fetch(&target, &out.key, &file, Some(&out.sha256))
        .await
        .unwrap();
    assert_restores(&file, &dir.path().join("restore"), &expected, rev).await;

    let listed = snapshot::list(&target, "cluster-a").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, out.key);
    snapshot::delete(&target, &out.key).await.unwrap();
    snapshot::delete(&target, &out.key).await.unwrap();
    assert!(!stored.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_from_a_live_member_of_a_cluster_with_a_member_down() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).unwrap();
    let mut members: Vec<LocalEtcd> = ["a", "b", "c"]
        .iter()
        .map(|n| LocalEtcd::plan(n, false))
        .collect();
    let cluster: Vec<String> = members.iter().map(LocalEtcd::initial).collect();
    for m in &mut members {
        m.start(Release::Current, dir.path(), &cluster.join(","), "new", None)
            .unwrap();
    }
    for m in &members {
        wait_healthy(&m.client_url).await;
    }
    let expected = put_keys(&members[0].client_url, 2_000).await;
    let rev = revision(&members[0].client_url).await;
    let dead_url = members[0].client_url.clone();
    members[0].kill();
    let live_url = members[1].client_url.clone();
    wait_healthy(&live_url).await;
    let target = s3_target(&s3, BUCKET, "");

    // The member that is down cannot give one: a reason the controller can act on.
    let err = snapshot::take(&dead_url, None, &target, "from-dead", Compression::None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "EtcdUnreachable", "{err}");
    assert!(err.is_retryable());

    let out = snapshot::take(&live_url, None, &target, "from-live", Compression::Zstd)
        .await
        .unwrap();
    assert_eq!(out.revision, rev);
    assert_eq!(s3.keys(BUCKET).unwrap(), vec!["from-live.db.zst".to_string()]);
    let file = dir.path().join("fetched.db");
    snapshot::fetch(&target, &out.key, &file, Some(&out.sha256))
        .await
        .unwrap();
    assert_restores(&file, &dir.path().join("restore"), &expected, rev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified() {
    let (dir, s3, a) = member_and_s3().await;
    put_keys(&a.client_url, 100).await;
    let url = a.client_url.as_str();

    let wrong_secret = s3_target_as(&s3, BUCKET, "", S3Server::ACCESS_KEY, "not-the-secret");
    let err = snapshot::take(url, None, &wrong_secret, "s", Compression::None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidCredentials", "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");

    let unknown_key = s3_target_as(&s3, BUCKET, "", "nobody", S3Server::SECRET_KEY);
    let err = snapshot::take(url, None, &unknown_key, "s", Compression::None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidCredentials", "{err}");
    // s3s answers an unknown key with NotSignedUp (AWS: InvalidAccessKeyId), both 403.
    assert!(err.to_string().contains("403 Forbidden"), "{err}");

    let missing_bucket = s3_target(&s3, "no-such-bucket", "x");
    let err = snapshot::take(url, None, &missing_bucket, "s", Compression::None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "BucketNotFound", "{err}");
    assert!(!err.is_retryable());
    assert!(
        !s3.root.join("no-such-bucket").exists(),
        "the bucket must not be created"
    );

    let nothing_listens = format!("http://127.0.0.1:{}", free_port());
    let target = s3_target(&s3, BUCKET, "");
    let err = snapshot::take(&nothing_listens, None, &target, "s", Compression::None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "EtcdUnreachable", "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().starts_with("cannot reach etcd"), "{err}");

    let err = snapshot::take(
        url,
        None,
        &Target::Directory(dir.path().join("nope")),
        "s",
        Compression::None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "BucketNotFound", "{err}");

    let err = snapshot::fetch(&target, "never-stored.db", &dir.path().join("out.db"), None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ObjectNotFound", "{err}");
    let err = snapshot::take(url, None, &target, "../escape", Compression::None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidTarget", "{err}");

    // None of the failures left anything behind.
    assert!(s3.keys(BUCKET).unwrap().is_empty(), "{:?}", s3.keys(BUCKET));
    assert!(s3.pending_parts().unwrap().is_empty());
    assert!(!dir.path().join("out.db").exists());
}

/// What a [`Proxy`] does once `limit` bytes came from etcd.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AtLimit {
    /// Close both sides: the member went away mid-stream.
    Cut,
    /// Stop forwarding: the stream hangs mid-way.
    Stall,
}

/// Accepts connections on `listener` and hands each, with a new connection to `upstream`,
/// to `relay`. Stops accepting on drop.
struct Relay {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    fn start<F, Fut>(listener: tokio::net::TcpListener, upstream: &str, relay: F) -> Relay
    where
        F: Fn(tokio::net::TcpStream, tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(inbound, outbound));
            }
        });
        Relay { url, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP proxy in front of a member that lets the first `limit` bytes of answers through.
struct Proxy {
    url: String,
    passed: Arc<AtomicU64>,
    limit: u64,
    _relay: Relay,
}

impl Proxy {
    async fn start(upstream: &str, limit: u64, at: AtLimit) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let passed = Arc::new(AtomicU64::new(0));
        let counter = passed.clone();
        let relay = Relay::start(listener, upstream, move |inbound, outbound| {
            let counter = counter.clone();
            async move {
                let (mut cr, mut cw) = inbound.into_split();
                let (mut sr, mut sw) = outbound.into_split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if counter.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit {
                            match at {
                                AtLimit::Cut => return,
                                AtLimit::Stall => std::future::pending::<()>().await,
                            }
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            }
        });
        Proxy {
            url: relay.url.clone(),
            passed,
            limit,
            _relay: relay,
        }
    }

    fn reached(&self) -> bool {
        self.passed.load(Ordering::SeqCst) > self.limit
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_backups_leave_no_object() {
    let (dir, s3, a) = member_and_s3().await;
    // A database of about 24 MiB: three parts, so parts are uploaded before the break.
    put_big_values(&a.client_url, 24).await;
    let target = s3_target(&s3, BUCKET, "");
    let limit = 2 * snapshot::PART_SIZE as u64 - 1024 * 1024;

    // The member goes away mid-stream: the upload is aborted, no object appears.
    let cut = Proxy::start(&a.client_url, limit, AtLimit::Cut).await;
    let err = snapshot::take(&cut.url, None, &target, "cut", Compression::None)
        .await
        .unwrap_err();
    assert!(cut.reached());
    assert_eq!(err.reason(), "SnapshotInterrupted", "{err}");
    assert!(err.is_retryable());
    assert!(s3.keys(BUCKET).unwrap().is_empty(), "{:?}", s3.keys(BUCKET));
    assert!(snapshot::list(&target, "").await.unwrap().is_empty());
    assert!(
        s3.pending_parts().unwrap().is_empty(),
        "the aborted upload's parts are gone"
    );

    // The backup is dropped while parts are uploaded and the stream hangs (a killed Pod,
    // a cancelled reconcile): the upload was never completed, so there is no object.
    let stall = Proxy::start(&a.client_url, limit, AtLimit::Stall).await;
    let take = snapshot::take(&stall.url, None, &target, "dropped", Compression::None);
    let parts_uploaded = wait_until(
        "a part uploaded and the stream stalled",
        Duration::from_secs(60),
        || {
            let ready = stall.reached() && !s3.pending_parts().unwrap().is_empty();
            async move { ready.then_some(()) }
        },
    );
    tokio::select! {
        r = take => panic!("the backup finished through a stalled stream: {r:?}"),
        r = parts_uploaded => r.unwrap(),
    }
    assert!(s3.keys(BUCKET).unwrap().is_empty(), "{:?}", s3.keys(BUCKET));
    assert!(snapshot::list(&target, "").await.unwrap().is_empty());

    // The same for a directory: the staged file goes with the dropped backup.
    let store = dir.path().join("volume");
    std::fs::create_dir_all(&store).unwrap();
    let dir_target = Target::Directory(store.clone());
    let stall = Proxy::start(&a.client_url, limit, AtLimit::Stall).await;
    let take = snapshot::take(&stall.url, None, &dir_target, "dropped", Compression::Gzip);
    let staged = wait_until(
        "a staged file and the stream stalled",
        Duration::from_secs(60),
        || {
            let ready = stall.reached() && std::fs::read_dir(&store).unwrap().next().is_some();
            async move { ready.then_some(()) }
        },
    );
    tokio::select! {
        r = take => panic!("the backup finished through a stalled stream: {r:?}"),
        r = staged => r.unwrap(),
    }
    let left = || -> Vec<PathBuf> {
        std::fs::read_dir(&store)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    wait_until("the staged file removed", Duration::from_secs(10), || {
        let empty = left().is_empty();
        async move { empty.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", left()));
    assert!(snapshot::list(&dir_target, "").await.unwrap().is_empty());
}

/// What an [`S3Fault`] proxy does to the request that carries its `limit`-th byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Closes the connection mid-request: the network dropped.
    Cut,
    /// Answers `503 SlowDown` before the body is in, as S3 does when it sheds load.
    Refuse,
    /// Stops reading and never answers: a hung server.
    Hang,
}

/// A TCP proxy in front of S3 that lets requests through until `limit` bytes were sent to
/// it, then does `fault` to the request under way, once; later requests pass (so the
/// client's abort of the upload reaches S3).
struct S3Fault {
    url: String,
    fired: Arc<AtomicBool>,
    _relay: Relay,
}

impl S3Fault {
    async fn start(upstream: &str, limit: u64, fault: Fault) -> S3Fault {
        const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
            <Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        // A small receive buffer, so a request the proxy stops reading soon blocks its sender.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(64).unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let fired = Arc::new(AtomicBool::new(false));
        let fired_once = fired.clone();
        let relay = Relay::start(listener, upstream, move |inbound, outbound| {
            let (sent, fired) = (sent.clone(), fired_once.clone());
            async move {
                let (mut cr, mut cw) = inbound.into_split();
                let (mut sr, mut sw) = outbound.into_split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return None,
                            Ok(n) => n,
                        };
                        let before = sent.fetch_add(n as u64, Ordering::SeqCst);
                        if before + n as u64 > limit
                            && fired
                                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                                .is_ok()
                        {
                            return Some(fault);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return None;
                        }
                    }
                };
                let down = tokio::io::copy(&mut sr, &mut cw);
                let faulted = tokio::select! {
                    f = up => f,
                    _ = down => None,
                };
                match faulted {
                    Some(Fault::Refuse) => {
                        let answer = format!(
                            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{SLOW_DOWN}",
                            SLOW_DOWN.len()
                        );
                        let _ = cw.write_all(answer.as_bytes()).await;
                        // Read on until the client stops sending: closing with its data
                        // unread would reset the connection before it reads the answer.
                        let mut buf = vec![0u8; 64 * 1024];
                        let drain = async { while let Ok(1..) = cr.read(&mut buf).await {} };
                        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
                        let _ = cw.shutdown().await;
                    }
                    Some(Fault::Hang) => std::future::pending::<()>().await,
                    Some(Fault::Cut) | None => {}
                }
            }
        });
        S3Fault {
            url: relay.url.clone(),
            fired,
            _relay: relay,
        }
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

/// S3 failing in the middle of a streamed part: the connection drops, S3 refuses the part
/// before its body is in, or S3 hangs. Each fails the backup with a retryable storage error
/// that says what happened, aborts the upload (no object, no parts left), and never hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failing_mid_part_fails_the_backup_and_leaves_no_object() {
    let (_dir, s3, a) = member_and_s3().await;
    // About 24 MiB: with 5 MiB parts the fault lands in the second of five.
    put_big_values(&a.client_url, 24).await;
    let mib = 1024 * 1024;
    let five = snapshot::Upload {
        stall_timeout: Duration::from_secs(3),
        ..snapshot::Upload::default()
    };
    assert!(
        five.streamed && five.part_size == 5 * mib,
        "the operator's uploads"
    );
    // A hang with 8 MiB of the part still to send (more than the sockets between hold): the
    // sender blocks. With less, the body is out and S3's answer never comes.
    let sixteen = snapshot::Upload {
        part_size: 16 * mib,
        ..five
    };
    let mid_second = 15 * mib as u64 / 2;
    for (fault, upload, limit, expect) in [
        (Fault::Cut, five, mid_second, "part upload: error sending request"),
        (
            Fault::Refuse,
            five,
            mid_second,
            "part upload: 503 Service Unavailable",
        ),
        (Fault::Hang, five, mid_second, "part upload: the server"),
        (
            Fault::Hang,
            sixteen,
            8 * mib as u64,
            "the server took no data for 3s",
        ),
    ] {
        let proxy = S3Fault::start(&s3.endpoint, limit, fault).await;
        let mut target = s3_target(&s3, BUCKET, "");
        if let Target::S3 { location, .. } = &mut target {
            location.endpoint = Some(proxy.url.clone());
        }
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(120),
            snapshot::take_with(&a.client_url, None, &target, "faulted", Compression::None, upload),
        )
        .await
        .unwrap_or_else(|_| panic!("{fault:?}: the backup hung"));
        let err = result.unwrap_err();
        assert!(proxy.fired(), "{fault:?}: the fault never happened: {err}");
        assert_eq!(err.reason(), "StorageFailed", "{fault:?}: {err}");
        assert!(err.is_retryable(), "{fault:?}: {err}");
        let text = err.to_string();
        assert!(text.contains(expect), "{fault:?}: {text:?} should say {expect:?}");
        // A part's URL is signed: it must not reach the status or an Event.
        assert!(!text.contains("X-Amz-Signature"), "{fault:?}: {text}");
        println!("{fault:?}: failed after {:?}: {text}", started.elapsed());
        assert!(
            s3.keys(BUCKET).unwrap().is_empty(),
            "{fault:?}: {:?}",
            s3.keys(BUCKET)
        );
        let pending = wait_until("the upload aborted", Duration::from_secs(10), || {
            let parts = s3.pending_parts().unwrap();
            async move { parts.is_empty().then_some(()) }
        })
        .await;
        assert!(
            pending.is_ok(),
            "{fault:?}: parts left behind: {:?}",
            s3.pending_parts()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_refuses_wrong_checksums_and_truncated_objects() {
    let (dir, s3, a) = member_and_s3().await;
    put_keys(&a.client_url, 300).await;
    let target = s3_target(&s3, BUCKET, "f");
    let plain = snapshot::take(&a.client_url, None, &target, "plain", Compression::None)
        .await
        .unwrap();
    let gz = snapshot::take(&a.client_url, None, &target, "gz", Compression::Gzip)
        .await
        .unwrap();
    let outdir = dir.path().join("restore");
    std::fs::create_dir_all(&outdir).unwrap();
    let out = outdir.join("snapshot.db");
    let nothing_left = || {
        let left: Vec<_> = std::fs::read_dir(&outdir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    };

    let wrong = "0".repeat(64);
    let err = snapshot::fetch(&target, &plain.key, &out, Some(&wrong))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ChecksumMismatch", "{err}");
    assert!(err.to_string().contains(&plain.sha256), "{err}");
    nothing_left();
    let err = snapshot::fetch(&target, &gz.key, &out, Some(&plain.sha256))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ChecksumMismatch", "{err}");
    nothing_left();
    let err = snapshot::fetch(&target, &plain.key, &out, Some("abc"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "InvalidTarget", "{err}");

    // Truncated in storage: refused with or without an expected checksum.
    for o in [&plain, &gz] {
        let file = s3.object_file(BUCKET, &format!("f/{}", o.key));
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let err = snapshot::fetch(&target, &o.key, &out, None).await.unwrap_err();
        assert_eq!(err.reason(), "SnapshotCorrupt", "{}: {err}", o.key);
        assert!(!err.is_retryable());
        nothing_left();
        let err = snapshot::fetch(&target, &o.key, &out, Some(&o.sha256))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "ChecksumMismatch", "{}: {err}", o.key);
        nothing_left();
        std::fs::write(&file, &bytes).unwrap();
    }

    // One byte flipped, same length: etcd's own digest catches it.
    let file = s3.object_file(BUCKET, &format!("f/{}", plain.key));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096 + 17] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let err = snapshot::fetch(&target, &plain.key, &out, None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "SnapshotCorrupt", "{err}");
    nothing_left();

    // The intact one still fetches.
    snapshot::fetch(&target, &gz.key, &out, Some(&gz.sha256))
        .await
        .unwrap();
    assert!(out.is_file());
}

fn operator() -> PathBuf {
    bins::own_binary("etcd-operator")
        .unwrap_or_else(|e| panic!("{e}: build it with `cargo build -p etcd-operator`"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_and_restore_fetch_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let a = single_member(dir.path()).await;
    let expected = put_keys(&a.client_url, 200).await;
    let rev = revision(&a.client_url).await;
    let volume = dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();

    let out = Command::new(operator())
        .args(["backup-run", "--endpoint", &a.client_url, "--directory"])
        .arg(&volume)
        .args(["--key", "nightly", "--compression", "zstd"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let outcome: Outcome = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(outcome.key, "nightly.db.zst");
    assert_eq!(outcome.revision, rev);
    assert_eq!(sha256sum(&volume.join("nightly.db.zst")), outcome.sha256);

    let fetched = dir.path().join("fetched.db");
    let out = Command::new(operator())
        .args(["restore-fetch", "--directory"])
        .arg(&volume)
        .args(["--key", &outcome.key, "--sha256", &outcome.sha256, "--out"])
        .arg(&fetched)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_restores(&fetched, &dir.path().join("restore"), &expected, rev).await;

    let refused = dir.path().join("refused.db");
    let out = Command::new(operator())
        .args(["restore-fetch", "--directory"])
        .arg(&volume)
        .args(["--key", &outcome.key, "--sha256", &"f".repeat(64), "--out"])
        .arg(&refused)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("restore-fetch failed: ChecksumMismatch"),
        "{stderr}"
    );
    assert!(!refused.exists());

    // From S3, credentials from the environment.
    let s3 = S3Server::start().await.unwrap();
    s3.create_bucket(BUCKET).unwrap();
    let stored = snapshot::take(
        &a.client_url,
        None,
        &s3_target(&s3, BUCKET, "p"),
        "s3",
        Compression::Gzip,
    )
    .await
    .unwrap();
    let s3_fetch = |secret: &str, out: &Path| {
        Command::new(operator())
            .args(["restore-fetch", "--s3-bucket", BUCKET, "--s3-prefix", "p"])
            .args([
                "--s3-endpoint",
                &s3.endpoint,
                "--s3-region",
                S3Server::REGION,
                "--s3-force-path-style",
            ])
            .args(["--key", &stored.key, "--sha256", &stored.sha256, "--out"])
            .arg(out)
            .env("AWS_ACCESS_KEY_ID", S3Server::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap()
    };
    let from_s3 = dir.path().join("from-s3.db");
    let out = s3_fetch(S3Server::SECRET_KEY, &from_s3);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&from_s3).unwrap().len(), stored.snapshot_bytes);
    let denied = dir.path().join("denied.db");
    let out = s3_fetch("wrong", &denied);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("restore-fetch failed: InvalidCredentials"),
        "{stderr}"
    );
    assert!(!denied.exists());

    // Over HTTPS (the CA from SSL_CERT_FILE, as the system's trust store would hold it).
    let front = s3.tls_front().await.unwrap();
    let ca_file = dir.path().join("s3-ca.crt");
    std::fs::write(&ca_file, &front.ca_pem).unwrap();
    let over_tls = dir.path().join("over-tls.db");
    let out = Command::new(operator())
        .args(["restore-fetch", "--s3-bucket", BUCKET, "--s3-prefix", "p"])
        .args(["--s3-endpoint", &front.endpoint, "--s3-force-path-style"])
        .args(["--key", &stored.key, "--sha256", &stored.sha256, "--out"])
        .arg(&over_tls)
        .env("AWS_ACCESS_KEY_ID", S3Server::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3Server::SECRET_KEY)
        .env("SSL_CERT_FILE", &ca_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&over_tls).unwrap().len(), stored.snapshot_bytes);
    // A server whose CA is not trusted is refused, and says so.
    let other_ca = dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, e2e::kubesim::pki::Pki::new().unwrap().ca_pem()).unwrap();
    let untrusted = dir.path().join("untrusted.db");
    let out = Command::new(operator())
        .args(["restore-fetch", "--s3-bucket", BUCKET, "--s3-prefix", "p"])
        .args(["--s3-endpoint", &front.endpoint, "--s3-force-path-style"])
        .args(["--key", &stored.key, "--out"])
        .arg(&untrusted)
        .env("AWS_ACCESS_KEY_ID", S3Server::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3Server::SECRET_KEY)
        .env("SSL_CERT_FILE", &other_ca)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("restore-fetch failed: StorageFailed"),
        "{stderr}"
    );
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(!untrusted.exists());

    // A failed backup-run says why as JSON too.
    let nothing_listens = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(operator())
        .args(["backup-run", "--endpoint", &nothing_listens, "--directory"])
        .arg(&volume)
        .args(["--key", "failed"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["error"]["reason"], "EtcdUnreachable", "{line}");
    assert_eq!(line["error"]["retryable"], true);
    assert!(!volume.join("failed.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_from_a_member_with_client_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = LocalTls::new(dir.path().join("tls")).unwrap();
    let client_tls = ClientTls {
        ca: tls.ca.clone(),
        cert: tls.client.cert_pem.clone(),
        key: tls.client.key_pem.clone(),
    };
    let mut a = LocalEtcd::plan("a", true);
    a.start(Release::Current, dir.path(), &a.initial(), "new", Some(&tls))
        .unwrap();
    let api = EtcdApi::new(Some(client_tls.clone()), Duration::from_secs(5));
    wait_until("TLS member healthy", Duration::from_secs(30), || async {
        api.healthy(&a.client_url).await.then_some(())
    })
    .await
    .unwrap();
    let volume = dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    let target = Target::Directory(volume.clone());

    // Without client certificates the member refuses.
    let err = snapshot::take(&a.client_url, None, &target, "plain", Compression::None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "EtcdUnreachable", "{err}");

    let out = snapshot::take(
        &a.client_url,
        Some(&client_tls),
        &target,
        "api",
        Compression::None,
    )
    .await
    .unwrap();
    assert_eq!(sha256sum(&volume.join("api.db")), out.sha256);

    // The same through backup-run with the TLS files.
    let files = dir.path().join("client");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("ca.crt"), &tls.ca).unwrap();
    std::fs::write(files.join("tls.crt"), &tls.client.cert_pem).unwrap();
    std::fs::write(files.join("tls.key"), &tls.client.key_pem).unwrap();
    let run = Command::new(operator())
        .args(["backup-run", "--endpoint", &a.client_url, "--cacert"])
        .arg(files.join("ca.crt"))
        .arg("--cert")
        .arg(files.join("tls.crt"))
        .arg("--client-key")
        .arg(files.join("tls.key"))
        .arg("--directory")
        .arg(&volume)
        .args(["--key", "cli", "--compression", "gzip"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let outcome: Outcome = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(outcome.key, "cli.db.gz");
    assert_eq!(sha256sum(&volume.join("cli.db.gz")), outcome.sha256);
}
