//! Build (pure): the children every cluster has, the planner's input, and the pod and claim
//! of a member that a step starts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use steward_core::apply::{ApplyError, Desired, OwnedKind};

use super::observe::{MemberView, Observation};
use super::unix_seconds;
use super::validate::{certificate_validity, member_failure_timeout, recovery_after};
use crate::crd::{BackupPhase, EtcdBackup, EtcdCluster, ReclaimPolicy, RecoveryPhase};
use crate::plan::{BackupObs, DefragObs, MemberObs, Observed, PodObs, RecoveryObs, StorageKind};
use crate::resources;
use crate::tls::{TlsError, TlsSecrets};
use crate::version::Version;

/// Stands in for a version nobody states (a pod image without one); below every real one.
const UNKNOWN_VERSION: Version = Version {
    major: 0,
    minor: 0,
    patch: 0,
};

/// The children every cluster has, whatever the step: both Services, the PDB and (mode
/// auto) the TLS Secrets. Member pods and claims are the steps' business.
pub(super) struct DesiredChildren {
    client_service: Service,
    peer_service: Service,
    pdb: PodDisruptionBudget,
    tls_secrets: Vec<Secret>,
}

impl DesiredChildren {
    /// Every kind among them: objects of these kinds that we own and no longer want are pruned.
    pub fn kinds() -> [OwnedKind; 3] {
        [
            OwnedKind::namespaced::<Service>(),
            OwnedKind::namespaced::<PodDisruptionBudget>(),
            OwnedKind::namespaced::<Secret>(),
        ]
    }

    /// The objects in the applier's form.
    pub fn into_desired(self) -> Result<Vec<Desired>, ApplyError> {
        let mut desired = vec![
            Desired::namespaced(&self.client_service)?,
            Desired::namespaced(&self.peer_service)?,
            Desired::namespaced(&self.pdb)?,
        ];
        for secret in &self.tls_secrets {
            desired.push(Desired::namespaced(secret)?);
        }
        Ok(desired)
    }
}

/// The children `obj` always has, with the TLS Secrets decided by [`tls_secrets`].
pub(super) fn children(obj: &EtcdCluster, tls_secrets: &[Secret]) -> DesiredChildren {
    DesiredChildren {
        client_service: resources::client_service(obj),
        peer_service: resources::peer_service(obj),
        pdb: resources::pod_disruption_budget(obj),
        tls_secrets: tls_secrets.to_vec(),
    }
}

/// What the TLS Secrets of `obj` (mode auto) should hold at `now`, given the `existing` ones.
pub(super) fn tls_secrets(
    obj: &EtcdCluster,
    existing: &BTreeMap<String, Secret>,
    now: i64,
) -> Result<TlsSecrets, TlsError> {
    let ca_validity = crate::tls::ca_validity(&obj.spec.tls).unwrap_or(crate::tls::CA_VALIDITY_SECS);
    crate::tls::desired_secrets(obj, existing, now, certificate_validity(&obj.spec), ca_validity)
}

/// Everything the planner looks at: the spec, what was `seen`, the time, a name to use if
/// the step adds a member, and the newest backup a rebuild could use (looked up only once
/// quorum is lost).
pub(super) fn planner_input(
    obj: &EtcdCluster,
    seen: &Observation,
    now: i64,
    fresh_name: String,
    latest_backup: Option<BackupObs>,
) -> Observed {
    let spec = &obj.spec;
    Observed {
        size: spec.size.max(0) as usize,
        version: Version::parse(&spec.version).unwrap_or(UNKNOWN_VERSION),
        paused: spec.paused,
        storage: if spec.storage.empty_dir.is_some() {
            StorageKind::Ephemeral
        } else {
            StorageKind::Persistent
        },
        member_failure_timeout: member_failure_timeout(spec),
        now,
        pods: seen.pods.iter().map(pod_obs).collect(),
        volumes: seen
            .pvcs
            .iter()
            .filter_map(|c| c.labels().get(resources::MEMBER_LABEL).cloned())
            .collect(),
        known: known_members(obj, &seen.pvcs),
        members: seen
            .members
            .as_ref()
            .map(|ms| ms.iter().map(member_obs).collect()),
        leader: seen.leader,
        fresh_name,
        defrag: defrag_obs(obj, now),
        unreachable: seen.unreachable.clone(),
        recovery: recovery_obs(obj, latest_backup),
    }
}

