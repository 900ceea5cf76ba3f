//! Tests of the reconcile's pure parts that span stages; each stage's own tests live with it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use steward_core::conditions;

use super::status::accepted_condition;
use super::*;
use crate::crd::common::ConfigResourceStatus;
use crate::resources::Tuning;

/// A Prometheus `mon/team-a` at generation 2 with `spec`.
pub(crate) fn prom(spec: serde_json::Value) -> Prometheus {
    let spec: crate::crd::PrometheusSpec = serde_json::from_value(spec).unwrap();
    let mut p = Prometheus::new("team-a", spec);
    p.metadata.namespace = Some("mon".into());
    p.metadata.generation = Some(2);
    p
}

#[test]
fn a_rejection_belongs_to_the_prometheus_that_reported_it() {
    let accepted = |st: &ConfigResourceStatus| {
        let c = st.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
        (c.status.clone(), c.reason.clone(), st.rejected_by.clone())
    };
    let timeout = || {
        Some((
            "InvalidScrapeTimeout",
            "scrapeTimeout 20s > interval 10s".to_string(),
        ))
    };
    // b rejects what a accepted.
    let a = accepted_condition(None, Some(1), "t/a", None, |_| true).unwrap();
    assert_eq!(accepted(&a), ("True".into(), "Accepted".into(), None));
    let b = accepted_condition(Some(&a), Some(1), "t/b", timeout(), |_| true).unwrap();
    assert_eq!(
        accepted(&b),
        ("False".into(), "InvalidScrapeTimeout".into(), Some("t/b".into()))
    );
    // a accepts again: b still selects the object, so nothing changes (no flip-flop).
    assert_eq!(accepted_condition(Some(&b), Some(1), "t/a", None, |_| true), None);
    // A third one rejecting for its own reason leaves b's report in place as well.
    assert_eq!(
        accepted_condition(Some(&b), Some(1), "t/c", timeout(), |h| h == "t/b"),
        None
    );
    // b repeats itself: no write.
    assert_eq!(
        accepted_condition(Some(&b), Some(1), "t/b", timeout(), |_| true),
        None
    );
    // b stops selecting it (or is gone): a's verdict applies.
    let a2 = accepted_condition(Some(&b), Some(1), "t/a", None, |_| false).unwrap();
    assert_eq!(accepted(&a2), ("True".into(), "Accepted".into(), None));
    // b accepts after a fix: its own rejection is lifted.
    let b2 = accepted_condition(Some(&b), Some(2), "t/b", None, |_| true).unwrap();
    assert_eq!(accepted(&b2), ("True".into(), "Accepted".into(), None));
    assert_eq!(b2.observed_generation, Some(2));
}

#[test]
fn status_reports_invalid_selector() {
    let obj = prom(serde_json::json!({
        "ruleSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}
    }));
    assert_eq!(obj.spec.replicas, 1, "serde default");
    assert_eq!(obj.spec.version, crate::crd::DEFAULT_VERSION);
    let outcome = Outcome {
        problems: validate(&obj),
        ..Default::default()
    };
    let st = desired_status(&obj, &outcome, Time(Timestamp::from_second(5).unwrap()));
    let c = conditions::find(&st.conditions, "Reconciled").unwrap();
    assert_eq!(c.reason, "InvalidSpec");
    assert!(
        c.message.contains("spec.ruleSelector.matchExpressions[0]"),
        "{}",
        c.message
    );
    assert_eq!(st.observed_generation, Some(2));
    assert_eq!(
        conditions::find(&st.conditions, "Available").unwrap().reason,
        "NoReplicasReady"
    );
}

#[test]
fn status_counts_and_availability() {
    let obj = prom(serde_json::json!({"replicas": 2}));
    let outcome = Outcome {
        generated: Some((
            vec![crate::crd::SelectedResources {
                kind: "ServiceMonitor".into(),
                accepted: 2,
                rejected: 1,
            }],
            1,
        )),
        replicas: vec![crate::crd::ShardStatus {
            shard_id: "0".into(),
            replicas: 2,
            updated_replicas: 2,
            available_replicas: 1,
            unavailable_replicas: 1,
        }],
        tuning: Tuning {
            retention_size: Some("8GiB".into()),
            gomemlimit: None,
        },
        ..Default::default()
    };
    let st = desired_status(&obj, &outcome, Time(Timestamp::from_second(5).unwrap()));
    assert_eq!(
        conditions::find(&st.conditions, "Reconciled").unwrap().reason,
        "Reconciled"
    );
    assert_eq!(
        conditions::find(&st.conditions, "Available").unwrap().reason,
        "SomeReplicasReady"
    );
    assert_eq!((st.replicas, st.available_replicas), (2, 1));
    assert_eq!(st.retention_size.as_deref(), Some("8GiB"));
    let none = Outcome {
        generated: Some((Vec::new(), 1)),
        ..Default::default()
    };
    let st = desired_status(&obj, &none, Time(Timestamp::from_second(5).unwrap()));
    assert_eq!(
        conditions::find(&st.conditions, "Reconciled").unwrap().reason,
        "NoSelectedResources"
    );
}

#[test]
fn shard_statuses_add_up_to_the_top_level_counts() {
    let mut obj = prom(serde_json::json!({"replicas": 2, "shards": 2}));
    obj.metadata.generation = Some(3);
    let shard = |id: &str, replicas, available| crate::crd::ShardStatus {
        shard_id: id.into(),
        replicas,
        updated_replicas: replicas,
        available_replicas: available,
        unavailable_replicas: replicas - available,
    };
    let outcome = Outcome {
        replicas: vec![shard("0", 2, 2), shard("1", 2, 1)],
        ..Default::default()
    };
    let st = desired_status(&obj, &outcome, Time(Timestamp::from_second(5).unwrap()));
    assert_eq!((st.replicas, st.available_replicas), (4, 3));
    assert_eq!((st.updated_replicas, st.unavailable_replicas), (4, 1));
    assert_eq!(st.shards, Some(2));
    assert_eq!(st.shard_statuses.len(), 2);
    let avail = st.conditions.iter().find(|c| c.type_ == "Available").unwrap();
    // 2 replicas times 2 shards are wanted.
    assert_eq!(avail.message, "3 of 4 replicas ready");
    // A shard whose StatefulSet does not exist yet counts zero.
    assert_eq!(status::shard_status(1, None), shard("1", 0, 0));
}
