//! Spot backups: the EtcdBackup taken before a risky step of the EtcdCluster controller
//! (`spec.backup.spot`), which holds the step until the backup finished. Before an upgrade a
//! failed backup blocks the upgrade; before a member replacement it does not (healing must
//! not wait on storage).

use kube::{Api, ResourceExt};
use steward_core::EventRecorder;
use steward_core::apply::{Applier, Desired};

use super::Error;
use super::build::{self, SUCCEEDED};
use crate::crd::{
    BackupPhase, EtcdBackup, EtcdCluster, TRIGGER_BEFORE_MEMBER_REPLACEMENT, TRIGGER_BEFORE_UPGRADE,
};
use crate::plan::{RemoveReason, Step};

/// The spot backup `step` needs first: its name, trigger, and whether its failure blocks the
/// step. `None` when the step needs none. Pure.
pub fn wanted(cluster: &EtcdCluster, step: &Step) -> Option<(String, &'static str, bool)> {
    let spot = &cluster.spec.backup.as_ref()?.spot;
    let name = cluster.name_any();
    match step {
        Step::UpgradeMember { .. } if spot.before_upgrade => Some((
            format!("{name}-pre-upgrade-{}", cluster.spec.version),
            TRIGGER_BEFORE_UPGRADE,
            true,
        )),
        Step::RemoveMember {
            member,
            reason: RemoveReason::Replace,
            ..
        } if spot.before_member_replacement => Some((
            format!("{name}-pre-replace-{member}"),
            TRIGGER_BEFORE_MEMBER_REPLACEMENT,
            false,
        )),
        _ => None,
    }
}

/// The spot backup `step` waits for: the one [`wanted`] names, unless a member was recovered
/// (`status.lastMemberRecoveryTime`) after the pre-upgrade backup `base` (as read) was
/// created: the order is recover, back up, upgrade, so an upgrade interrupted by a recovery
/// takes a fresh backup, named after the recovery's time, before it goes on. Pure.
pub fn current_name(cluster: &EtcdCluster, step: &Step, base: Option<&EtcdBackup>) -> Option<String> {
    let (name, trigger, _) = wanted(cluster, step)?;
    if trigger != TRIGGER_BEFORE_UPGRADE {
        return Some(name);
    }
    let recovered = cluster
        .status
        .as_ref()
        .and_then(|s| s.last_member_recovery_time.as_deref())
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| t.as_second());
    let created = base
        .and_then(|b| b.metadata.creation_timestamp.as_ref())
        .map(|t| t.0.as_second());
    match (recovered, created) {
        // Same second: which came first is unknown, so the backup is taken again.
        (Some(recovered), Some(created)) if created <= recovered => Some(format!("{name}-{recovered}")),
        _ => Some(name),
    }
}

/// What to do with a step that needs a spot backup.
#[derive(Clone, Debug)]
pub enum Gate {
    /// Go ahead with the step.
    Proceed,
    /// Create this backup and wait.
    Create(Box<EtcdBackup>),
    /// Wait for the backup: the step becomes `Wait` with this reason.
    Wait(String),
    /// The backup failed and blocks the step: `UpgradeBlocked` with this reason.
    Block(String),
}

/// What `step` waits for, given the spot backup `name` (see [`current_name`]) as it
/// exists. Pure.
pub fn gate(cluster: &EtcdCluster, step: &Step, name: &str, existing: Option<&EtcdBackup>) -> Gate {
    let Some((_, trigger, blocking)) = wanted(cluster, step) else {
        return Gate::Proceed;
    };
    let name = name.to_string();
    let Some(backup) = existing else {
        return match build::cluster_backup(cluster, &name, trigger) {
            Some(b) => Gate::Create(Box::new(b)),
            None => Gate::Proceed,
        };
    };
    let status = backup.status.clone().unwrap_or_default();
    match status.phase {
        Some(BackupPhase::Succeeded) => Gate::Proceed,
        Some(BackupPhase::Failed) if !blocking => Gate::Proceed,
        Some(BackupPhase::Failed) => {
            let why = status
                .conditions
                .iter()
                .find(|c| c.type_ == SUCCEEDED)
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            Gate::Block(format!(
                "the pre-upgrade backup {name} failed ({why}); delete it to take another, or set spec.backup.spot.beforeUpgrade to false to upgrade without one"
            ))
        }
        _ => Gate::Wait(format!("waiting for the spot backup {name} ({trigger})")),
    }
}

