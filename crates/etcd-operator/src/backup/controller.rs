//! Reconcile of one EtcdBackup: fetch (the fresh object, its cluster, the credentials, the
//! members) → validate (the destination) → take the snapshot (the engine) → status, with
//! Events and metrics. A backup runs until it succeeded or failed for good and never again.
//! To S3 the operator takes the snapshot itself; to a PersistentVolumeClaim a pod of its
//! image does (see [`super::pod`]), and each reconcile looks at how that pod is doing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use steward_core::apply::Desired;
use steward_core::conditions;

use super::build::{self, MAX_ATTEMPTS};
use super::pod::{self, Report};
use super::{Context, Error, target_for};
use crate::crd::{BackupPhase, EtcdBackup, EtcdBackupStatus, EtcdCluster, PvcDestination};
use crate::snapshot::{self, Outcome};

/// How long one snapshot may take before the attempt counts as failed (and may be retried).
const TAKE_TIMEOUT: Duration = Duration::from_secs(pod::ACTIVE_DEADLINE_SECONDS as u64);
/// How often a backup pod is looked at while it runs.
const POD_POLL: Duration = Duration::from_secs(3);

/// One backup.
pub(super) async fn reconcile(obj: Arc<EtcdBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    if finished(&obj) {
        return Ok(Action::await_change());
    }
    let name = obj.name_any();
    let ns = obj.namespace().unwrap_or_default();
    // The cache may not show our last status write yet: a backup is never started twice from
    // a stale view, so read the object itself before acting on it.
    let api = Api::<EtcdBackup>::namespaced(ctx.client.clone(), &ns);
    let Some(obj) =
        api.get_opt(&name)
            .await
            .map_err(Error::kube("get", "EtcdBackup", format!("{ns}/{name}")))?
    else {
        return Ok(Action::await_change());
    };
    if finished(&obj) {
        return Ok(Action::await_change());
    }
    let now = conditions::now().0.as_second();
    let status = obj.status.clone().unwrap_or_default();
    if let Some(next) = status.next_attempt_time.as_deref().and_then(build::unix)
        && next > now
    {
        return Ok(Action::requeue(Duration::from_secs((next - now) as u64)));
    }
    if status.phase.is_none() {
        write(&ctx, &obj, build::pending(&obj, now)).await?;
    }

    let cluster_name = obj.spec.cluster_ref.name.clone();
    let cluster = Api::<EtcdCluster>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&cluster_name)
        .await
        .map_err(Error::kube("get", "EtcdCluster", format!("{ns}/{cluster_name}")))?;
    let Some(cluster) = cluster else {
        let message = format!("EtcdCluster {ns}/{cluster_name} not found");
        return fail(&ctx, &obj, "ClusterNotFound", message, now).await;
    };
    if let Some(pvc) = &obj.spec.destination.pvc {
        return take_in_pod(&ctx, &obj, &cluster, pvc, now).await;
    }
    let target = match target_for(&ctx.client, &ns, &obj.spec.destination).await? {
        Ok(t) => t,
        Err((reason, message)) => return fail(&ctx, &obj, reason, message, now).await,
    };
    let (members, tls) = match crate::controller::members_for_backup(&ctx.client, &cluster).await {
        Ok(seen) => seen,
        Err(message) => {
            return attempt_failed(&ctx, counted(&obj), "EtcdUnreachable", message, true, now).await;
        }
    };
    let Some(member) = build::choose_member(&members) else {
        let message =
            format!("no healthy voting member of EtcdCluster {ns}/{cluster_name} to take a snapshot from");
        return attempt_failed(&ctx, counted(&obj), "NoHealthyMember", message, true, now).await;
    };

    let mut running = obj.clone();
    running.status = Some(build::running(&obj, &member.name, now));
    write(&ctx, &obj, running.status.clone().unwrap_or_default()).await?;
    let compression = build::compression(obj.spec.compression);
    let key = build::object_key(&ns, &cluster_name, &name, now, compression);
    let started = Instant::now();
    let taken = tokio::time::timeout(
        TAKE_TIMEOUT,
        snapshot::take(&member.client_url, tls.as_ref(), &target, &key, compression),
    )
    .await;
    let done = conditions::now().0.as_second();
    match taken {
        Ok(Ok(outcome)) => {
            stored(
                &ctx,
                &obj,
                &running,
                &outcome,
                &member.name,
                started.elapsed().as_secs_f64(),
                done,
            )
            .await
        }
        Ok(Err(e)) => {
            let retryable = e.is_retryable();
            attempt_failed(&ctx, running, e.reason(), e.to_string(), retryable, done).await
        }
        Err(_) => {
            let message = format!("the snapshot took longer than {}s", TAKE_TIMEOUT.as_secs());
            attempt_failed(&ctx, running, "Timeout", message, true, done).await
        }
    }
}

/// Records a stored snapshot: status, metrics and an Event.
async fn stored(
    ctx: &Context,
    obj: &EtcdBackup,
    running: &EtcdBackup,
    outcome: &Outcome,
    member: &str,
    seconds: f64,
    done: i64,
) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    write(ctx, obj, build::succeeded(running, outcome, done)).await?;
    ctx.metrics
        .succeeded(&ns, &obj.spec.cluster_ref.name, done, seconds, outcome.size_bytes);
    ctx.recorder
        .normal(
            obj,
            "BackupSucceeded",
            "Backup",
            format!(
                "stored {} bytes at revision {} from member {member} in {}",
                outcome.size_bytes, outcome.revision, outcome.location
            ),
        )
        .await;
    Ok(Action::await_change())
}

