//! The prometheus-operator's watches: nothing is written before every watch cache is filled
//! (a new leader must not render a configuration from half-listed monitors), one set of
//! watches whatever `--namespace` says, and `spec.storage` changes the StatefulSet cannot take
//! are refused at admission. kubesim instant mode, the operator binary run directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::bins;
use e2e::harness::{Env, settle, wait_for};
use e2e::prometheus::api;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;

fn stack(ns: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {{name: main, namespace: {ns}}}
spec:
  serviceMonitorSelector: {{}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: ServiceMonitor
metadata: {{name: app, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  endpoints: [{{port: metrics}}]
"#
    )
}

async fn readyz(port: u16) -> String {
    match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// `apiserver_request_total` for `verb` on `resource`, summed over codes and scopes.
fn requests(env: &Env, verb: &str, resource: &str) -> u64 {
    // These tests start kubesim themselves (Env::start_instant_with_crds).
    env.kubesim()
        .unwrap()
        .server
        .request_metrics
        .render()
        .lines()
        .filter(|l| {
            l.contains(&format!("resource=\"{resource}\"")) && l.contains(&format!("verb=\"{verb}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn reconciled(p: &DynamicObject) -> bool {
    p.data["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Reconciled" && c["status"] == "True")
    })
}

/// The operator's ClusterRole from deploy/, without list and watch of ServiceMonitors, bound
/// to a ServiceAccount; the discovery ClusterRole as shipped.
fn operator_rbac_without_monitor_list() -> String {
    let text =
        std::fs::read_to_string(bins::repo_root().join("deploy/prometheus-operator/rbac.yaml")).unwrap();
    let mut out = String::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] != "ClusterRole" {
            continue;
        }
        if v["metadata"]["name"] == "steward-prometheus-operator" {
            v["metadata"]["name"] = "test-operator".into();
            for rule in v["rules"].as_array_mut().unwrap() {
                let verbs = rule["verbs"].as_array().unwrap();
                if verbs.iter().any(|v| v == "list")
                    && let Some(rs) = rule["resources"].as_array_mut()
                {
                    rs.retain(|r| r != "servicemonitors");
                }
            }
        }
        out.push_str(&serde_yaml_ng::to_string(&v).unwrap());
        out.push_str("---\n");
    }
    out.push_str(&operator_account("test-operator"));
    out
}

/// ServiceAccount `ops/operator`, for the operator to run as, bound to ClusterRole `role`.
fn operator_account(role: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: ops}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: operator, namespace: ops}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: test-operator}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects: [{{kind: ServiceAccount, name: operator, namespace: ops}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_written_before_every_watch_cache_is_filled() {
    let env = Env::start_instant_with_crds().await.unwrap();
    env.apply(&operator_rbac_without_monitor_list()).await.unwrap();
    env.apply(&stack("team")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = env
        .service_account_kubeconfig("ops", "operator", dir.path())
        .unwrap();

    // Every version of the generated configuration, from before the operator starts.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "team");
    let record = seen.clone();
    let recorder = tokio::spawn(async move {
        let cfg = watcher::Config::default().fields("metadata.name=prometheus-main");
        let mut events = watcher(secrets, cfg).boxed();
        while let Some(ev) = events.next().await {
            if let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = ev {
                let raw = s
                    .data
                    .and_then(|d| d.get("prometheus.yaml.gz").cloned())
                    .map(|b| b.0)
                    .unwrap_or_default();
                let text = prometheus_operator::reloader::decode_config(std::path::Path::new("c.gz"), &raw)
                    .unwrap_or_else(|e| format!("undecodable: {e}"));
                record.lock().unwrap().push(text);
            }
        }
    });

    // The operator may list Prometheus objects but not (yet) ServiceMonitors, as a new
    // leader whose monitor list is slow.
    let (mut op, port) = env
        .run_operator_as("prometheus-operator", &kubeconfig, &[])
        .await
        .unwrap();
    wait_for(
        "a configuration written, or the operator waiting for the monitors",
        Duration::from_secs(60),
        || async {
            !seen.lock().unwrap().is_empty()
                || (readyz(port).await.trim() == "not ready: caches not synced: prometheus/servicemonitors"
                    && requests(&env, "LIST", "servicemonitors") >= 2)
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: readyz {:?}, monitor lists {}",
            futures::executor::block_on(readyz(port)),
            requests(&env, "LIST", "servicemonitors")
        )
    });
    env.apply(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: test-monitor-reader}
rules: [{apiGroups: [monitoring.steward.dev], resources: [servicemonitors], verbs: [list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: test-monitor-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: test-monitor-reader}
subjects: [{kind: ServiceAccount, name: operator, namespace: ops}]
"#,
    )
    .await
    .unwrap();
    let job = "serviceMonitor/team/app/0";
    wait_for(
        "the monitor's job in the configuration",
        Duration::from_secs(90),
        || async { seen.lock().unwrap().iter().any(|c| c.contains(job)) },
    )
    .await
    .unwrap();
    let versions = seen.lock().unwrap().clone();
    for (i, c) in versions.iter().enumerate() {
        assert!(
            c.contains(job),
            "version {i} of {} lacks {job}:\n{c}",
            versions.len()
        );
    }
    let ready = readyz(port).await;
    assert!(ready.trim().ends_with(" caches synced"), "{ready}");
    recorder.abort();
    op.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_set_of_watches_whatever_namespace_says() {
    let env = Env::start_instant_with_crds().await.unwrap();
    for ns in ["a", "b", "c"] {
        env.apply(&stack(ns)).await.unwrap();
    }
    let (mut op, _) = env
        .run_operator_as(
            "prometheus-operator",
            &env.kubeconfig,
            &["--namespace=a", "--namespace=b"],
        )
        .await
        .unwrap();
    for ns in ["a", "b"] {
        let proms = api(&env.client, ns, "Prometheus", "prometheuses");
        wait_for(
            &format!("{ns}/main reconciled"),
            Duration::from_secs(60),
            || async { proms.get("main").await.is_ok_and(|p| reconciled(&p)) },
        )
        .await
        .unwrap();
    }
    // One watch per kind, not one per namespace. Secrets and ConfigMaps have two: every one
    // of them by metadata (they may feed a configuration) and our own children in full. The
    // Alertmanager controller in the same process watches Alertmanagers, their StatefulSets
    // and (by metadata) the Secrets their configurations read: one more of each.
    for (resource, watches) in [
        ("servicemonitors", 1),
        ("podmonitors", 1),
        ("prometheusrules", 1),
        ("scrapeconfigs", 1),
        ("namespaces", 1),
        ("secrets", 3),
        ("configmaps", 2),
        ("rolebindings", 1),
        ("prometheuses", 1),
        ("alertmanagers", 1),
        ("statefulsets", 2),
        ("services", 1),
        ("serviceaccounts", 1),
    ] {
        assert_eq!(
            requests(&env, "WATCH", resource),
            watches,
            "watches of {resource}"
        );
    }
    // Prometheus objects outside --namespace are never reconciled.
    let c = api(&env.client, "c", "Prometheus", "prometheuses")
        .get("main")
        .await
        .unwrap();
    assert!(
        c.data["status"].is_null(),
        "c is not watched: {:?}",
        c.data["status"]
    );
    op.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_changes_the_statefulset_cannot_take_are_refused() {
    let env = Env::start_instant_with_crds().await.unwrap();
    env.apply(
        r#"apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {name: pvc, namespace: team}
spec:
  storage: {volumeClaimTemplate: {size: 1Gi}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {name: ephemeral, namespace: team}
spec:
  storage: {emptyDir: {}}
"#,
    )
    .await
    .unwrap();
    let patch = |name: &'static str, body: &'static str| {
        let env = &env;
        async move {
            env.kubectl(&[
                "patch",
                "prometheus",
                name,
                "-n",
                "team",
                "--type=merge",
                "-p",
                body,
            ])
            .await
        }
    };
    for (name, body) in [
        (
            "pvc",
            r#"{"spec":{"storage":{"volumeClaimTemplate":{"size":"2Gi"}}}}"#,
        ),
        (
            "pvc",
            r#"{"spec":{"storage":{"volumeClaimTemplate":{"storageClassName":"fast"}}}}"#,
        ),
        ("pvc", r#"{"spec":{"storage":null}}"#),
        (
            "ephemeral",
            r#"{"spec":{"storage":{"emptyDir":null,"volumeClaimTemplate":{"size":"1Gi"}}}}"#,
        ),
    ] {
        let err = patch(name, body).await.unwrap_err().to_string();
        assert!(
            err.contains("storage.volumeClaimTemplate cannot be added, removed or changed after creation"),
            "{name} {body}: {err}"
        );
    }
    // Everything else, emptyDir settings included, still changes.
    patch("pvc", r#"{"spec":{"retention":"2d"}}"#).await.unwrap();
    patch(
        "ephemeral",
        r#"{"spec":{"storage":{"emptyDir":{"sizeLimit":"1Gi"}}}}"#,
    )
    .await
    .unwrap();
}

/// A reconcile that finds nothing changed costs no API request: the operator reads its watch
/// caches and recognises that its inputs are as at its last reconcile. A real change (a
/// monitor's interval) is still rendered. The operator runs as its own ServiceAccount, so
/// kubesim's audit log tells its requests from the test's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_with_nothing_changed_costs_no_request() {
    let env = Env::start_instant_with_crds().await.unwrap();
    env.apply(&operator_account("cluster-admin")).await.unwrap();
    env.apply(&stack("idle")).await.unwrap();
    // Instant mode is always kubesim (see Env::start_instant_with_crds).
    let cluster = env.kubesim().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = env
        .service_account_kubeconfig("ops", "operator", dir.path())
        .unwrap();
    let (mut op, port) = env
        .run_operator_as("prometheus-operator", &kubeconfig, &[])
        .await
        .unwrap();
    let proms = api(&env.client, "idle", "Prometheus", "prometheuses");
    wait_for("the Prometheus reconciled", Duration::from_secs(60), || async {
        proms.get("main").await.is_ok_and(|p| reconciled(&p))
    })
    .await
    .unwrap();

    let user = "system:serviceaccount:ops:operator";
    let last_seq = || cluster.audit_events().last().map_or(0, |e| e.seq);
    let operator_requests = |after: u64| {
        cluster
            .audit_events()
            .into_iter()
            .filter(|e| e.seq > after && e.user == user && e.verb != "watch")
            .map(|e| format!("{} {}/{}/{}", e.verb, e.resource, e.namespace, e.name))
            .collect::<Vec<_>>()
    };
    // Settled: its own last writes have come back through its watches and been looked at
    // (12 s without a request: the operator reads the API for 10 s after a write).
    settle(
        "the operator's requests",
        Duration::from_secs(12),
        Duration::from_secs(120),
        || async { operator_requests(0).len() },
    )
    .await
    .unwrap();

    // A change that is no input (an annotation) wakes a reconcile, which sends nothing.
    let before = e2e::harness::reconciles_total(port).await.unwrap();
    let start = last_seq();
    env.kubectl(&["annotate", "-n", "idle", "prometheus", "main", "touched=yes"])
        .await
        .unwrap();
    wait_for(
        "the reconcile the annotation woke",
        Duration::from_secs(30),
        || async {
            e2e::harness::reconciles_total(port)
                .await
                .is_some_and(|n| n > before)
        },
    )
    .await
    .unwrap();
    let sent = operator_requests(start);
    assert!(sent.is_empty(), "a reconcile with nothing changed sent {sent:?}");

    // A real change is rendered: the configuration Secret is written again.
    let start = last_seq();
    let smons = api(&env.client, "idle", "ServiceMonitor", "servicemonitors");
    smons
        .patch(
            "app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"spec": {"endpoints": [{"port": "metrics", "interval": "17s"}]}}),
            ),
        )
        .await
        .unwrap();
    wait_for("the configuration rewritten", Duration::from_secs(30), || async {
        operator_requests(start)
            .iter()
            .any(|r| r == "patch secrets/idle/prometheus-main")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", operator_requests(start)));
    op.kill().await.unwrap();
}