/// `step`, or what it becomes while its spot backup is missing, running or failed (creating
/// the backup when it is missing).
pub async fn hold(
    client: &kube::Client,
    applier: &Applier,
    recorder: &EventRecorder,
    cluster: &EtcdCluster,
    step: Step,
) -> Result<Step, Error> {
    let Some((base, trigger, _)) = wanted(cluster, &step) else {
        return Ok(step);
    };
    let ns = cluster.namespace().unwrap_or_default();
    // Read from the API: a cache a step behind would take a second backup.
    let api = Api::<EtcdBackup>::namespaced(client.clone(), &ns);
    let get = |name: String| {
        let api = api.clone();
        let ns = ns.clone();
        async move {
            api.get_opt(&name)
                .await
                .map_err(Error::kube("get", "EtcdBackup", format!("{ns}/{name}")))
        }
    };
    let mut existing = get(base.clone()).await?;
    let name = current_name(cluster, &step, existing.as_ref()).unwrap_or(base.clone());
    if name != base {
        existing = get(name.clone()).await?;
    }
    Ok(match gate(cluster, &step, &name, existing.as_ref()) {
        Gate::Proceed => step,
        Gate::Create(backup) => {
            applier
                .apply_unowned(&Desired::namespaced(backup.as_ref())?)
                .await?;
            recorder
                .normal(
                    cluster,
                    "SpotBackup",
                    "Backup",
                    format!("created EtcdBackup {name} ({trigger}); the step waits for it"),
                )
                .await;
            Step::Wait {
                reason: format!("waiting for the spot backup {name} ({trigger})"),
            }
        }
        Gate::Wait(reason) => Step::Wait { reason },
        Gate::Block(reason) => Step::UpgradeBlocked { reason },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crd::{EtcdBackupStatus, EtcdClusterSpec};
    use crate::version::Version;

    fn cluster(spot: serde_json::Value) -> EtcdCluster {
        let mut backup = serde_json::json!({"schedule": "@daily", "destination": {"s3": {"bucket": "b"}}});
        if !spot.is_null() {
            backup["spot"] = spot;
        }
        let spec: EtcdClusterSpec =
            serde_json::from_value(serde_json::json!({"size": 3, "version": "3.5.16", "backup": backup}))
                .unwrap();
        let mut c = EtcdCluster::new("main", spec);
        c.metadata.namespace = Some("prod".into());
        c
    }

    /// [`gate`] on the backup [`current_name`] names, as if `existing` were that backup.
    fn gate_of(c: &EtcdCluster, step: &Step, existing: Option<&EtcdBackup>) -> Gate {
        let name = current_name(c, step, existing).unwrap_or_default();
        gate(c, step, &name, existing)
    }

    fn upgrade() -> Step {
        Step::UpgradeMember {
            member: "main-abcde".into(),
            from: Version::parse("3.4.35").unwrap(),
        }
    }

    fn replace() -> Step {
        Step::RemoveMember {
            id: 7,
            member: "main-fghjk".into(),
            reason: RemoveReason::Replace,
        }
    }

    fn with_phase(mut b: EtcdBackup, phase: BackupPhase) -> EtcdBackup {
        b.status = Some(EtcdBackupStatus {
            phase: Some(phase),
            ..Default::default()
        });
        b
    }

    #[test]
    fn an_upgrade_waits_for_a_successful_pre_upgrade_backup_by_default() {
        let c = cluster(serde_json::Value::Null);
        let Gate::Create(b) = gate_of(&c, &upgrade(), None) else {
            panic!("a backup is created first");
        };
        assert_eq!(b.metadata.name.as_deref(), Some("main-pre-upgrade-3.5.16"));
        assert_eq!(b.labels()["etcd.steward.dev/trigger"], "before-upgrade");
        assert_eq!(b.metadata.owner_references, None);
        let running = with_phase(*b.clone(), BackupPhase::Running);
        assert!(matches!(gate_of(&c, &upgrade(), Some(&running)), Gate::Wait(_)));
        let done = with_phase(*b.clone(), BackupPhase::Succeeded);
        assert!(matches!(gate_of(&c, &upgrade(), Some(&done)), Gate::Proceed));
        let failed = with_phase(*b, BackupPhase::Failed);
        let Gate::Block(reason) = gate_of(&c, &upgrade(), Some(&failed)) else {
            panic!("a failed pre-upgrade backup blocks the upgrade");
        };
        assert!(reason.contains("spec.backup.spot.beforeUpgrade"), "{reason}");
    }

    #[test]
    fn a_replacement_waits_for_its_backup_only_when_asked_and_never_blocks() {
        let off = cluster(serde_json::Value::Null);
        assert!(matches!(gate_of(&off, &replace(), None), Gate::Proceed));
        let on = cluster(serde_json::json!({"beforeMemberReplacement": true}));
        let Gate::Create(b) = gate_of(&on, &replace(), None) else {
            panic!("a backup is created first");
        };
        assert_eq!(b.metadata.name.as_deref(), Some("main-pre-replace-main-fghjk"));
        assert_eq!(
            b.labels()["etcd.steward.dev/trigger"],
            "before-member-replacement"
        );
        let pending = with_phase(*b.clone(), BackupPhase::Pending);
        assert!(matches!(gate_of(&on, &replace(), Some(&pending)), Gate::Wait(_)));
        let failed = with_phase(*b, BackupPhase::Failed);
        assert!(matches!(gate_of(&on, &replace(), Some(&failed)), Gate::Proceed));
        // beforeUpgrade stays on unless switched off.
        assert!(matches!(gate_of(&on, &upgrade(), None), Gate::Create(_)));
    }

    #[test]
    fn other_steps_and_switched_off_spots_proceed() {
        let off = cluster(serde_json::json!({"beforeUpgrade": false}));
        assert!(matches!(gate_of(&off, &upgrade(), None), Gate::Proceed));
        let c = cluster(serde_json::Value::Null);
        let scale_down = Step::RemoveMember {
            id: 1,
            member: "main-x".into(),
            reason: RemoveReason::ScaleDown,
        };
        assert!(matches!(gate_of(&c, &scale_down, None), Gate::Proceed));
        assert!(matches!(gate_of(&c, &Step::Nothing, None), Gate::Proceed));
        let mut no_backup = c.clone();
        no_backup.spec.backup = None;
        assert!(matches!(gate_of(&no_backup, &upgrade(), None), Gate::Proceed));
    }

    fn created_at(mut b: EtcdBackup, t: &str) -> EtcdBackup {
        b.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            t.parse().unwrap(),
        ));
        b
    }

    #[test]
    fn an_upgrade_interrupted_by_a_member_recovery_takes_a_fresh_backup_first() {
        let mut c = cluster(serde_json::Value::Null);
        let Gate::Create(b) = gate_of(&c, &upgrade(), None) else {
            panic!("a backup is created first");
        };
        let first = created_at(with_phase(*b, BackupPhase::Succeeded), "2026-01-01T10:00:00Z");
        // No recovery, or one before the backup: the backup stands.
        assert!(matches!(gate_of(&c, &upgrade(), Some(&first)), Gate::Proceed));
        c.status = Some(crate::crd::EtcdClusterStatus {
            last_member_recovery_time: Some("2026-01-01T09:00:00Z".into()),
            ..Default::default()
        });
        assert!(matches!(gate_of(&c, &upgrade(), Some(&first)), Gate::Proceed));
        // A member recovered after it: a fresh backup, named after the recovery, first.
        c.status = Some(crate::crd::EtcdClusterStatus {
            last_member_recovery_time: Some("2026-01-01T10:05:00Z".into()),
            ..Default::default()
        });
        let name = current_name(&c, &upgrade(), Some(&first)).unwrap();
        assert_eq!(name, "main-pre-upgrade-3.5.16-1767261900");
        let Gate::Create(fresh) = gate(&c, &upgrade(), &name, None) else {
            panic!("a fresh backup is created");
        };
        assert_eq!(fresh.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(fresh.labels()["etcd.steward.dev/trigger"], "before-upgrade");
        let running = with_phase(*fresh.clone(), BackupPhase::Running);
        assert!(matches!(
            gate(&c, &upgrade(), &name, Some(&running)),
            Gate::Wait(_)
        ));
        let done = with_phase(*fresh, BackupPhase::Succeeded);
        assert!(matches!(gate(&c, &upgrade(), &name, Some(&done)), Gate::Proceed));
        // A replacement's spot backup is not renamed.
        let on = cluster(serde_json::json!({"beforeMemberReplacement": true}));
        assert_eq!(
            current_name(&on, &replace(), Some(&first)).as_deref(),
            Some("main-pre-replace-main-fghjk")
        );
    }
}
