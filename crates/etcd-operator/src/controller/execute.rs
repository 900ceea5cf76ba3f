//! Apply and execute: the one server-side apply of the children every cluster has, then the
//! planned step (etcd membership calls, member pods and claims, leadership, defragmentation).

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use steward_core::apply::{ApplyError, foreign_holder};

use super::build::{self, DesiredChildren, MemberObjects};
use super::observe::{MemberView, Observation};
use super::status::{self, Blocked};
use super::{Context, Error, Target, rfc3339};
use crate::crd::EtcdCluster;
use crate::etcd::EtcdApi;
use crate::plan::{RemoveReason, Step};
use crate::resources;
use crate::{FIELD_MANAGER, OPERATOR_NAME};

/// Applies `children` in one call (pruning those no longer desired), after announcing the
/// certificates `issued` for them. Objects of those names that are not ours block the cluster.
pub(super) async fn apply_children(
    ctx: &Context,
    target: &Target<'_>,
    children: DesiredChildren,
    issued: &[String],
) -> Result<Result<(), Blocked>, Error> {
    for issued in issued {
        ctx.recorder
            .normal(
                target.obj,
                "CertificateIssued",
                "IssueCertificate",
                format!("issued Secret {issued}"),
            )
            .await;
    }
    let selector = steward_core::labels::owner_selector("etcd", &target.name, OPERATOR_NAME);
    let applied = ctx
        .applier
        .apply_owned(
            target.obj,
            &selector,
            children.into_desired()?,
            &DesiredChildren::kinds(),
        )
        .await;
    match applied {
        Ok(_) => Ok(Ok(())),
        Err(ApplyError::Conflict(conflicts)) => Ok(Err(Blocked::conflict("Apply", &conflicts))),
        Err(e) => Err(e.into()),
    }
}

/// Executes `step`. A member pod or claim name taken by an object that is not ours blocks the
/// cluster instead of failing the reconcile.
pub(super) async fn step(
    ctx: &Context,
    target: &Target<'_>,
    etcd: &EtcdApi,
    step: &Step,
    seen: &Observation,
    restore: Option<&resources::RestoreSource>,
    now: &Time,
) -> Result<Result<(), Blocked>, Error> {
    match execute(ctx, target, etcd, step, seen, restore, now).await {
        Ok(()) => Ok(Ok(())),
        Err(Error::Apply(ApplyError::Conflict(conflicts))) => {
            Ok(Err(Blocked::conflict("CreatePod", &conflicts)))
        }
        Err(e) => Err(e),
    }
}

/// Whether `step` writes anything (to etcd or the API).
fn changes_something(step: &Step) -> bool {
    !matches!(
        step,
        Step::Nothing
            | Step::Paused
            | Step::Wait { .. }
            | Step::QuorumLost { .. }
            | Step::Unreachable { .. }
            | Step::UpgradeBlocked { .. }
    )
}

/// What a step did to one member: the change it counts in the metrics, if any, and the
/// Normal Event that names the member's pod.
struct MemberChange<'a> {
    member: &'a str,
    op: Option<&'static str>,
    reason: &'static str,
    action: &'static str,
    note: String,
}

impl<'a> MemberChange<'a> {
    fn new(
        member: &'a str,
        op: Option<&'static str>,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) -> Self {
        MemberChange {
            member,
            op,
            reason,
            action,
            note,
        }
    }
}