/// `spec.recovery` and what status recorded about quorum loss and a rebuild in progress.
fn recovery_obs(obj: &EtcdCluster, latest_backup: Option<BackupObs>) -> RecoveryObs {
    let spec = obj.spec.recovery.clone().unwrap_or_default();
    let status = obj.status.as_ref();
    RecoveryObs {
        from_latest_backup: spec.from_latest_backup,
        after: recovery_after(&obj.spec),
        quorum_lost_since: status
            .and_then(|s| s.quorum_lost_since.as_deref())
            .and_then(unix_seconds),
        latest_backup,
        restoring: status
            .and_then(|s| s.recovery.as_ref())
            .filter(|r| r.phase == RecoveryPhase::Restoring)
            .map(|r| {
                let backup = BackupObs {
                    name: r.backup.clone(),
                    completion_time: r.backup_completion_time.clone().unwrap_or_default(),
                };
                (backup, r.seed.clone())
            }),
    }
}

/// The newest EtcdBackup among `backups` that a rebuild of `obj` can restore: of this
/// cluster (`clusterRef`), Succeeded with a stored key (in S3 or on a PVC), and completed
/// after the cluster was created (a namesake deleted before it is another cluster). By completionTime.
pub(super) fn latest_backup(obj: &EtcdCluster, backups: &[EtcdBackup]) -> Option<BackupObs> {
    let created = obj.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second());
    backups
        .iter()
        .filter(|b| {
            b.spec.cluster_ref.name == obj.name_any() && store_of(b.spec.destination.clone()).is_some()
        })
        .filter_map(|b| {
            let st = b.status.as_ref()?;
            if st.phase != Some(BackupPhase::Succeeded) || st.key.is_none() {
                return None;
            }
            let done = st.completion_time.as_deref()?;
            let at = unix_seconds(done)?;
            created
                .is_none_or(|c| at >= c)
                .then(|| (at, b.name_any(), done.to_string()))
        })
        .max()
        .map(|(_, name, completion_time)| BackupObs {
            name,
            completion_time,
        })
}

/// A member pod as the planner sees it: its version is its image's tag.
fn pod_obs(p: &Pod) -> PodObs {
    PodObs {
        name: p.name_any(),
        version: p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref())
            .and_then(|i| i.rsplit(':').next())
            .and_then(Version::parse)
            .unwrap_or(UNKNOWN_VERSION),
        terminating: p.metadata.deletion_timestamp.is_some(),
    }
}

fn member_obs(m: &MemberView) -> MemberObs {
    MemberObs {
        id: m.id,
        name: m.name.clone(),
        started: m.started,
        is_learner: m.is_learner,
        healthy: m.healthy,
        unhealthy_since: m.unhealthy_since.as_deref().and_then(unix_seconds),
        version: m.version,
        db_size: m.db_size,
        raft_index: m.raft_index,
        last_defrag: m.last_defrag.as_deref().and_then(unix_seconds),
    }
}

/// `spec.maintenance.defrag` when it names a schedule; windows count from the cluster's
/// creation (or `now` for an object that does not say).
fn defrag_obs(obj: &EtcdCluster, now: i64) -> Option<DefragObs> {
    let d = obj.spec.maintenance.as_ref()?.defrag.as_ref()?;
    Some(DefragObs {
        schedule: d.schedule.clone()?,
        threshold_percent: i64::from(d.db_size_threshold_percent.unwrap_or(0)),
        created: obj
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0.as_second()),
    })
}