/// A backup to a PersistentVolumeClaim: the running attempt's pod says how it went; else a
/// new attempt starts with a pod on a healthy member (the same attempt's pod again if it
/// went missing).
async fn take_in_pod(
    ctx: &Context,
    obj: &EtcdBackup,
    cluster: &EtcdCluster,
    pvc: &PvcDestination,
    now: i64,
) -> Result<Action, Error> {
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let status = obj.status.clone().unwrap_or_default();
    let in_progress = status.phase == Some(BackupPhase::Running) && status.attempts > 0;
    if in_progress {
        let pod_name = pod::backup_pod_name(&name, status.attempts);
        let live = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&pod_name)
            .await
            .map_err(Error::kube("get", "Pod", format!("{ns}/{pod_name}")))?;
        match live.as_ref().map(pod::report) {
            Some(None) => return Ok(Action::requeue(POD_POLL)),
            Some(Some(Report::Stored(mut outcome))) => {
                outcome.location = pod::location(pvc, &outcome.key);
                let member = status.member.clone().unwrap_or_default();
                let seconds = live.as_ref().and_then(pod::run_seconds).unwrap_or_default();
                return stored(ctx, obj, obj, &outcome, &member, seconds, now).await;
            }
            Some(Some(Report::Failed {
                reason,
                message,
                retryable,
            })) => return attempt_failed(ctx, obj.clone(), &reason, message, retryable, now).await,
            Some(Some(Report::Deleted)) => {
                let message = format!("pod {ns}/{pod_name} reported a deletion, not a backup");
                return attempt_failed(ctx, obj.clone(), "PodFailed", message, true, now).await;
            }
            // Not created yet, or deleted: (re)create it below.
            None => {}
        }
    }
    let claim = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&pvc.claim_name)
        .await
        .map_err(Error::kube(
            "get",
            "PersistentVolumeClaim",
            format!("{ns}/{}", pvc.claim_name),
        ))?;
    if claim.is_none() {
        let message = format!("PersistentVolumeClaim {ns}/{} not found", pvc.claim_name);
        return fail(ctx, obj, "ClaimNotFound", message, now).await;
    }
    let members = match crate::controller::members_for_backup(&ctx.client, cluster).await {
        Ok((members, _)) => members,
        Err(message) => {
            return attempt_failed(ctx, counted(obj), "EtcdUnreachable", message, true, now).await;
        }
    };
    let Some(member) = build::choose_member(&members) else {
        let message = format!(
            "no healthy voting member of EtcdCluster {ns}/{} to take a snapshot from",
            cluster.name_any()
        );
        return attempt_failed(ctx, counted(obj), "NoHealthyMember", message, true, now).await;
    };
    let running = if in_progress {
        obj.clone()
    } else {
        let mut r = obj.clone();
        r.status = Some(build::running(obj, &member.name, now));
        write(ctx, obj, r.status.clone().unwrap_or_default()).await?;
        r
    };
    let compression = build::compression(obj.spec.compression);
    let key = build::object_key(&ns, &cluster.name_any(), &name, now, compression);
    let tls_secret = crate::tls::client_secret(cluster);
    let run = pod::BackupRun {
        endpoint: &member.client_url,
        client_tls_secret: tls_secret.as_deref(),
        key: &key,
        compression,
        image: &ctx.operator_image,
        attempt: running.status.as_ref().map_or(1, |s| s.attempts),
    };
    let desired = pod::backup_pod(&running, pvc, &run);
    ctx.applier
        .apply_owned(
            obj,
            &pod::labels(obj, "backup"),
            vec![Desired::namespaced(&desired)?],
            &[],
        )
        .await?;
    Ok(Action::requeue(POD_POLL))
}

/// Whether the backup succeeded or failed for good.
fn finished(obj: &EtcdBackup) -> bool {
    matches!(
        obj.status.as_ref().and_then(|s| s.phase),
        Some(BackupPhase::Succeeded | BackupPhase::Failed)
    )
}

/// `obj` with one more attempt counted (for failures before the snapshot started).
fn counted(obj: &EtcdBackup) -> EtcdBackup {
    let mut o = obj.clone();
    o.status.get_or_insert_with(EtcdBackupStatus::default).attempts += 1;
    o
}

/// After a failed attempt (already counted in `obj`): retry later when the failure may pass
/// and attempts are left, else fail for good.
async fn attempt_failed(
    ctx: &Context,
    obj: EtcdBackup,
    reason: &str,
    message: String,
    retryable: bool,
    now: i64,
) -> Result<Action, Error> {
    let attempts = obj.status.as_ref().map_or(0, |s| s.attempts);
    if retryable && attempts < MAX_ATTEMPTS {
        write(ctx, &obj, build::retrying(&obj, reason, &message, now)).await?;
        return Ok(Action::requeue(build::retry_after(attempts)));
    }
    let message = if retryable {
        format!("{message} (attempt {attempts} of {MAX_ATTEMPTS}, no attempts left)")
    } else {
        message
    };
    fail(ctx, &obj, reason, message, now).await
}

/// Fails the backup for good: status, a Warning Event and the failure counter.
async fn fail(
    ctx: &Context,
    obj: &EtcdBackup,
    reason: &str,
    message: String,
    now: i64,
) -> Result<Action, Error> {
    write(ctx, obj, build::failed(obj, reason, &message, now)).await?;
    ctx.metrics
        .failed(&obj.namespace().unwrap_or_default(), &obj.spec.cluster_ref.name);
    ctx.recorder.warning(obj, reason, "Backup", message).await;
    Ok(Action::await_change())
}

async fn write(ctx: &Context, obj: &EtcdBackup, status: EtcdBackupStatus) -> Result<(), Error> {
    let name = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    ctx.applier
        .apply_status(obj, &status)
        .await
        .map_err(Error::kube("apply status", "EtcdBackup", name))
}
