//! Scheduled backups, run by the EtcdCluster controller for a cluster with `spec.backup`:
//! create the EtcdBackup the latest firing is due for, prune scheduled backups by retention
//! (the stored snapshot first, then the object), and work out `BackupReady`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use steward_core::EventRecorder;
use steward_core::apply::{Applier, Desired, OwnedKind};

use super::build::{self, Seen};
use super::pod;
use super::retention::{self, Entry, Policy};
use super::{Error, target_for};
use crate::crd::{
    BACKUP_CLUSTER_LABEL, BACKUP_TRIGGER_LABEL, BackupPhase, EtcdBackup, EtcdCluster, PvcDestination,
    TRIGGER_SCHEDULE,
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

/// Runs `cluster`'s backup schedule at `now`; `None` when it has none. `operator_image`
/// runs the pods that delete pruned snapshots from a PersistentVolumeClaim.
pub async fn reconcile(
    client: &kube::Client,
    applier: &Applier,
    recorder: &EventRecorder,
    cluster: &EtcdCluster,
    now: i64,
    operator_image: &str,
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

    let mut pruning = false;
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
                let pruner = Pruner {
                    client,
                    applier,
                    recorder,
                    cluster,
                    operator_image,
                };
                for victim in retention::prune(&policy, &scheduled, now) {
                    match pruner.prune(&backups, &victim).await? {
                        Pruned::Gone => backups.retain(|b| b.name_any() != victim),
                        Pruned::InProgress => pruning = true,
                        Pruned::Kept => {}
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
    let requeue = [next, (pending || pruning).then_some(WHILE_PENDING)]
        .into_iter()
        .flatten()
        .min();
    Ok(Some(Report {
        ready: build::backup_ready(interval, &all, now),
        requeue,
    }))
}

/// What pruning one backup came to.
enum Pruned {
    /// The snapshot and the EtcdBackup are deleted.
    Gone,
    /// A pod is deleting the snapshot (a PersistentVolumeClaim destination); look again soon.
    InProgress,
    /// The snapshot could not be deleted (a Warning Event says why): both stay.
    Kept,
}

/// What pruning needs.
struct Pruner<'a> {
    client: &'a kube::Client,
    applier: &'a Applier,
    recorder: &'a EventRecorder,
    cluster: &'a EtcdCluster,
    operator_image: &'a str,
}

impl Pruner<'_> {
    /// Prunes backup `victim`: deletes its stored snapshot, then the EtcdBackup. A snapshot
    /// that cannot be deleted keeps the object (and a Warning Event says why): the next
    /// reconcile tries again.
    async fn prune(&self, backups: &[EtcdBackup], victim: &str) -> Result<Pruned, Error> {
        let Some(b) = backups.iter().find(|b| b.name_any() == victim) else {
            return Ok(Pruned::Kept);
        };
        let ns = self.cluster.namespace().unwrap_or_default();
        let key = b.status.as_ref().and_then(|s| s.key.clone());
        if let Some(key) = &key {
            let problem = match &b.spec.destination.pvc {
                Some(pvc) => match self.delete_in_pod(b, pvc, key).await? {
                    Ok(true) => None,
                    Ok(false) => return Ok(Pruned::InProgress),
                    Err(problem) => Some(problem),
                },
                None => match target_for(self.client, &ns, &b.spec.destination).await? {
                    Err((reason, message)) => Some(format!("{reason}: {message}")),
                    Ok(target) => snapshot::delete(&target, key)
                        .await
                        .err()
                        .map(|e| format!("{}: {e}", e.reason())),
                },
            };
            if let Some(problem) = problem {
                self.recorder
                    .warning(
                        self.cluster,
                        "PruneFailed",
                        "Prune",
                        format!("cannot delete the snapshot {key} of EtcdBackup {victim}: {problem}"),
                    )
                    .await;
                return Ok(Pruned::Kept);
            }
        }
        self.applier
            .delete_unowned(&OwnedKind::namespaced::<EtcdBackup>(), Some(&ns), victim)
            .await?;
        let what = match &key {
            Some(key) => format!("deleted EtcdBackup {victim} and its snapshot {key} (retention)"),
            None => format!("deleted EtcdBackup {victim} (retention)"),
        };
        self.recorder
            .normal(self.cluster, "BackupPruned", "Prune", what)
            .await;
        Ok(Pruned::Gone)
    }

    /// Deletes `key` from a claim through a pod owned by the backup (so it goes with it):
    /// `Ok(true)` once deleted, `Ok(false)` while the pod runs, `Err` with what went wrong
    /// (the pod is removed, so the next reconcile starts another).
    async fn delete_in_pod(
        &self,
        b: &EtcdBackup,
        pvc: &PvcDestination,
        key: &str,
    ) -> Result<Result<bool, String>, Error> {
        let ns = b.namespace().unwrap_or_default();
        let name = pod::delete_pod_name(&b.name_any());
        let pods = Api::<Pod>::namespaced(self.client.clone(), &ns);
        let live = pods
            .get_opt(&name)
            .await
            .map_err(Error::kube("get", "Pod", format!("{ns}/{name}")))?;
        let Some(live) = live else {
            let desired = pod::delete_pod(b, pvc, key, self.operator_image);
            self.applier
                .apply_owned(
                    b,
                    &pod::labels(b, "backup-delete"),
                    vec![Desired::namespaced(&desired)?],
                    &[],
                )
                .await?;
            return Ok(Ok(false));
        };
        match pod::report(&live) {
            None => Ok(Ok(false)),
            Some(pod::Report::Deleted) => Ok(Ok(true)),
            Some(other) => {
                self.applier
                    .delete_unowned(&OwnedKind::namespaced::<Pod>(), Some(&ns), &name)
                    .await?;
                Ok(Err(match other {
                    pod::Report::Failed { reason, message, .. } => format!("{reason}: {message}"),
                    _ => format!("pod {ns}/{name} reported no deletion"),
                }))
            }
        }
    }
}
