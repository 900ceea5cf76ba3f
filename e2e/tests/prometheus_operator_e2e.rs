//! The prometheus-operator deployed from deploy/ into kubesim process mode runs real
//! Prometheus stacks: a team's Prometheus scrapes the etcd-operator through a ServiceMonitor,
//! evaluates its rules (an always-firing alert shows in `ALERTS`), rejects a rule with a PromQL
//! typo without disturbing the valid ones, picks up a new ServiceMonitor without restarting
//! the pod, and a second team's Prometheus sees only what its selectors allow. A Grafana
//! datasource ConfigMap appears on request, points at a URL that answers inside the cluster,
//! and goes with its Prometheus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::harness::{Env, pod_ready, wait_for, wait_until};
use e2e::prometheus::query;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};

fn api(env: &Env, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    e2e::prometheus::api(&env.client, ns, kind, plural)
}

fn team_stack(team: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: team-{team}, labels: {{team: "{team}", pod-security.kubernetes.io/enforce: restricted}}}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {{name: main, namespace: team-{team}}}
spec:
  replicas: 1
  scrapeInterval: 2s
  evaluationInterval: 2s
  serviceMonitorSelector: {{matchLabels: {{team: "{team}"}}}}
  ruleSelector: {{matchLabels: {{team: "{team}"}}}}
  externalLabels: {{team: "{team}"}}
  storage: {{emptyDir: {{}}}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: PrometheusRule
metadata: {{name: always, namespace: team-{team}, labels: {{team: "{team}"}}}}
spec:
  groups:
    - name: always
      rules:
        - alert: AlwaysFiring{team}
          expr: vector(1)
          labels: {{severity: none}}
        - record: team:up:sum
          expr: sum(up)
"#
    )
}

fn service_monitor(team: &str, name: &str, target: &str) -> String {
    format!(
        r#"apiVersion: monitoring.steward.dev/v1alpha1
kind: ServiceMonitor
metadata: {{name: {name}, namespace: team-{team}, labels: {{team: "{team}"}}}}
spec:
  namespaceSelector: {{matchNames: [steward-system]}}
  selector: {{matchLabels: {{app.kubernetes.io/name: {target}}}}}
  endpoints:
    - port: metrics
      interval: 2s
"#
    )
}

async fn prometheus_pod(env: &Env, team: &str) -> Option<Pod> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &format!("team-{team}"));
    pods.list(
        &ListParams::default().labels("app.kubernetes.io/name=prometheus,app.kubernetes.io/instance=main"),
    )
    .await
    .ok()?
    .items
    .into_iter()
    .find(|p| p.metadata.deletion_timestamp.is_none())
}

