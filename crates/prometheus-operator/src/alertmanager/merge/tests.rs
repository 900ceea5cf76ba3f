use std::path::Path;

use serde_json::json;

use super::*;
use crate::crd::{Alertmanager, AlertmanagerConfigSpec};

const BASE: &str = "route:\n  receiver: default\n  routes:\n  - receiver: default\n    matchers: [alertname=Watchdog]\nreceivers:\n- name: default\n";

/// Secret values per namespace: `team-a` has `hooks/url`; nothing else exists.
fn secrets(ns: &str, sel: &SecretKeySelector) -> Result<String, String> {
    match (ns, sel.name.as_str(), sel.key.as_str()) {
        ("team-a", "hooks", "url") => Ok("http://hooks.team-a.example/alert".into()),
        (_, name, _) => Err(format!("Secret \"{name}\" not found")),
    }
}

fn spec(v: serde_json::Value) -> AlertmanagerConfigSpec {
    serde_json::from_value(v).unwrap()
}

fn team_a() -> AlertmanagerConfigSpec {
    spec(json!({
        "route": {"receiver": "hook", "groupBy": ["alertname"], "groupWait": "1s",
                  "routes": [{"receiver": "pager", "matchers": ["severity=\"critical\""],
                              "muteTimeIntervals": ["nights"], "activeTimeIntervals": ["weekdays"]}]},
        "receivers": [
            {"name": "hook", "webhookConfigs": [{"urlSecret": {"name": "hooks", "key": "url"}}]},
            {"name": "pager", "webhookConfigs": [{"url": "http://pager.team-a.example/"}]}],
        "inhibitRules": [{"sourceMatchers": ["severity=\"critical\""], "targetMatchers": ["severity=\"warning\""],
                          "equal": ["alertname"]}],
        "muteTimeIntervals": [
            {"name": "nights", "timeIntervals": [{"times": [{"startTime": "00:00", "endTime": "07:00"}]}]},
            {"name": "weekdays", "timeIntervals": [{"weekdays": ["monday:friday"], "daysOfMonth": [{"start": 1, "end": -1}],
                                                    "months": ["january:december"], "years": ["2026:2030"]}]}]
    }))
}

fn team_b() -> AlertmanagerConfigSpec {
    spec(json!({
        "route": {"receiver": "hook"},
        "receivers": [{"name": "hook", "webhookConfigs": [{"url": "http://hooks.team-b.example/"}]}],
    }))
}

fn merged(teams: &[Team<'_>]) -> Merged {
    merge(BASE, teams, &secrets).unwrap()
}

fn doc(m: &Merged) -> Value {
    serde_yaml_ng::from_str(&m.yaml).unwrap()
}

/// The golden merged configurations, checked by the real `amtool check-config` of 0.28 and
/// 0.33 in the e2e test `alertmanager_config` (every file of the directory is).
#[test]
fn golden_merged_configs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/alertmanager/config");
    let (a, b) = (team_a(), team_b());
    let m = merged(&[
        Team {
            namespace: "team-a",
            name: "routing",
            spec: &a,
        },
        Team {
            namespace: "team-b",
            name: "routing",
            spec: &b,
        },
    ]);
    assert!(m.rejected.is_empty(), "{:?}", m.rejected);
    crate::testing::assert_golden(&dir.join("merged-teams.yaml"), &m.yaml);
    // A full base (every receiver kind, inhibit rules, nested routes) keeps all of it.
    let base = std::fs::read_to_string(dir.join("full.yaml")).unwrap();
    let m = merge(
        &base,
        &[Team {
            namespace: "team-a",
            name: "routing",
            spec: &a,
        }],
        &secrets,
    )
    .unwrap();
    assert!(m.rejected.is_empty(), "{:?}", m.rejected);
    crate::testing::assert_golden(&dir.join("merged-full.yaml"), &m.yaml);
}

