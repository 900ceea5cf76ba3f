//! Status: of the Prometheus (`Reconciled` and `Available`, counts, tuned settings) and the
//! `Accepted` condition of every object it selects, with Warning Events for what is refused.
//! Every write goes through `steward_core::apply`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use steward_core::apply::Conflict;
use steward_core::conditions::{self, NewCondition, Status};
use tracing::warn;

use super::build::Built;
use super::caches::SelectedSet;
use super::fetch::ConfigInputs;
use super::{Context, Error, IDLE};
use crate::OPERATOR_NAME;
use crate::config::{self, Generated, Kind, Problem};
use crate::crd::common::ConfigResourceStatus;
use crate::crd::{
    PodMonitor, Prometheus, PrometheusRule, PrometheusStatus, ScrapeConfig, ServiceMonitor, ShardStatus,
};
use crate::resources::Tuning;

/// How soon to look again after a conflict: someone may remove the object in the way.
const AFTER_CONFLICT: Duration = Duration::from_secs(60);
/// How soon to look again while replicas are not all ready.
const WHILE_STARTING: Duration = Duration::from_secs(5);

/// What the reconcile found, for the status.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Problems with the Prometheus itself (nothing deployed).
    pub problems: Vec<String>,
    /// The generated configuration, when the Prometheus is valid.
    pub generated: Option<(Vec<crate::crd::SelectedResources>, usize)>,
    /// The replicas of each shard's StatefulSet, shard 0 first.
    pub replicas: Vec<ShardStatus>,
    /// Tuned settings.
    pub tuning: Tuning,
    /// What the user should know although everything applied.
    pub notes: Vec<String>,
    /// Objects we would write that belong to someone else (nothing was written).
    pub conflict: Option<String>,
}

/// The replicas of shard `shard`'s StatefulSet `sts` (all zero while it does not exist).
pub fn shard_status(shard: usize, sts: Option<&k8s_openapi::api::apps::v1::StatefulSet>) -> ShardStatus {
    let st = sts.and_then(|s| s.status.clone()).unwrap_or_default();
    let available = st
        .available_replicas
        .unwrap_or(0)
        .max(st.ready_replicas.unwrap_or(0));
    ShardStatus {
        shard_id: shard.to_string(),
        replicas: st.replicas,
        updated_replicas: st.updated_replicas.unwrap_or(0),
        available_replicas: available,
        unavailable_replicas: (st.replicas - available).max(0),
    }
}

/// Pods wanted in all: replicas times shards.
fn wanted_pods(obj: &Prometheus) -> i32 {
    obj.spec.replicas.saturating_mul(crate::resources::shards(obj))
}

/// Label selector of a Prometheus' pods (used by the scale subresource).
pub fn pod_selector(name: &str) -> String {
    format!(
        "app.kubernetes.io/name=prometheus,app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={OPERATOR_NAME}"
    )
}

/// Whether `obj`'s current generation has not been reported yet: Warning Events are sent
/// once per generation.
fn new_generation(obj: &Prometheus) -> bool {
    obj.status.as_ref().and_then(|s| s.observed_generation) != obj.metadata.generation
}

/// The Prometheus is invalid or paused (`problems` empty): nothing is deployed.
pub(super) async fn invalid(
    ctx: &Context,
    obj: &Prometheus,
    replicas: Vec<ShardStatus>,
    problems: Vec<String>,
) -> Result<Action, Error> {
    let outcome = Outcome {
        problems,
        replicas,
        ..Default::default()
    };
    finish(ctx, obj, &outcome, IDLE).await
}

/// The generator refused the Prometheus as a whole.
pub(super) async fn config_refused(
    ctx: &Context,
    obj: &Prometheus,
    replicas: Vec<ShardStatus>,
    problem: Problem,
) -> Result<Action, Error> {
    let problems = vec![format!("{}: {}", problem.reason.as_str(), problem.message)];
    if new_generation(obj) {
        ctx.recorder
            .warning(obj, "InvalidSpec", "GenerateConfig", problems.join("; "))
            .await;
    }
    invalid(ctx, obj, replicas, problems).await
}

