//! The etcd-operator deployed from deploy/ into kubesim process mode runs real etcd
//! clusters: bootstrap to 3 Ready members, keys written, `kubectl scale` to 5 and back to 3
//! with membership matching at every step and the keys intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::bins::{self, Release};
use e2e::harness::{Env, deployment_ready, wait_for};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

fn etcdctl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(bins::etcdctl(Release::Current).unwrap())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn member_ips(env: &Env) -> Vec<String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), "default");
    pods.list(
        &kube::api::ListParams::default()
            .labels("app.kubernetes.io/instance=demo,app.kubernetes.io/component=member"),
    )
    .await
    .unwrap()
    .items
    .into_iter()
    .filter(|p| p.metadata.deletion_timestamp.is_none())
    .filter_map(|p| p.status.and_then(|s| s.pod_ip))
    .map(|ip| format!("http://{ip}:2379"))
    .collect()
}

async fn wait_size(env: &Env, clusters: &Api<DynamicObject>, size: i64) {
    wait_for(
        &format!("{size} ready members"),
        Duration::from_secs(240),
        || async {
            let Ok(c) = clusters.get("demo").await else {
                return false;
            };
            let st = &c.data["status"];
            let members = st["members"].as_array().cloned().unwrap_or_default();
            st["size"] == size
                && st["readyMembers"] == size
                && members.len() as i64 == size
                && members.iter().all(|m| m["isLearner"] == false)
                && st["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Available" && c["status"] == "True")
                })
        },
    )
    .await
    .unwrap();
    // etcd's own view agrees.
    let eps = member_ips(env).await.join(",");
    let (ok, out) = etcdctl(&["--endpoints", &eps, "member", "list"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count() as i64, size, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_write_and_scale() {
    let env = Env::start().await.unwrap();
    env.deploy_default().await.unwrap();
    deployment_ready(
        &env.client,
        "steward-system",
        "etcd-operator",
        2,
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&format!(
        "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata: {{name: demo, namespace: default}}\nspec:\n  size: 3\n  version: {version}\n  tls: {{mode: disabled}}\n  memberFailureTimeout: 2m\n  storage: {{volumeClaimTemplate: {{size: 1Gi}}}}\n"
    ))
    .await
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("etcd.steward.dev", "v1alpha1", "EtcdCluster"),
        "etcdclusters",
    );
    let clusters: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "default", &ar);
    wait_size(&env, &clusters, 3).await;

    // 1,000 keys through the cluster's members.
    let eps = member_ips(&env).await.join(",");
    for i in 0..1000 {
        let (ok, out) = etcdctl(&[
            "--endpoints",
            &eps,
            "put",
            &format!("key-{i:04}"),
            &format!("value-{i}"),
        ]);
        assert!(ok, "{out}");
    }

    for size in [5, 3] {
        env.kubectl(&["scale", "etcdcluster", "demo", &format!("--replicas={size}")])
            .await
            .unwrap();
        wait_size(&env, &clusters, size).await;
        let eps = member_ips(&env).await.join(",");
        let (ok, out) = etcdctl(&[
            "--endpoints",
            &eps,
            "get",
            "key-",
            "--prefix",
            "--count-only",
            "-w",
            "fields",
        ]);
        assert!(ok && out.contains("\"Count\" : 1000"), "{out}");
    }
}