#[test]
fn a_team_tree_is_enforced_to_its_namespace_and_goes_first_with_continue() {
    let (a, b) = (team_a(), team_b());
    let m = merged(&[
        Team {
            namespace: "team-a",
            name: "routing",
            spec: &a,
        },
        Team {
            namespace: "team-b",
            name: "r2",
            spec: &b,
        },
    ]);
    assert_eq!(
        m.accepted,
        [
            ("team-a".into(), "routing".into()),
            ("team-b".into(), "r2".into())
        ]
    );
    let d = doc(&m);
    let routes = d["route"]["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[0]["receiver"], "team-a/routing/hook");
    assert_eq!(routes[0]["matchers"], json!(["namespace=\"team-a\""]));
    assert_eq!(routes[0]["continue"], true);
    assert_eq!(routes[1]["receiver"], "team-b/r2/hook");
    assert_eq!(routes[1]["matchers"], json!(["namespace=\"team-b\""]));
    // The base's own route stays, after the teams'.
    assert_eq!(routes[2]["matchers"], json!(["alertname=Watchdog"]));
    // A team's own matchers below the top route are kept as written.
    let child = &routes[0]["routes"][0];
    assert_eq!(child["matchers"], json!(["severity=\"critical\""]));
    assert!(child.get("continue").is_none());
    let inhibit = &d["inhibit_rules"][0];
    assert_eq!(
        inhibit["source_matchers"],
        json!(["namespace=\"team-a\"", "severity=\"critical\""])
    );
    assert_eq!(
        inhibit["target_matchers"],
        json!(["namespace=\"team-a\"", "severity=\"warning\""])
    );
}

#[test]
fn every_name_of_a_team_is_prefixed_with_namespace_and_object() {
    let a = team_a();
    let d = doc(&merged(&[Team {
        namespace: "team-a",
        name: "routing",
        spec: &a,
    }]));
    let names: Vec<&str> = d["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "team-a/routing/hook", "team-a/routing/pager"]);
    assert_eq!(
        d["receivers"][1]["webhook_configs"][0]["url"],
        "http://hooks.team-a.example/alert"
    );
    let child = &d["route"]["routes"][0]["routes"][0];
    assert_eq!(child["receiver"], "team-a/routing/pager");
    assert_eq!(child["mute_time_intervals"], json!(["team-a/routing/nights"]));
    assert_eq!(child["active_time_intervals"], json!(["team-a/routing/weekdays"]));
    let intervals: Vec<&str> = d["time_intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(intervals, ["team-a/routing/nights", "team-a/routing/weekdays"]);
    assert_eq!(
        d["time_intervals"][1]["time_intervals"][0]["days_of_month"],
        json!(["1:-1"])
    );
}

#[test]
fn an_invalid_team_is_rejected_alone_with_its_problems() {
    let (a, b) = (team_a(), team_b());
    let bad = spec(json!({
        "route": {"receiver": "nobody", "routes": [{"receiver": "hook", "matchers": ["severity"],
                                                    "muteTimeIntervals": ["never"]}]},
        "receivers": [
            {"name": "hook", "webhookConfigs": [{"urlSecret": {"name": "hooks", "key": "url"}}]},
            {"name": "hook", "webhookConfigs": [{"url": "http://x/"}]}],
        "inhibitRules": [{"sourceMatchers": ["=x"]}],
        "muteTimeIntervals": [{"name": "t", "timeIntervals": [{"times": [{"startTime": "10:00", "endTime": "09:00"}],
                                                              "weekdays": ["friday:monday"],
                                                              "daysOfMonth": [{"start": 0, "end": 3}]}]}]
    }));
    let m = merged(&[
        Team {
            namespace: "team-a",
            name: "routing",
            spec: &a,
        },
        Team {
            namespace: "team-c",
            name: "broken",
            spec: &bad,
        },
        Team {
            namespace: "team-b",
            name: "routing",
            spec: &b,
        },
    ]);
    assert_eq!(
        m.accepted,
        [
            ("team-a".into(), "routing".into()),
            ("team-b".into(), "routing".into())
        ]
    );
    assert_eq!(m.rejected.len(), 1);
    let r = &m.rejected[0];
    assert_eq!((r.namespace.as_str(), r.name.as_str()), ("team-c", "broken"));
    assert_eq!(
        r.problems,
        [
            "receivers[0].webhookConfigs[0].urlSecret: Secret \"hooks\" not found",
            "receivers[1]: receiver \"hook\" is defined more than once",
            "muteTimeIntervals[0].timeIntervals[0].times[0]: startTime must be before endTime",
            "muteTimeIntervals[0].timeIntervals[0].weekdays[0]: \"friday:monday\": the start is after the end",
            "muteTimeIntervals[0].timeIntervals[0].daysOfMonth[0]: 0:3 is not a valid range (1 to 31 or -31 to -1, start before end)",
            "route: receiver \"nobody\" is not defined in receivers",
            "route.routes[0].matchers[0]: \"severity\": no operator (one of =, !=, =~, !~)",
            "route.routes[0].muteTimeIntervals: time interval \"never\" is not defined",
            "inhibitRules[0].sourceMatchers[0]: \"=x\": the label name is empty",
        ]
    );
    // The others merged exactly as without it.
    let without = merged(&[
        Team {
            namespace: "team-a",
            name: "routing",
            spec: &a,
        },
        Team {
            namespace: "team-b",
            name: "routing",
            spec: &b,
        },
    ]);
    assert_eq!(m.yaml, without.yaml);
}

#[test]
fn a_top_route_without_receiver_is_rejected() {
    let s = spec(json!({"route": {"groupBy": ["x"]}, "receivers": [{"name": "r"}]}));
    let m = merged(&[Team {
        namespace: "n",
        name: "o",
        spec: &s,
    }]);
    assert_eq!(
        m.rejected[0].problems,
        ["route: the top route needs a receiver of this object"]
    );
    assert_eq!(m.yaml, merged(&[]).yaml);
}

#[test]
fn without_teams_the_base_is_unchanged_and_a_bad_base_is_an_error() {
    let d = doc(&merged(&[]));
    let base: Value = serde_yaml_ng::from_str(BASE).unwrap();
    assert_eq!(d, base);
    assert!(merge("route: {}\nreceivers: []\n", &[], &secrets).is_err());
}

#[test]
fn a_team_without_route_contributes_receivers_and_rules_only() {
    let s = spec(json!({"receivers": [{"name": "r"}], "inhibitRules": [{"targetMatchers": ["a=b"]}]}));
    let d = doc(&merged(&[Team {
        namespace: "n",
        name: "o",
        spec: &s,
    }]));
    assert_eq!(d["route"]["routes"].as_array().unwrap().len(), 1);
    assert_eq!(d["receivers"][1]["name"], "n/o/r");
    assert_eq!(
        d["inhibit_rules"][0]["source_matchers"],
        json!(["namespace=\"n\""])
    );
}

#[test]
fn selection_follows_upstream_semantics() {
    let am = |spec: serde_json::Value| -> Alertmanager {
        serde_json::from_value(json!({
            "apiVersion": "monitoring.steward.dev/v1alpha1", "kind": "Alertmanager",
            "metadata": {"name": "main", "namespace": "monitoring"}, "spec": spec,
        }))
        .unwrap()
    };
    let labels = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let team = labels(&[("routing", "team")]);
    let prod = labels(&[("env", "prod")]);
    // No selector: nothing.
    assert!(!selects(&am(json!({})), "monitoring", &team, None));
    // A selector without namespace selector: the Alertmanager's namespace only.
    let own = am(json!({"alertmanagerConfigSelector": {"matchLabels": {"routing": "team"}}}));
    assert!(selects(&own, "monitoring", &team, None));
    assert!(!selects(&own, "team-a", &team, None));
    assert!(!selects(&own, "monitoring", &BTreeMap::new(), None));
    // `{}` namespaces: all of them; a labelled one: those labelled.
    let all = am(json!({"alertmanagerConfigSelector": {}, "alertmanagerConfigNamespaceSelector": {}}));
    assert!(selects(&all, "team-a", &BTreeMap::new(), None));
    let some = am(json!({"alertmanagerConfigSelector": {},
                         "alertmanagerConfigNamespaceSelector": {"matchLabels": {"env": "prod"}}}));
    assert!(selects(&some, "team-a", &team, Some(&prod)));
    assert!(!selects(&some, "team-b", &team, Some(&team)));
    assert!(!selects(&some, "team-c", &team, None));
    // An invalid selector selects nothing.
    let bad =
        am(json!({"alertmanagerConfigSelector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}));
    assert!(!selects(&bad, "monitoring", &team, None));
}
