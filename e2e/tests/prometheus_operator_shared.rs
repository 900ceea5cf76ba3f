//! Two Prometheus objects that judge the same ServiceMonitor differently (its scrape timeout
//! fits one's scrape interval, not the other's) settle on one verdict instead of overwriting
//! each other's condition forever. kubesim instant mode, the operator binary run directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::harness::{Env, reconciles_total, settle, wait_for};
use kube::api::{Api, DynamicObject};

fn api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    e2e::prometheus::api(client, "team", kind, plural)
}

const STACK: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {name: fast, namespace: team}
spec:
  scrapeInterval: 10s
  serviceMonitorSelector: {}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {name: slow, namespace: team}
spec:
  scrapeInterval: 1m
  serviceMonitorSelector: {}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: ServiceMonitor
metadata: {name: app, namespace: team}
spec:
  selector: {matchLabels: {app: app}}
  endpoints:
    - port: metrics
      scrapeTimeout: 30s
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_objects_that_disagree_settle_on_one_verdict() {
    let env = Env::start_instant_with_crds().await.unwrap();
    let client = env.client.clone();
    let (mut op, port) = env.run_operator("prometheus-operator").await.unwrap();
    env.apply(STACK).await.unwrap();

    // fast (10 s interval) rejects the 30 s timeout, slow (1 m) accepts it: the rejection
    // stands, reported by fast.
    let monitors = api(&client, "ServiceMonitor", "servicemonitors");
    let verdict = || async {
        let st = monitors.get("app").await.ok()?.data["status"].clone();
        let c = st["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Accepted")?
            .clone();
        Some((
            c["status"].as_str()?.to_string(),
            c["reason"].as_str()?.to_string(),
            st["rejectedBy"].as_str().unwrap_or_default().to_string(),
        ))
    };
    let proms = api(&client, "Prometheus", "prometheuses");
    let counted = |name: &'static str, accepted: i64, rejected: i64| {
        let proms = proms.clone();
        async move {
            proms.get(name).await.is_ok_and(|p| {
                p.data["status"]["selectedResources"].as_array().is_some_and(|s| {
                    s.iter().any(|r| {
                        r["kind"] == "ServiceMonitor"
                            && r["accepted"] == accepted
                            && r["rejected"] == rejected
                    })
                })
            })
        }
    };
    wait_for("both Prometheus reconciled", Duration::from_secs(60), || async {
        counted("fast", 0, 1).await && counted("slow", 1, 0).await
    })
    .await
    .unwrap();
    wait_for("fast's rejection", Duration::from_secs(30), || async {
        verdict().await == Some(("False".into(), "InvalidScrapeTimeout".into(), "team/fast".into()))
    })
    .await
    .unwrap();

    // Settled: reconciles stop and the monitor is no longer written. Awaited as a quiet
    // window of 10 s within 90 s rather than counted over a fixed window, so a slow machine
    // takes longer instead of failing; a verdict flapping between the two never settles.
    let (total, _) = settle(
        "the reconcile count and the monitor's resourceVersion",
        Duration::from_secs(10),
        Duration::from_secs(90),
        || async {
            (
                reconciles_total(port).await,
                monitors
                    .get("app")
                    .await
                    .ok()
                    .and_then(|m| m.metadata.resource_version),
            )
        },
    )
    .await
    .unwrap();
    assert!(total.is_some_and(|t| t >= 2.0), "metrics scraped: {total:?}");
    assert_eq!(
        verdict().await,
        Some(("False".into(), "InvalidScrapeTimeout".into(), "team/fast".into()))
    );

    // The monitor gets its own interval: both accept it and the rejection is lifted.
    env.apply(
        r#"apiVersion: monitoring.steward.dev/v1alpha1
kind: ServiceMonitor
metadata: {name: app, namespace: team}
spec:
  selector: {matchLabels: {app: app}}
  endpoints:
    - port: metrics
      interval: 1m
      scrapeTimeout: 30s
"#,
    )
    .await
    .unwrap();
    wait_for("accepted by both", Duration::from_secs(30), || async {
        verdict().await == Some(("True".into(), "Accepted".into(), String::new()))
            && counted("fast", 1, 0).await
            && counted("slow", 1, 0).await
    })
    .await
    .unwrap();
    op.kill().await.ok();
}
