//! Per-team alert routing end to end on kubesim with real processes: a Prometheus with two
//! replicas evaluates an always-firing rule per team (in the team's namespace, the
//! `namespace` label enforced) and alerts a 3-replica Alertmanager named by object. Teams A
//! and B each route with an AlertmanagerConfig to a webhook served by this test on the host
//! (B's URL from a Secret that appears after the AlertmanagerConfig).
//! A's webhook gets A's alert exactly once (one notification for the group, although both
//! Prometheus replicas sent it to all three Alertmanagers), B's gets only B's, and an invalid
//! AlertmanagerConfig in a third namespace is `Accepted=False` while A and B keep delivering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::harness::{Env, settle, wait_for};
use e2e::prometheus::{accepted, api, discovered_alertmanagers, own_metric, replica_ips};
use e2e::webhook::WebhookServer;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

const NS: &str = "am-routing";
/// How long Alertmanager waits before another notification for a group that changed. The
/// duplicate check waits longer than this plus two peer timeouts (15 s each: the second and
/// third replica hold a notification that long before sending it themselves, unless the
/// first one's has reached them).
const GROUP_INTERVAL: &str = "5s";

/// An always-firing rule per team, in the team's namespace (Prometheus enforces the
/// `namespace` label, which the teams' routes match).
fn rules() -> String {
    ["a", "b"]
        .map(|team| {
            format!(
                r#"---
apiVersion: monitoring.steward.dev/v1alpha1
kind: PrometheusRule
metadata: {{name: always, namespace: team-{team}}}
spec:
  groups:
    - name: always
      rules:
        - alert: AlwaysFiring
          expr: vector(1)
          labels: {{team: "{team}"}}
"#
            )
        })
        .concat()
}

fn stack(hook: &WebhookServer) -> String {
    let mut yaml = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}, labels: {{pod-security.kubernetes.io/enforce: restricted}}}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Alertmanager