/// Executes `step`; `now` is the reconcile's clock, as the status written after it reads it.
async fn execute(
    ctx: &Context,
    target: &Target<'_>,
    etcd: &EtcdApi,
    step: &Step,
    seen: &Observation,
    restore: Option<&resources::RestoreSource>,
    now: &Time,
) -> Result<(), Error> {
    let (members, pods) = (seen.members.as_deref().unwrap_or_default(), seen.pods.as_slice());
    let obj = target.obj;
    if changes_something(step) {
        // Every step changes what the next reconcile must see; read the API until the caches
        // have caught up.
        ctx.applier.touched(&target.uid);
    }
    // Membership calls go to healthy voters only: a learner refuses them ("rpc not supported
    // for learner"), and the client may pick any endpoint.
    let endpoints: Vec<String> = members
        .iter()
        .filter(|m| m.healthy && !m.is_learner)
        .map(|m| m.client_url.clone())
        .collect();
    let change = match step {
        Step::Bootstrap { member } => {
            let seed = [(member.clone(), resources::peer_url(obj, member))];
            create_member_pod(ctx, target, member, &seed, "new", restore).await?;
            let note = match restore {
                Some(r) => format!("started seed member {member}, restored from snapshot {}", r.key),
                None => format!("started seed member {member}"),
            };
            Some(MemberChange::new(
                member,
                Some("bootstrap"),
                "MemberAdded",
                "Bootstrap",
                note,
            ))
        }
        Step::Recover { member, backup } => {
            // Recorded first: an operator restarted before the seed exists restores this same
            // seed from this same backup instead of starting another rebuild.
            let started = rfc3339(now);
            let previous = obj.status.as_ref().and_then(|s| s.recovery.clone());
            if let Some(record) = status::recovery_after(previous, step, false, &started) {
                status::record_recovery(ctx, target, record).await?;
            }
            let seed = [(member.clone(), resources::peer_url(obj, member))];
            create_member_pod(ctx, target, member, &seed, "new", restore).await?;
            ctx.recorder
                .warning(
                    obj,
                    status::RECOVERING,
                    "Recover",
                    format!(
                        "quorum is lost and every member's data is gone: rebuilding from EtcdBackup {} (completed {}), starting with seed member {member}; writes made after the backup are lost",
                        backup.name, backup.completion_time
                    ),
                )
                .await;
            let note = format!(
                "started seed member {member}, restored from EtcdBackup {}",
                backup.name
            );
            Some(MemberChange::new(
                member,
                Some("recover"),
                "MemberAdded",
                "Recover",
                note,
            ))
        }
        Step::AddMember { member } => {
            etcd.add_learner(&endpoints, &resources::peer_url(obj, member))
                .await
                .map_err(Error::Etcd)?;
            let note = format!("added learner {member}");
            Some(MemberChange::new(
                member,
                Some("add"),
                "MemberAdded",
                "Scale",
                note,
            ))
        }
        Step::CreatePod { member } => {
            let initial = build::joining_cluster(obj, members, member);
            create_member_pod(ctx, target, member, &initial, "existing", None).await?;
            let note = format!("created the pod of member {member}");
            Some(MemberChange::new(member, None, "MemberPodCreated", "Scale", note))
        }
        Step::Promote { id, member } => {
            etcd.promote(&endpoints, *id).await.map_err(Error::Etcd)?;
            let note = format!("promoted learner {member} to voter");
            Some(MemberChange::new(
                member,
                Some("promote"),
                "MemberPromoted",
                "Scale",
                note,
            ))
        }
        Step::RemoveMember { id, member, reason } => {
            let via: Vec<String> = members
                .iter()
                .filter(|m| m.healthy && m.id != *id)
                .map(|m| m.client_url.clone())
                .collect();
            etcd.remove(&via, *id).await.map_err(Error::Etcd)?;
            let why = match reason {
                RemoveReason::ScaleDown => "scaling down",
                RemoveReason::Replace => "replacing a failed member",
            };
            let note = format!("removed member {member} ({why})");
            Some(MemberChange::new(
                member,
                Some("remove"),
                "MemberRemoved",
                "Scale",
                note,
            ))
        }
        Step::DeletePod { member } => {
            delete_member(ctx, target, member).await?;
            let note = format!("deleted the pod and claim of removed member {member}");
            Some(MemberChange::new(member, None, "MemberPodDeleted", "Scale", note))
        }
        Step::UpgradeMember { member, from } => {
            if pods.iter().any(|p| p.name_any() == *member) {
                Api::<Pod>::namespaced(ctx.client.clone(), &target.ns)
                    .delete(member, &DeleteParams::default())
                    .await
                    .map_err(Error::kube("delete", "Pod", format!("{}/{member}", target.ns)))?;
            }
            let note = format!("restarting {member} from {from} at {}", obj.spec.version);
            Some(MemberChange::new(
                member,
                Some("upgrade"),
                "MemberUpgrading",
                "Upgrade",
                note,
            ))
        }
        Step::Defrag { id, member } => match members.iter().find(|m| m.id == *id) {
            Some(m) => {
                let note = defragment(etcd, m, member).await?;
                Some(MemberChange::new(
                    member,
                    Some("defrag"),
                    "MemberDefragmented",
                    "Defragment",
                    note,
                ))
            }
            None => None,
        },
        Step::MoveLeader { from, to } => {
            let leader_url = members
                .iter()
                .find(|m| m.id == *from)
                .map(|m| m.client_url.clone())
                .unwrap_or_default();
            etcd.move_leader(&leader_url, *to).await.map_err(Error::Etcd)?;
            let note = format!("moved leadership to {}", crate::etcd::hex_id(*to));
            ctx.recorder.normal(obj, "LeaderMoved", "Upgrade", note).await;
            None
        }
        Step::QuorumLost { reason } => {
            ctx.recorder
                .warning(obj, "QuorumLost", "Observe", reason.clone())
                .await;
            None
        }
        Step::UpgradeBlocked { reason } => {
            ctx.recorder
                .warning(obj, "UpgradeBlocked", "Upgrade", reason.clone())
                .await;
            None
        }
        Step::Unreachable { reason } => {
            ctx.recorder
                .warning(obj, "EtcdUnreachable", "Observe", reason.clone())
                .await;
            None
        }
        Step::Nothing | Step::Paused | Step::Wait { .. } => None,
    };
    if let Some(change) = change {
        if let Some(op) = change.op {
            ctx.metrics.changed(obj, op);
        }
        member_event(ctx, obj, &change).await;
    }
    Ok(())
}

