//! Apply: every write of a reconcile goes through `steward_core::apply`. The owned children
//! (with pruning), the discovery bindings (`rbac`), and the `prometheus-operated` Service that
//! every Prometheus of a namespace shares.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, ResourceExt};
use steward_core::apply::{ApplyError, Conflict, Desired, OwnedKind};

use super::build::Built;
use super::{Context, Error, caches, rbac};
use crate::crd::Prometheus;
use crate::{OPERATOR_NAME, resources};

/// Writes what `built` holds. `Ok(Err(conflicts))`: an object we would write belongs to
/// someone else, and nothing more was written.
pub(super) async fn apply(
    ctx: &Context,
    obj: &Prometheus,
    built: &Built,
) -> Result<Result<(), Vec<Conflict>>, Error> {
    let written = async {
        let selector = steward_core::labels::owner_selector("prometheus", &obj.name_any(), OPERATOR_NAME);
        let prune = [
            OwnedKind::namespaced::<StatefulSet>(),
            OwnedKind::namespaced::<Service>(),
            OwnedKind::namespaced::<Secret>(),
            OwnedKind::namespaced::<ConfigMap>(),
            OwnedKind::namespaced::<ServiceAccount>(),
        ];
        ctx.applier
            .apply_owned(obj, &selector, built.desired.clone(), &prune)
            .await?;
        rbac::apply_discovery_bindings(ctx, obj, &built.scope).await?;
        apply_governing_service(ctx, &obj.namespace().unwrap_or_default()).await
    };
    match written.await {
        Ok(()) => Ok(Ok(())),
        Err(Error::Apply(ApplyError::Conflict(conflicts))) => Ok(Err(conflicts)),
        Err(e) => Err(e),
    }
}

/// A conflict with an object of `kind` named `name` that this operator did not create.
pub(super) fn not_ours(kind: &str, name: String) -> Error {
    Error::Apply(ApplyError::Conflict(vec![Conflict {
        kind: kind.into(),
        name,
        holder: "was not created by this operator".into(),
    }]))
}

/// `prometheus-operated`, owned (without controller) by every Prometheus of the namespace, so
/// it goes when the last one does.
async fn apply_governing_service(ctx: &Context, ns: &str) -> Result<(), Error> {
    let owners =
        steward_core::apply::shared_owners(ctx.caches.prometheuses.state().iter().map(|o| o.as_ref()), ns);
    if owners.is_empty() {
        return Ok(());
    }
    // Already as wanted (same owners): nothing to send.
    let uids = |refs: &[OwnerReference]| refs.iter().map(|r| r.uid.clone()).collect::<BTreeSet<_>>();
    match ctx
        .children
        .get_as::<Service>(Some(ns), resources::GOVERNING_SERVICE)
    {
        Some(Some(live)) if uids(live.owner_references()) == uids(&owners) => return Ok(()),
        Some(Some(_)) => {}
        // Not in our cache: absent, or someone else's Service of that name, left alone.
        _ => {
            let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
            let live = api
                .get_opt(resources::GOVERNING_SERVICE)
                .await
                .map_err(|e| Error::Read {
                    what: format!("get service {ns}/{}", resources::GOVERNING_SERVICE),
                    source: Box::new(e),
                })?;
            if let Some(live) = live.filter(|s| !caches::is_ours(&s.metadata)) {
                return Err(not_ours("Service", format!("{ns}/{}", live.name_any())));
            }
        }
    }
    let mut svc = resources::governing_service(ns);
    svc.metadata.owner_references = Some(owners);
    ctx.applier.apply_unowned(&Desired::namespaced(&svc)?).await?;
    Ok(())
}