/// An object we would write belongs to someone else: said once as a Warning Event, and in
/// the status until it is gone.
pub(super) async fn conflict(
    ctx: &Context,
    obj: &Prometheus,
    replicas: Vec<ShardStatus>,
    conflicts: Vec<Conflict>,
) -> Result<Action, Error> {
    let message = conflicts
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    let known = obj
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Reconciled"))
        .is_some_and(|c| c.reason == "ChildConflict" && c.message == message);
    if !known {
        ctx.recorder
            .warning(obj, "ChildConflict", "Apply", message.clone())
            .await;
    }
    let outcome = Outcome {
        replicas,
        conflict: Some(message),
        ..Default::default()
    };
    finish(ctx, obj, &outcome, AFTER_CONFLICT).await
}

/// Everything applied: the status of every selected object, Events for newly rejected ones,
/// what the next watch events should wake, metrics, and the Prometheus' own status.
pub(super) async fn report(
    ctx: &Context,
    obj: &Prometheus,
    replicas: Vec<ShardStatus>,
    generated: &Generated,
    inputs: &ConfigInputs,
    built: Built,
    unsupported: &[(config::ObjectRef, Vec<String>)],
) -> Result<Action, Error> {
    report_objects(ctx, obj, generated).await;
    report_upstream(ctx, obj, generated, unsupported).await;
    let selected: SelectedSet = generated
        .accepted
        .iter()
        .chain(generated.rejected.iter().map(|r| &r.object))
        .map(|o| (o.kind, o.namespace.clone(), o.name.clone()))
        .collect();
    if let Ok(mut last) = ctx.caches.last.lock() {
        last.insert(ObjectRef::from_obj(obj), (selected, inputs.namespaces.clone()));
    }
    let ns = obj.namespace().unwrap_or_default();
    ctx.metrics.record_selection(&ns, &obj.name_any(), generated);
    let ready: i32 = replicas.iter().map(|s| s.available_replicas).sum();
    let outcome = Outcome {
        generated: Some((generated.selected_resources(), built.rule_configmaps)),
        replicas,
        tuning: built.tuning,
        notes: built.notes,
        ..Default::default()
    };
    if new_generation(obj) && !built.federation_refused.is_empty() {
        ctx.recorder
            .warning(
                obj,
                "FederationNotAllowed",
                "Validate",
                built.federation_refused.join("; "),
            )
            .await;
    }
    let requeue = if ready < wanted_pods(obj) {
        WHILE_STARTING
    } else {
        IDLE
    };
    finish(ctx, obj, &outcome, requeue).await
}

/// Writes the Prometheus' status when it changed (and a Warning Event for new problems).
async fn finish(
    ctx: &Context,
    obj: &Prometheus,
    outcome: &Outcome,
    requeue: Duration,
) -> Result<Action, Error> {
    if !outcome.problems.is_empty() && new_generation(obj) {
        ctx.recorder
            .warning(obj, "InvalidSpec", "Validate", outcome.problems.join("; "))
            .await;
    }
    let status = desired_status(obj, outcome, conditions::now());
    if obj.status.as_ref() != Some(&status) {
        ctx.applier
            .apply_status(obj, &status)
            .await
            .map_err(|source| Error::Status {
                name: obj.name_any(),
                source,
            })?;
    }
    Ok(Action::requeue(requeue))
}

