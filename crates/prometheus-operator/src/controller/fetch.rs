//! Fetch: what a reconcile reads. The StatefulSet from the children cache (or the API right
//! after a write), the selected objects from the watch caches, and, once validation has
//! settled which monitors are in, the Secrets and ConfigMaps of their namespaces.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;

use super::upstream;
use super::validate::Admitted;
use super::{Context, Error};
use crate::config::case::UpstreamObjects;
use crate::config::{self, Inputs, Kind};
use crate::crd::{PodMonitor, Prometheus, PrometheusRule, ScrapeConfig, ServiceMonitor, ShardStatus};
use crate::{OPERATOR_NAME, resources};

/// What a reconcile reads before validating.
#[derive(Debug, Default)]
pub(super) struct Fetched {
    /// The Prometheus' StatefulSet (shard 0's), when it exists.
    pub live: Option<StatefulSet>,
    /// The StatefulSets of shards 1 and up that the spec asks for, when they exist.
    pub shard_sets: Vec<Option<StatefulSet>>,
    /// The other Prometheus objects `spec.federation` selects, sorted by namespace and name.
    pub prometheuses: Vec<Prometheus>,
    /// Every namespace, sorted by name.
    pub namespaces: Vec<Namespace>,
    /// The objects the Prometheus selects, each sorted by namespace and name.
    pub service_monitors: Vec<ServiceMonitor>,
    pub pod_monitors: Vec<PodMonitor>,
    pub scrape_configs: Vec<ScrapeConfig>,
    pub rules: Vec<PrometheusRule>,
    /// The selected upstream objects that fit our types.
    pub upstream: UpstreamObjects,
    /// Upstream objects with spec fields we do not support, and those fields.
    pub unsupported: Vec<(config::ObjectRef, Vec<String>)>,
    /// Upstream objects whose spec does not fit our types at all.
    pub unreadable: Vec<config::Rejection>,
}

impl Fetched {
    /// The replicas of every shard's StatefulSet, shard 0 first.
    pub fn replicas(&self) -> Vec<ShardStatus> {
        std::iter::once(&self.live)
            .chain(&self.shard_sets)
            .enumerate()
            .map(|(i, sts)| super::status::shard_status(i, sts.as_ref()))
            .collect()
    }
}

/// The Secrets and ConfigMaps the configuration may reference.
#[derive(Debug)]
pub(super) struct ConfigInputs {
    /// Their values.
    pub store: config::Store,
    /// The namespaces they were read from.
    pub namespaces: BTreeSet<String>,
}

pub(super) async fn fetch(ctx: &Context, obj: &Prometheus, cached: bool) -> Result<Fetched, Error> {
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(obj.name_any()))?;
    let name = resources::base_name(obj);
    let live = statefulset(ctx, &ns, &name, cached).await?;
    let mut shard_sets = Vec::new();
    for shard in 1..resources::shards(obj) {
        shard_sets.push(statefulset(ctx, &ns, &resources::shard_name(obj, shard), cached).await?);
    }
    let c = &ctx.caches;
    let mut namespaces: Vec<Namespace> = c.namespaces.state().iter().map(|n| n.as_ref().clone()).collect();
    namespaces.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let (mut unsupported, mut unreadable) = (Vec::new(), Vec::new());
    let up = |kind: Kind| (c.selected_upstream(obj, kind), kind);
    let (smon, pmon, scfg, rule) = (
        up(Kind::ServiceMonitor),
        up(Kind::PodMonitor),
        up(Kind::ScrapeConfig),
        up(Kind::PrometheusRule),
    );
    let upstream = UpstreamObjects {
        service_monitors: upstream::read(smon.0, smon.1, &mut unsupported, &mut unreadable),
        pod_monitors: upstream::read(pmon.0, pmon.1, &mut unsupported, &mut unreadable),
        scrape_configs: upstream::read(scfg.0, scfg.1, &mut unsupported, &mut unreadable),
        rules: upstream::read(rule.0, rule.1, &mut unsupported, &mut unreadable),
    };
    let prometheuses = c.federated(obj);
    Ok(Fetched {
        live,
        shard_sets,
        prometheuses,
        namespaces,
        service_monitors: c.selected(&c.service_monitors, obj, Kind::ServiceMonitor),
        pod_monitors: c.selected(&c.pod_monitors, obj, Kind::PodMonitor),
        scrape_configs: c.selected(&c.scrape_configs, obj, Kind::ScrapeConfig),
        rules: c.selected(&c.rules, obj, Kind::PrometheusRule),
        upstream,
        unsupported,
        unreadable,
    })
}

