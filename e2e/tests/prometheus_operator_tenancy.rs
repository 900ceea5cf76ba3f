//! A tenant cannot escalate through the prometheus-operator. The tenant may only write
//! Prometheus objects and monitors in its namespace; its Prometheus runs as the tenant's own
//! ServiceAccount (the worst case: whatever discovery grants, the tenant holds). Monitors that
//! look into another namespace, into every namespace or into a missing one are rejected
//! alone and grant nothing; once the other namespace opts in with its label, the Prometheus
//! discovers and scrapes a target there, and removing the label takes the read away again.
//! kubesim process mode with RBAC enforced for ServiceAccount tokens, the operator deployed
//! from deploy/.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::harness::{Env, wait_for};
use e2e::prometheus::query;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams, PostParams};

const OPT_IN: &str = "discovery-from.monitoring.steward.dev/tenant-a";

const ADMIN_SETUP: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: tenant-a, labels: {pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: tenant, namespace: tenant-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: monitoring-writer, namespace: tenant-a}
rules:
  - apiGroups: [monitoring.steward.dev]
    resources: [prometheuses, servicemonitors, podmonitors]
    verbs: [get, list, watch, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: monitoring-writer, namespace: tenant-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: monitoring-writer}
subjects: [{kind: ServiceAccount, name: tenant, namespace: tenant-a}]
"#;

fn api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    e2e::prometheus::api(client, "tenant-a", kind, plural)
}

fn monitor(name: &str, namespace_selector: serde_json::Value) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "monitoring.steward.dev/v1alpha1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": "tenant-a", "labels": {"team": "a"}},
        "spec": {
            "namespaceSelector": namespace_selector,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "prometheus-operator"}},
            "endpoints": [{"port": "metrics", "interval": "2s"}],
        },
    }))
    .unwrap()
}