/// The members the cluster had, without asking etcd: `status.members` and the member PVCs
/// carrying the cluster's labels, in that order, without duplicates.
fn known_members(obj: &EtcdCluster, pvcs: &[PersistentVolumeClaim]) -> Vec<String> {
    let mut known: Vec<String> = obj
        .status
        .iter()
        .flat_map(|s| s.members.iter().map(|m| m.name.clone()))
        .collect();
    for name in pvcs
        .iter()
        .filter_map(|c| c.labels().get(resources::MEMBER_LABEL))
    {
        if !known.contains(name) {
            known.push(name.clone());
        }
    }
    known
}

/// `--initial-cluster` of a pod for `member` joining a cluster: every member etcd reports (or,
/// when none answered, the last known ones) and itself. A member with data ignores it; one
/// that never started needs it.
pub(super) fn joining_cluster(
    obj: &EtcdCluster,
    members: &[MemberView],
    member: &str,
) -> Vec<(String, String)> {
    let mut names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    if names.is_empty() {
        names = obj
            .status
            .iter()
            .flat_map(|s| s.members.iter().map(|m| m.name.clone()))
            .collect();
    }
    if !names.iter().any(|n| n == member) {
        names.push(member.to_string());
    }
    names
        .iter()
        .map(|n| (n.clone(), resources::peer_url(obj, n)))
        .collect()
}

/// The pod of a member a step starts and, with persistent storage, its data claim.
pub(super) struct MemberObjects {
    pub pod: Pod,
    pub claim: Option<PersistentVolumeClaim>,
}

/// The objects of `member`, controlled by `owner`, started with `initial` as
/// `--initial-cluster` and `state` as `--initial-cluster-state`.
pub(super) fn member_objects(
    obj: &EtcdCluster,
    owner: OwnerReference,
    member: &str,
    initial: &[(String, String)],
    state: &str,
) -> MemberObjects {
    let claim = obj.spec.storage.empty_dir.is_none().then(|| {
        let mut pvc = resources::member_pvc(obj, member);
        // With reclaimPolicy Delete the claims go with the cluster; with Retain they stay.
        if obj.spec.storage.reclaim_policy == ReclaimPolicy::Delete {
            pvc.metadata.owner_references = Some(vec![owner.clone()]);
        }
        pvc
    });
    let mut pod = resources::member_pod(obj, member, initial, state);
    pod.metadata.owner_references = Some(vec![owner]);
    MemberObjects { pod, claim }
}

/// Adds the restore init containers (from `source`) to the seed `pod` of `member`, started
/// with `initial` as `--initial-cluster`; they run with the etcd container's securityContext.
pub(super) fn add_restore(
    pod: &mut Pod,
    obj: &EtcdCluster,
    member: &str,
    initial: &[(String, String)],
    source: &resources::RestoreSource,
    operator_image: &str,
) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let security = spec
        .containers
        .first()
        .and_then(|c| c.security_context.clone())
        .unwrap_or_else(steward_core::security::restricted_container);
    if let Some(volume) = resources::restore_volume(source) {
        spec.volumes.get_or_insert_with(Vec::new).push(volume);
    }
    spec.init_containers = Some(resources::restore_init_containers(
        obj,
        member,
        initial,
        source,
        operator_image,
        security,
    ));
}

