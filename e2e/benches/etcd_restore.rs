//! etcd restore figures (issue #14): a ~200 MB database of incompressible values, backed up to
//! a real S3 server (s3s-fs on kubesim's host address) by the backup engine, restored into a
//! NEW 3-member EtcdCluster (`spec.bootstrap.fromBackup`): the time from apply to Available
//! with 3 healthy voters, and its shares: until the seed's first init container starts
//! (scheduling, the operator's checks), downloading (`restore-fetch`), restoring (`etcdutl
//! snapshot restore` and `restore-finish`), and growing to 3 members through learners. The
//! shares come from the seed pod's init container times, to the second. Run with `make
//! bench` (release build of the operator; root, kubesim process mode).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use e2e::bins;
use e2e::etcd::clusters_api;
use e2e::harness::{Env, wait_for};
use e2e::s3::S3Server;
use etcd_operator::snapshot::{self, Compression};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// Size of the database to restore.
const DB_BYTES: usize = 200 * 1024 * 1024;
const BUCKET: &str = "bench";
const KEY: &str = "source/bench.db";

/// A snapshot of a ~200 MB database stored at [`KEY`]; returns its size in bytes.
async fn stored_snapshot(s3: &S3Server, dir: &std::path::Path) -> u64 {
    let member = common::filled_member("restore-bench", dir, DB_BYTES).await;
    let url = member.client_url.clone();
    let target = common::s3_target(s3, BUCKET);
    let out = snapshot::take(&url, None, &target, KEY, Compression::None)
        .await
        .unwrap();
    out.size_bytes
}

/// Seconds since the epoch of an RFC 3339 time.
fn seconds(t: &serde_json::Value) -> i64 {
    t.as_str()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| t.as_second())
        .unwrap_or_else(|| panic!("not a time: {t}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    // kubesim process mode only: pods reach the S3 server on its host address.
    let s3 = S3Server::for_pods(env.kubesim().unwrap(), &env, BUCKET, "s3-credentials")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let size = stored_snapshot(&s3, dir.path()).await;
    println!("snapshot of {:.1} MB stored in S3", size as f64 / 1e6);

    let version = bins::version("ETCD_CURRENT").unwrap();
    let applied = k8s_openapi::jiff::Timestamp::now().as_second();
    let started = Instant::now();
    env.apply(&format!(
        "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata: {{name: restored, namespace: default}}\nspec:\n  size: 3\n  version: \"{version}\"\n  tls: {{mode: disabled}}\n  bootstrap:\n    fromBackup:\n      destination:\n        s3: {{bucket: {BUCKET}, endpoint: \"{}\", region: {}, forcePathStyle: true, credentialsSecret: s3-credentials}}\n      key: {KEY}\n",
        s3.endpoint,
        S3Server::REGION
    ))
    .await
    .unwrap();
    let clusters = clusters_api(&env.client, "default");
    let available = wait_for("restored: 3 healthy voters", Duration::from_secs(900), || async {
        let st = e2e::etcd::status(&clusters, "restored").await;
        e2e::etcd::healthy_voters(&st, 3)
    })
    .await;
    env.or_diagnose(available, "default", "etcdclusters,pods,events")
        .await;
    let total = started.elapsed();
    let done = k8s_openapi::jiff::Timestamp::now().as_second();

    // The seed is the member pod with the restore init containers.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let seed = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=restored"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.name == "restore-fetch"))
        })
        .expect("the seed pod with restore init containers");
    let statuses = serde_json::to_value(&seed.status.unwrap().init_container_statuses).unwrap();
    let span = |name: &str| -> (i64, i64) {
        let s = statuses
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
            .unwrap_or_else(|| panic!("no init container {name}: {statuses}"));
        let t = &s["state"]["terminated"];
        (seconds(&t["startedAt"]), seconds(&t["finishedAt"]))
    };
    let (fetch_start, fetch_end) = span("restore-fetch");
    let (restore_start, _) = span("restore");
    let (_, finish_end) = span("restore-finish");
    let row = |what: &str, secs: i64| {
        println!(
            "    {what:<44} {secs:>4} s  {:>5.1} %",
            secs as f64 * 100.0 / total.as_secs_f64()
        );
    };
    println!(
        "  apply -> Available with 3 healthy voters:    {:>6.1} s",
        total.as_secs_f64()
    );
    row("until the seed's restore starts", fetch_start - applied);
    row("downloading (restore-fetch)", fetch_end - fetch_start);
    row("restoring (etcdutl, restore-finish)", finish_end - restore_start);
    row("growing to 3 members (learners)", done - finish_end);
    println!(
        "  download throughput {:.1} MB/s (to the second)",
        size as f64 / 1e6 / ((fetch_end - fetch_start).max(1) as f64)
    );
}
