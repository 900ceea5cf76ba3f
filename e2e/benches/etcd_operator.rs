//! etcd-operator figures: time from apply to 3 Ready members and from a member's failure to
//! its healthy replacement (kubesim process mode, operator from deploy/), and the operator's
//! memory managing 50 EtcdClusters (kubesim instant mode), and the API requests 50 idle
//! single-member clusters cost per minute (process mode, kubesim's audit log). Run with
//! `make bench` (root).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::{Duration, Instant};

use e2e::bins;
use e2e::etcd::clusters_api;
use e2e::harness::{Env, proc_status_kib, wait_for};
use kube::api::{DynamicObject, PostParams};

fn cluster(name: &str, version: &str, timeout: &str) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "etcd.steward.dev/v1alpha1", "kind": "EtcdCluster", "metadata": {"name": name},
        "spec": {"size": 3, "version": version, "tls": {"mode": "disabled"}, "memberFailureTimeout": timeout},
    }))
    .unwrap()
}

async fn lifecycle_times(version: &str) {
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    // Benchmarks run on kubesim only (`make bench` starts it); unwrap, so one pointed
    // elsewhere fails at once instead of measuring something else.
    let cluster_handle = env.kubesim().unwrap();
    let clusters = clusters_api(&env.client, "default");
    let started = Instant::now();
    clusters
        .create(&PostParams::default(), &cluster("bench", version, "20s"))
        .await
        .unwrap();
    let ready = || async {
        let st = clusters
            .get("bench")
            .await
            .map(|c| c.data["status"].clone())
            .unwrap_or_default();
        st["readyMembers"] == 3 && st["size"] == 3 && st["members"].as_array().is_some_and(|m| m.len() == 3)
    };
    wait_for("3 ready", Duration::from_secs(300), ready)
        .await
        .unwrap();
    let to_ready = started.elapsed();
    let st = clusters.get("bench").await.unwrap().data["status"].clone();
    let victim = st["members"][1]["name"].as_str().unwrap().to_string();
    let failed = Instant::now();
    cluster_handle.cut_pod_network("default", &victim).unwrap();
    wait_for("replacement healthy", Duration::from_secs(300), || async {
        let st = clusters
            .get("bench")
            .await
            .map(|c| c.data["status"].clone())
            .unwrap_or_default();
        let names: Vec<&str> = st["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        st["readyMembers"] == 3 && names.len() == 3 && !names.contains(&victim.as_str())
    })
    .await
    .unwrap();
    let to_replaced = failed.elapsed();
    println!(
        "  apply -> 3 Ready members          {:>7.1} s",
        to_ready.as_secs_f64()
    );
    println!(
        "  member failure -> healthy replacement {:>5.1} s (memberFailureTimeout 20 s; target < 40 s)",
        to_replaced.as_secs_f64()
    );
}

async fn operator_memory(version: &str) {
    let env = Env::start_instant_with_crds().await.unwrap();
    let client = env.client.clone();
    let (mut op, _port) = env.run_operator("etcd-operator").await.unwrap();
    let pid = op.id().unwrap();
    let clusters = clusters_api(&client, "default");
    for i in 0..50 {
        clusters
            .create(
                &PostParams::default(),
                &cluster(&format!("c{i:02}"), version, "2m"),
            )
            .await
            .unwrap();
    }
    wait_for("50 clusters reconciled", Duration::from_secs(600), || async {
        clusters
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|c| c.data["status"]["observedGeneration"] == 1)
            .count()
            == 50
    })
    .await
    .unwrap();
    // Let a few requeue rounds pass.
    tokio::time::sleep(Duration::from_secs(15)).await;
    println!(
        "  operator RSS with 50 EtcdClusters  {:>7.1} MiB (peak {:.1} MiB; target < 20 MiB)",
        proc_status_kib(pid, "VmRSS:") as f64 / 1024.0,
        proc_status_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    op.kill().await.ok();
}

/// 50 running single-member clusters left alone: the operator's API requests per minute,
/// from kubesim's audit log (watches and its leader Lease aside: they do not grow with the
/// number of clusters).
async fn idle_api_load(version: &str) {
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    // kubesim only, as above: the figure comes from its audit log.
    let sim = env.kubesim().unwrap();
    let clusters = clusters_api(&env.client, "default");
    const N: usize = 50;
    for i in 0..N {
        let mut c = cluster(&format!("idle{i:02}"), version, "2m");
        c.data["spec"]["size"] = 1.into();
        c.data["spec"]["storage"] = serde_json::json!({"emptyDir": {}});
        clusters.create(&PostParams::default(), &c).await.unwrap();
    }
    let started = Instant::now();
    wait_for("50 stable clusters", Duration::from_secs(900), || async {
        clusters.list(&Default::default()).await.is_ok_and(|l| {
            l.items
                .iter()
                .filter(|c| {
                    let st = &c.data["status"];
                    st["readyMembers"] == 1
                        && st["conditions"].as_array().is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Progressing" && c["reason"] == "Stable")
                        })
                })
                .count()
                == N
        })
    })
    .await
    .unwrap();
    println!(
        "  {N} single-member clusters stable after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let user = "system:serviceaccount:steward-system:etcd-operator";
    // The operator reads the API for a short while after its own last writes.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let start = sim.audit_events().last().map_or(0, |e| e.seq);
    let window = Duration::from_secs(120);
    tokio::time::sleep(window).await;
    let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
    for e in sim.audit_events() {
        if e.seq > start && e.user == user && e.verb != "watch" && e.resource != "leases" {
            *by_kind.entry(format!("{} {}", e.verb, e.resource)).or_default() += 1;
        }
    }
    let total: usize = by_kind.values().sum();
    let per_minute = total as f64 * 60.0 / window.as_secs_f64();
    println!(
        "  idle API requests, {N} clusters   {per_minute:>7.1} /min ({:.3} per cluster per minute; target <= 1) {by_kind:?}",
        per_minute / N as f64
    );
}

#[tokio::main]
async fn main() {
    let version = bins::version("ETCD_CURRENT").unwrap();
    println!("etcd-operator benchmark (etcd {version})");
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if run("lifecycle") {
        lifecycle_times(&version).await;
    }
    if run("memory") {
        operator_memory(&version).await;
    }
    if run("idle") {
        idle_api_load(&version).await;
    }
}
