//! Unit tests of the generator as a whole; the golden cases are in `golden.rs`.

use super::*;
use crate::crd::{PrometheusRuleSpec, Rule, RuleGroup};
use kube::api::ObjectMeta;

fn prometheus(spec: serde_json::Value) -> Prometheus {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "main", "namespace": "monitoring"},
        "spec": spec,
    }))
    .unwrap()
}

fn rule(name: &str, rules: usize, annotation_len: usize) -> PrometheusRule {
    PrometheusRule {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("monitoring".into()),
            ..Default::default()
        },
        spec: PrometheusRuleSpec {
            groups: vec![RuleGroup {
                name: "g".into(),
                interval: None,
                rules: (0..rules)
                    .map(|i| Rule {
                        alert: Some(format!("Alert{i}")),
                        expr: "up == 0".into(),
                        annotations: BTreeMap::from([("text".to_string(), "x".repeat(annotation_len))]),
                        ..Default::default()
                    })
                    .collect(),
            }],
        },
        status: None,
    }
}

fn inputs<'a>(prom: &'a Prometheus, rules: &'a [PrometheusRule], store: &'a Store) -> Inputs<'a> {
    Inputs {
        prometheus: prom,
        namespaces: &[],
        service_monitors: &[],
        pod_monitors: &[],
        scrape_configs: &[],
        rules,
        prometheuses: &[],
        store,
    }
}

#[test]
fn rule_files_are_split_into_configmaps_and_oversized_ones_rejected() {
    let prom = prometheus(serde_json::json!({"ruleSelector": {}}));
    // 12 files of ~100 KiB: 5 fit in each 512 KiB ConfigMap.
    let mut rules: Vec<PrometheusRule> = (0..12).map(|i| rule(&format!("r{i:02}"), 10, 10_000)).collect();
    rules.push(rule("huge", 60, 10_000));
    let store = Store::new();
    let g = generate(&inputs(&prom, &rules, &store)).unwrap();
    assert_eq!(g.rule_files.len(), 12);
    assert_eq!(
        g.rule_configmaps.iter().map(BTreeMap::len).collect::<Vec<_>>(),
        vec![5, 5, 2]
    );
    for cm in &g.rule_configmaps {
        let size: usize = cm.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(size <= CONFIGMAP_BUDGET, "{size}");
    }
    assert_eq!(g.rejected.len(), 1);
    assert_eq!(g.rejected[0].object.name, "huge");
    assert_eq!(g.rejected[0].reason, Reason::RuleFileTooLarge);
    let counts = g.selected_resources();
    let rules_count = counts.iter().find(|c| c.kind == "PrometheusRule").unwrap();
    assert_eq!((rules_count.accepted, rules_count.rejected), (12, 1));
}

#[test]
fn duplicates_are_rejected() {
    let prom = prometheus(serde_json::json!({"ruleSelector": {}}));
    let rules = vec![rule("same", 1, 1), rule("same", 1, 1)];
    let store = Store::new();
    let g = generate(&inputs(&prom, &rules, &store)).unwrap();
    assert_eq!(g.accepted.len(), 1);
    assert_eq!(g.rejected[0].reason, Reason::Duplicate);
}

#[test]
fn invalid_prometheus_settings_fail_the_whole_generation() {
    let store = Store::new();
    for (spec, reason) in [
        (
            serde_json::json!({"enforcedNamespaceLabel": "not-a-label"}),
            Reason::InvalidLabelName,
        ),
        (
            serde_json::json!({"scrapeInterval": "1.5m"}),
            Reason::InvalidDuration,
        ),
        (
            serde_json::json!({"scrapeTimeout": "40s"}),
            Reason::InvalidScrapeTimeout,
        ),
        (
            serde_json::json!({"externalLabels": {"a-b": "x"}}),
            Reason::InvalidLabelName,
        ),
        (
            serde_json::json!({"serviceMonitorSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}),
            Reason::InvalidSelector,
        ),
        (
            serde_json::json!({"remoteWrite": [{"url": "x"}]}),
            Reason::InvalidField,
        ),
        (
            serde_json::json!({"remoteWrite": [{"url": "http://a", "bearerTokenSecret": {"name": "s", "key": "k"}}]}),
            Reason::SecretNotFound,
        ),
        (
            serde_json::json!({"alerting": {"alertmanagers": [{"name": "am", "port": "web", "apiVersion": "v1"}]}}),
            Reason::InvalidField,
        ),
    ] {
        let prom = prometheus(spec.clone());
        let err = generate(&inputs(&prom, &[], &store)).unwrap_err();
        assert_eq!(err.reason, reason, "{spec}");
    }
}

#[test]
fn debug_output_never_shows_secret_values() {
    let mut store = Store::new();
    store.insert_secret("monitoring", "s", "k", "very-secret");
    let prom = prometheus(serde_json::json!({
        "remoteWrite": [{"url": "http://a", "bearerTokenSecret": {"name": "s", "key": "k"}}]
    }));
    let g = generate(&inputs(&prom, &[], &store)).unwrap();
    assert!(g.prometheus_yaml.contains("very-secret"));
    let shown = format!("{g:?} {store:?}");
    assert!(!shown.contains("very-secret"), "{shown}");
}
