//! The Prometheus controller.
//!
//! This build registers the controller and runs its reconcile shape end to end — fetch,
//! validate, status — so the operator really watches and reports on Prometheus objects.
//! Generating configuration and the StatefulSet is the stack work that follows.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use steward_core::conditions::{self, NewCondition, Status};
use steward_core::{ControllerRuntime, EventRecorder, ReconcileError};

use crate::crd::{Prometheus, PrometheusStatus};
use crate::{FIELD_MANAGER, OPERATOR_NAME};

/// Name of the controller in metrics and logs.
pub const CONTROLLER: &str = "prometheus";

/// Reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace.
    #[error("Prometheus {0} has no namespace")]
    NoNamespace(String),
    /// The API refused a status write.
    #[error("writing status of {name}: {source}")]
    Status {
        /// Object name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::NoNamespace(_) => "invalid_object",
            Error::Status { .. } => "api",
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    client: kube::Client,
    recorder: EventRecorder,
}

const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Problems with one label selector, prefixed by its field path.
pub fn validate_selector(field: &str, selector: &LabelSelector) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{field}.matchExpressions[{i}]");
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => problems.push(format!(
                "{path}: operator {} needs at least one value",
                expr.operator
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                problems.push(format!("{path}: operator {} takes no values", expr.operator))
            }
            op if !OPERATORS.contains(&op) => problems.push(format!(
                "{path}: unknown operator {op:?}, expected one of {}",
                OPERATORS.join(", ")
            )),
            _ => {}
        }
    }
    problems
}

/// Checks what the CRD schema cannot express.
pub fn validate(obj: &Prometheus) -> Vec<String> {
    let s = &obj.spec;
    [
        ("spec.serviceMonitorSelector", &s.service_monitor_selector),
        (
            "spec.serviceMonitorNamespaceSelector",
            &s.service_monitor_namespace_selector,
        ),
        ("spec.podMonitorSelector", &s.pod_monitor_selector),
        (
            "spec.podMonitorNamespaceSelector",
            &s.pod_monitor_namespace_selector,
        ),
        ("spec.ruleSelector", &s.rule_selector),
        ("spec.ruleNamespaceSelector", &s.rule_namespace_selector),
        ("spec.scrapeConfigSelector", &s.scrape_config_selector),
        (
            "spec.scrapeConfigNamespaceSelector",
            &s.scrape_config_namespace_selector,
        ),
    ]
    .into_iter()
    .filter_map(|(field, sel)| sel.as_ref().map(|sel| validate_selector(field, sel)))
    .flatten()
    .collect()
}

/// Label selector of a Prometheus' pods (used by the scale subresource).
pub fn pod_selector(name: &str) -> String {
    format!(
        "app.kubernetes.io/name=prometheus,app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={OPERATOR_NAME}"
    )
}

/// The status this reconcile reports.
pub fn desired_status(obj: &Prometheus, problems: &[String], now: Time) -> PrometheusStatus {
    let mut status = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    status.observed_generation = generation;
    status.selector = Some(pod_selector(&obj.name_any()));
    let (cond_status, reason, message) = if !problems.is_empty() {
        (Status::False, "InvalidSpec", problems.join("; "))
    } else if obj.spec.paused {
        (
            Status::False,
            "Paused",
            "spec.paused is true: no changes are made".to_string(),
        )
    } else {
        (
            Status::Unknown,
            "StackNotImplemented",
            "this operator build validates Prometheus objects but does not deploy them yet".to_string(),
        )
    };
    conditions::set(
        &mut status.conditions,
        NewCondition {
            type_: "Reconciled",
            status: cond_status,
            reason,
            message,
            observed_generation: generation,
        },
        now,
    );
    status
}

async fn reconcile(obj: Arc<Prometheus>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = obj.name_any();
    let ns = obj.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let problems = validate(&obj);
    let status = desired_status(&obj, &problems, conditions::now());
    if !problems.is_empty()
        && obj.status.as_ref().and_then(|s| s.observed_generation) != obj.metadata.generation
    {
        ctx.recorder
            .warning(obj.as_ref(), "InvalidSpec", "Validate", problems.join("; "))
            .await;
    }
    if obj.status.as_ref() != Some(&status) {
        let api: Api<Prometheus> = Api::namespaced(ctx.client.clone(), &ns);
        steward_core::apply::apply_status(&api, obj.as_ref(), FIELD_MANAGER, &status)
            .await
            .map_err(|source| Error::Status {
                name: name.clone(),
                source,
            })?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Runs the Prometheus controller until the runtime shuts down.
pub async fn run(rt: ControllerRuntime) {
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        recorder: EventRecorder::new(rt.client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
    });
    steward_core::controller::run_namespaced::<Prometheus, _, _, _, _>(&rt, CONTROLLER, ctx, reconcile).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use k8s_openapi::jiff::Timestamp;

    fn req(op: &str, values: Option<Vec<&str>>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: "team".into(),
            operator: op.into(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        }
    }

    #[test]
    fn selector_rules() {
        let ok = LabelSelector {
            match_expressions: Some(vec![req("In", Some(vec!["a"])), req("Exists", None)]),
            match_labels: None,
        };
        assert!(validate_selector("s", &ok).is_empty());
        let bad = LabelSelector {
            match_expressions: Some(vec![
                req("In", None),
                req("Exists", Some(vec!["x"])),
                req("Like", None),
            ]),
            match_labels: None,
        };
        let p = validate_selector("s", &bad);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[2].contains("unknown operator \"Like\""));
    }

    #[test]
    fn status_reports_invalid_selector() {
        let spec: crate::crd::PrometheusSpec = serde_json::from_value(serde_json::json!({
            "ruleSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}
        }))
        .unwrap();
        assert_eq!(spec.replicas, 1, "serde default");
        assert_eq!(spec.version, crate::crd::DEFAULT_VERSION);
        let mut obj = Prometheus::new("team-a", spec);
        obj.metadata.generation = Some(2);
        let st = desired_status(&obj, &validate(&obj), Time(Timestamp::from_second(5).unwrap()));
        let c = conditions::find(&st.conditions, "Reconciled").unwrap();
        assert_eq!(c.reason, "InvalidSpec");
        assert!(
            c.message.contains("spec.ruleSelector.matchExpressions[0]"),
            "{}",
            c.message
        );
        assert_eq!(st.observed_generation, Some(2));
    }
}
