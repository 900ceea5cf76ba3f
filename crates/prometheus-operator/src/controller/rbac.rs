//! Discovery RBAC: a RoleBinding in each namespace the Prometheus discovers in, and a
//! ClusterRoleBinding for cluster-wide discovery. They cannot be owned (owner references do
//! not cross namespaces), so they are labelled, pruned by one loop, and removed by the
//! finalizer's cleanup.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{ListParams, ObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use steward_core::apply::{Desired, OwnedKind};

use super::apply::not_ours;
use super::{Context, Error};
use crate::crd::Prometheus;
use crate::discovery::Scope;
use crate::{OPERATOR_NAME, resources};

/// Applies the bindings `scope` needs and prunes the others. A binding of that name that is
/// not ours is left alone (a conflict).
pub(super) async fn apply_discovery_bindings(
    ctx: &Context,
    obj: &Prometheus,
    scope: &Scope,
) -> Result<(), Error> {
    for b in resources::discovery_role_bindings(obj, &scope.namespaces) {
        let bns = b.namespace().unwrap_or_default();
        // Unchanged bindings cost no request.
        let cached = ctx
            .caches
            .role_bindings
            .get(&ObjectRef::new(&b.name_any()).within(&bns));
        match cached {
            Some(c)
                if c.role_ref == b.role_ref
                    && c.subjects == b.subjects
                    && c.metadata.labels == b.metadata.labels =>
            {
                continue;
            }
            Some(_) => {}
            // Not in the cache of our bindings: absent, or someone else's. (Ours, just written
            // and not in the cache yet, is fine.)
            None => {
                let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &bns);
                let live = api.get_opt(&b.name_any()).await.map_err(|e| Error::Read {
                    what: format!("get rolebinding {bns}/{}", b.name_any()),
                    source: Box::new(e),
                })?;
                if let Some(foreign) = live.filter(|l| !resources::is_discovery_binding_of(obj, &l.metadata))
                {
                    return Err(not_ours("RoleBinding", format!("{bns}/{}", foreign.name_any())));
                }
            }
        }
        ctx.applier.apply_unowned(&Desired::namespaced(&b)?).await?;
    }
    let cached: Vec<ObjectMeta> = ctx
        .caches
        .role_bindings
        .state()
        .iter()
        .map(|b| b.metadata.clone())
        .collect();
    prune(ctx, obj, scope, cached).await?;
    // Only with cluster-wide discovery allowed: otherwise the operator has no RBAC for
    // ClusterRoleBindings at all.
    if scope.cluster_wide && ctx.policy.cluster_wide {
        if let Ok(mut u) = ctx.caches.cluster_unbound.lock() {
            u.remove(&ObjectRef::from_obj(obj));
        }
        let crb = resources::discovery_cluster_role_binding(obj);
        ctx.applier.apply_unowned(&Desired::cluster(&crb)?).await?;
    }
    Ok(())
}

/// The finalizer's cleanup: every discovery binding of `obj` goes.
pub(super) async fn cleanup(obj: &Prometheus, ctx: &Context) -> Result<Action, Error> {
    // The cache may not have seen a binding created just before the deletion: ask the API.
    let api: Api<RoleBinding> = Api::all(ctx.client.clone());
    let selector = format!(
        "{},{}={}",
        steward_core::labels::to_selector(&steward_core::labels::owner_selector(
            "prometheus",
            &obj.name_any(),
            OPERATOR_NAME
        )),
        resources::PROMETHEUS_NAMESPACE_LABEL,
        obj.namespace().unwrap_or_default()
    );
    let mut candidates: Vec<ObjectMeta> = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::Read {
            what: format!("list rolebindings {selector}"),
            source: Box::new(e),
        })?
        .items
        .into_iter()
        .map(|b| b.metadata)
        .collect();
    candidates.extend(
        ctx.caches
            .role_bindings
            .state()
            .iter()
            .map(|b| b.metadata.clone()),
    );
    prune(ctx, obj, &Scope::default(), candidates).await?;
    if let Ok(mut last) = ctx.caches.last.lock() {
        last.remove(&ObjectRef::from_obj(obj));
    }
    Ok(Action::await_change())
}

/// Deletes `obj`'s discovery bindings that `keep` does not cover: RoleBindings among
/// `candidates`, and its ClusterRoleBinding. The latter only with cluster-wide discovery
/// allowed, and once after a start (it may exist from before) or after binding, not on every
/// reconcile.
async fn prune(
    ctx: &Context,
    obj: &Prometheus,
    keep: &Scope,
    candidates: Vec<ObjectMeta>,
) -> Result<(), Error> {
    let mut stale: Vec<(OwnedKind, Option<String>, String)> =
        stale_role_bindings(obj, &keep.namespaces, candidates)
            .into_iter()
            .map(|(ns, name)| (OwnedKind::namespaced::<RoleBinding>(), Some(ns), name))
            .collect();
    let key = ObjectRef::from_obj(obj);
    let unbind = ctx.policy.cluster_wide
        && !keep.cluster_wide
        && !ctx.caches.cluster_unbound.lock().is_ok_and(|u| u.contains(&key));
    if unbind {
        stale.push((
            OwnedKind::cluster::<ClusterRoleBinding>(),
            None,
            resources::discovery_binding_name(obj),
        ));
    }
    for (kind, ns, name) in &stale {
        ctx.applier.delete_unowned(kind, ns.as_deref(), name).await?;
    }
    if unbind && let Ok(mut u) = ctx.caches.cluster_unbound.lock() {
        u.insert(key);
    }
    Ok(())
}

/// `(namespace, name)` of each RoleBinding of `obj` among `candidates` (current or from an
/// earlier version, each once) that is not its binding in one of `keep`. Pure.
fn stale_role_bindings(
    obj: &Prometheus,
    keep: &BTreeSet<String>,
    candidates: Vec<ObjectMeta>,
) -> BTreeSet<(String, String)> {
    let want = resources::discovery_binding_name(obj);
    candidates
        .into_iter()
        .filter(|b| resources::is_discovery_binding_of(obj, b))
        .filter_map(|b| Some((b.namespace?, b.name?)))
        .filter(|(ns, name)| !(*name == want && keep.contains(ns)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::tests::prom;

    fn binding(ns: &str, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn stale_bindings_are_ours_and_outside_the_scope() {
        let p = prom(serde_json::json!({}));
        let name = resources::discovery_binding_name(&p);
        let ours = [(resources::PROMETHEUS_NAMESPACE_LABEL, "mon")];
        let candidates = vec![
            binding("mon", &name, &ours),
            binding("apps", &name, &ours),
            // The same binding from the API and from the cache counts once.
            binding("apps", &name, &ours),
            binding(
                "old",
                "legacy",
                &[(resources::LEGACY_RBAC_OWNER_LABEL, "mon.team-a")],
            ),
            // Another Prometheus' binding, or one without our labels: never touched.
            binding("apps", &name, &[(resources::PROMETHEUS_NAMESPACE_LABEL, "other")]),
            binding("apps", "unrelated", &[]),
        ];
        let keep = BTreeSet::from(["mon".to_string()]);
        assert_eq!(
            stale_role_bindings(&p, &keep, candidates.clone()),
            BTreeSet::from([
                ("apps".to_string(), name.clone()),
                ("old".to_string(), "legacy".to_string()),
            ])
        );
        assert_eq!(stale_role_bindings(&p, &BTreeSet::new(), candidates).len(), 3);
    }
}
