//! Build (pure): the configuration (`crate::config`) and every desired child
//! (`crate::resources`), plus where discovery RBAC is needed.

use std::collections::BTreeSet;
use std::time::Instant;

use kube::ResourceExt;
use steward_core::apply::Desired;

use super::Error;
use super::fetch::ConfigInputs;
use super::metrics::PrometheusMetrics;
use super::validate::{Admitted, Wanted};
use crate::config::{self, Generated, Problem};
use crate::crd::Prometheus;
use crate::discovery;
use crate::resources::{self, Tuning};

/// Everything a reconcile writes, built.
#[derive(Debug)]
pub(super) struct Built {
    /// The owned children: StatefulSet, Service, config Secret, rule ConfigMaps,
    /// ServiceAccount, Grafana datasource ConfigMap.
    pub desired: Vec<Desired>,
    /// Where the Prometheus needs discovery RBAC.
    pub scope: discovery::Scope,
    /// How many rule ConfigMaps there are.
    pub rule_configmaps: usize,
    /// Tuned settings, for the status.
    pub tuning: Tuning,
    /// What the user should know although everything applies.
    pub notes: Vec<String>,
    /// Selected Prometheus objects left out of the federation, and why (also in `notes`).
    pub federation_refused: Vec<String>,
}

/// Generates the configuration from the admitted objects; the monitors refused for their
/// discovery join the generator's rejections. `Err`: the Prometheus itself is invalid.
pub(super) fn configuration(
    metrics: &PrometheusMetrics,
    obj: &Prometheus,
    admitted: &Admitted,
    inputs: &ConfigInputs,
) -> Result<Generated, Problem> {
    let started = Instant::now();
    let generated = config::generate_with(
        &admitted.inputs(obj, &inputs.store),
        &admitted.fetched.upstream.view(),
    );
    metrics.generation.observe(started.elapsed().as_secs_f64());
    let mut generated = generated?;
    generated.rejected.extend(admitted.refused.iter().cloned());
    generated
        .rejected
        .extend(admitted.fetched.unreadable.iter().cloned());
    Ok(generated)
}

/// The children of `obj` for `generated`.
pub(super) fn children(
    obj: &Prometheus,
    admitted: &Admitted,
    generated: &Generated,
    reloader_image: &str,
    grafana_label: &crate::grafana::Label,
) -> Result<Built, Error> {
    // The StatefulSet is built with the storage it can take (see storage_in_effect).
    let (storage, storage_note) = resources::storage_in_effect(obj, admitted.fetched.live.as_ref());
    let mut sts_obj = obj.clone();
    sts_obj.spec.storage = storage;
    let tuning = Tuning {
        retention_size: config::tuning::retention_size_for(&sts_obj.spec),
        gomemlimit: config::tuning::gomemlimit_for(&sts_obj.spec),
    };
    let gz = crate::reloader::gzip(generated.prometheus_yaml.as_bytes()).map_err(Error::Compress)?;
    let cms = resources::rule_configmaps(obj, generated);
    let mut desired = Vec::new();
    // One StatefulSet per shard; those of shards no longer wanted are pruned.
    for sts in resources::statefulsets(&sts_obj, reloader_image, cms.len(), &tuning) {
        desired.push(Desired::namespaced(&sts)?);
    }
    desired.push(Desired::namespaced(&resources::service(obj))?);
    desired.push(Desired::namespaced(&resources::config_secret(obj, gz))?);
    for cm in &cms {
        desired.push(Desired::namespaced(cm)?);
    }
    if let Some(sa) = resources::service_account(obj) {
        desired.push(Desired::namespaced(&sa)?);
    }
    if let Some(cm) = crate::grafana::prometheus_datasource(obj, grafana_label) {
        desired.push(Desired::namespaced(&cm)?);
    }
    let ns = obj.namespace().unwrap_or_default();
    let mut scope = discovery_scope(&ns, generated, &admitted.wanted, &admitted.alerting);
    // Federation discovers the pods of the federated Prometheus objects.
    scope
        .namespaces
        .extend(admitted.fetched.prometheuses.iter().filter_map(|p| p.namespace()));
    let mut notes: Vec<String> = storage_note.into_iter().collect();
    notes.extend(admitted.federation_refused.iter().cloned());
    Ok(Built {
        desired,
        scope,
        rule_configmaps: cms.len(),
        tuning,
        notes,
        federation_refused: admitted.federation_refused.clone(),
    })
}

/// Where the accepted monitors and the Alertmanager endpoints discover: the bindings this
/// Prometheus needs. Its own namespace is always in, so the set never empties and flaps.
fn discovery_scope(
    prom_ns: &str,
    generated: &Generated,
    wanted: &Wanted,
    alerting: &BTreeSet<String>,
) -> discovery::Scope {
    let mut scope = discovery::Scope::default();
    scope.namespaces.insert(prom_ns.to_string());
    scope.namespaces.extend(alerting.iter().cloned());
    for o in &generated.accepted {
        if let Some(w) = wanted.get(&(o.group, o.kind, o.namespace.clone(), o.name.clone())) {
            scope.add(w.clone());
        }
    }
    scope
}
