//! Sharding and federation with real Prometheus pods in kubesim process mode, the
//! prometheus-operator deployed from deploy/. Scrape targets are small HTTP servers this test
//! runs on kubesim's host address (what a pod dials to reach a server outside the cluster).
//!
//! - Two shards over six targets: each target is scraped by exactly one shard; lowering the
//!   count to one deletes the second shard's StatefulSet (its PVC stays), and shard 0 takes
//!   every target.
//! - The CRD schema refuses zero shards and a federation without `match` or selector.
//! - A global Prometheus federating two team Prometheus objects (two namespaces) answers a
//!   query for a series only one team scrapes; deleting a team Prometheus removes its job from
//!   the global configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::harness::{Env, pod_ready, wait_for, wait_until};
use e2e::prometheus::{condition_true, query};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DynamicObject, Patch, PatchParams};

fn api(env: &Env, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    e2e::prometheus::api(&env.client, ns, kind, plural)
}

/// Serves `body` as `/metrics` on `host` (a port of its own); returns `host:port`.
async fn metrics_target(host: &str, body: String) -> String {
    let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("{host}:{}", addr.port())
}

fn namespace(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{pod-security.kubernetes.io/enforce: restricted{labels}}}}}\n"
    )
}

fn scrape_config(ns: &str, targets: &[String]) -> String {
    let list = targets
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"apiVersion: monitoring.steward.dev/v1alpha1
kind: ScrapeConfig
metadata: {{name: targets, namespace: {ns}}}
spec:
  scrapeInterval: 2s
  staticConfigs:
  - targets: [{list}]
"#
    )
}

/// The ready IP of pod `name`.
async fn pod_ip(env: &Env, ns: &str, name: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let p = pods.get(name).await.ok()?;
    if p.metadata.deletion_timestamp.is_some() || !pod_ready(&p) {
        return None;
    }
    p.status?.pod_ip
}

/// The `instance` labels of the `up` series of `job` on the Prometheus at `ip`.
async fn instances(ip: &str, job: &str) -> BTreeSet<String> {
    query(ip, &format!("up{{job=\"{job}\"}}"))
        .await
        .iter()
        .filter_map(|s| s["metric"]["instance"].as_str().map(String::from))
        .collect()
}