/// The status this reconcile reports. Pure.
pub fn desired_status(obj: &Prometheus, outcome: &Outcome, now: Time) -> PrometheusStatus {
    let mut status = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    status.observed_generation = generation;
    status.selector = Some(pod_selector(&obj.name_any()));
    let sum = |f: fn(&ShardStatus) -> i32| outcome.replicas.iter().map(f).sum::<i32>();
    let ready = sum(|s| s.available_replicas);
    status.replicas = sum(|s| s.replicas);
    status.available_replicas = ready;
    status.updated_replicas = sum(|s| s.updated_replicas);
    status.unavailable_replicas = sum(|s| s.unavailable_replicas);
    status.shards = Some(crate::resources::shards(obj));
    status.shard_statuses = outcome.replicas.clone();
    status.retention_size = outcome.tuning.retention_size.clone();
    status.go_mem_limit = outcome.tuning.gomemlimit.clone();
    let (cond_status, reason, message) = if !outcome.problems.is_empty() {
        (Status::False, "InvalidSpec", outcome.problems.join("; "))
    } else if let Some(conflict) = &outcome.conflict {
        (Status::False, "ChildConflict", conflict.clone())
    } else if obj.spec.paused {
        (
            Status::False,
            "Paused",
            "spec.paused is true: no changes are made".to_string(),
        )
    } else if let Some((selected, _)) = &outcome.generated {
        status.selected_resources = selected.clone();
        let accepted: i32 = selected.iter().map(|s| s.accepted).sum();
        let rejected: i32 = selected.iter().map(|s| s.rejected).sum();
        let (s, r, mut m) = if accepted + rejected == 0 {
            (
                Status::True,
                "NoSelectedResources",
                "configuration generated; no monitor, rule or scrape config is selected".to_string(),
            )
        } else {
            (
                Status::True,
                "Reconciled",
                format!("configuration generated from {accepted} objects; {rejected} rejected"),
            )
        };
        for note in &outcome.notes {
            m.push_str("; ");
            m.push_str(note);
        }
        (s, r, m)
    } else {
        (
            Status::Unknown,
            "Pending",
            "configuration not generated yet".to_string(),
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
        now.clone(),
    );
    let want = wanted_pods(obj);
    let (avail, reason, message) = if want == 0 {
        (Status::False, "ScaledToZero", "spec.replicas is 0".to_string())
    } else if ready >= want {
        (
            Status::True,
            "AllReplicasReady",
            format!("{ready} of {want} replicas ready"),
        )
    } else if ready > 0 {
        (
            Status::True,
            "SomeReplicasReady",
            format!("{ready} of {want} replicas ready"),
        )
    } else {
        (
            Status::False,
            "NoReplicasReady",
            format!("0 of {want} replicas ready"),
        )
    };
    conditions::set(
        &mut status.conditions,
        NewCondition {
            type_: "Available",
            status: avail,
            reason,
            message,
            observed_generation: generation,
        },
        now,
    );
    status
}

/// The next status of a monitor, rule or scrape config after Prometheus `me` judged it, or
/// `None` when nothing changes. Several Prometheus objects may select the same object and
/// judge it differently (a scrape timeout is checked against each one's own interval), so a
/// rejection wins and belongs to the Prometheus that reported it: the others leave it alone
/// while `holder_active` says that one still selects the object. Without this rule two
/// Prometheus objects would overwrite each other's verdict, and each write would wake the
/// other, forever.
pub(crate) fn accepted_condition(
    current: Option<&ConfigResourceStatus>,
    generation: Option<i64>,
    me: &str,
    verdict: Option<(&str, String)>,
    holder_active: impl Fn(&str) -> bool,
) -> Option<ConfigResourceStatus> {
    let held_by_other = current
        .filter(|c| {
            c.conditions
                .iter()
                .any(|c| c.type_ == "Accepted" && c.status == "False")
        })
        .and_then(|c| c.rejected_by.as_deref())
        .is_some_and(|holder| holder != me && holder_active(holder));
    if held_by_other {
        return None;
    }
    let (status, reason, message, rejected_by) = match verdict {
        None => (Status::True, "Accepted", "valid and in use".to_string(), None),
        Some((reason, message)) => (Status::False, reason, message, Some(me.to_string())),
    };
    let mut next = current.cloned().unwrap_or_default();
    next.observed_generation = generation;
    next.rejected_by = rejected_by;
    conditions::set(
        &mut next.conditions,
        NewCondition {
            type_: "Accepted",
            status,
            reason,
            message,
            observed_generation: generation,
        },
        conditions::now(),
    );
    (current != Some(&next)).then_some(next)
}

/// Read access to the status of monitors, rules and scrape configs.
pub trait HasConfigStatus {
    /// The current status.
    fn config_status(&self) -> Option<&ConfigResourceStatus>;
}

macro_rules! has_status {
    ($($k:ty),*) => {$(
        impl HasConfigStatus for $k {
            fn config_status(&self) -> Option<&ConfigResourceStatus> {
                self.status.as_ref()
            }
        }
    )*};
}
has_status!(ServiceMonitor, PodMonitor, PrometheusRule, ScrapeConfig);

/// Sets `Accepted` on every object `generated` judged, and a Warning Event on each it
/// rejected. Best effort: a failed write is logged, and the next reconcile tries again.
async fn report_objects(ctx: &Context, obj: &Prometheus, generated: &Generated) {
    let c = &ctx.caches;
    let me = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let me = me.as_str();
    let verdicts = generated.accepted.iter().map(|o| (o, None)).chain(
        generated
            .rejected
            .iter()
            .map(|r| (&r.object, Some((r.reason.as_str(), r.message.clone())))),
    );
    // Upstream objects' status is not ours to write: see `report_upstream`.
    for (o, verdict) in verdicts.filter(|(o, _)| o.group == config::Group::Steward) {
        let (ns, name) = (o.namespace.as_str(), o.name.as_str());
        match o.kind {
            Kind::ServiceMonitor => {
                set_accepted(ctx, &c.service_monitors, ns, name, o.kind, me, verdict).await
            }
            Kind::PodMonitor => set_accepted(ctx, &c.pod_monitors, ns, name, o.kind, me, verdict).await,
            Kind::PrometheusRule => set_accepted(ctx, &c.rules, ns, name, o.kind, me, verdict).await,
            Kind::ScrapeConfig => set_accepted(ctx, &c.scrape_configs, ns, name, o.kind, me, verdict).await,
        };
    }
}

/// Upstream objects get Warning Events instead of an `Accepted` condition: each rejection, and
/// the spec fields left out of the configuration because we do not support them. Their counts
/// are in the Prometheus' status like ours.
async fn report_upstream(
    ctx: &Context,
    obj: &Prometheus,
    generated: &Generated,
    unsupported: &[(config::ObjectRef, Vec<String>)],
) {
    let me = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let mut warnings = super::upstream::Warnings::new();
    for r in generated
        .rejected
        .iter()
        .filter(|r| r.object.group == config::Group::Upstream)
    {
        warnings.entry(r.object.clone()).or_default().push((
            r.reason.as_str().to_string(),
            format!("{} (Prometheus {me})", r.message),
        ));
    }
    for (o, fields) in unsupported {
        warnings.entry(o.clone()).or_default().push((
            "UnsupportedFields".to_string(),
            format!(
                "not supported by steward's prometheus-operator, left out of the configuration: {} (Prometheus {me})",
                fields.join(", ")
            ),
        ));
    }
    super::upstream::warn_objects(&ctx.recorder, &ctx.caches.upstream, warnings).await;
}

/// Writes `Accepted` on one object per [`accepted_condition`]; whether anything changed.
async fn set_accepted<K>(
    ctx: &Context,
    store: &Store<K>,
    ns: &str,
    name: &str,
    kind: Kind,
    me: &str,
    verdict: Option<(&str, String)>,
) -> bool
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + HasConfigStatus
        + 'static,
{
    let Some(obj) = store.get(&ObjectRef::new(name).within(ns)) else {
        return false;
    };
    let holder_active = |holder: &str| {
        let Some((pns, pname)) = holder.split_once('/') else {
            return false;
        };
        ctx.caches
            .prometheuses
            .get(&ObjectRef::new(pname).within(pns))
            .is_some_and(|p| {
                p.metadata.deletion_timestamp.is_none() && ctx.caches.selects(&p, kind, ns, obj.labels())
            })
    };
    let rejection = verdict
        .as_ref()
        .map(|(reason, message)| (reason.to_string(), message.clone()));
    let Some(next) = accepted_condition(
        obj.config_status(),
        obj.meta().generation,
        me,
        verdict,
        holder_active,
    ) else {
        return false;
    };
    if let Err(e) = ctx.applier.apply_status(obj.as_ref(), &next).await {
        warn!(kind = K::kind(&()).as_ref(), %ns, %name, error = %e, "writing Accepted condition failed");
    }
    if let Some((reason, message)) = rejection {
        ctx.recorder
            .warning(
                obj.as_ref(),
                &reason,
                "Validate",
                format!("{message} (Prometheus {me})"),
            )
            .await;
    }
    true
}
