//! Alertmanager HA on kubesim with real Alertmanager processes, the prometheus-operator
//! deployed from deploy/: three replicas form one gossip cluster (each pod's
//! `/api/v2/status` lists three peers, and so does the object's status); a silence created
//! on one replica shows on the others; a killed replica leaves the other two serving and
//! rejoins; a second Alertmanager in the namespace forms its own cluster and the two never
//! merge; a configuration change is reloaded in place; an invalid configuration leaves the
//! previous one running with `Reconciled=False` reason `InvalidConfiguration` and a Warning
//! Event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::alertmanager::{cluster_formed, peer_ips, status};
use e2e::harness::{Env, wait_for, wait_until};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams};

const NS: &str = "am-ha";

fn stack() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}, labels: {{pod-security.kubernetes.io/enforce: restricted}}}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Alertmanager
metadata: {{name: main, namespace: {NS}}}
spec:
  config:
    route: {{receiver: hook, groupBy: [alertname]}}
    receivers:
      - name: hook
        webhookConfigs: [{{url: "http://127.0.0.1:1/first"}}]
"#
    )
}

fn alertmanagers(env: &Env) -> Api<DynamicObject> {
    e2e::prometheus::api(&env.client, NS, "Alertmanager", "alertmanagers")
}

/// Waits until Alertmanager `name` has `n` ready pods, each seeing exactly the `n` of them
/// as its cluster; returns the pods.
async fn cluster_of(env: &Env, name: &str, n: usize, timeout: Duration) -> Vec<(String, String)> {
    let what = format!("{name}: {n} ready replicas, each seeing exactly the {n} as peers");
    let found = wait_until(&what, timeout, || cluster_formed(&env.client, NS, name, n)).await;
    env.or_diagnose(found, NS, "alertmanagers,statefulsets,pods")
        .await
}

async fn silences(ip: &str) -> Vec<String> {
    let Ok(resp) = reqwest::get(format!("http://{ip}:9093/api/v2/silences")).await else {
        return Vec::new();
    };
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    body.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(String::from))
        .collect()
}

fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let c = obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_ha_cluster() {
    let env = Env::with_operators(&["prometheus-operator"]).await.unwrap();
    let t0 = Instant::now();
    let lap = |what: &str| eprintln!("[{:>5.1}s] {what}", t0.elapsed().as_secs_f64());
    env.apply(&stack()).await.unwrap();

    // Three replicas, one cluster: every pod sees the three.
    let pods = cluster_of(&env, "main", 3, Duration::from_secs(120)).await;
    lap("3 replicas clustered");
    let ams = alertmanagers(&env);
    wait_for(
        "status.clusterPeers: 3 pods, 3 peers each",
        Duration::from_secs(60),
        || async {
            ams.get("main").await.is_ok_and(|a| {
                let peers = a.data["status"]["clusterPeers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                peers.len() == 3
                    && peers.iter().all(|p| p["peers"] == 3)
                    && a.data["status"]["availableReplicas"] == 3
                    && condition(&a, "Available").is_some_and(|c| c.0 == "True")
            })
        },
    )
    .await
    .unwrap();
    lap("status reports the cluster");

    // A Grafana datasource on request: provisioning YAML for the sidecar whose URL answers
    // inside the cluster; turned off, it goes.
    grafana_datasource(&env, &ams).await;
    lap("Grafana datasource came and went");

    // A silence made on one replica reaches the others.
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "Test", "isRegex": false, "isEqual": true}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "alertmanager_ha",
        "comment": "gossip check",
    });
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}:9093/api/v2/silences", pods[0].1))
        .json(&silence)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["silenceID"].as_str().unwrap().to_string();
    for (pod, ip) in &pods[1..] {
        wait_for(
            &format!("silence {id} on {pod}"),
            Duration::from_secs(30),
            || async { silences(ip).await.contains(&id) },
        )
        .await
        .unwrap();
    }
    lap("silence gossiped to every replica");

    // A killed replica: the other two keep serving, and it rejoins.
    let mut pods = pods;
    if env.require_kubesim("killing an Alertmanager container").is_some() {
        let victim = pods[1].0.clone();
        env.kill_container(NS, &victim, "alertmanager").await.unwrap();
        for (pod, ip) in [&pods[0], &pods[2]] {
            assert!(
                status(ip).await.is_some(),
                "{pod} stopped answering after {victim} was killed"
            );
            assert!(silences(ip).await.contains(&id), "{pod} lost the silence");
        }
        let pod_api: Api<Pod> = Api::namespaced(env.client.clone(), NS);
        wait_for(
            &format!("{victim} restarted"),
            Duration::from_secs(60),
            || async {
                pod_api.get(&victim).await.is_ok_and(|p| {
                    p.status.and_then(|s| s.container_statuses).is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.name == "alertmanager" && c.restart_count >= 1)
                    })
                })
            },
        )
        .await
        .unwrap();
        pods = cluster_of(&env, "main", 3, Duration::from_secs(90)).await;
        let rejoined = pods.iter().find(|(p, _)| *p == victim).unwrap();
        wait_for(
            &format!("silence on rejoined {victim}"),
            Duration::from_secs(30),
            || async { silences(&rejoined.1).await.contains(&id) },
        )
        .await
        .unwrap();
        lap("killed replica rejoined with the silence");
    }

    // A second Alertmanager in the namespace, on 0.33 and with the user's own
    // alertmanager.yaml from a Secret, forms its own cluster; the two never merge.
    env.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: other-config, namespace: {NS}}}