/// Waits until Prometheus `ns/name` is Available with all `pods` ready.
async fn available(env: &Env, ns: &str, name: &str, pods: i64) {
    let proms = api(env, ns, "Prometheus", "prometheuses");
    let ok = wait_for(
        &format!("Prometheus {ns}/{name} Available"),
        Duration::from_secs(180),
        || async {
            proms.get(name).await.is_ok_and(|p| {
                condition_true(&p, "Available") && p.data["status"]["availableReplicas"] == pods
            })
        },
    )
    .await;
    env.or_diagnose(ok, ns, "prometheuses,statefulsets,pods").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_targets_and_federation_gives_a_global_view() {
    let env = Env::with_operators(&["prometheus-operator"]).await.unwrap();
    let Some(cluster) =
        env.require_kubesim("the pods scrape the test's metrics servers on kubesim's host address")
    else {
        return;
    };
    let host = cluster.host_address().expect("kubesim in process mode");

    // The schema refuses what can never work: no shard, a federation without a selector.
    env.apply(&namespace("shards", "")).await.unwrap();
    let base = "apiVersion: monitoring.steward.dev/v1alpha1\nkind: Prometheus\nmetadata: {name: bad, namespace: shards}\n";
    for (spec, message) in [
        (
            "spec: {shards: 0}",
            "spec.shards in body should be greater than or equal to 1",
        ),
        (
            "spec: {federation: {prometheusSelector: {}, match: []}}",
            "spec.federation.match in body should have at least 1 items",
        ),
        (
            "spec: {federation: {prometheusSelector: {}, match: ['']}}",
            "spec.federation.match[0] in body should be at least 1 chars long",
        ),
        (
            "spec: {federation: {match: [up]}}",
            "spec.federation.prometheusSelector: Required value",
        ),
    ] {
        let err = env
            .kubectl_with_input(&["create", "-f", "-"], Some(&format!("{base}{spec}\n")))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{spec}: {err}");
    }

    // --- Two shards over six targets.
    let started = Instant::now();
    let mut targets = Vec::new();
    for i in 0..6 {
        targets.push(metrics_target(&host, format!("demo_target_info{{id=\"{i}\"}} 1\n")).await);
    }
    env.apply(&format!(
        "{}---\n{}---\n{}",
        namespace("shards", ""),
        r#"apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {name: main, namespace: shards}
spec:
  replicas: 1
  shards: 2
  scrapeInterval: 2s
  scrapeConfigSelector: {}
  storage: {volumeClaimTemplate: {size: 1Gi}}
"#,
        scrape_config("shards", &targets)
    ))
    .await
    .unwrap();
    available(&env, "shards", "main", 2).await;
    eprintln!("2 shards Available after {:?}", started.elapsed());
    let proms = api(&env, "shards", "Prometheus", "prometheuses");
    let status = proms.get("main").await.unwrap().data["status"].clone();
    let shard_ids: Vec<&str> = status["shardStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["shardID"].as_str().unwrap())
        .collect();
    assert_eq!(shard_ids, ["0", "1"], "{status}");
    assert_eq!(status["replicas"], 2, "{status}");

    let job = "scrapeConfig/shards/targets";
    let all: BTreeSet<String> = targets.iter().cloned().collect();
    let pods = ["prometheus-main-0", "prometheus-main-shard-1-0"];
    let split = wait_until(
        "every target scraped by one shard",
        Duration::from_secs(90),
        || async {
            let mut seen = Vec::new();
            for pod in pods {
                let ip = pod_ip(&env, "shards", pod).await?;
                seen.push(instances(&ip, job).await);
            }
            let union: BTreeSet<String> = seen.iter().flatten().cloned().collect();
            (union == all).then_some(seen)
        },
    )
    .await
    .unwrap();
    let (zero, one) = (&split[0], &split[1]);
    assert!(
        zero.is_disjoint(one),
        "a target scraped by both shards: {zero:?} {one:?}"
    );
    assert_eq!(zero.len() + one.len(), 6);
    eprintln!(
        "shard 0 scrapes {}, shard 1 scrapes {} targets ({:?})",
        zero.len(),
        one.len(),
        started.elapsed()
    );
    // Each shard's samples carry its number as an external label.
    let ip = pod_ip(&env, "shards", pods[1]).await.unwrap();
    let yaml = loaded_config(&ip).await;
    assert!(yaml.contains("shard: \"1\""), "{yaml}");

    // One shard again: the second StatefulSet goes, shard 0 takes every target.
    proms
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"shards": 1}})),
        )
        .await
        .unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(env.client.clone(), "shards");
    wait_for(
        "shard 1's StatefulSet deleted",
        Duration::from_secs(60),
        || async { matches!(sets.get_opt("prometheus-main-shard-1").await, Ok(None)) },
    )
    .await
    .unwrap();
    // Its PVC stays, with the samples shard 1 scraped.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "shards");
    assert!(
        claims
            .get_opt("data-prometheus-main-shard-1-0")
            .await
            .unwrap()
            .is_some()
    );
    wait_for("shard 0 scrapes all six", Duration::from_secs(90), || async {
        match pod_ip(&env, "shards", pods[0]).await {
            Some(ip) => instances(&ip, job).await == all,
            None => false,
        }
    })
    .await
    .unwrap();
    eprintln!("back to one shard after {:?}", started.elapsed());

    // --- Federation: two teams, one global view.
    let started = Instant::now();
    let team_target = |team: &str| format!("team_{team}_orders_total 42\n");
    let a = metrics_target(&host, team_target("a")).await;
    let b = metrics_target(&host, team_target("b")).await;
    let team = |t: &str, target: &str| {
        // The global Prometheus (namespace fed-global) may discover pods here.
        let ns = namespace(
            &format!("fed-{t}"),
            ", federate: \"yes\", discovery-from.monitoring.steward.dev/fed-global: \"true\"",
        );
        let prometheus = format!(
            r#"apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {{name: main, namespace: fed-{t}, labels: {{federate: "yes"}}}}
spec:
  replicas: 1
  scrapeInterval: 2s
  scrapeConfigSelector: {{}}
  storage: {{emptyDir: {{}}}}
"#
        );
        let targets = scrape_config(&format!("fed-{t}"), &[target.to_string()]);
        format!("{ns}---\n{prometheus}---\n{targets}")
    };
    env.apply(&format!(
        "{}---\n{}---\n{}---\n{}",
        team("a", &a),
        team("b", &b),
        namespace("fed-global", ""),
        r#"apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {name: global, namespace: fed-global, labels: {federate: "yes"}}
spec:
  replicas: 1
  scrapeInterval: 2s
  storage: {emptyDir: {}}
  federation:
    prometheusSelector: {matchLabels: {federate: "yes"}}
    prometheusNamespaceSelector: {matchLabels: {federate: "yes"}}
    match: ['{__name__=~"team_.*"}']
    interval: 2s
"#
    ))
    .await
    .unwrap();
    for ns in ["fed-a", "fed-b"] {
        available(&env, ns, "main", 1).await;
    }
    available(&env, "fed-global", "global", 1).await;
    eprintln!("3 Prometheus objects Available after {:?}", started.elapsed());
    let global = pod_ip(&env, "fed-global", "prometheus-global-0").await.unwrap();
    let series = wait_until(
        "team a's series in the global view",
        Duration::from_secs(90),
        || async {
            let r = query(&global, "team_a_orders_total").await;
            (!r.is_empty()).then_some(r)
        },
    )
    .await;
    let series = match series {
        Ok(s) => s,
        Err(e) => panic!(
            "{e}\nglobal targets: {}",
            reqwest::get(format!("http://{global}:9090/api/v1/targets"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        ),
    };
    // One series, from team a's Prometheus (its external labels kept: honor_labels).
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["metric"]["prometheus"], "fed-a/main", "{series:?}");
    assert_eq!(series[0]["value"][1], "42", "{series:?}");
    // Only team a scrapes it; team b's series arrive too, from team b.
    let team_b = pod_ip(&env, "fed-b", "prometheus-main-0").await.unwrap();
    assert!(query(&team_b, "team_a_orders_total").await.is_empty());
    wait_for(
        "team b's series in the global view",
        Duration::from_secs(60),
        || async {
            query(&global, "team_b_orders_total{prometheus=\"fed-b/main\"}")
                .await
                .len()
                == 1
        },
    )
    .await
    .unwrap();
    // Each team is federated once (replica 0), never the global Prometheus itself.
    let jobs: BTreeSet<String> = query(&global, "up")
        .await
        .iter()
        .filter_map(|s| s["metric"]["job"].as_str().map(String::from))
        .collect();
    assert_eq!(
        jobs,
        BTreeSet::from([
            "federate/fed-a/main".to_string(),
            "federate/fed-b/main".to_string()
        ])
    );
    eprintln!("global view answers after {:?}", started.elapsed());

    // A deleted team Prometheus leaves the global configuration: its change wakes the
    // Prometheus objects that federate.
    api(&env, "fed-b", "Prometheus", "prometheuses")
        .delete("main", &Default::default())
        .await
        .unwrap();
    wait_for(
        "fed-b's job gone from the global config",
        Duration::from_secs(60),
        || async {
            let yaml = loaded_config(&global).await;
            yaml.contains("federate/fed-a/main") && !yaml.contains("federate/fed-b/main")
        },
    )
    .await
    .unwrap();
}

/// The configuration the Prometheus at `ip` runs (empty when it does not answer).
async fn loaded_config(ip: &str) -> String {
    let Ok(resp) = reqwest::get(format!("http://{ip}:9090/api/v1/status/config")).await else {
        return String::new();
    };
    let cfg: serde_json::Value = resp.json().await.unwrap_or_default();
    cfg["data"]["yaml"].as_str().unwrap_or_default().to_string()
}
