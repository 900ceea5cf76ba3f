//! kubesim throughput: 10,000 ConfigMaps created through the API while 20 watchers follow
//! along. Reports objects per second (until every watcher has seen every object) and the
//! kubesim process' resident memory. Run with `make bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::{Duration, Instant};

use e2e::harness::{proc_status_kib, wait_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const OBJECTS: usize = 10_000;
const WATCHERS: usize = 20;
const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["up", "--state-dir", dir.path().to_str().unwrap()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    wait_for("kubesim's kubeconfig", Duration::from_secs(30), || async {
        kubeconfig.exists()
    })
    .await
    .unwrap();
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let rss_idle = proc_status_kib(pid, "VmRSS:");

    let start_rv = cms
        .list(&ListParams::default().labels("bench=yes"))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let cms = cms.clone();
        let rv = start_rv.clone();
        watchers.push(tokio::spawn(async move {
            let mut seen = 0;
            let mut rv = rv;
            while seen < OBJECTS {
                let mut stream = cms
                    .watch(&WatchParams::default().labels("bench=yes").timeout(290), &rv)
                    .await
                    .unwrap()
                    .boxed();
                while let Some(ev) = stream.try_next().await.unwrap() {
                    if let WatchEvent::Added(o) = ev {
                        seen += 1;
                        rv = o.metadata.resource_version.unwrap();
                        if seen == OBJECTS {
                            break;
                        }
                    }
                }
            }
            Instant::now()
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:05}"), "labels": {"bench": "yes"}}, "data": {"index": i.to_string(), "payload": "x".repeat(200)}})).unwrap();
                cms.create(&PostParams::default(), &cm).await.unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let created = started.elapsed();
    let mut last = started;
    for w in watchers {
        last = last.max(w.await.unwrap());
    }
    let observed = last - started;
    let rss = proc_status_kib(pid, "VmRSS:");
    let hwm = proc_status_kib(pid, "VmHWM:");
    println!(
        "kubesim API benchmark: {OBJECTS} ConfigMaps, {WATCHERS} watchers, {CONCURRENCY} concurrent creates"
    );
    println!(
        "  created in            {:>8.2} s  ({:>7.0} objects/s)",
        created.as_secs_f64(),
        OBJECTS as f64 / created.as_secs_f64()
    );
    println!(
        "  seen by all watchers  {:>8.2} s  ({:>7.0} objects/s)",
        observed.as_secs_f64(),
        OBJECTS as f64 / observed.as_secs_f64()
    );
    println!("  kubesim RSS idle      {:>8.1} MiB", rss_idle as f64 / 1024.0);
    println!(
        "  kubesim RSS after     {:>8.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    child.kill().await.ok();
}