stringData:
  alertmanager.yaml: |
    route: {{receiver: from-secret}}
    receivers: [{{name: from-secret}}]
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Alertmanager
metadata: {{name: other, namespace: {NS}}}
spec:
  replicas: 2
  version: 0.33.1
  configSecret: {{name: other-config}}
"#
    ))
    .await
    .unwrap();
    let others = cluster_of(&env, "other", 2, Duration::from_secs(90)).await;
    // Gossip settles in seconds; give a merge the chance to show before looking.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let main_ips: BTreeSet<String> = pods.iter().map(|(_, ip)| ip.clone()).collect();
    let other_ips: BTreeSet<String> = others.iter().map(|(_, ip)| ip.clone()).collect();
    for (pod, ip) in &pods {
        assert_eq!(peer_ips(ip).await.as_ref(), Some(&main_ips), "{pod}'s peers");
    }
    for (pod, ip) in &others {
        assert_eq!(peer_ips(ip).await.as_ref(), Some(&other_ips), "{pod}'s peers");
        assert!(!silences(ip).await.contains(&id), "{pod} got main's silence");
        let config = status(ip).await.unwrap()["config"]["original"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            config.contains("from-secret"),
            "{pod} does not run the configSecret:\n{config}"
        );
    }
    lap("second Alertmanager clustered on its own");

    // A valid change is reloaded in place.
    let running = |ip: String| async move {
        status(&ip)
            .await
            .and_then(|s| s["config"]["original"].as_str().map(String::from))
    };
    // (Webhook URLs are secrets Alertmanager masks in its status: the change is seen by a
    // group_by label.)
    let patch = |group: &str, receiver: &str| {
        serde_json::json!({
            "apiVersion": "monitoring.steward.dev/v1alpha1",
            "kind": "Alertmanager",
            "metadata": {"name": "main", "namespace": NS},
            "spec": {"config": {
                "route": {"receiver": receiver, "groupBy": ["alertname", group]},
                "receivers": [{"name": "hook", "webhookConfigs": [{"url": "http://127.0.0.1:1/hook"}]}],
            }},
        })
    };
    let pp = PatchParams::apply("alertmanager-ha-test").force();
    ams.patch("main", &pp, &Patch::Apply(patch("second", "hook")))
        .await
        .unwrap();
    for (pod, ip) in &pods {
        let reloaded = wait_for(
            &format!("{pod} reloads the second config"),
            Duration::from_secs(60),
            || async { running(ip.clone()).await.is_some_and(|c| c.contains("second")) },
        )
        .await;
        if let Err(e) = reloaded {
            let secret = env
                .kubectl(&["get", "secret", "-n", NS, "alertmanager-main", "-o", "yaml"])
                .await;
            let logs = env
                .kubectl(&["logs", "-n", NS, pod, "-c", "config-reloader"])
                .await;
            let am_logs = env
                .kubectl(&["logs", "-n", NS, pod, "-c", "alertmanager", "--tail=20"])
                .await;
            panic!(
                "{e:#}\n{secret:?}\n{logs:?}\n{am_logs:?}\n{}",
                env.diagnostics(NS, "alertmanagers,statefulsets").await
            );
        }
    }
    lap("valid change reloaded on every replica");

    // An invalid one (a route to a receiver that does not exist) is refused: the Secret and
    // the running config stay, the condition and a Warning say why.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NS);
    let before = secrets.get("alertmanager-main").await.unwrap().data;
    ams.patch("main", &pp, &Patch::Apply(patch("third", "pager")))
        .await
        .unwrap();
    let (_, reason, message) = wait_until("Reconciled=False", Duration::from_secs(30), || async {
        let a = ams.get("main").await.ok()?;
        condition(&a, "Reconciled").filter(|c| c.0 == "False")
    })
    .await
    .unwrap();
    assert_eq!(reason, "InvalidConfiguration");
    assert!(
        message.contains("config.route: receiver \"pager\" is not defined in receivers"),
        "{message}"
    );
    let events = env
        .kubectl(&["get", "events.events.k8s.io", "-n", NS, "-o", "json"])
        .await
        .unwrap();
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "Warning"
                && e["reason"] == "InvalidConfiguration"
                && e["regarding"]["name"] == "main"),
        "no Warning Event InvalidConfiguration"
    );
    // Long enough for a reloader to have picked up a change (it polls every 3 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        secrets.get("alertmanager-main").await.unwrap().data,
        before,
        "config Secret rewritten"
    );
    for (pod, ip) in &pods {
        let c = running(ip.clone()).await.unwrap_or_default();
        assert!(c.contains("second") && !c.contains("third"), "{pod} runs:\n{c}");
    }
    // The rest keeps working: the cluster still answers, three strong.
    cluster_of(&env, "main", 3, Duration::from_secs(10)).await;
    lap("invalid config refused, previous one still running");

    // The CRD refuses both configSecret and config at admission.
    let both = env
        .apply(&format!(
            "apiVersion: monitoring.steward.dev/v1alpha1\nkind: Alertmanager\nmetadata: {{name: both, namespace: {NS}}}\nspec:\n  configSecret: {{name: other-config}}\n  config: {{route: {{receiver: a}}, receivers: [{{name: a}}]}}\n"
        ))
        .await;
    let err = format!(
        "{:#}",
        both.expect_err("an Alertmanager with both configSecret and config")
    );
    assert!(
        err.contains("set at most one of configSecret and config"),
        "{err}"
    );

    // alertmanager-operated held by someone else: left alone, ChildConflict.
    env.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: am-taken, labels: {pod-security.kubernetes.io/enforce: restricted}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: alertmanager-operated, namespace: am-taken}\nspec: {clusterIP: None, ports: [{name: web, port: 9093}]}\n---\napiVersion: monitoring.steward.dev/v1alpha1\nkind: Alertmanager\nmetadata: {name: solo, namespace: am-taken}\nspec: {replicas: 1}\n",
    )
    .await
    .unwrap();
    let taken = e2e::prometheus::api(&env.client, "am-taken", "Alertmanager", "alertmanagers");
    let (_, reason, message) = wait_until(
        "Reconciled=False ChildConflict",
        Duration::from_secs(30),
        || async {
            let a = taken.get("solo").await.ok()?;
            condition(&a, "Reconciled").filter(|c| c.0 == "False")
        },
    )
    .await
    .unwrap();
    assert_eq!(reason, "ChildConflict", "{message}");
    assert!(message.contains("am-taken/alertmanager-operated"), "{message}");
    let svc: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(env.client.clone(), "am-taken");
    let svc = svc.get("alertmanager-operated").await.unwrap();
    assert!(
        svc.metadata.owner_references.is_none(),
        "the foreign Service was written"
    );
    lap("admission and conflict checks");
}