async fn targets(ip: &str) -> Vec<String> {
    let url = format!("http://{ip}:9090/api/v1/targets");
    let Ok(resp) = reqwest::get(&url).await else {
        return Vec::new();
    };
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let mut jobs: Vec<String> = body["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["scrapePool"].as_str().map(String::from))
        .collect();
    jobs.sort();
    jobs.dedup();
    jobs
}

async fn accepted(
    env: &Env,
    ns: &str,
    plural: &str,
    kind: &str,
    name: &str,
) -> Option<(String, String, String)> {
    e2e::prometheus::accepted(&api(env, ns, kind, plural).get(name).await.ok()?)
}

async fn pod_ip_ready(env: &Env, team: &str) -> Option<(String, String)> {
    let p = prometheus_pod(env, team).await?;
    if !pod_ready(&p) {
        return None;
    }
    Some((p.status?.pod_ip?, p.metadata.uid?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_stacks_scrape_evaluate_and_stay_isolated() {
    // The teams' monitors look into steward-system, which lets both teams discover there.
    let env = e2e::prometheus::operators_discoverable_by(&["team-a", "team-b"])
        .await
        .unwrap();
    let started = Instant::now();
    env.apply(&format!(
        "{}---\n{}",
        team_stack("a"),
        service_monitor("a", "etcd-operator", "etcd-operator")
    ))
    .await
    .unwrap();
    let proms = api(&env, "team-a", "Prometheus", "prometheuses");
    let ready = wait_for(
        "team a's Prometheus Available",
        Duration::from_secs(120),
        || async {
            proms.get("main").await.is_ok_and(|p| {
                p.data["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Available" && c["status"] == "True")
                })
            })
        },
    )
    .await;
    env.or_diagnose(ready, "team-a", "prometheuses,statefulsets,servicemonitors")
        .await;
    eprintln!("team stack Available after {:?}", started.elapsed());
    let (ip, uid) = pod_ip_ready(&env, "a").await.unwrap();

    // Asked for, a Grafana datasource ConfigMap appears for the sidecar: provisioning YAML
    // whose URL answers from inside the cluster.
    let url = grafana_datasource_url(&env, &proms).await;
    assert_eq!(url, "http://prometheus-main.team-a.svc:9090");
    let build = env
        .fetch_in_cluster("team-a", &format!("{url}/api/v1/status/buildinfo"))
        .await
        .unwrap();
    assert!(build.contains("\"version\""), "{build}");

    // The etcd-operator's metrics are scraped through the ServiceMonitor.
    let job = "serviceMonitor/team-a/etcd-operator/0";
    let up = wait_for("etcd-operator targets up", Duration::from_secs(60), || async {
        let r = query(
            &ip,
            "up{namespace=\"steward-system\",service=\"etcd-operator-metrics\"} == 1",
        )
        .await;
        r.len() == 2
    })
    .await;
    if let Err(e) = up {
        panic!(
            "{e}\ntargets: {:?}\n{}",
            targets(&ip).await,
            env.diagnostics("team-a", "prometheuses,servicemonitors").await
        );
    }
    assert_eq!(targets(&ip).await, vec![job.to_string()]);
    // The external labels carry the team and the replica (the pod name, filled in by the
    // reloader).
    let url = format!("http://{ip}:9090/api/v1/status/config");
    let cfg: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let yaml = cfg["data"]["yaml"].as_str().unwrap_or_default().to_string();
    assert!(yaml.contains("prometheus_replica: prometheus-main-0"), "{yaml}");
    assert!(yaml.contains("prometheus: team-a/main"), "{yaml}");

    // The always-firing rule shows in ALERTS, and the monitor and rule are Accepted.
    wait_for("ALERTS", Duration::from_secs(60), || async {
        !query(&ip, "ALERTS{alertname=\"AlwaysFiringa\",alertstate=\"firing\"}")
            .await
            .is_empty()
    })
    .await
    .unwrap();
    for (plural, kind, name) in [
        ("servicemonitors", "ServiceMonitor", "etcd-operator"),
        ("prometheusrules", "PrometheusRule", "always"),
    ] {
        wait_for(&format!("{kind} accepted"), Duration::from_secs(30), || async {
            accepted(&env, "team-a", plural, kind, name)
                .await
                .is_some_and(|a| a.0 == "True")
        })
        .await
        .unwrap();
    }

    // A rule with a PromQL typo is rejected with a reason in its own status; the valid rules
    // keep being evaluated.
    env.apply(
        r#"apiVersion: monitoring.steward.dev/v1alpha1
kind: PrometheusRule
metadata: {name: typo, namespace: team-a, labels: {team: "a"}}
spec:
  groups:
    - name: typo
      rules:
        - alert: Broken
          expr: sum(rate(up[5m]) > 
"#,
    )
    .await
    .unwrap();
    wait_for("typo rejected", Duration::from_secs(30), || async {
        accepted(&env, "team-a", "prometheusrules", "PrometheusRule", "typo")
            .await
            .is_some_and(|a| a.0 == "False" && a.1 == "InvalidPromQL")
    })
    .await
    .unwrap();
    wait_for("rejection counted in status", Duration::from_secs(30), || async {
        proms.get("main").await.is_ok_and(|p| {
            p.data["status"]["selectedResources"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r["kind"] == "PrometheusRule" && r["accepted"] == 1 && r["rejected"] == 1)
            })
        })
    })
    .await
    .unwrap();
    let rules_url = format!("http://{ip}:9090/api/v1/rules");
    let rules: serde_json::Value = reqwest::get(&rules_url).await.unwrap().json().await.unwrap();
    let groups: Vec<String> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(groups, vec!["always"], "{rules}");
    wait_for(
        "the recording rule evaluated",
        Duration::from_secs(30),
        || async { !query(&ip, "team:up:sum").await.is_empty() },
    )
    .await
    .unwrap();

    // A second ServiceMonitor is picked up by the running pod: same UID, no restart.
    env.apply(&service_monitor(
        "a",
        "prometheus-operator",
        "prometheus-operator",
    ))
    .await
    .unwrap();
    wait_for("new job scraped", Duration::from_secs(60), || async {
        !query(
            &ip,
            "up{job=~\".*\",service=\"prometheus-operator-metrics\"} == 1",
        )
        .await
        .is_empty()
    })
    .await
    .unwrap();
    // Through that job, the operator's own metrics: what it selected and rejected, and how
    // long generation takes. (The target's `namespace` label wins; the metric's own becomes
    // `exported_namespace`.)
    wait_for("operator metrics in Prometheus", Duration::from_secs(60), || async {
        let rejected = query(
            &ip,
            "steward_prometheus_selected_resources{exported_namespace=\"team-a\",prometheus=\"main\",kind=\"PrometheusRule\",state=\"rejected\"} == 1",
        )
        .await;
        let generated = query(&ip, "steward_prometheus_config_generation_duration_seconds_count > 0").await;
        !rejected.is_empty() && !generated.is_empty()
    })
    .await
    .unwrap();
    // Nobody can stop Prometheus over HTTP: it has no lifecycle API (the reloader signals it).
    let quit = reqwest::Client::new()
        .post(format!("http://{ip}:9090/-/quit"))
        .send()
        .await
        .unwrap();
    assert!(!quit.status().is_success(), "/-/quit answered {}", quit.status());
    assert!(!query(&ip, "up").await.is_empty(), "Prometheus still answers");
    let pod = prometheus_pod(&env, "a").await.unwrap();
    assert_eq!(pod.metadata.uid.as_deref(), Some(uid.as_str()), "same pod");
    let restarts: i32 = pod
        .status
        .unwrap()
        .container_statuses
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .sum();
    assert_eq!(restarts, 0);

    // Team b only sees what its selectors allow: its own monitor, never team a's.
    env.apply(&format!(
        "{}---\n{}",
        team_stack("b"),
        service_monitor("b", "only-prom-op", "prometheus-operator")
    ))
    .await
    .unwrap();
    wait_for("team b's pod ready", Duration::from_secs(120), || async {
        pod_ip_ready(&env, "b").await.is_some()
    })
    .await
    .unwrap();
    let ip_b = pod_ip_ready(&env, "b").await.unwrap().0;
    wait_for(
        "team b scrapes its own target",
        Duration::from_secs(60),
        || async {
            !query(&ip_b, "up{service=\"prometheus-operator-metrics\"} == 1")
                .await
                .is_empty()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        targets(&ip_b).await,
        vec!["serviceMonitor/team-b/only-prom-op/0".to_string()]
    );
    assert!(
        query(&ip_b, "up{service=\"etcd-operator-metrics\"}")
            .await
            .is_empty()
    );
    assert!(
        query(&ip_b, "ALERTS{alertname=\"AlwaysFiringa\"}")
            .await
            .is_empty()
    );
    let a_jobs = targets(&ip).await;
    assert!(
        a_jobs.iter().all(|j| j.starts_with("serviceMonitor/team-a/")),
        "{a_jobs:?}"
    );

    // The datasource goes with its Prometheus.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "team-a");
    proms.delete("main", &Default::default()).await.unwrap();
    wait_for(
        "the datasource ConfigMap collected",
        Duration::from_secs(60),
        || async {
            cms.get_opt("prometheus-main-grafana-datasource")
                .await
                .is_ok_and(|c| c.is_none())
        },
    )
    .await
    .unwrap();
}

/// Turns on team a's Grafana datasource; waits for its ConfigMap, checks its label and that
/// it is Grafana provisioning YAML, and returns the datasource URL.
async fn grafana_datasource_url(env: &Env, proms: &Api<DynamicObject>) -> String {
    proms
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"grafanaDatasource": {"isDefault": true}}})),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "team-a");
    let cm = wait_until("the datasource ConfigMap", Duration::from_secs(60), || async {
        cms.get_opt("prometheus-main-grafana-datasource")
            .await
            .ok()
            .flatten()
    })
    .await
    .unwrap();
    assert_eq!(
        cm.metadata
            .labels
            .unwrap_or_default()
            .get("grafana_datasource")
            .map(String::as_str),
        Some("1")
    );
    let data = cm.data.unwrap_or_default();
    let yaml = data.get("prometheus-team-a-main.yaml").unwrap();
    let parsed: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(parsed["apiVersion"], 1, "{yaml}");
    let ds = &parsed["datasources"][0];
    assert_eq!(
        (&ds["type"], &ds["isDefault"], &ds["jsonData"]["timeInterval"]),
        (
            &serde_json::json!("prometheus"),
            &serde_json::json!(true),
            &serde_json::json!("2s")
        ),
        "{yaml}"
    );
    ds["url"].as_str().unwrap().to_string()
}