metadata: {{name: main, namespace: {NS}}}
spec:
  replicas: 3
  alertmanagerConfigSelector: {{matchLabels: {{routing: team}}}}
  alertmanagerConfigNamespaceSelector: {{}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: Prometheus
metadata: {{name: main, namespace: {NS}}}
spec:
  replicas: 2
  evaluationInterval: 2s
  ruleSelector: {{}}
  ruleNamespaceSelector: {{matchLabels: {{alerts: team}}}}
  enforcedNamespaceLabel: namespace
  alerting:
    alertmanagers: [{{alertmanager: main}}]
  storage: {{emptyDir: {{}}}}
"#
    );
    for team in ["a", "b"] {
        yaml.push_str(&format!(
            r#"---
apiVersion: v1
kind: Namespace
metadata: {{name: team-{team}, labels: {{alerts: team}}}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: AlertmanagerConfig
metadata: {{name: routing, namespace: team-{team}, labels: {{routing: team}}}}
spec:
  route:
    receiver: hook
    groupBy: [alertname]
    groupWait: 1s
    groupInterval: {GROUP_INTERVAL}
    repeatInterval: 1h
  receivers:
    - name: hook
      webhookConfigs: [{webhook}]
"#,
            // Team B's URL is a Secret's, created later by the test.
            webhook = if team == "a" {
                format!("{{url: \"{}\"}}", hook.url("team-a"))
            } else {
                "{urlSecret: {name: hook, key: url}}".to_string()
            }
        ));
    }
    // Team C's route names a receiver it does not define.
    yaml.push_str(&format!(
        r#"---
apiVersion: v1
kind: Namespace
metadata: {{name: team-c}}
---
apiVersion: monitoring.steward.dev/v1alpha1
kind: AlertmanagerConfig
metadata: {{name: routing, namespace: team-c, labels: {{routing: team}}}}
spec:
  route: {{receiver: nobody}}
  receivers:
    - name: hook
      webhookConfigs: [{{url: "{url}"}}]
"#,
        url = hook.url("team-c")
    ));
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_alerts_reach_their_own_webhook_exactly_once() {
    let env = Env::with_operators(&["prometheus-operator"]).await.unwrap();
    let Some(sim) = env.require_kubesim("pods reach the test's webhook on kubesim's host address") else {
        return;
    };
    let host = sim.host_address().expect("kubesim in process mode");
    let hook = WebhookServer::start(&host).await.unwrap();
    let t0 = Instant::now();
    let lap = |what: &str| eprintln!("[{:>5.1}s] {what}", t0.elapsed().as_secs_f64());
    env.apply(&stack(&hook)).await.unwrap();

    // An alerting entry names an Alertmanager or a Service (with its port), never both.
    for (entry, message) in [
        (
            "{alertmanager: main, name: alertmanager-main, port: web}",
            "set exactly one of alertmanager",
        ),
        ("{}", "set exactly one of alertmanager"),
        ("{name: alertmanager-main}", "port is required with name"),
    ] {
        let refused = env
            .apply(&format!(
                "apiVersion: monitoring.steward.dev/v1alpha1\nkind: Prometheus\nmetadata: {{name: bad, namespace: {NS}}}\nspec: {{alerting: {{alertmanagers: [{entry}]}}}}\n"
            ))
            .await;
        let err = format!("{:#}", refused.expect_err(entry));
        assert!(err.contains(message), "{entry}: {err}");
    }

    // Team C is refused on its own, with the reason and a Warning Event.
    let team_c = api(&env.client, "team-c", "AlertmanagerConfig", "alertmanagerconfigs");
    wait_for(
        "team-c's AlertmanagerConfig Accepted=False",
        Duration::from_secs(120),
        || async {
            team_c
                .get("routing")
                .await
                .ok()
                .and_then(|o| accepted(&o))
                .is_some_and(|(s, reason, message)| {
                    s == "False" && reason == "InvalidConfiguration" && message.contains("\"nobody\"")
                })
        },
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(env.client.clone(), "team-c");
    wait_for(
        "a Warning Event on team-c's AlertmanagerConfig",
        Duration::from_secs(30),
        || async {
            events.list(&ListParams::default()).await.is_ok_and(|l| {
                l.items.iter().any(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("AlertmanagerConfig")
                        && e.reason.as_deref() == Some("InvalidConfiguration")
                })
            })
        },
    )
    .await
    .unwrap();
    lap("team-c refused");
    // Team B waits for its Secret, then is merged too (the Secret's watch or the periodic
    // reconcile picks it up).
    let team_b = api(&env.client, "team-b", "AlertmanagerConfig", "alertmanagerconfigs");
    wait_for(
        "team-b refused for its missing Secret",
        Duration::from_secs(60),
        || async {
            team_b
                .get("routing")
                .await
                .ok()
                .and_then(|o| accepted(&o))
                .is_some_and(|(s, _, message)| s == "False" && message.contains("Secret \"hook\" not found"))
        },
    )
    .await
    .unwrap();
    env.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: hook, namespace: team-b}}\nstringData: {{url: \"{}\"}}\n",
        hook.url("team-b")
    ))
    .await
    .unwrap();
    for team in ["team-a", "team-b"] {
        let configs = api(&env.client, team, "AlertmanagerConfig", "alertmanagerconfigs");
        wait_for(
            &format!("{team}'s AlertmanagerConfig Accepted"),
            Duration::from_secs(90),
            || async {
                configs
                    .get("routing")
                    .await
                    .ok()
                    .and_then(|o| accepted(&o))
                    .is_some_and(|(s, reason, _)| s == "True" && reason == "Accepted")
            },
        )
        .await
        .unwrap();
    }
    lap("team-a and team-b accepted");

    // The rules come once both Prometheus replicas send to the three Alertmanager pods (an
    // alert that fired before would wait out Prometheus' resend delay).
    wait_for(
        "both Prometheus replicas discover the 3 Alertmanager pods",
        Duration::from_secs(180),
        || discovered_alertmanagers(&env.client, NS, "main", 2, 3),
    )
    .await
    .unwrap();
    env.apply(&rules()).await.unwrap();
    lap("Alertmanagers discovered, rules applied");

    // Both teams' alerts arrive, each at its own webhook only.
    let arrived = wait_for(
        "a notification at team-a's and team-b's webhooks",
        Duration::from_secs(300),
        || async { !hook.to("team-a").is_empty() && !hook.to("team-b").is_empty() },
    )
    .await;
    if let Err(e) = arrived {
        let got = hook.all();
        panic!(
            "{e:#}\nreceived: {got:?}\n{}",
            env.diagnostics(NS, "alertmanagers,prometheuses,statefulsets,pods")
                .await
        );
    }
    lap("both webhooks notified");

    // No second notification: not from the other Prometheus replica, nor from another
    // Alertmanager replica, after well over a group interval and two peer timeouts.
    let counts = settle(
        "notifications received",
        Duration::from_secs(45),
        Duration::from_secs(180),
        || async { hook.all().len() },
    )
    .await
    .unwrap();
    lap("no further notification for 45 s");
    for (team, other) in [("team-a", "b"), ("team-b", "a")] {
        let got = hook.to(team);
        assert_eq!(got.len(), 1, "{team}: {got:#?}");
        let n = &got[0];
        assert_eq!(n["receiver"], format!("{team}/routing/hook"), "{n:#}");
        let alerts = n["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 1, "{n:#}");
        let labels = &alerts[0]["labels"];
        assert_eq!(labels["alertname"], "AlwaysFiring", "{n:#}");
        assert_eq!(labels["namespace"], team, "{n:#}");
        assert_ne!(labels["team"], other, "{team} got team {other}'s alert: {n:#}");
        assert!(labels.get("prometheus_replica").is_none(), "{n:#}");
    }
    assert!(hook.to("team-c").is_empty());
    assert_eq!(counts, 2, "{:?}", hook.all());

    // Once means deduplicated, not sent once: each Prometheus replica (which discovered all
    // three Alertmanager pods, not one Service address, above) sent them the alerts.
    let ips = replica_ips(&env.client, NS, "main", 2).await.unwrap();
    for ip in &ips {
        let sent = own_metric(ip, "prometheus_notifications_sent_total").await;
        assert!(sent.is_some_and(|n| n >= 3.0), "Prometheus {ip}: {sent:?}");
    }

    // The base configuration was never broken by team C.
    let am = api(&env.client, NS, "Alertmanager", "alertmanagers")
        .get("main")
        .await
        .unwrap();
    let reconciled = am.data["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Reconciled"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(reconciled["status"], "True", "{reconciled:#}");
}
