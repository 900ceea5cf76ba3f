//! Drop-in for charts written for upstream prometheus-operator: the operator, started before
//! any `monitoring.coreos.com` CRD exists, picks up the compat CRDs (`crdgen --compat`,
//! deploy/crds-compat) once they are installed, and a chart-style `monitoring.coreos.com/v1`
//! ServiceMonitor selected by a team Prometheus is scraped, under its group-marked job name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::bins;
use e2e::harness::{Env, pod_ready, wait_for};
use e2e::prometheus::{self, condition_true, open_to_discovery};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

const STACK: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: "a", pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {name: main, namespace: team-a}
spec:
  replicas: 1
  scrapeInterval: 2s
  evaluationInterval: 2s
  serviceMonitorSelector: {matchLabels: {team: "a"}}
  storage: {emptyDir: {}}
"#;

/// What a Helm chart with `serviceMonitor.enabled: true` ships, unchanged.
const CHART_MONITOR: &str = r#"apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: prometheus-operator
  namespace: team-a
  labels: {team: "a", app.kubernetes.io/managed-by: Helm}
spec:
  namespaceSelector:
    matchNames: [steward-system]
  selector:
    matchLabels:
      app.kubernetes.io/name: prometheus-operator
      app.kubernetes.io/component: metrics
  endpoints:
    - port: metrics
      interval: 2s
"#;

async fn prometheus_ip(env: &Env) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "team-a");
    let p = pods
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/name=prometheus,app.kubernetes.io/instance=main"),
        )
        .await
        .ok()?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))?;
    p.status?.pod_ip
}

/// The job names in the configuration Prometheus runs now.
async fn configured_jobs(ip: &str) -> Option<Vec<String>> {
    let url = format!("http://{ip}:9090/api/v1/status/config");
    let cfg: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
    let yaml = cfg["data"]["yaml"].as_str()?;
    Some(
        yaml.lines()
            .filter_map(|l| l.trim().strip_prefix("- job_name: "))
            .map(|j| j.trim_matches('"').to_string())
            .collect(),
    )
}

/// Warning Events on the upstream ServiceMonitor `name` in team-a: their reasons.
async fn warnings_on(env: &Env, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), "team-a");
    let Ok(list) = events.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.name.as_deref() == Some(name)
                    && r.api_version.as_deref() == Some("monitoring.coreos.com/v1")
            })
        })
        .filter_map(|e| e.reason)
        .collect()
}

async fn active_jobs(ip: &str) -> Vec<String> {
    let Ok(resp) = reqwest::get(format!("http://{ip}:9090/api/v1/targets")).await else {
        return Vec::new();
    };
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let mut jobs: Vec<String> = body["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["health"] == "up")
        .filter_map(|t| t["scrapePool"].as_str().map(String::from))
        .collect();
    jobs.dedup();
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_service_monitor_in_the_upstream_group_is_scraped() {
    // deploy/default has no monitoring.coreos.com CRDs: the operator starts without them.
    let env = Env::with_operators(&["prometheus-operator"]).await.unwrap();
    open_to_discovery(&env, "steward-system", &["team-a"])
        .await
        .unwrap();
    env.apply(STACK).await.unwrap();
    let proms = prometheus::api(&env.client, "team-a", "Prometheus", "prometheuses");
    let available = || async {
        proms
            .get("main")
            .await
            .is_ok_and(|p| condition_true(&p, "Available"))
    };
    if let Err(e) = wait_for("Prometheus Available", Duration::from_secs(120), available).await {
        let diag = env.diagnostics("team-a", "prometheuses,statefulsets").await;
        panic!("{e}\n{diag}");
    }

    // The compat CRDs install as kubectl applies them, then the chart's object as it is.
    let started = Instant::now();
    let crds = bins::repo_root().join("deploy/crds-compat");
    env.kubectl(&["apply", "--server-side", "-k", crds.to_str().unwrap()])
        .await
        .unwrap();
    for name in [
        "servicemonitors.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "scrapeconfigs.monitoring.coreos.com",
    ] {
        env.kubectl(&["get", "crd", name]).await.unwrap();
    }
    let applied = wait_for(
        "the chart's ServiceMonitor applies",
        Duration::from_secs(30),
        || async { env.apply(CHART_MONITOR).await.is_ok() },
    )
    .await;
    applied.unwrap();

    let ip = prometheus_ip(&env).await.unwrap();
    let job = "serviceMonitor.monitoring.coreos.com/team-a/prometheus-operator/0";
    let scraped = wait_for(
        "the upstream-group monitor's targets up",
        Duration::from_secs(90),
        || async { active_jobs(&ip).await.iter().any(|j| j == job) },
    )
    .await;
    if let Err(e) = scraped {
        panic!(
            "{e}\njobs: {:?}\n{}",
            active_jobs(&ip).await,
            env.diagnostics("team-a", "prometheuses,servicemonitors.monitoring.coreos.com")
                .await
        );
    }
    eprintln!(
        "upstream ServiceMonitor scraped {:?} after the CRDs were installed",
        started.elapsed()
    );

    // The upstream object's status is not ours to write.
    let smon_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    );
    let smons: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "team-a", &smon_ar);
    let smon = smons.get("prometheus-operator").await.unwrap();
    assert!(smon.data["status"].is_null(), "{:?}", smon.data["status"]);

    // A broken upstream object is reported with a Warning Event on it (not a status).
    env.apply(
        r#"apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: broken, namespace: team-a, labels: {team: "a"}}
spec:
  selector: {matchLabels: {app: nothing}}
  endpoints:
    - port: metrics
      relabelings:
        - {sourceLabels: [__address__], regex: "(", targetLabel: x}
"#,
    )
    .await
    .unwrap();
    wait_for(
        "a Warning Event on the broken monitor",
        Duration::from_secs(60),
        || async {
            warnings_on(&env, "broken")
                .await
                .iter()
                .any(|r| r == "InvalidRelabeling")
        },
    )
    .await
    .unwrap();
    assert!(smons.get("broken").await.unwrap().data["status"].is_null());

    // Without the CRD the upstream monitors leave the configuration.
    let before = configured_jobs(&ip).await.unwrap_or_default();
    assert!(before.iter().any(|j| j == job), "{before:?}");
    env.kubectl(&["delete", "crd", "servicemonitors.monitoring.coreos.com"])
        .await
        .unwrap();
    wait_for("the upstream job gone", Duration::from_secs(60), || async {
        configured_jobs(&ip)
            .await
            .is_some_and(|jobs| !jobs.iter().any(|j| j == job))
    })
    .await
    .unwrap();
}
