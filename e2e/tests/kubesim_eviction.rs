//! Evictions honour PodDisruptionBudgets (429 with upstream's message), so `kubectl drain`
//! against kubesim stops where a budget says, as on a real cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::bins;
use e2e::kubesim::Cluster;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_and_drain_respect_disruption_budgets() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let rs: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), "default");
    let set = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "busybox:1.36"}]}}}});
    rs.create(&pp, &serde_json::from_value(set).unwrap())
        .await
        .unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let pdb = json!({"metadata": {"name": "db"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}}});
    pdbs.create(&pp, &serde_json::from_value(pdb).unwrap())
        .await
        .unwrap();
    let ready = || async {
        let l = pods.list(&ListParams::default().labels("app=db")).await.unwrap();
        l.items
            .into_iter()
            .filter(|p| e2e::harness::pod_ready(p) && p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect::<Vec<_>>()
    };
    e2e::harness::wait_for("3 ready pods", std::time::Duration::from_secs(20), || async {
        ready().await.len() == 3
    })
    .await
    .unwrap();
    let names = ready().await;
    // With the node cordoned, replacements cannot start.
    let kubectl = |args: &[&str]| {
        std::process::Command::new(bins::kubectl().unwrap())
            .args(args)
            .env("KUBECONFIG", c.kubeconfig())
            .output()
            .unwrap()
    };
    assert!(kubectl(&["cordon", "kubesim-node"]).status.success());

    // One disruption is allowed, the second is refused while the first pod is gone.
    pods.evict(&names[0], &EvictParams::default()).await.unwrap();
    // (kubectl, not kube-rs: kube's client retries 429 answers for minutes.)
    let eviction = c.kubeconfig().with_file_name("eviction.json");
    std::fs::write(
        &eviction,
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": names[1], "namespace": "default"}}).to_string(),
    )
    .unwrap();
    let path = format!("/api/v1/namespaces/default/pods/{}/eviction", names[1]);
    let out = kubectl(&["create", "--raw", &path, "-f", eviction.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Error from server (TooManyRequests): Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );

    // kubectl drain: cordons, retries the refused evictions and gives up at its timeout.
    let out = kubectl(&["drain", "kubesim-node", "--timeout=5s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain must not finish: {stderr}");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    let left = ready().await;
    assert_eq!(left.len(), 2, "the budget keeps two pods running: {left:?}");

    // Uncordoned, the replacement starts and the next eviction is allowed again.
    assert!(kubectl(&["uncordon", "kubesim-node"]).status.success());
    e2e::harness::wait_for(
        "3 ready pods again",
        std::time::Duration::from_secs(20),
        || async { ready().await.len() == 3 },
    )
    .await
    .unwrap();
    pods.evict(&names[1], &EvictParams::default()).await.unwrap();
}
