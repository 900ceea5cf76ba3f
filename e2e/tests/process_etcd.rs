//! kubesim process mode: a hand-written 3-member etcd StatefulSet forms a real etcd cluster
//! (peer DNS names through /etc/hosts, PVCs, probes); a key survives deleting a pod, and the
//! recreated pod comes back on the same data directory with the same member identity.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::bins::{self, Release};
use e2e::harness::wait_for;
use e2e::kubesim::{Cluster, NodeMode};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};

fn manifests(version: &str) -> (Service, StatefulSet) {
    let peers: Vec<String> = (0..3)
        .map(|i| format!("etcd-{i}=http://etcd-{i}.etcd.default.svc.cluster.local:2380"))
        .collect();
    let svc = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "etcd"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "etcd"},
                 "ports": [{"name": "client", "port": 2379}, {"name": "peer", "port": 2380}]},
    }))
    .unwrap();
    let sts = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "etcd"},
        "spec": {
            "serviceName": "etcd", "replicas": 3, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "etcd"}},
            "template": {"metadata": {"labels": {"app": "etcd"}}, "spec": {"containers": [{
                "name": "etcd",
                "image": format!("gcr.io/etcd-development/etcd:v{version}"),
                "command": ["/usr/local/bin/etcd"],
                "args": [
                    "--name=$(POD_NAME)", "--data-dir=/var/lib/etcd",
                    "--listen-client-urls=http://0.0.0.0:2379",
                    "--advertise-client-urls=http://$(POD_NAME).etcd.default.svc.cluster.local:2379",
                    "--listen-peer-urls=http://0.0.0.0:2380",
                    "--initial-advertise-peer-urls=http://$(POD_NAME).etcd.default.svc.cluster.local:2380",
                    format!("--initial-cluster={}", peers.join(",")),
                    "--initial-cluster-state=new", "--initial-cluster-token=kubesim-test",
                    "--listen-metrics-urls=http://0.0.0.0:2381",
                ],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "ports": [{"name": "client", "containerPort": 2379}, {"name": "peer", "containerPort": 2380}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": 2381}, "periodSeconds": 2},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}],
            }]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }))
    .unwrap();
    (svc, sts)
}

fn etcdctl(args: &[&str]) -> (bool, String) {
    e2e::local_etcd::etcdctl(Release::Current, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_statefulset_forms_a_cluster_and_keeps_data() {
    let version = bins::version("ETCD_CURRENT").unwrap();
    let c = Cluster::start_temp_with(NodeMode::Process).await.unwrap();
    let client = c.client().await.unwrap();
    let (svc, sts) = manifests(&version);
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &sts).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for("3 ready etcd members", Duration::from_secs(120), || async {
        sets.get("etcd")
            .await
            .unwrap()
            .status
            .and_then(|s| s.ready_replicas)
            == Some(3)
    })
    .await
    .unwrap();
    let ip = |p: Pod| p.status.unwrap().pod_ip.unwrap();
    let mut endpoints = Vec::new();
    for i in 0..3 {
        endpoints.push(format!(
            "http://{}:2379",
            ip(pods.get(&format!("etcd-{i}")).await.unwrap())
        ));
    }
    let all = endpoints.join(",");
    let (ok, out) = etcdctl(&["--endpoints", &all, "endpoint", "health"]);
    assert!(ok, "{out}");
    let (ok, members_before) = etcdctl(&["--endpoints", &all, "member", "list"]);
    assert!(ok && members_before.lines().count() == 3, "{members_before}");
    let (ok, out) = etcdctl(&["--endpoints", &all, "put", "greeting", "hello"]);
    assert!(ok, "{out}");

    // Delete one member's pod: it comes back with the same claim, data and member ID.
    let old_uid = pods.get("etcd-1").await.unwrap().metadata.uid.unwrap();
    pods.delete("etcd-1", &DeleteParams::default()).await.unwrap();
    wait_for("etcd-1 back and ready", Duration::from_secs(120), || async {
        pods.get_opt("etcd-1").await.unwrap().is_some_and(|p| {
            p.metadata.uid.as_deref() != Some(old_uid.as_str())
                && p.status
                    .and_then(|s| s.conditions)
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await
    .unwrap();
    let new_ep = format!("http://{}:2379", ip(pods.get("etcd-1").await.unwrap()));
    // A serializable read is answered from etcd-1's own data.
    let (ok, out) = etcdctl(&[
        "--endpoints",
        &new_ep,
        "get",
        "greeting",
        "--consistency=s",
        "--print-value-only",
    ]);
    assert!(ok && out.trim() == "hello", "{out}");
    let (ok, members_after) = etcdctl(&["--endpoints", &new_ep, "member", "list"]);
    assert!(ok, "{members_after}");
    let ids = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .filter_map(|l| l.split(',').next().map(String::from))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(&members_before),
        ids(&members_after),
        "same member identities"
    );
}