/// Why a restore cannot start yet: a condition reason and its message.
pub(super) type NotRestorable = (&'static str, String);

/// The snapshot `obj`'s seed is restored from, or `None` without `spec.bootstrap.fromBackup`.
/// `backup` is the EtcdBackup `fromBackup.backupRef` names, as read (`None`: not found).
pub(super) fn restore_source(
    obj: &EtcdCluster,
    backup: Option<&EtcdBackup>,
) -> Result<Option<resources::RestoreSource>, NotRestorable> {
    let Some(from) = obj.spec.bootstrap.as_ref().and_then(|b| b.from_backup.as_ref()) else {
        return Ok(None);
    };
    let ns = obj.namespace().unwrap_or_default();
    let not_ready = |m: String| -> NotRestorable {
        (
            BACKUP_NOT_READY,
            format!("{m}; the cluster waits for it and is not started empty"),
        )
    };
    let (destination, key, sha256) = match &from.backup_ref {
        Some(r) => return backup_source(&ns, &r.name, backup).map(Some).map_err(not_ready),
        None => (
            from.destination.clone().unwrap_or_default(),
            from.key.clone().unwrap_or_default(),
            from.sha256.clone(),
        ),
    };
    let Some(store) = store_of(destination) else {
        return Err(not_ready("fromBackup names no destination".to_string()));
    };
    if key.is_empty() {
        return Err(not_ready("fromBackup names no key".to_string()));
    }
    Ok(Some(resources::RestoreSource { store, key, sha256 }))
}

/// The snapshot of EtcdBackup `ns/name` (`backup` as read, `None`: not found), or why it
/// cannot be restored.
fn backup_source(
    ns: &str,
    name: &str,
    backup: Option<&EtcdBackup>,
) -> Result<resources::RestoreSource, String> {
    let Some(b) = backup else {
        return Err(format!("EtcdBackup {ns}/{name} does not exist"));
    };
    let st = b.status.clone().unwrap_or_default();
    if st.phase != Some(BackupPhase::Succeeded) {
        let phase = st.phase.map_or("not started".to_string(), |p| format!("{p:?}"));
        return Err(format!(
            "EtcdBackup {ns}/{name} has not succeeded (phase {phase})"
        ));
    }
    let Some(key) = st.key else {
        return Err(format!("EtcdBackup {ns}/{name} names no stored key"));
    };
    let Some(store) = store_of(b.spec.destination.clone()) else {
        return Err(format!("EtcdBackup {ns}/{name} names no destination"));
    };
    Ok(resources::RestoreSource {
        store,
        key,
        sha256: st.sha256,
    })
}

/// Where a destination stores its snapshots, for a restore (`None`: it names none).
fn store_of(destination: crate::crd::BackupDestination) -> Option<resources::RestoreStore> {
    match (destination.s3, destination.pvc) {
        (Some(s3), _) => Some(resources::RestoreStore::S3(s3)),
        (None, Some(pvc)) => Some(resources::RestoreStore::Pvc(pvc)),
        (None, None) => None,
    }
}

/// The snapshot a rebuild (`spec.recovery`) restores its seed from: EtcdBackup `name` as
/// read (`None`: not found), or why the rebuild must wait.
pub(super) fn recovery_source(
    obj: &EtcdCluster,
    name: &str,
    backup: Option<&EtcdBackup>,
) -> Result<resources::RestoreSource, NotRestorable> {
    let ns = obj.namespace().unwrap_or_default();
    backup_source(&ns, name, backup).map_err(|m| {
        (
            BACKUP_NOT_READY,
            format!("{m}; the rebuild from it waits and nothing is started empty"),
        )
    })
}

/// Condition reason while the backup a restore needs is missing or not Succeeded.
pub(super) const BACKUP_NOT_READY: &str = "BackupNotReady";
/// Condition reason once a restore init container failed.
pub(super) const RESTORE_FAILED: &str = "RestoreFailed";

/// Why the restore of seed `pod` failed, from its restore init containers' termination
/// (their termination message, or their log's tail): `None` while they run or succeeded.
pub(super) fn restore_failure(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.init_container_statuses.as_ref()?;
    let names = [
        resources::FETCH_CONTAINER,
        resources::RESTORE_CONTAINER,
        resources::FINISH_CONTAINER,
    ];
    for s in statuses.iter().filter(|s| names.contains(&s.name.as_str())) {
        let now = s.state.as_ref().and_then(|st| st.terminated.as_ref());
        if now.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        let last = s.last_state.as_ref().and_then(|st| st.terminated.as_ref());
        if let Some(t) = now.or(last).filter(|t| t.exit_code != 0) {
            let message = t.message.as_deref().map(str::trim).filter(|m| !m.is_empty());
            return Some(format!(
                "init container {} of pod {} failed (exit code {}): {}",
                s.name,
                pod.name_any(),
                t.exit_code,
                message.unwrap_or("no termination message")
            ));
        }
    }
    None
}
