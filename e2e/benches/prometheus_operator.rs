//! prometheus-operator figures. Time from applying a team stack (Prometheus, ServiceMonitor,
//! PrometheusRule) to Available, to its first successful scrape and to its first firing alert
//! (kubesim process mode, operators from deploy/, real Prometheus). The operator's RSS while it
//! manages 100 Prometheus objects and 1,000 ServiceMonitors (3 endpoints each) in 100
//! namespaces (kubesim instant mode): every namespace is one team, a Prometheus selecting its
//! own 10 monitors, plus one rule. Run with `make bench` (root; builds the release binaries).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::{Duration, Instant};

use e2e::harness::{Env, operator_ready, proc_status_kib, reconciles_total, wait_for};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};

const TEAMS: usize = 100;
const MONITORS_PER_TEAM: usize = 10;

fn ar(kind: &str, plural: &str) -> ApiResource {
    e2e::prometheus::resource(kind, plural)
}

fn obj(v: serde_json::Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

async fn create_team(client: &kube::Client, team: usize) {
    let ns = format!("team-{team:03}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let proms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ar("Prometheus", "prometheuses"));
    proms
        .create(
            &PostParams::default(),
            &obj(serde_json::json!({
                "apiVersion": "monitoring.steward.dev/v1alpha1", "kind": "Prometheus",
                "metadata": {"name": "main"},
                "spec": {
                    "replicas": 1,
                    "serviceMonitorSelector": {"matchLabels": {"team": ns}},
                    "ruleSelector": {},
                    "resources": {"limits": {"memory": "1Gi"}},
                    "storage": {"volumeClaimTemplate": {"size": "10Gi"}},
                },
            })),
        )
        .await
        .unwrap();
    let monitors: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ar("ServiceMonitor", "servicemonitors"));
    for i in 0..MONITORS_PER_TEAM {
        monitors
            .create(
                &PostParams::default(),
                &obj(serde_json::json!({
                    "apiVersion": "monitoring.steward.dev/v1alpha1", "kind": "ServiceMonitor",
                    "metadata": {"name": format!("app-{i:02}"), "labels": {"team": ns}},
                    "spec": {
                        "selector": {"matchLabels": {"app": format!("app-{i:02}")},
                                     "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
                        "endpoints": [
                            {"port": "metrics", "interval": "30s"},
                            {"port": "admin", "path": "/admin/metrics",
                             "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]},
                            {"port": "sidecar", "metricRelabelings": [{"action": "drop", "sourceLabels": ["__name__"], "regex": "go_.*"}]},
                        ],
                    },
                })),
            )
            .await
            .unwrap();
    }
    let rules: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ar("PrometheusRule", "prometheusrules"));
    rules
        .create(
            &PostParams::default(),
            &obj(serde_json::json!({
                "apiVersion": "monitoring.steward.dev/v1alpha1", "kind": "PrometheusRule",
                "metadata": {"name": "slo"},
                "spec": {"groups": [{"name": "slo", "rules": [
                    {"record": "job:up:sum", "expr": "sum by (job) (up)"},
                    {"alert": "TargetDown", "expr": "up == 0", "for": "5m", "labels": {"severity": "warning"}},
                ]}]},
            })),
        )
        .await
        .unwrap();
}

/// True when this Prometheus has reconciled its current generation with every monitor accepted.
fn settled(p: &DynamicObject) -> bool {
    let st = &p.data["status"];
    st["observedGeneration"] == 1
        && st["selectedResources"].as_array().is_some_and(|s| {
            s.iter().any(|r| {
                r["kind"] == "ServiceMonitor"
                    && r["accepted"] == MONITORS_PER_TEAM as u64
                    && r["rejected"] == 0
            })
        })
}

const TEAM_STACK: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {name: main, namespace: team-a}
spec:
  replicas: 1
  scrapeInterval: 5s
  evaluationInterval: 5s
  serviceMonitorSelector: {matchLabels: {team: a}}
  ruleSelector: {matchLabels: {team: a}}
  storage: {emptyDir: {}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: ServiceMonitor
metadata: {name: etcd-operator, namespace: team-a, labels: {team: a}}
spec:
  namespaceSelector: {matchNames: [steward-system]}
  selector: {matchLabels: {app.kubernetes.io/name: etcd-operator}}
  endpoints: [{port: metrics, interval: 5s}]
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: PrometheusRule
metadata: {name: always, namespace: team-a, labels: {team: a}}
spec:
  groups: [{name: always, rules: [{alert: AlwaysFiring, expr: vector(1)}]}]
"#;

async fn query(ip: &str, promql: &str) -> usize {
    e2e::prometheus::query(ip, promql).await.len()
}

async fn team_stack_times() {
    // The team's monitor looks at steward-system, which must let team-a discover there.
    let env = e2e::prometheus::operators_discoverable_by(&["team-a"])
        .await
        .unwrap();
    let started = Instant::now();
    env.apply(TEAM_STACK).await.unwrap();
    let proms: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), "team-a", &ar("Prometheus", "prometheuses"));
    wait_for("Available", Duration::from_secs(300), || async {
        proms.get("main").await.is_ok_and(|p| {
            p.data["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Available" && c["status"] == "True")
            })
        })
    })
    .await
    .unwrap();
    let available = started.elapsed();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "team-a");
    let ip = pods
        .get("prometheus-main-0")
        .await
        .unwrap()
        .status
        .and_then(|s| s.pod_ip)
        .unwrap();
    wait_for("first scrape", Duration::from_secs(300), || async {
        query(&ip, r#"up{service="etcd-operator-metrics"} == 1"#).await > 0
    })
    .await
    .unwrap();
    let scraped = started.elapsed();
    wait_for("alert firing", Duration::from_secs(300), || async {
        query(&ip, r#"ALERTS{alertname="AlwaysFiring",alertstate="firing"}"#).await > 0
    })
    .await
    .unwrap();
    let firing = started.elapsed();
    println!("prometheus-operator benchmark (team stack, kubesim process mode)");
    println!(
        "  apply -> Prometheus Available      {:>7.1} s (target < 60 s)",
        available.as_secs_f64()
    );
    println!(
        "  apply -> first up == 1             {:>7.1} s",
        scraped.as_secs_f64()
    );
    println!(
        "  apply -> alert firing              {:>7.1} s",
        firing.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    team_stack_times().await;
    println!(
        "prometheus-operator benchmark ({TEAMS} Prometheus, {} ServiceMonitors x 3 endpoints)",
        TEAMS * MONITORS_PER_TEAM
    );
    let env = Env::start_instant_with_crds().await.unwrap();
    let client = env.client.clone();
    let (mut op, port) = env.run_operator("prometheus-operator").await.unwrap();
    let pid = op.id().unwrap();
    // Idle: started, caches synced, nothing to manage yet.
    wait_for("the operator ready", Duration::from_secs(60), || {
        operator_ready(port)
    })
    .await
    .unwrap();
    let idle = proc_status_kib(pid, "VmRSS:");

    let started = Instant::now();
    for team in 0..TEAMS {
        create_team(&client, team).await;
    }
    let created = started.elapsed();
    let proms: Api<DynamicObject> = Api::all_with(client.clone(), &ar("Prometheus", "prometheuses"));
    wait_for("every Prometheus settled", Duration::from_secs(900), || async {
        proms
            .list(&ListParams::default())
            .await
            .map(|l| l.items.iter().filter(|p| settled(p)).count() == TEAMS)
            .unwrap_or(false)
    })
    .await
    .unwrap();
    let converged = started.elapsed();
    // Let the periodic requeues and watch traffic of a steady state pass.
    let before = reconciles_total(port).await.unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = reconciles_total(port).await.unwrap_or(0.0);
    let steady = proc_status_kib(pid, "VmRSS:");
    let peak = proc_status_kib(pid, "VmHWM:");
    println!(
        "  objects created in                 {:>7.1} s",
        created.as_secs_f64()
    );
    println!(
        "  all {TEAMS} Prometheus settled after   {:>7.1} s",
        converged.as_secs_f64()
    );
    println!(
        "  reconciles in 30 s of steady state {:>7.0} ({after:.0} since start)",
        after - before
    );
    println!(
        "  operator RSS idle                  {:>7.1} MiB",
        idle as f64 / 1024.0
    );
    println!(
        "  operator RSS steady                {:>7.1} MiB (peak {:.1} MiB; target < 40 MiB)",
        steady as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    // Idle API cost: every request the operator sends over more than one periodic requeue
    // (300 s), from kubesim's audit log (watches aside: they are per kind, not per object;
    // the test itself sends nothing meanwhile). Instant mode is always kubesim.
    let sim = env.kubesim().unwrap();
    let start = sim.audit_events().last().map_or(0, |e| e.seq);
    let window = Duration::from_secs(330);
    tokio::time::sleep(window).await;
    let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
    for e in sim.audit_events() {
        if e.seq > start && e.verb != "watch" {
            *by_kind.entry(format!("{} {}", e.verb, e.resource)).or_default() += 1;
        }
    }
    let total: usize = by_kind.values().sum();
    println!(
        "  idle API requests, {TEAMS} Prometheus  {:>7.1} /min over {} s (target 0) {by_kind:?}",
        total as f64 * 60.0 / window.as_secs_f64(),
        window.as_secs()
    );
    op.kill().await.ok();
}
