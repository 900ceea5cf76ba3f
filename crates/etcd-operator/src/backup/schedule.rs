//! Scheduled backups, run by the EtcdCluster controller for a cluster with `spec.backup`:
//! create the EtcdBackup the latest firing is due for, prune scheduled backups by retention
//! (the stored snapshot first, then the object), and work out `BackupReady`.

use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, ResourceExt};
use steward_core::EventRecorder;
use steward_core::apply::{Applier, Desired, OwnedKind};

use super::build::{self, Seen};
use super::retention::{self, Entry, Policy};
use super::{Error, target_for};
use crate::crd::{
    BACKUP_CLUSTER_LABEL, BACKUP_TRIGGER_LABEL, BackupPhase, EtcdBackup, EtcdCluster, TRIGGER_SCHEDULE,
};
use crate::snapshot;

/// How often a cluster with pending or running backups is looked at again (to update
/// `BackupReady` once they finish).
const WHILE_PENDING: Duration = Duration::from_secs(10);

/// What the schedule did, for the EtcdCluster's status and next reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `BackupReady`: status, reason and message.
    pub ready: (bool, &'static str, String),
    /// When to look again: the next firing, or sooner while backups are pending.
    pub requeue: Option<Duration>,
}

/// The backups of cluster `cluster`, as [`retention`] sees one.
fn entry(b: &EtcdBackup) -> Entry {
    let status = b.status.clone().unwrap_or_default();
    let time = status
        .completion_time
        .as_deref()
        .and_then(build::unix)
        .or_else(|| b.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()))
        .unwrap_or(0);
    Entry {
        name: b.name_any(),
        phase: status.phase.unwrap_or_default(),
        time,
    }
}

fn seen(b: &EtcdBackup) -> Seen {
    let failure = b
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == build::SUCCEEDED))
        .filter(|c| c.status == "False")
        .map(|c| format!("{}: {}", c.reason, c.message));
    Seen {
        entry: entry(b),
        failure,
    }
}

fn is_scheduled(b: &EtcdBackup) -> bool {
    b.labels().get(BACKUP_TRIGGER_LABEL).map(String::as_str) == Some(TRIGGER_SCHEDULE)
}

/// Runs `cluster`'s backup schedule at `now`; `None` when it has none.
pub async fn reconcile(
    client: &kube::Client,
    applier: &Applier,
    recorder: &EventRecorder,
    cluster: &EtcdCluster,
    now: i64,
) -> Result<Option<Report>, Error> {
    let Some(spec) = &cluster.spec.backup else {
        return Ok(None);
    };
    let schedule = match crate::plan::parse_schedule(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Some(Report {
                ready: (
                    false,
                    "InvalidSchedule",
                    format!("spec.backup.schedule: {e}; no backups are scheduled"),
                ),
                requeue: None,
            }));
        }
    };
    let name = cluster.name_any();
    let ns = cluster.namespace().unwrap_or_default();
    let api = Api::<EtcdBackup>::namespaced(client.clone(), &ns);
    let mut backups = api
        .list(&ListParams::default().labels(&format!("{BACKUP_CLUSTER_LABEL}={name}")))
        .await
        .map_err(Error::kube("list", "EtcdBackup", ns.clone()))?
        .items;

    let created = cluster
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0.as_second());
    if let Some(at) = build::due_firing(&schedule, created, now) {
        let wanted = build::scheduled_name(&name, at);
        if !backups.iter().any(|b| b.name_any() == wanted)
            && let Some(backup) = build::scheduled_backup(cluster, at)
        {
            applier.apply_unowned(&Desired::namespaced(&backup)?).await?;
            recorder
                .normal(
                    cluster,
                    "BackupScheduled",
                    "Backup",
                    format!(
                        "created EtcdBackup {wanted} for the firing at {}",
                        build::rfc3339(at)
                    ),
                )
                .await;
            backups.push(backup);
        }
    }

    if let Some(r) = &spec.retention {
        match Policy::from_spec(r) {
            Err(message) => {
                recorder
                    .warning(
                        cluster,
                        "InvalidRetention",
                        "Prune",
                        format!("spec.backup.{message}"),
                    )
                    .await
            }
            Ok(policy) => {
                let scheduled: Vec<Entry> = backups.iter().filter(|b| is_scheduled(b)).map(entry).collect();
                for victim in retention::prune(&policy, &scheduled, now) {
                    if prune(client, applier, recorder, cluster, &backups, &victim).await? {
                        backups.retain(|b| b.name_any() != victim);
                    }
                }
            }
        }
    }

    let interval = build::interval(&schedule, now).unwrap_or(86_400);
    let all: Vec<Seen> = backups.iter().map(seen).collect();
    let pending = all
        .iter()
        .any(|b| matches!(b.entry.phase, BackupPhase::Pending | BackupPhase::Running));
    let next = build::next_firing(&schedule, now)
        .map(|at| Duration::from_secs((at - now).clamp(0, 3600) as u64 + 1));
    let requeue = [next, pending.then_some(WHILE_PENDING)]
        .into_iter()
        .flatten()
        .min();
    Ok(Some(Report {
        ready: build::backup_ready(interval, &all, now),
        requeue,
    }))
}

/// Prunes backup `victim`: deletes its stored snapshot, then the EtcdBackup. A snapshot that
/// cannot be deleted keeps the object (and a Warning Event says why): the next reconcile
/// tries again. Returns whether the backup is gone.
async fn prune(
    client: &kube::Client,
    applier: &Applier,
    recorder: &EventRecorder,
    cluster: &EtcdCluster,
    backups: &[EtcdBackup],
    victim: &str,
) -> Result<bool, Error> {
    let Some(b) = backups.iter().find(|b| b.name_any() == victim) else {
        return Ok(false);
    };
    let ns = cluster.namespace().unwrap_or_default();
    let key = b.status.as_ref().and_then(|s| s.key.clone());
    if let Some(key) = &key {
        let problem = match target_for(client, &ns, &b.spec.destination).await? {
            Err((reason, message)) => Some(format!("{reason}: {message}")),
            Ok(target) => snapshot::delete(&target, key)
                .await
                .err()
                .map(|e| format!("{}: {e}", e.reason())),
        };
        if let Some(problem) = problem {
            recorder
                .warning(
                    cluster,
                    "PruneFailed",
                    "Prune",
                    format!("cannot delete the snapshot {key} of EtcdBackup {victim}: {problem}"),
                )
                .await;
            return Ok(false);
        }
    }
    applier
        .delete_unowned(&OwnedKind::namespaced::<EtcdBackup>(), Some(&ns), victim)
        .await?;
    let what = match &key {
        Some(key) => format!("deleted EtcdBackup {victim} and its snapshot {key} (retention)"),
        None => format!("deleted EtcdBackup {victim} (retention)"),
    };
    recorder.normal(cluster, "BackupPruned", "Prune", what).await;
    Ok(true)
}
