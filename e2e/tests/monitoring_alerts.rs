//! The two operators together, as shipped: the example etcd cluster, the example platform
//! Prometheus with deploy/monitoring, the example global Prometheus federating it, and the
//! example HA Alertmanager with the etcd team's AlertmanagerConfig. A member whose network is
//! cut makes `EtcdMembersDown` fire in the platform Prometheus; the global one sees the alert
//! through federation, and the Alertmanager routes it to the team's receiver; once the
//! network is back the alert resolves.
//!
//! The rules are deploy/monitoring's, with one change: `EtcdMembersDown` waits 20 s instead of
//! 3 minutes before firing, so the test does not idle; promtool's unit tests
//! (monitoring_rules.rs) cover the shipped `for`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::bins;
use e2e::harness::{Env, wait_for, wait_until};
use e2e::prometheus::query;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

const FIRING: &str = r#"ALERTS{alertname="EtcdMembersDown", alertstate="firing", namespace="etcd-example", etcd_cluster="example"}"#;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(bins::repo_root().join(path)).unwrap()
}

/// The names of the rule groups the Prometheus at `ip` has loaded.
async fn rule_groups(ip: &str) -> Vec<String> {
    let Ok(resp) = reqwest::get(format!("http://{ip}:9090/api/v1/rules")).await else {
        return Vec::new();
    };
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    body["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_cut_off_the_network_fires_etcd_members_down_and_healing_resolves_it() {
    let env = Env::with_operators(&["etcd-operator", "prometheus-operator"])
        .await
        .unwrap();
    let Some(sim) = env.require_kubesim("cuts a member pod's network") else {
        return;
    };
    env.apply(&repo_file("deploy/examples/etcd-cluster.yaml"))
        .await
        .unwrap();
    env.apply(&repo_file("deploy/examples/prometheus-team.yaml"))
        .await
        .unwrap();
    for example in ["prometheus-global", "alertmanager", "team-alert-routing"] {
        env.apply(&repo_file(&format!("deploy/examples/{example}.yaml")))
            .await
            .unwrap();
    }
    let dir = bins::repo_root().join("deploy/monitoring");
    let monitoring = env.kubectl(&["kustomize", dir.to_str().unwrap()]).await.unwrap();
    let shipped = "alert: EtcdMembersDown\n";
    assert!(monitoring.contains(shipped), "{monitoring}");
    let quick = monitoring.replacen("for: 3m", "for: 20s", 1);
    assert_ne!(
        quick, monitoring,
        "EtcdMembersDown's `for` moved: update this test"
    );
    env.apply(&quick).await.unwrap();

    let client = env.client.clone();
    let prometheus_pods: Api<Pod> = Api::namespaced(client.clone(), "steward-system");
    let ip = wait_until(
        "the platform Prometheus pod has an IP",
        Duration::from_secs(180),
        || {
            let pods = prometheus_pods.clone();
            async move {
                let pod = pods.get_opt("prometheus-platform-0").await.ok().flatten()?;
                pod.status?.pod_ip
            }
        },
    )
    .await
    .unwrap();
    // All three members scraped and up, and the rules loaded.
    wait_for(
        "three etcd members up in Prometheus",
        Duration::from_secs(300),
        || async { members_up(&ip).await == 3 },
    )
    .await
    .unwrap();
    wait_for("the etcd rule group loaded", Duration::from_secs(60), || async {
        rule_groups(&ip).await.iter().any(|g| g == "etcd")
    })
    .await
    .unwrap();
    assert!(
        query(&ip, FIRING).await.is_empty(),
        "EtcdMembersDown fired on a healthy cluster"
    );

    let members: Api<Pod> = Api::namespaced(client.clone(), "etcd-example");
    let victim = members
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=example"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .min()
        .unwrap();
    sim.cut_pod_network("etcd-example", &victim).unwrap();
    wait_for("EtcdMembersDown firing", Duration::from_secs(180), || async {
        query(&ip, FIRING).await.len() == 1
    })
    .await
    .unwrap();
    let down = query(
        &ip,
        r#"up{namespace="etcd-example", etcd_cluster="example"} == 0"#,
    )
    .await;
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0]["metric"]["pod"], victim.as_str(), "{down:?}");
    // The global Prometheus federates the platform one: the alert shows there too, with the
    // platform's labels kept (honor_labels).
    let global_ip = wait_until(
        "the global Prometheus pod has an IP",
        Duration::from_secs(60),
        || {
            let pods = prometheus_pods.clone();
            async move {
                let pod = pods.get_opt("prometheus-global-0").await.ok().flatten()?;
                pod.status?.pod_ip
            }
        },
    )
    .await
    .unwrap();
    let federated = format!(
        "{}, prometheus=\"steward-system/platform\"}}",
        FIRING.strip_suffix('}').unwrap()
    );
    wait_for(
        "EtcdMembersDown federated to global",
        Duration::from_secs(120),
        || async { query(&global_ip, &federated).await.len() == 1 },
    )
    .await
    .unwrap();

    // The platform Prometheus sends it to every Alertmanager replica, and the team's route
    // (merged from its AlertmanagerConfig, renamed into its namespace) takes it.
    let am_pods = wait_until(
        "3 Alertmanager replicas ready",
        Duration::from_secs(120),
        || async {
            let pods = e2e::alertmanager::ready_pods(&client, "steward-system", "platform").await;
            (pods.len() == 3).then_some(pods)
        },
    )
    .await
    .unwrap();
    for (pod, am_ip) in &am_pods {
        wait_for(
            &format!("EtcdMembersDown on {pod}, routed to the etcd team"),
            Duration::from_secs(120),
            || async { routed_to_team(am_ip).await },
        )
        .await
        .unwrap();
    }
    sim.restore_pod_network("etcd-example", &victim).unwrap();
    wait_for("EtcdMembersDown resolved", Duration::from_secs(180), || async {
        query(&ip, FIRING).await.is_empty() && members_up(&ip).await == 3
    })
    .await
    .unwrap();
}

/// How many members of the example cluster Prometheus scrapes successfully.
async fn members_up(ip: &str) -> usize {
    query(ip, r#"up{namespace="etcd-example", etcd_cluster="example"} == 1"#)
        .await
        .len()
}

/// Whether the Alertmanager at `ip` holds the example cluster's `EtcdMembersDown` with a
/// receiver of the etcd team's AlertmanagerConfig.
async fn routed_to_team(ip: &str) -> bool {
    let Ok(resp) = reqwest::get(format!("http://{ip}:9093/api/v2/alerts")).await else {
        return false;
    };
    let alerts: serde_json::Value = resp.json().await.unwrap_or_default();
    alerts.as_array().into_iter().flatten().any(|a| {
        a["labels"]["alertname"] == "EtcdMembersDown"
            && a["labels"]["namespace"] == "etcd-example"
            && a["receivers"].as_array().into_iter().flatten().any(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("etcd-example/etcd-team/"))
            })
    })
}