/// The Normal Event of `change` on `obj`, naming the member's pod as the related object; best
/// effort.
async fn member_event(ctx: &Context, obj: &EtcdCluster, change: &MemberChange<'_>) {
    let related = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(change.member.to_string()),
        namespace: obj.namespace(),
        ..Default::default()
    };
    ctx.recorder
        .normal_related(obj, related, change.reason, change.action, change.note.clone())
        .await;
}

/// Defragments member `m`; the Event note reports its backend size before and after.
async fn defragment(etcd: &EtcdApi, m: &MemberView, member: &str) -> Result<String, Error> {
    etcd.defragment(&m.client_url).await.map_err(Error::Etcd)?;
    let before = m
        .db_size
        .map(|(size, in_use)| format!("; database {size} bytes, {in_use} in use before"))
        .unwrap_or_default();
    let after = etcd
        .status(&m.client_url)
        .await
        .map(|s| format!(", {} bytes after", s.db_size))
        .unwrap_or_default();
    Ok(format!("defragmented member {member}{before}{after}"))
}

/// Creates the pod (and claim) of `member`, unless a pod or claim of that name is not ours:
/// that is never taken over, and fails with [`ApplyError::Conflict`].
async fn create_member_pod(
    ctx: &Context,
    target: &Target<'_>,
    member: &str,
    initial: &[(String, String)],
    state: &str,
    restore: Option<&resources::RestoreSource>,
) -> Result<(), Error> {
    let (obj, ns) = (target.obj, target.ns.as_str());
    let owner = obj
        .controller_owner_ref(&())
        .ok_or_else(|| Error::NoUid(target.name.clone()))?;
    let MemberObjects { mut pod, claim } = build::member_objects(obj, owner, member, initial, state);
    if let Some(source) = restore {
        build::add_restore(&mut pod, obj, member, initial, source, &ctx.operator_image);
    }
    ctx.applier.touched(&target.uid);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let pvc_name = resources::pvc_name(member);
    let mut conflicts = Vec::new();
    if let Some(live) =
        pods.get_opt(member)
            .await
            .map_err(Error::kube("get", "Pod", format!("{ns}/{member}")))?
        && let Some(holder) = foreign_holder(&live, &target.uid)
    {
        conflicts.push(steward_core::Conflict {
            kind: "Pod".into(),
            name: format!("{ns}/{member}"),
            holder,
        });
    }
    if claim.is_some()
        && let Some(live) = claims.get_opt(&pvc_name).await.map_err(Error::kube(
            "get",
            "PersistentVolumeClaim",
            format!("{ns}/{pvc_name}"),
        ))?
        && !is_member_claim(&live, obj, member)
    {
        conflicts.push(steward_core::Conflict {
            kind: "PersistentVolumeClaim".into(),
            name: format!("{ns}/{pvc_name}"),
            holder: "does not carry this cluster's member labels".into(),
        });
    }
    if !conflicts.is_empty() {
        return Err(Error::Apply(ApplyError::Conflict(conflicts)));
    }
    ctx.applier.confirm_owner(obj).await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if let Some(claim) = claim {
        claims
            .patch(&pvc_name, &params, &Patch::Apply(&claim))
            .await
            .map_err(Error::kube(
                "apply",
                "PersistentVolumeClaim",
                format!("{ns}/{pvc_name}"),
            ))?;
    }
    pods.patch(member, &params, &Patch::Apply(&pod))
        .await
        .map_err(Error::kube("apply", "Pod", format!("{ns}/{member}")))?;
    Ok(())
}

/// Deletes the pod and the claim of a member removed from etcd. The member is gone for good:
/// its data must never come back. A failed deletion fails the step (it is retried), so the
/// old ID cannot return with its data.
async fn delete_member(ctx: &Context, target: &Target<'_>, member: &str) -> Result<(), Error> {
    let ns = target.ns.as_str();
    gone_or_deleted(
        Api::<Pod>::namespaced(ctx.client.clone(), ns)
            .delete(member, &DeleteParams::default())
            .await,
    )
    .map_err(Error::kube("delete", "Pod", format!("{ns}/{member}")))?;
    let pvc_name = resources::pvc_name(member);
    gone_or_deleted(
        Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
            .delete(&pvc_name, &DeleteParams::default())
            .await,
    )
    .map_err(Error::kube(
        "delete",
        "PersistentVolumeClaim",
        format!("{ns}/{pvc_name}"),
    ))
}

/// Whether `pvc` is the data claim of `member` of `cluster` (claims kept by reclaimPolicy
/// Retain have no owner, so their labels say whose they are).
fn is_member_claim(pvc: &PersistentVolumeClaim, cluster: &EtcdCluster, member: &str) -> bool {
    let l = pvc.labels();
    resources::member_selector(cluster)
        .iter()
        .all(|(k, v)| l.get(k) == Some(v))
        && l.get(resources::MEMBER_LABEL).map(String::as_str) == Some(member)
}

/// A deletion that found nothing to delete (404) succeeded; every other error is one.
pub(super) fn gone_or_deleted<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
