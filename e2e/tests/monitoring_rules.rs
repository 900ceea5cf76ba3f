//! deploy/monitoring, the monitoring Steward ships for itself, checked with the real tools:
//! every rule file passes `promtool check rules` of both supported Prometheus lines and its
//! unit tests (`promtool test rules`, deploy/monitoring/tests), every alert has a test case
//! where it fires and tells the on-call engineer what to do, and the example platform stack
//! (deploy/examples/prometheus-team.yaml) selects and accepts every monitor and rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::bins::{self, Release};
use k8s_openapi::api::core::v1::Namespace;
use prometheus_operator::config::{Inputs, Store, generate};
use prometheus_operator::crd::{PodMonitor, Prometheus, PrometheusRule, ServiceMonitor};
use serde_yaml_ng::Value;

fn monitoring_dir() -> PathBuf {
    bins::repo_root().join("deploy/monitoring")
}

/// The PrometheusRule manifests of deploy/monitoring, by file name.
fn rule_manifests() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(monitoring_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if doc["kind"].as_str() == Some("PrometheusRule") {
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), doc));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "deploy/monitoring lost its rule files");
    out
}

/// The newest promtool and the one of the oldest supported Prometheus (2.53).
fn promtools() -> Vec<PathBuf> {
    let newest = bins::promtool().unwrap_or_else(|e| panic!("{e:#}"));
    let old = bins::prometheus(Release::Old)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .with_file_name("promtool");
    assert!(old.is_file(), "{} missing: run `make test-deps`", old.display());
    vec![newest, old]
}

fn promtool(tool: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(tool).current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes each PrometheusRule's groups as a plain rule file (what the operator mounts) next to
/// a copy of the unit tests, the layout the tests' `rule_files` expect.
fn write_rule_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for (file, doc) in rule_manifests() {
        std::fs::write(dir.join(&file), serde_yaml_ng::to_string(&doc["spec"]).unwrap()).unwrap();
        files.push(file);
    }
    for entry in std::fs::read_dir(monitoring_dir().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    files
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let files = write_rule_files(tmp.path());
    let tests: Vec<String> = files.iter().map(|f| f.replace(".yaml", ".test.yaml")).collect();
    for test in &tests {
        assert!(
            tmp.path().join(test).is_file(),
            "deploy/monitoring/tests/{test} missing"
        );
    }
    for tool in promtools() {
        let mut check = vec!["check", "rules"];
        check.extend(files.iter().map(String::as_str));
        promtool(&tool, tmp.path(), &check);
        let mut test = vec!["test", "rules"];
        test.extend(tests.iter().map(String::as_str));
        promtool(&tool, tmp.path(), &test);
    }
}

#[test]
fn every_alert_fires_in_a_unit_test_and_says_what_to_do() {
    let mut alerts = BTreeSet::new();
    for (file, doc) in rule_manifests() {
        for group in doc["spec"]["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let Some(alert) = rule["alert"].as_str() else {
                    continue;
                };
                let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
                assert!(
                    ["warning", "critical"].contains(&severity),
                    "{file}: {alert} has severity {severity:?}"
                );
                for key in ["summary", "description", "runbook"] {
                    let text = rule["annotations"][key].as_str().unwrap_or_default();
                    assert!(!text.trim().is_empty(), "{file}: {alert} has no {key} annotation");
                }
                assert!(alerts.insert(alert.to_string()), "alert {alert} defined twice");
            }
        }
    }
    let mut fired = BTreeSet::new();
    for entry in std::fs::read_dir(monitoring_dir().join("tests")).unwrap() {
        let doc: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        for test in doc["tests"].as_sequence().unwrap() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let firing = case["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
                if firing {
                    fired.insert(case["alertname"].as_str().unwrap().to_string());
                }
            }
        }
    }
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts without a firing unit test: {untested:?}"
    );
    for must in [
        "EtcdMembersDown",
        "EtcdNoLeader",
        "EtcdDatabaseNearQuota",
        "StewardReconcileErrors",
    ] {
        assert!(alerts.contains(must), "{must} missing");
    }
}

/// The documents `kubectl kustomize <dir>` renders.
fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new(bins::kubectl().unwrap_or_else(|e| panic!("{e:#}")))
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn of_kind<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str) -> Vec<T> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .map(|d| serde_yaml_ng::from_value(d.clone()).unwrap())
        .collect()
}

#[test]
fn the_example_platform_stack_selects_and_accepts_everything_deploy_monitoring_ships() {
    let docs = kustomize(&monitoring_dir());
    assert!(
        docs.iter()
            .all(|d| d["metadata"]["namespace"].as_str() == Some("steward-system")),
        "deploy/monitoring must land in steward-system"
    );
    let examples: Vec<Value> = ["prometheus-team.yaml", "etcd-cluster.yaml"]
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(bins::repo_root().join("deploy/examples").join(f)).unwrap();
            serde_yaml_ng::Deserializer::from_str(&text)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect();
    let prometheus: Vec<Prometheus> = of_kind(&examples, "Prometheus");
    let mut namespaces: Vec<Namespace> = of_kind(&examples, "Namespace");
    namespaces.push(serde_yaml_ng::from_str("metadata: {name: steward-system}").unwrap());
    let service_monitors: Vec<ServiceMonitor> = of_kind(&docs, "ServiceMonitor");
    let pod_monitors: Vec<PodMonitor> = of_kind(&docs, "PodMonitor");
    let rules: Vec<PrometheusRule> = of_kind(&docs, "PrometheusRule");
    assert_eq!(
        (service_monitors.len(), pod_monitors.len(), rules.len()),
        (1, 1, 2),
        "deploy/monitoring changed: update this test"
    );
    // The etcd namespace of the example lets the platform Prometheus discover its pods.
    let etcd_ns = namespaces
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some("etcd-example"))
        .unwrap();
    assert_eq!(
        etcd_ns.metadata.labels.as_ref().unwrap()["discovery-from.monitoring.steward.dev/steward-system"],
        "true"
    );

    let store = Store::from_objects(&[], &[]);
    let generated = generate(&Inputs {
        prometheus: &prometheus[0],
        namespaces: &namespaces,
        service_monitors: &service_monitors,
        pod_monitors: &pod_monitors,
        scrape_configs: &[],
        rules: &rules,
        prometheuses: &[],
        store: &store,
    })
    .unwrap();
    assert!(generated.rejected.is_empty(), "{:?}", generated.rejected);
    let accepted: BTreeSet<String> = generated.accepted.iter().map(|o| o.name.clone()).collect();
    let shipped: BTreeSet<String> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        accepted, shipped,
        "the platform stack must select every object of deploy/monitoring"
    );
    // The members are scraped in their own namespace, labelled with their cluster's name.
    let config = &generated.prometheus_yaml;
    assert!(config.contains("etcd-example"), "{config}");
    assert!(config.contains("etcd_cluster"), "{config}");
    assert_eq!(generated.rule_files.len(), 2, "{:?}", generated.rule_files.keys());
}
