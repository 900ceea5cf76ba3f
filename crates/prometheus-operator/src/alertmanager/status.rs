//! Status: replicas, the cluster as each ready pod reports it (`GET /api/v2/status`), and the
//! `Reconciled` and `Available` conditions, with a Warning Event when a reconcile is refused.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use steward_core::apply::Conflict;
use steward_core::conditions::{self, NewCondition, Status};

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;
use tracing::warn;

use super::fetch::NamespaceLabels;
use super::{Context, Error, build, merge};
use crate::controller::status::accepted_condition;
use crate::crd::{Alertmanager, AlertmanagerConfig, AlertmanagerStatus, PodClusterStatus};

/// How soon to look again while the cluster is forming or a replica is missing.
const WHILE_FORMING: Duration = Duration::from_secs(5);
/// How soon to look again when all is well (peers are only seen by asking the pods).
const IDLE: Duration = Duration::from_secs(60);

/// `Reason` of `Reconciled=False` for a configuration that failed its check.
pub const INVALID_CONFIGURATION: &str = "InvalidConfiguration";

/// The scale subresource's selector of `am`'s pods.
pub fn selector_string(am: &Alertmanager) -> String {
    steward_core::labels::to_selector(&build::pod_selector(am))
}

/// Sets `Accepted` on every AlertmanagerConfig `am` judged, with a Warning Event on each newly
/// rejected. When several Alertmanagers select one object a rejection wins and stays with
/// the one that reported it, as for monitors and rules. Best effort: a failed write is logged
/// and the next reconcile tries again.
pub(super) async fn report_configs(
    ctx: &Context,
    am: &Alertmanager,
    verdicts: &[(Arc<AlertmanagerConfig>, Option<Vec<String>>)],
    namespace_labels: &NamespaceLabels,
) {
    let me = format!("{}/{}", am.namespace().unwrap_or_default(), am.name_any());
    for (obj, problems) in verdicts {
        let ns = obj.namespace().unwrap_or_default();
        let holder_active = |holder: &str| {
            let Some((hns, hname)) = holder.split_once('/') else {
                return false;
            };
            ctx.alertmanagers
                .get(&ObjectRef::new(hname).within(hns))
                .is_some_and(|h| {
                    h.metadata.deletion_timestamp.is_none()
                        && merge::selects(&h, &ns, obj.labels(), namespace_labels.get(&ns))
                })
        };
        let message = problems.as_ref().map(|p| p.join("; "));
        let verdict = message.as_ref().map(|m| {
            (
                INVALID_CONFIGURATION,
                format!("left out of the configuration: {m}"),
            )
        });
        let Some(next) = accepted_condition(
            obj.status.as_ref(),
            obj.metadata.generation,
            &me,
            verdict.clone(),
            holder_active,
        ) else {
            continue;
        };
        if let Err(e) = ctx.applier.apply_status(obj.as_ref(), &next).await {
            warn!(%ns, name = %obj.name_any(), error = %e, "writing Accepted condition failed");
        }
        if let Some((reason, message)) = verdict {
            ctx.recorder
                .warning(
                    obj.as_ref(),
                    reason,
                    "Validate",
                    format!("{message} (Alertmanager {me})"),
                )
                .await;
        }
    }
}

/// What one pod reports about its cluster, when it answers.
async fn pod_cluster(ctx: &Context, pod: &Pod) -> Option<PodClusterStatus> {
    let ip = pod.status.as_ref()?.pod_ip.clone()?;
    let url = format!("http://{ip}:{}/api/v2/status", build::WEB_PORT);
    let body: serde_json::Value = ctx.http.get(url).send().await.ok()?.json().await.ok()?;
    let cluster = body.get("cluster")?;
    Some(PodClusterStatus {
        pod: pod.name_any(),
        peers: cluster
            .get("peers")
            .and_then(|p| p.as_array())
            .map_or(0, |p| i32::try_from(p.len()).unwrap_or(i32::MAX)),
        status: cluster
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string(),
    })
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Writes the status and decides when to look again. `invalid`: the configuration's
/// problems (the running one was kept); `conflict`: objects in the way (nothing written).
pub(super) async fn report(
    ctx: &Context,
    am: &Alertmanager,
    ns: &str,
    invalid: Option<Vec<String>>,
    conflict: Option<Vec<Conflict>>,
) -> Result<Action, Error> {
    let read = |what: String| {
        move |e| Error::Read {
            what,
            source: Box::new(e),
        }
    };
    let sts = Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
        .get_opt(&build::base_name(am))
        .await
        .map_err(read(format!("get statefulset {ns}/{}", build::base_name(am))))?;
    let sts_status = sts.and_then(|s| s.status).unwrap_or_default();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&selector_string(am)))
        .await
        .map_err(read(format!("list pods in {ns}")))?;
    let mut peers = Vec::new();
    for pod in pods.items.iter().filter(|p| is_ready(p)) {
        if let Some(p) = pod_cluster(ctx, pod).await {
            peers.push(p);
        }
    }
    peers.sort_by(|a, b| a.pod.cmp(&b.pod));
    let want = am.spec.replicas;
    let available = sts_status
        .available_replicas
        .unwrap_or(sts_status.ready_replicas.unwrap_or(0));
    let clustered = want < 2 || (peers.len() == want as usize && peers.iter().all(|p| p.peers == want));

    let generation = am.metadata.generation;
    let old = am.status.clone().unwrap_or_default();
    let mut conds = old.conditions.clone();
    let now = conditions::now();
    let (status, reason, message) = match (&conflict, &invalid) {
        (Some(c), _) => (
            Status::False,
            "ChildConflict",
            c.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        ),
        (None, Some(p)) => (
            Status::False,
            INVALID_CONFIGURATION,
            format!(
                "configuration refused, the last valid one keeps running: {}",
                p.join("; ")
            ),
        ),
        (None, None) => (Status::True, "Reconciled", "all children applied".to_string()),
    };
    let known = old
        .conditions
        .iter()
        .any(|c| c.type_ == "Reconciled" && c.reason == reason && c.message == message);
    if status == Status::False && !known {
        ctx.recorder
            .warning(am, reason, "Reconcile", message.clone())
            .await;
    }
    conditions::set(
        &mut conds,
        NewCondition {
            type_: "Reconciled",
            status,
            reason,
            message,
            observed_generation: generation,
        },
        now.clone(),
    );
    let (a_status, a_reason, a_message) = if available >= want && clustered {
        (
            Status::True,
            "AllReplicasReady",
            format!("{available} of {want} replicas ready"),
        )
    } else if !clustered && available >= want {
        (
            Status::False,
            "ClusterForming",
            "not every replica sees every other yet".to_string(),
        )
    } else {
        (
            Status::False,
            "ReplicasNotReady",
            format!("{available} of {want} replicas ready"),
        )
    };
    conditions::set(
        &mut conds,
        NewCondition {
            type_: "Available",
            status: a_status,
            reason: a_reason,
            message: a_message,
            observed_generation: generation,
        },
        now,
    );
    let new = AlertmanagerStatus {
        replicas: sts_status.replicas,
        available_replicas: available,
        selector: Some(selector_string(am)),
        cluster_peers: peers,
        conditions: conds,
        observed_generation: generation,
    };
    if new != old {
        ctx.applier
            .apply_status(am, &new)
            .await
            .map_err(|source| Error::Status {
                name: am.name_any(),
                source: Box::new(source),
            })?;
    }
    let settled = a_status == Status::True && conflict.is_none();
    Ok(Action::requeue(if settled { IDLE } else { WHILE_FORMING }))
}
