//! Restore (`spec.bootstrap.fromBackup`, and rebuilds after data loss under `spec.recovery`):
//! the backup a seed is restored from, the newest backup a rebuild could use, and whether the
//! seed's restore failed. Reads only; the seed pod itself is the Bootstrap or Recover step's.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::build::{self, RESTORE_FAILED};
use super::observe::Observation;
use super::status::Blocked;
use super::{Context, Error, Target};
use crate::crd::{EtcdBackup, RecoveryPhase};
use crate::plan::BackupObs;
use crate::resources::RestoreSource;

/// The snapshot the seed is restored from (`None` without `fromBackup`), or why the cluster
/// must wait: the EtcdBackup is missing or has not succeeded.
pub(super) async fn source(
    ctx: &Context,
    target: &Target<'_>,
) -> Result<Result<Option<RestoreSource>, Blocked>, Error> {
    let Some(from) = target
        .obj
        .spec
        .bootstrap
        .as_ref()
        .and_then(|b| b.from_backup.as_ref())
    else {
        return Ok(Ok(None));
    };
    let backup = match &from.backup_ref {
        Some(r) => {
            let api: Api<EtcdBackup> = Api::namespaced(ctx.client.clone(), &target.ns);
            api.get_opt(&r.name).await.map_err(Error::kube(
                "get",
                "EtcdBackup",
                format!("{}/{}", target.ns, r.name),
            ))?
        }
        None => None,
    };
    Ok(build::restore_source(target.obj, backup.as_ref())
        .map_err(|(reason, message)| Blocked::restore(reason, message)))
}

/// The snapshot of EtcdBackup `name` that a rebuild restores its seed from, or why it waits.
pub(super) async fn recovery_source(
    ctx: &Context,
    target: &Target<'_>,
    name: &str,
) -> Result<Result<RestoreSource, Blocked>, Error> {
    let api: Api<EtcdBackup> = Api::namespaced(ctx.client.clone(), &target.ns);
    let backup =
        api.get_opt(name)
            .await
            .map_err(Error::kube("get", "EtcdBackup", format!("{}/{name}", target.ns)))?;
    Ok(build::recovery_source(target.obj, name, backup.as_ref())
        .map_err(|(reason, message)| Blocked::restore(reason, message)))
}

/// The newest backup of the cluster a rebuild could restore (read from the API: this runs
/// only once quorum is lost).
pub(super) async fn latest_backup(ctx: &Context, target: &Target<'_>) -> Result<Option<BackupObs>, Error> {
    let api: Api<EtcdBackup> = Api::namespaced(ctx.client.clone(), &target.ns);
    let backups =
        api.list(&Default::default())
            .await
            .map_err(Error::kube("list", "EtcdBackup", target.ns.clone()))?;
    Ok(build::latest_backup(target.obj, &backups.items))
}

/// Whether the restore of a cluster with `fromBackup` (or of a rebuild's seed) failed: while no member answers, the
/// member pods (read from the API: the caches keep no status) are checked for a restore init
/// container that terminated with an error.
pub(super) async fn failure(
    ctx: &Context,
    target: &Target<'_>,
    seen: &Observation,
) -> Result<Option<Blocked>, Error> {
    let rebuilding = target
        .obj
        .status
        .as_ref()
        .and_then(|s| s.recovery.as_ref())
        .is_some_and(|r| r.phase == RecoveryPhase::Restoring);
    let restoring = rebuilding
        || target
            .obj
            .spec
            .bootstrap
            .as_ref()
            .is_some_and(|b| b.from_backup.is_some());
    if !restoring || seen.members.is_some() || seen.pods.is_empty() {
        return Ok(None);
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &target.ns);
    for p in &seen.pods {
        let name = kube::ResourceExt::name_any(p);
        let Some(pod) =
            api.get_opt(&name)
                .await
                .map_err(Error::kube("get", "Pod", format!("{}/{name}", target.ns)))?
        else {
            continue;
        };
        if let Some(message) = build::restore_failure(&pod) {
            return Ok(Some(Blocked::restore(
                RESTORE_FAILED,
                format!("{message}; no cluster is created from this backup"),
            )));
        }
    }
    Ok(None)
}