/// The StatefulSet `name` from the children cache (when `cached`) or the API.
async fn statefulset(
    ctx: &Context,
    ns: &str,
    name: &str,
    cached: bool,
) -> Result<Option<StatefulSet>, Error> {
    if let Some(Some(sts)) = cached.then(|| ctx.children.get_as::<StatefulSet>(Some(ns), name)) {
        return Ok(sts);
    }
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    api.get_opt(name).await.map_err(|e| Error::Read {
        what: format!("get statefulset {ns}/{name}"),
        source: Box::new(e),
    })
}

/// Reads the Secrets and ConfigMaps from the API, only in the namespaces of the admitted
/// monitors and scrape configs and the Prometheus' own (its remote write and Alertmanager
/// credentials). The operator's own generated objects are never inputs.
pub(super) async fn inputs(
    ctx: &Context,
    obj: &Prometheus,
    admitted: &Admitted,
) -> Result<ConfigInputs, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let empty = config::Store::new();
    let mut namespaces = BTreeSet::from([ns]);
    let ours = admitted.inputs(obj, &empty);
    let up = admitted.fetched.upstream.view();
    let theirs = Inputs {
        service_monitors: up.service_monitors,
        pod_monitors: up.pod_monitors,
        scrape_configs: up.scrape_configs,
        rules: up.rules,
        ..ours
    };
    for inputs in [ours, theirs] {
        if let Ok(sel) = config::select(&inputs) {
            namespaces.extend(
                (sel.service_monitors.iter().filter_map(|o| o.namespace()))
                    .chain(sel.pod_monitors.iter().filter_map(|o| o.namespace()))
                    .chain(sel.scrape_configs.iter().filter_map(|o| o.namespace())),
            );
        }
    }
    let lp = ListParams::default().labels(&format!("{}!={OPERATOR_NAME}", steward_core::labels::MANAGED_BY));
    let mut secrets = Vec::new();
    let mut config_maps = Vec::new();
    for sns in &namespaces {
        secrets.extend(list::<Secret>(ctx, sns, &lp).await?);
        config_maps.extend(list::<ConfigMap>(ctx, sns, &lp).await?);
    }
    Ok(ConfigInputs {
        store: config::Store::from_objects(&secrets, &config_maps),
        namespaces,
    })
}

async fn list<K>(ctx: &Context, ns: &str, lp: &ListParams) -> Result<Vec<K>, Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .list(lp)
        .await
        .map_err(|e| Error::Read {
            what: format!("list {} in {ns}", K::plural(&())),
            source: Box::new(e),
        })?
        .items)
}

impl Admitted {
    /// The generator's inputs: the admitted objects, with `store` for their references.
    pub fn inputs<'a>(&'a self, obj: &'a Prometheus, store: &'a config::Store) -> Inputs<'a> {
        let f = &self.fetched;
        Inputs {
            prometheus: obj,
            namespaces: &f.namespaces,
            service_monitors: &f.service_monitors,
            pod_monitors: &f.pod_monitors,
            scrape_configs: &f.scrape_configs,
            rules: &f.rules,
            prometheuses: &f.prometheuses,
            store,
        }
    }
}