/// Turns main's Grafana datasource on, checks its ConfigMap and that its URL answers
/// `/api/v2/status` from a pod; then turns it off and waits for the ConfigMap to go.
async fn grafana_datasource(env: &Env, ams: &Api<DynamicObject>) {
    let set = |enabled: bool| {
        Patch::Merge(serde_json::json!({"spec": {"grafanaDatasource": {"enabled": enabled}}}))
    };
    ams.patch("main", &PatchParams::default(), &set(true))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), NS);
    let name = "alertmanager-main-grafana-datasource";
    let cm = wait_until("the datasource ConfigMap", Duration::from_secs(60), || async {
        cms.get_opt(name).await.ok().flatten()
    })
    .await
    .unwrap();
    let labels = cm.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("grafana_datasource").map(String::as_str), Some("1"));
    let data = cm.data.unwrap_or_default();
    let yaml = data.get(&format!("alertmanager-{NS}-main.yaml")).unwrap();
    let parsed: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(parsed["apiVersion"], 1, "{yaml}");
    let ds = &parsed["datasources"][0];
    assert_eq!(ds["type"], "alertmanager", "{yaml}");
    assert_eq!(ds["jsonData"]["implementation"], "prometheus", "{yaml}");
    let url = ds["url"].as_str().unwrap();
    assert_eq!(url, format!("http://alertmanager-main.{NS}.svc:9093"));
    let body = env
        .fetch_in_cluster(NS, &format!("{url}/api/v2/status"))
        .await
        .unwrap();
    assert!(body.contains("\"cluster\""), "{body}");
    ams.patch("main", &PatchParams::default(), &set(false))
        .await
        .unwrap();
    wait_for(
        "the datasource ConfigMap removed",
        Duration::from_secs(60),
        || async { cms.get_opt(name).await.is_ok_and(|c| c.is_none()) },
    )
    .await
    .unwrap();
}
