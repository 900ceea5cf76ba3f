//! Status: conditions and the status write, Warning Events for what a person must fix, the
//! etcd gauges, and when to look at the cluster again.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use steward_core::Conflict;
use steward_core::conditions::{self, NewCondition, Status};

use super::observe::{MemberView, Observation};
use super::validate::member_failure_timeout;
use super::{Context, Error, Target, rfc3339, unix_seconds};
use crate::crd::{EtcdCluster, EtcdClusterSpec, EtcdClusterStatus, EtcdRecoveryStatus, RecoveryPhase};
use crate::plan::{RemoveReason, Step};
use crate::{FIELD_MANAGER, OPERATOR_NAME};

/// Label selector of a cluster's member pods (used by the scale subresource).
pub fn member_selector(cluster: &str) -> String {
    format!(
        "app.kubernetes.io/instance={cluster},app.kubernetes.io/managed-by={OPERATOR_NAME},app.kubernetes.io/name=etcd,app.kubernetes.io/component=member"
    )
}

/// The status a plan result leads to, from the object, validation problems and what was
/// observed. Pure.
pub fn desired_status(
    obj: &EtcdCluster,
    problems: &[String],
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> EtcdClusterStatus {
    let mut status = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    status.observed_generation = generation;
    status.selector = Some(member_selector(&obj.name_any()));
    status.target_version = Some(obj.spec.version.clone());
    if !problems.is_empty() {
        conditions::set(
            &mut status.conditions,
            NewCondition {
                type_: "Progressing",
                status: Status::False,
                reason: "InvalidSpec",
                message: problems.join("; "),
                observed_generation: generation,
            },
            now,
        );
    }
    status
}

/// Condition type saying whether scheduled maintenance (defragmentation) is set up.
pub const MAINTENANCE: &str = "MaintenanceScheduled";

/// The defrag schedule, when there is one, and whether it parses.
fn maintenance_schedule(spec: &crate::crd::EtcdClusterSpec) -> Option<Result<String, String>> {
    let schedule = spec.maintenance.as_ref()?.defrag.as_ref()?.schedule.as_deref()?;
    Some(crate::plan::parse_schedule(schedule).map(|_| schedule.to_string()))
}

/// Status after observing the cluster and choosing `step`.
pub fn observed_status(
    obj: &EtcdCluster,
    members: &[MemberView],
    leader: Option<u64>,
    step: &Step,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> EtcdClusterStatus {
    let mut status = desired_status(obj, &[], now.clone());
    let generation = obj.metadata.generation;
    let voters: Vec<&MemberView> = members.iter().filter(|m| !m.is_learner).collect();
    let healthy = voters.iter().filter(|m| m.healthy).count();
    let quorum = voters.len() / 2 + 1;
    status.size = voters.len() as i32;
    status.ready_members = members.iter().filter(|m| m.healthy).count() as i32;
    status.leader = members
        .iter()
        .find(|m| Some(m.id) == leader)
        .map(|m| m.name.clone());
    // The version the whole cluster runs: only known when every wanted member is there and
    // reports one (a missing member may come back at another version).
    let whole = voters.len() >= obj.spec.size.max(1) as usize && members.iter().all(|m| m.version.is_some());
    status.current_version = members
        .iter()
        .filter_map(|m| m.version)
        .min()
        .filter(|_| whole)
        .map(|v| v.to_string());
    status.members = members
        .iter()
        .map(|m| crate::crd::EtcdMemberStatus {
            name: m.name.clone(),
            id: Some(crate::etcd::hex_id(m.id)),
            version: m.version.map(|v| v.to_string()),
            is_leader: Some(m.id) == leader,
            is_learner: m.is_learner,
            healthy: m.healthy,
            client_url: Some(m.client_url.clone()),
            unhealthy_since: m.unhealthy_since.clone(),
            last_defrag_time: m.last_defrag.clone(),
        })
        .collect();
    status.last_defrag_time = members
        .iter()
        .filter_map(|m| m.last_defrag.clone())
        .chain(status.last_defrag_time.take())
        .max();
    let available = !voters.is_empty() && healthy >= quorum;
    let (a_reason, a_msg) = match step {
        Step::QuorumLost { reason } => ("QuorumLost", reason.clone()),
        Step::Unreachable { reason } => ("EtcdUnreachable", reason.clone()),
        _ if available => (
            "QuorumHealthy",
            format!("{healthy} of {} voting members healthy", voters.len()),
        ),
        _ => ("NotReady", "no healthy quorum yet".to_string()),
    };
    let available = available && !matches!(step, Step::QuorumLost { .. } | Step::Unreachable { .. });
    // The clock of spec.recovery.after: from the first look that found quorum lost, until a
    // quorum is healthy again.
    status.quorum_lost_since = if available {
        None
    } else if matches!(step, Step::QuorumLost { .. } | Step::Recover { .. }) {
        status.quorum_lost_since.take().or_else(|| Some(rfc3339(&now)))
    } else {
        status.quorum_lost_since.take()
    };
    status.recovery = recovery_after(status.recovery.take(), step, !members.is_empty(), &rfc3339(&now));
    note_member_recovery(&mut status, step, members, &rfc3339(&now));
    let cond = |status: &mut EtcdClusterStatus, type_, ok: bool, reason: &str, message: String| {
        conditions::set(
            &mut status.conditions,
            NewCondition {
                type_,
                status: ok.into(),
                reason,
                message,
                observed_generation: generation,
            },
            now.clone(),
        );
    };
    cond(&mut status, "Available", available, a_reason, a_msg);
    let (progressing, p_reason, p_msg) = match step {
        Step::Nothing => (
            false,
            "Stable",
            "membership and versions match the spec".to_string(),
        ),
        Step::Paused => (
            false,
            "Paused",
            "spec.paused is true: no changes are made".to_string(),
        ),
        Step::Bootstrap { member } => (true, "Bootstrapping", format!("starting seed member {member}")),
        Step::Recover { member, backup } => (
            true,
            RECOVERING,
            format!(
                "rebuilding from EtcdBackup {}: starting seed member {member} restored from it",
                backup.name
            ),
        ),
        Step::AddMember { member } | Step::CreatePod { member } | Step::Promote { member, .. } => {
            (true, "Scaling", format!("adding member {member}"))
        }
        Step::RemoveMember {
            member,
            reason: RemoveReason::ScaleDown,
            ..
        } => (true, "Scaling", format!("removing member {member}")),
        Step::RemoveMember {
            member,
            reason: RemoveReason::Replace,
            ..
        } => (
            true,
            "MemberReplaced",
            format!("replacing failed member {member}"),
        ),
        Step::DeletePod { member } => (
            true,
            "Scaling",
            format!("deleting the pod of removed member {member}"),
        ),
        Step::UpgradeMember { member, .. } => (true, "Upgrading", format!("upgrading member {member}")),
        Step::Defrag { member, .. } => (true, "Defragmenting", format!("defragmented member {member}")),
        Step::MoveLeader { .. } => (
            true,
            "Upgrading",
            "moving leadership before upgrading the leader".to_string(),
        ),
        Step::Wait { reason } => (true, "Waiting", reason.clone()),
        Step::QuorumLost { reason } => (false, "QuorumLost", reason.clone()),
        Step::Unreachable { reason } => (false, "EtcdUnreachable", reason.clone()),
        Step::UpgradeBlocked { reason } => (false, "UpgradeBlocked", reason.clone()),
    };
    cond(&mut status, "Progressing", progressing, p_reason, p_msg);
    let unhealthy = members.iter().filter(|m| !m.healthy).count();
    let (degraded, d_reason, d_msg) = match step {
        Step::QuorumLost { reason } => (true, "QuorumLost", reason.clone()),
        Step::Recover { backup, .. } => (
            true,
            RECOVERING,
            format!(
                "every member's data was lost; rebuilding from EtcdBackup {}",
                backup.name
            ),
        ),
        Step::Unreachable { reason } => (true, "EtcdUnreachable", reason.clone()),
        Step::UpgradeBlocked { reason } => (true, "UpgradeBlocked", reason.clone()),
        _ if unhealthy > 0 => (
            true,
            "MembersUnhealthy",
            format!("{unhealthy} member(s) unhealthy"),
        ),
        _ => (false, "AllMembersHealthy", "every member is healthy".to_string()),
    };
    cond(&mut status, "Degraded", degraded, d_reason, d_msg);
    match status.recovery.clone() {
        None => status.conditions.retain(|c| c.type_ != RECOVERING),
        Some(r) => {
            let (ok, reason, message) = recovering_condition(&r, obj.spec.size, voters.len());
            cond(&mut status, RECOVERING, ok, reason, message);
        }
    }
    let rebuilding = status
        .recovery
        .as_ref()
        .is_some_and(|r| r.phase != RecoveryPhase::Succeeded);
    // A schedule that does not parse only switches defragmentation off: the rest of the
    // lifecycle (healing above all) keeps running.
    match maintenance_schedule(&obj.spec) {
        None => status.conditions.retain(|c| c.type_ != MAINTENANCE),
        Some(Ok(schedule)) => cond(
            &mut status,
            MAINTENANCE,
            true,
            "Scheduled",
            format!("defragmentation windows open at {schedule:?} (UTC)"),
        ),
        Some(Err(e)) => cond(
            &mut status,
            MAINTENANCE,
            false,
            "InvalidSchedule",
            format!("spec.maintenance.defrag.schedule: {e}; nothing is defragmented"),
        ),
    }
    status.phase = Some(
        match step {
            Step::Paused => "Paused",
            Step::Recover { .. } => "Recovering",
            Step::QuorumLost { .. } | Step::Unreachable { .. } => "Degraded",
            _ if rebuilding => "Recovering",
            Step::Bootstrap { .. } => "Creating",
            Step::UpgradeMember { .. } | Step::MoveLeader { .. } => "Upgrading",
            Step::AddMember { .. }
            | Step::CreatePod { .. }
            | Step::Promote { .. }
            | Step::RemoveMember { .. }
            | Step::DeletePod { .. } => "Scaling",
            _ if degraded => "Degraded",
            _ if available => "Running",
            _ => "Creating",
        }
        .to_string(),
    );
    status
}

/// Condition type (and reason while it is True) of a rebuild from a backup.
pub const RECOVERING: &str = "Recovering";
/// Reason of `Recovering=False` once a rebuild is done.
pub const RECOVERED_FROM_BACKUP: &str = "RecoveredFromBackup";

/// The rebuild record after `step`, from the `previous` one: a Recover step starts it (or
/// keeps the one for the same seed and backup), the seed answering (`answered`) moves it to
/// `Growing`, and a whole, stable cluster (`Nothing`) to `Succeeded`. Pure.
pub fn recovery_after(
    previous: Option<EtcdRecoveryStatus>,
    step: &Step,
    answered: bool,
    now: &str,
) -> Option<EtcdRecoveryStatus> {
    if let Step::Recover { member, backup } = step {
        let same = previous
            .as_ref()
            .filter(|p| p.phase == RecoveryPhase::Restoring && p.seed == *member && p.backup == backup.name);
        return Some(same.cloned().unwrap_or_else(|| EtcdRecoveryStatus {
            phase: RecoveryPhase::Restoring,
            backup: backup.name.clone(),
            backup_completion_time: Some(backup.completion_time.clone()).filter(|t| !t.is_empty()),
            seed: member.clone(),
            start_time: Some(now.to_string()),
            completion_time: None,
        }));
    }
    let mut r = previous?;
    match r.phase {
        RecoveryPhase::Restoring if answered => r.phase = RecoveryPhase::Growing,
        RecoveryPhase::Growing if *step == Step::Nothing => {
            r.phase = RecoveryPhase::Succeeded;
            r.completion_time = Some(now.to_string());
        }
        _ => {}
    }
    Some(r)
}

/// Records which member an upgrade restarts and when a member was last recovered: a member
/// brought back (its pod recreated after it had started) or replaced, or the whole cluster
/// rebuilt, other than the member the upgrade itself restarted. Pure.
pub fn note_member_recovery(status: &mut EtcdClusterStatus, step: &Step, members: &[MemberView], now: &str) {
    let upgrading = status.upgrade_restarted.as_deref();
    let recovered = match step {
        Step::UpgradeMember { member, .. } => {
            status.upgrade_restarted = Some(member.clone());
            false
        }
        // The upgrade is over (or nothing runs): a later restart of that member is not its.
        Step::Nothing => {
            status.upgrade_restarted = None;
            false
        }
        Step::RemoveMember {
            member,
            reason: RemoveReason::Replace,
            ..
        } => upgrading != Some(member.as_str()),
        // A learner's first pod is growth; a started member's pod coming back is recovery.
        Step::CreatePod { member } => {
            upgrading != Some(member.as_str())
                && members
                    .iter()
                    .find(|m| m.name == *member)
                    .is_none_or(|m| m.started)
        }
        Step::Recover { .. } => true,
        _ => false,
    };
    if recovered {
        status.last_member_recovery_time = Some(now.to_string());
    }
}

/// The `Recovering` condition of rebuild `r` of a cluster of `size` with `voters` now.
fn recovering_condition(r: &EtcdRecoveryStatus, size: i32, voters: usize) -> (bool, &'static str, String) {
    let completed = r
        .backup_completion_time
        .as_deref()
        .map(|t| format!(" (completed {t})"))
        .unwrap_or_default();
    let backup = format!("EtcdBackup {}{completed}", r.backup);
    match r.phase {
        RecoveryPhase::Restoring => (
            true,
            RECOVERING,
            format!(
                "quorum was lost and every member's data is gone: restoring seed member {} from {backup}; writes made after the backup are lost",
                r.seed
            ),
        ),
        RecoveryPhase::Growing => (
            true,
            RECOVERING,
            format!(
                "seed member {} restored from {backup}; growing to {size} members through learners ({voters} voting now)",
                r.seed
            ),
        ),
        RecoveryPhase::Succeeded => (
            false,
            RECOVERED_FROM_BACKUP,
            format!(
                "rebuilt from {backup}{}; writes made after the backup were lost",
                r.completion_time
                    .as_deref()
                    .map(|t| format!(", every member healthy at {t}"))
                    .unwrap_or_default()
            ),
        ),
    }
}

/// Writes `recovery` into the status before the seed of a rebuild is created, so an operator
/// restarted in between continues this rebuild instead of starting another.
pub(super) async fn record_recovery(
    ctx: &Context,
    target: &Target<'_>,
    recovery: EtcdRecoveryStatus,
) -> Result<(), Error> {
    let mut status = target.obj.status.clone().unwrap_or_default();
    status.recovery = Some(recovery);
    write_status(ctx, target, &status).await
}

/// The Normal Event of a rebuild's progress between `before` and `after`, if it moved on.
async fn recovery_event(
    ctx: &Context,
    obj: &EtcdCluster,
    before: Option<&EtcdRecoveryStatus>,
    after: Option<&EtcdRecoveryStatus>,
) {
    let Some(r) = after else {
        return;
    };
    if before.map(|b| (b.phase, &b.seed)) == Some((r.phase, &r.seed)) {
        return;
    }
    let (reason, note) = match r.phase {
        RecoveryPhase::Restoring => return,
        RecoveryPhase::Growing => (
            "SeedRestored",
            format!(
                "seed member {} restored from EtcdBackup {} answers; the cluster grows to {} members",
                r.seed, r.backup, obj.spec.size
            ),
        ),
        RecoveryPhase::Succeeded => (
            RECOVERED_FROM_BACKUP,
            format!(
                "rebuilt from EtcdBackup {}: every member is back and healthy",
                r.backup
            ),
        ),
    };
    ctx.recorder.normal(obj, reason, "Recover", note).await;
}

/// Why a reconcile stopped for a problem only a person can fix, and when to look again.
pub(super) struct Blocked {
    reason: &'static str,
    action: &'static str,
    message: String,
    retry: Duration,
    /// Whether no member can be serving (a restore that cannot start or failed): `Available`
    /// says so with the same reason and message.
    unavailable: bool,
}

impl Blocked {
    /// The TLS Secrets the spec names are missing or incomplete.
    pub fn tls(message: String) -> Self {
        Blocked {
            reason: "TLSSecretsMissing",
            action: "ReadSecrets",
            message,
            retry: Duration::from_secs(15),
            unavailable: false,
        }
    }

    /// A restore cannot start (`BackupNotReady`) or failed (`RestoreFailed`).
    pub fn restore(reason: &'static str, message: String) -> Self {
        Blocked {
            reason,
            action: "Restore",
            message,
            retry: Duration::from_secs(10),
            unavailable: true,
        }
    }

    /// Objects with the names of children exist and are not ours; `action` is what found them.
    pub fn conflict(action: &'static str, conflicts: &[Conflict]) -> Self {
        Blocked {
            reason: "ChildConflict",
            action,
            message: conflicts
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("; "),
            retry: Duration::from_secs(30),
            unavailable: false,
        }
    }
}

/// Stops the reconcile for a problem only a person can fix: `Progressing=False` with its
/// reason and message, and a Warning Event when the message is new. Nothing else is changed.
pub(super) async fn blocked(ctx: &Context, target: &Target<'_>, blocked: Blocked) -> Result<Action, Error> {
    let obj = target.obj;
    let mut status = desired_status(obj, &[], conditions::now());
    status.observed_generation = obj.status.as_ref().and_then(|s| s.observed_generation);
    conditions::set(
        &mut status.conditions,
        NewCondition {
            type_: "Progressing",
            status: Status::False,
            reason: blocked.reason,
            message: blocked.message.clone(),
            observed_generation: obj.metadata.generation,
        },
        conditions::now(),
    );
    if blocked.unavailable {
        conditions::set(
            &mut status.conditions,
            NewCondition {
                type_: "Available",
                status: Status::False,
                reason: blocked.reason,
                message: blocked.message.clone(),
                observed_generation: obj.metadata.generation,
            },
            conditions::now(),
        );
    }
    if obj.status.as_ref() != Some(&status) {
        ctx.recorder
            .warning(obj, blocked.reason, blocked.action, blocked.message)
            .await;
    }
    write_status(ctx, target, &status).await?;
    Ok(Action::requeue(blocked.retry))
}

/// Reports a spec that fails validation (a Warning Event once per generation) and leaves the
/// cluster alone.
pub(super) async fn invalid_spec(
    ctx: &Context,
    target: &Target<'_>,
    problems: &[String],
) -> Result<Action, Error> {
    let obj = target.obj;
    let status = desired_status(obj, problems, conditions::now());
    if obj.status.as_ref().and_then(|s| s.observed_generation) != obj.metadata.generation {
        ctx.recorder
            .warning(obj, "InvalidSpec", "Validate", problems.join("; "))
            .await;
    }
    write_status(ctx, target, &status).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Writes the status after `step` was executed on what was `seen`, sets the gauges, and warns
/// when the maintenance schedule has just become invalid. Returns the status written.
pub(super) async fn report(
    ctx: &Context,
    target: &Target<'_>,
    seen: Observation,
    step: &Step,
    now: Time,
    backups: Option<&crate::backup::schedule::Report>,
) -> Result<EtcdClusterStatus, Error> {
    let obj = target.obj;
    let mut members = seen.members.unwrap_or_default();
    if let Step::Defrag { id, .. } = step
        && let Some(m) = members.iter_mut().find(|m| m.id == *id)
    {
        // Recorded so this schedule window does not defragment the member again.
        m.last_defrag = Some(rfc3339(&conditions::now()));
    }
    let mut status = status_after(obj, &members, seen.leader, step, now.clone());
    set_backup_ready(&mut status, obj.metadata.generation, backups, now);
    recovery_event(
        ctx,
        obj,
        obj.status.as_ref().and_then(|s| s.recovery.as_ref()),
        status.recovery.as_ref(),
    )
    .await;
    if let Some(message) = invalid_backup_schedule(Some(&status))
        && invalid_backup_schedule(obj.status.as_ref()).as_ref() != Some(&message)
    {
        ctx.recorder
            .warning(obj, "InvalidSchedule", "Validate", message)
            .await;
    }
    if let Some(message) = invalid_schedule(Some(&status))
        && invalid_schedule(obj.status.as_ref()).as_ref() != Some(&message)
    {
        ctx.recorder
            .warning(obj, "InvalidSchedule", "Validate", message)
            .await;
    }
    ctx.metrics.record(obj, &status);
    write_status(ctx, target, &status).await?;
    Ok(status)
}

/// Condition type saying whether the scheduled backups are current (with `spec.backup`).
pub const BACKUP_READY: &str = crate::backup::build::BACKUP_READY;

/// Sets `BackupReady` from what the backup schedule reported, or removes it without one.
fn set_backup_ready(
    status: &mut EtcdClusterStatus,
    generation: Option<i64>,
    backups: Option<&crate::backup::schedule::Report>,
    now: Time,
) {
    match backups {
        None => status.conditions.retain(|c| c.type_ != BACKUP_READY),
        Some(report) => {
            let (ok, reason, message) = &report.ready;
            conditions::set(
                &mut status.conditions,
                NewCondition {
                    type_: BACKUP_READY,
                    status: (*ok).into(),
                    reason,
                    message: message.clone(),
                    observed_generation: generation,
                },
                now,
            );
        }
    }
}

/// The message of a `BackupReady=False` condition with reason `InvalidSchedule`, if any.
fn invalid_backup_schedule(status: Option<&EtcdClusterStatus>) -> Option<String> {
    status
        .and_then(|st| st.conditions.iter().find(|c| c.type_ == BACKUP_READY))
        .filter(|c| c.reason == "InvalidSchedule")
        .map(|c| c.message.clone())
}

/// [`observed_status`], except that when no member answered the membership is still what it
/// was. Keeping it in the status is what lets lost pods come back with their identity instead
/// of a new, empty cluster.
fn status_after(
    obj: &EtcdCluster,
    members: &[MemberView],
    leader: Option<u64>,
    step: &Step,
    now: Time,
) -> EtcdClusterStatus {
    let mut status = observed_status(obj, members, leader, step, now);
    if members.is_empty() {
        status.members = obj
            .status
            .iter()
            .flat_map(|s| s.members.iter().cloned())
            .map(|mut m| {
                m.healthy = false;
                m.is_leader = false;
                m
            })
            .collect();
    }
    status
}

/// The message of a `MaintenanceScheduled=False` condition, if `status` has one.
fn invalid_schedule(status: Option<&EtcdClusterStatus>) -> Option<String> {
    status
        .and_then(|st| st.conditions.iter().find(|c| c.type_ == MAINTENANCE))
        .filter(|c| c.status == "False")
        .map(|c| c.message.clone())
}

async fn write_status(ctx: &Context, target: &Target<'_>, status: &EtcdClusterStatus) -> Result<(), Error> {
    if target.obj.status.as_ref() == Some(status) {
        return Ok(());
    }
    // The next reconciles read the cluster from the API until the watch has surely seen this.
    ctx.applier.touched(&target.uid);
    steward_core::apply::apply_status(&target.api, target.obj, FIELD_MANAGER, status)
        .await
        .map_err(|source| Error::Status {
            name: target.name.clone(),
            source,
        })?;
    // And from when it took effect: a slow write must not shorten that time.
    ctx.applier.touched(&target.uid);
    Ok(())
}

/// When to reconcile again after `step`: soon after a change, every few seconds otherwise
/// (health is polled), and in any case in time to renew the next certificate of
/// `tls_secrets` and to replace a member whose failure timeout runs out.
pub(super) fn next_reconcile(
    spec: &EtcdClusterSpec,
    step: &Step,
    tls_secrets: &[k8s_openapi::api::core::v1::Secret],
    status: &EtcdClusterStatus,
    now: i64,
    backup_due: Option<Duration>,
) -> Action {
    let polled = match step {
        // Health is polled: a member that stops answering is noticed within this period.
        Step::Nothing | Step::Paused => Duration::from_secs(5),
        // Nothing to do until etcd or the pods change: do not crowd out other clusters.
        Step::Wait { .. }
        | Step::QuorumLost { .. }
        | Step::Unreachable { .. }
        | Step::UpgradeBlocked { .. } => Duration::from_secs(5),
        // A membership change was made: look again soon (pod changes also wake us).
        _ => Duration::from_secs(1),
    };
    // Come back in time to renew the next certificate, switch CAs or retire the old CA.
    let renew_in = crate::tls::next_renewal(tls_secrets)
        .map(|at| Duration::from_secs((at - now).clamp(1, 3600) as u64 + 1));
    // And in time to replace a member whose failure timeout runs out.
    let failure_due = failure_deadline(status, member_failure_timeout(spec), now);
    let after = [Some(polled), renew_in, failure_due, backup_due]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(polled);
    Action::requeue(after)
}

/// Time until the first unhealthy member's failure timeout runs out, if any.
fn failure_deadline(status: &EtcdClusterStatus, timeout: Duration, now: i64) -> Option<Duration> {
    status
        .members
        .iter()
        .filter_map(|m| m.unhealthy_since.as_deref().and_then(unix_seconds))
        .map(|since| since + timeout.as_secs() as i64 - now)
        .min()
        .map(|left| Duration::from_secs(left.clamp(0, 3600) as u64 + 1))
}