/// For each discovery read in `namespace` (`None`: cluster-wide), the HTTP status the tenant
/// gets: 200 or 403.
async fn reads(client: &kube::Client, namespace: Option<&str>) -> Vec<(&'static str, u16)> {
    fn code<T>(r: Result<T, kube::Error>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(kube::Error::Api(s)) => s.code,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let lp = ListParams::default();
    macro_rules! list {
        ($k:ty) => {{
            let api: Api<$k> = match namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            code(api.list_metadata(&lp).await)
        }};
    }
    vec![
        ("pods", list!(Pod)),
        ("services", list!(Service)),
        ("endpoints", list!(Endpoints)),
        ("endpointslices", list!(EndpointSlice)),
    ]
}

fn all(code: u16, r: &[(&'static str, u16)]) -> bool {
    r.iter().all(|(_, c)| *c == code)
}

async fn accepted(monitors: &Api<DynamicObject>, name: &str) -> Option<(String, String, String)> {
    e2e::prometheus::accepted(&monitors.get(name).await.ok()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_reads_another_namespace_only_where_it_opted_in() {
    let env = Env::with_operators(&["prometheus-operator"]).await.unwrap();
    env.apply(ADMIN_SETUP).await.unwrap();
    let token = env
        .kubectl(&["create", "token", "tenant", "-n", "tenant-a"])
        .await
        .unwrap();
    let tenant = env.client_with_token(token.trim()).await.unwrap();

    // Before anything: the tenant reads nothing anywhere.
    for ns in [Some("tenant-a"), Some("steward-system"), None] {
        assert!(all(403, &reads(&tenant, ns).await), "{ns:?}");
    }

    // Everything the tenant writes, with its own token.
    let pp = PostParams::default();
    let prom: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "monitoring.steward.dev/v1alpha1",
        "kind": "Prometheus",
        "metadata": {"name": "main", "namespace": "tenant-a"},
        "spec": {
            "replicas": 1,
            "scrapeInterval": "2s",
            "serviceAccountName": "tenant",
            "serviceMonitorSelector": {"matchLabels": {"team": "a"}},
            "storage": {"emptyDir": {}},
        },
    }))
    .unwrap();
    api(&tenant, "Prometheus", "prometheuses")
        .create(&pp, &prom)
        .await
        .unwrap();
    let monitors = api(&tenant, "ServiceMonitor", "servicemonitors");
    for (name, sel) in [
        (
            "other-namespace",
            serde_json::json!({"matchNames": ["steward-system"]}),
        ),
        (
            "kube-system",
            serde_json::json!({"matchNames": ["kube-system", "tenant-a"]}),
        ),
        ("everywhere", serde_json::json!({"any": true})),
        (
            "missing",
            serde_json::json!({"matchNames": ["no-such-namespace"]}),
        ),
        ("own", serde_json::json!({})),
    ] {
        monitors.create(&pp, &monitor(name, sel)).await.unwrap();
    }

    // Each reaching monitor is rejected alone, saying what to ask for; the rest works.
    let expect = [
        ("other-namespace", "DiscoveryNotAllowed", format!("{OPT_IN}=true")),
        (
            "kube-system",
            "DiscoveryNotAllowed",
            "namespace kube-system does not allow".to_string(),
        ),
        (
            "everywhere",
            "DiscoveryNotAllowed",
            "--allow-cluster-wide-discovery".to_string(),
        ),
        (
            "missing",
            "NamespaceNotFound",
            "no-such-namespace does not exist".to_string(),
        ),
    ];
    for (name, reason, says) in &expect {
        let r = wait_for(&format!("{name} rejected"), Duration::from_secs(120), || async {
            accepted(&monitors, name)
                .await
                .is_some_and(|(s, r, m)| s == "False" && r == *reason && m.contains(says.as_str()))
        })
        .await;
        if let Err(e) = r {
            panic!(
                "{e}: {:?}\n{}",
                accepted(&monitors, name).await,
                env.diagnostics("tenant-a", "prometheuses,servicemonitors,rolebindings")
                    .await
            );
        }
    }
    wait_for("own monitor accepted", Duration::from_secs(60), || async {
        accepted(&monitors, "own").await.is_some_and(|a| a.0 == "True")
    })
    .await
    .unwrap();

    // The operator gave the tenant's ServiceAccount discovery in its own namespace only.
    wait_for("discovery in tenant-a", Duration::from_secs(30), || async {
        all(200, &reads(&tenant, Some("tenant-a")).await)
    })
    .await
    .unwrap();
    for ns in [Some("steward-system"), Some("kube-system"), Some("default"), None] {
        let r = reads(&tenant, ns).await;
        assert!(all(403, &r), "the tenant reads in {ns:?}: {r:?}");
    }

    // steward-system opts in: the Prometheus discovers and scrapes the operator there.
    env.kubectl(&["label", "namespace", "steward-system", &format!("{OPT_IN}=true")])
        .await
        .unwrap();
    wait_for("other-namespace accepted", Duration::from_secs(60), || async {
        accepted(&monitors, "other-namespace")
            .await
            .is_some_and(|a| a.0 == "True")
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "tenant-a");
    let ready_ip = || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/instance=main"))
            .await
            .ok()
            .and_then(|l| l.items.into_iter().find(e2e::harness::pod_ready))
            .and_then(|p| p.status?.pod_ip)
    };
    wait_for("the Prometheus pod ready", Duration::from_secs(120), || async {
        ready_ip().await.is_some()
    })
    .await
    .unwrap();
    let ip = ready_ip().await.unwrap();
    let scraped = wait_for(
        "targets in steward-system up",
        Duration::from_secs(90),
        || async {
            query(
                &ip,
                "up{namespace=\"steward-system\",service=\"prometheus-operator-metrics\"} == 1",
            )
            .await
            .len()
                == 2
        },
    )
    .await;
    env.or_diagnose(scraped, "tenant-a", "prometheuses,servicemonitors")
        .await;
    assert!(all(200, &reads(&tenant, Some("steward-system")).await));
    for ns in [Some("kube-system"), Some("default"), None] {
        let r = reads(&tenant, ns).await;
        assert!(all(403, &r), "the tenant reads in {ns:?}: {r:?}");
    }
    assert_eq!(
        accepted(&monitors, "everywhere").await.unwrap().1,
        "DiscoveryNotAllowed"
    );

    // The label goes: so does the read, and the monitor is rejected again.
    env.kubectl(&["label", "namespace", "steward-system", &format!("{OPT_IN}-")])
        .await
        .unwrap();
    wait_for(
        "read in steward-system revoked",
        Duration::from_secs(60),
        || async { all(403, &reads(&tenant, Some("steward-system")).await) },
    )
    .await
    .unwrap();
    wait_for(
        "other-namespace rejected again",
        Duration::from_secs(60),
        || async {
            accepted(&monitors, "other-namespace")
                .await
                .is_some_and(|a| a.1 == "DiscoveryNotAllowed")
        },
    )
    .await
    .unwrap();

    // Deleting the Prometheus removes its bindings (the finalizer), here and everywhere.
    api(&tenant, "Prometheus", "prometheuses")
        .delete("main", &Default::default())
        .await
        .unwrap();
    wait_for("bindings gone", Duration::from_secs(60), || async {
        env.kubectl(&[
            "get",
            "rolebindings",
            "-A",
            "-l",
            "app.kubernetes.io/component=discovery",
            "-o",
            "name",
        ])
        .await
        .is_ok_and(|out| out.trim().is_empty())
    })
    .await
    .unwrap();
}
