//! Alertmanager figures (issue #15) on kubesim in process mode, real Alertmanager and
//! Prometheus, the prometheus-operator from deploy/: the time from applying a 3-replica
//! Alertmanager to its cluster being formed (every ready pod's `/api/v2/status` lists the
//! three), and from an alert firing in Prometheus (the alert's `startsAt`) to a team's webhook
//! on the host receiving it through an AlertmanagerConfig route (`groupWait: 1s`; both
//! clocks are this machine's), the rule loaded once both Prometheus replicas have discovered
//! the three Alertmanager pods. Run with `make bench` (release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::{Duration, Instant, SystemTime};

use e2e::alertmanager::cluster_formed;
use e2e::harness::{Env, wait_for, wait_until};
use e2e::prometheus::discovered_alertmanagers;
use e2e::webhook::WebhookServer;

const NS: &str = "am-bench";
/// Alerts (one group each), so the delivery figure is a spread, not one sample.
const ALERTS: usize = 5;

fn alertmanager() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}, labels: {{pod-security.kubernetes.io/enforce: restricted}}}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Alertmanager
metadata: {{name: main, namespace: {NS}}}
spec:
  replicas: 3
  alertmanagerConfigSelector: {{}}
"#
    )
}

fn rules() -> String {
    let rules: String = (0..ALERTS)
        .map(|i| format!("        - {{alert: Bench{i}, expr: vector(1)}}\n"))
        .collect();
    format!(
        r#"apiVersion: monitoring.steward.dev/v1alpha1
kind: PrometheusRule
metadata: {{name: bench, namespace: {NS}}}
spec:
  groups:
    - name: bench
      rules:
{rules}"#
    )
}

fn routing(hook: &WebhookServer) -> String {
    format!(
        r#"apiVersion: monitoring.steward.dev/v1alpha1
kind: AlertmanagerConfig
metadata: {{name: routing, namespace: {NS}}}
spec:
  route: {{receiver: hook, groupBy: [alertname], groupWait: 1s, groupInterval: 5s, repeatInterval: 1h}}
  receivers:
    - name: hook
      webhookConfigs: [{{url: "{url}"}}]
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {{name: main, namespace: {NS}}}
spec:
  replicas: 2
  evaluationInterval: 1s
  ruleSelector: {{}}
  enforcedNamespaceLabel: namespace
  alerting:
    alertmanagers: [{{alertmanager: main}}]
  storage: {{emptyDir: {{}}}}
"#,
        url = hook.url("bench")
    )
}

/// `startsAt` of the first alert of a webhook payload.
fn starts_at(body: &serde_json::Value) -> SystemTime {
    let s = body["alerts"][0]["startsAt"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = Env::with_operators(&["prometheus-operator"]).await.unwrap();
    let host = env.kubesim().unwrap().host_address().unwrap();
    let hook = WebhookServer::start(&host).await.unwrap();

    let started = Instant::now();
    env.apply(&alertmanager()).await.unwrap();
    wait_until("3 replicas, each seeing the 3", Duration::from_secs(300), || {
        cluster_formed(&env.client, NS, "main", 3)
    })
    .await
    .unwrap();
    let formed = started.elapsed();

    // The rules come once both Prometheus replicas have discovered the three Alertmanagers,
    // or the figure would be Prometheus' resend delay, not delivery.
    env.apply(&routing(&hook)).await.unwrap();
    let started = Instant::now();
    wait_for(
        "both Prometheus replicas discover the 3 Alertmanagers",
        Duration::from_secs(300),
        || discovered_alertmanagers(&env.client, NS, "main", 2, 3),
    )
    .await
    .unwrap();
    let discovered = started.elapsed();
    env.apply(&rules()).await.unwrap();
    wait_for(
        &format!("{ALERTS} alerts at the webhook"),
        Duration::from_secs(300),
        || async { hook.all().len() >= ALERTS },
    )
    .await
    .unwrap();
    let mut delays: Vec<f64> = hook
        .all()
        .iter()
        .take(ALERTS)
        .map(|n| {
            n.at.duration_since(starts_at(&n.body))
                .unwrap_or_default()
                .as_secs_f64()
        })
        .collect();
    delays.sort_by(f64::total_cmp);

    println!("alertmanager benchmark (kubesim process mode, Alertmanager 0.28.1)");
    println!(
        "  apply -> 3-replica cluster formed            {:>6.1} s",
        formed.as_secs_f64()
    );
    println!(
        "  apply Prometheus -> 2 replicas see 3 pods    {:>6.1} s",
        discovered.as_secs_f64()
    );
    println!(
        "  alert fired -> webhook received              {:>6.2} s median, {:.2} s min, {:.2} s max ({ALERTS} alerts, groupWait 1s)",
        delays[delays.len() / 2],
        delays[0],
        delays[delays.len() - 1]
    );
}
