//! The Prometheus controller: fetch (the Prometheus, and from watch caches the namespaces,
//! monitors, scrape configs and rules; the Secrets they reference) → validate and generate the
//! configuration (`crate::config`, pure) → build the children (`crate::resources`, pure) →
//! apply → status of the Prometheus and of every object it selects.
//!
//! A change to a monitor, rule, scrape config, namespace or Secret re-renders only the
//! Prometheus objects that select it (or selected it before the change).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use serde::de::DeserializeOwned;
use steward_core::apply::{Applier, ApplyError, Desired, OwnedKind};
use steward_core::conditions::{self, NewCondition, Status};
use steward_core::{ControllerRuntime, EventRecorder, MetricsBuilder, ReconcileError};
use tracing::warn;

use crate::config::{self, Generated, Inputs, Kind};
use crate::crd::common::ConfigResourceStatus;
use crate::crd::{PodMonitor, Prometheus, PrometheusRule, PrometheusStatus, ScrapeConfig, ServiceMonitor};
use crate::resources::{self, DiscoveryScope, Tuning};
use crate::{FIELD_MANAGER, OPERATOR_NAME};

/// Name of the controller in metrics and logs.
pub const CONTROLLER: &str = "prometheus";
/// Finalizer that removes RBAC objects the Prometheus cannot own (other namespaces, cluster).
pub const FINALIZER: &str = "monitoring.steward.dev/rbac-cleanup";

/// Reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace.
    #[error("Prometheus {0} has no namespace")]
    NoNamespace(String),
    /// The API refused a status write.
    #[error("writing status of {name}: {source}")]
    Status {
        /// Object name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
    /// Applying children failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Another API call failed.
    #[error("{0}: {1}")]
    Kube(&'static str, Box<kube::Error>),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::NoNamespace(_) => "invalid_object",
            Error::Status { .. } | Error::Kube(..) | Error::Finalizer(_) => "api",
            Error::Apply(e) => e.reason(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SelectedLabels {
    namespace: String,
    prometheus: String,
    kind: String,
    state: String,
}

/// The Prometheus-specific metrics.
#[derive(Clone, Debug)]
pub struct PrometheusMetrics {
    selected: Family<SelectedLabels, Gauge>,
    generation: Histogram,
}

impl PrometheusMetrics {
    /// Registers the families on the operator's registry.
    pub fn register(builder: &mut MetricsBuilder) -> Self {
        let m = PrometheusMetrics {
            selected: Family::default(),
            generation: Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
        };
        let r = builder.registry_mut();
        r.register(
            "steward_prometheus_selected_resources",
            "Objects selected by each Prometheus, by kind and state (accepted or rejected)",
            m.selected.clone(),
        );
        r.register(
            "steward_prometheus_config_generation_duration_seconds",
            "Time to select, validate and render one Prometheus configuration",
            m.generation.clone(),
        );
        m
    }
}

type SelectedSet = BTreeSet<(Kind, String, String)>;
/// Per Prometheus: the objects it selected and the namespaces whose Secrets it read.
type LastSeen = HashMap<ObjectRef<Prometheus>, (SelectedSet, BTreeSet<String>)>;

/// Caches shared by the reconciler and the watch mappers.
#[derive(Clone)]
struct Caches {
    prometheuses: Store<Prometheus>,
    namespaces: Store<Namespace>,
    service_monitors: Store<ServiceMonitor>,
    pod_monitors: Store<PodMonitor>,
    rules: Store<PrometheusRule>,
    scrape_configs: Store<ScrapeConfig>,
    /// What each Prometheus selected at its last reconcile, and the namespaces whose Secrets
    /// it read; used to find who to re-render.
    last: Arc<Mutex<LastSeen>>,
}

/// Shared state of the controller.
pub struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    applier: Applier,
    reloader_image: String,
    caches: Caches,
    metrics: PrometheusMetrics,
}

/// The objects of `kind` that `p` selects, cloned out of the watch cache in a stable order.
/// Only the selected ones are cloned: with many teams, copying every monitor for every
/// reconcile dominated the operator's memory.
fn selected<K>(store: &Store<K>, p: &Prometheus, kind: Kind, namespaces: &Store<Namespace>) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut v: Vec<K> = store
        .state()
        .iter()
        .filter(|o| {
            let ns = o.meta().namespace.as_deref().unwrap_or_default();
            let ns_labels = namespaces.get(&ObjectRef::new(ns)).map(|n| n.labels().clone());
            selects(p, kind, ns, o.labels(), ns_labels.as_ref())
        })
        .map(|o| o.as_ref().clone())
        .collect();
    v.sort_by(|a, b| {
        (a.meta().namespace.as_deref(), a.meta().name.as_deref())
            .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
    });
    v
}

/// Watch caches keep no managedFields: nothing here reads them and they are most of an
/// object's size.
fn drop_managed_fields<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

fn selectors(p: &Prometheus, kind: Kind) -> (Option<&LabelSelector>, Option<&LabelSelector>) {
    let s = &p.spec;
    match kind {
        Kind::ServiceMonitor => (
            s.service_monitor_selector.as_ref(),
            s.service_monitor_namespace_selector.as_ref(),
        ),
        Kind::PodMonitor => (
            s.pod_monitor_selector.as_ref(),
            s.pod_monitor_namespace_selector.as_ref(),
        ),
        Kind::PrometheusRule => (s.rule_selector.as_ref(), s.rule_namespace_selector.as_ref()),
        Kind::ScrapeConfig => (
            s.scrape_config_selector.as_ref(),
            s.scrape_config_namespace_selector.as_ref(),
        ),
    }
}

/// Whether `p` selects an object of `kind` in `namespace` with `labels` (same semantics as
/// `config::select`).
pub fn selects(
    p: &Prometheus,
    kind: Kind,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let (sel, ns_sel) = selectors(p, kind);
    let Some(sel) = sel else { return false };
    if !config::selector_matches(sel, labels).unwrap_or(false) {
        return false;
    }
    match ns_sel {
        None => p.namespace().as_deref() == Some(namespace),
        Some(ns_sel) => {
            let empty = BTreeMap::new();
            config::selector_matches(ns_sel, namespace_labels.unwrap_or(&empty)).unwrap_or(false)
        }
    }
}

impl Caches {
    /// Prometheus objects that select (or selected) an object of `kind`.
    fn who_selects(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<ObjectRef<Prometheus>> {
        let ns_labels = self
            .namespaces
            .get(&ObjectRef::new(namespace))
            .map(|n| n.labels().clone());
        let mut out: Vec<ObjectRef<Prometheus>> = self
            .prometheuses
            .state()
            .iter()
            .filter(|p| selects(p, kind, namespace, labels, ns_labels.as_ref()))
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect();
        if let Ok(last) = self.last.lock() {
            let key = (kind, namespace.to_string(), name.to_string());
            for (r, _) in last.iter().filter(|(_, (set, _))| set.contains(&key)) {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
        out
    }

    fn all(&self) -> Vec<ObjectRef<Prometheus>> {
        self.prometheuses
            .state()
            .iter()
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect()
    }

    fn reading_secrets_in(&self, namespace: &str) -> Vec<ObjectRef<Prometheus>> {
        self.last
            .lock()
            .map(|last| {
                last.iter()
                    .filter(|(_, (_, nss))| nss.contains(namespace))
                    .map(|(r, _)| r.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Problems with one label selector, prefixed by its field path.
pub fn validate_selector(field: &str, selector: &LabelSelector) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{field}.matchExpressions[{i}]");
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => problems.push(format!(
                "{path}: operator {} needs at least one value",
                expr.operator
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                problems.push(format!("{path}: operator {} takes no values", expr.operator))
            }
            op if !OPERATORS.contains(&op) => problems.push(format!(
                "{path}: unknown operator {op:?}, expected one of {}",
                OPERATORS.join(", ")
            )),
            _ => {}
        }
    }
    problems
}

/// Checks what the CRD schema cannot express.
pub fn validate(obj: &Prometheus) -> Vec<String> {
    let s = &obj.spec;
    [
        ("spec.serviceMonitorSelector", &s.service_monitor_selector),
        (
            "spec.serviceMonitorNamespaceSelector",
            &s.service_monitor_namespace_selector,
        ),
        ("spec.podMonitorSelector", &s.pod_monitor_selector),
        (
            "spec.podMonitorNamespaceSelector",
            &s.pod_monitor_namespace_selector,
        ),
        ("spec.ruleSelector", &s.rule_selector),
        ("spec.ruleNamespaceSelector", &s.rule_namespace_selector),
        ("spec.scrapeConfigSelector", &s.scrape_config_selector),
        (
            "spec.scrapeConfigNamespaceSelector",
            &s.scrape_config_namespace_selector,
        ),
    ]
    .into_iter()
    .filter_map(|(field, sel)| sel.as_ref().map(|sel| validate_selector(field, sel)))
    .flatten()
    .collect()
}

/// Label selector of a Prometheus' pods (used by the scale subresource).
pub fn pod_selector(name: &str) -> String {
    format!(
        "app.kubernetes.io/name=prometheus,app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={OPERATOR_NAME}"
    )
}

/// What the reconcile found, for the status.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Problems with the Prometheus itself (nothing deployed).
    pub problems: Vec<String>,
    /// The generated configuration, when the Prometheus is valid.
    pub generated: Option<(Vec<crate::crd::SelectedResources>, usize)>,
    /// Replicas and ready replicas of the StatefulSet.
    pub replicas: (i32, i32),
    /// Tuned settings.
    pub tuning: Tuning,
}

/// The status this reconcile reports. Pure.
pub fn desired_status(obj: &Prometheus, outcome: &Outcome, now: Time) -> PrometheusStatus {
    let mut status = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    status.observed_generation = generation;
    status.selector = Some(pod_selector(&obj.name_any()));
    let (replicas, ready) = outcome.replicas;
    status.replicas = replicas;
    status.available_replicas = ready;
    status.retention_size = outcome.tuning.retention_size.clone();
    status.go_mem_limit = outcome.tuning.gomemlimit.clone();
    let (cond_status, reason, message) = if !outcome.problems.is_empty() {
        (Status::False, "InvalidSpec", outcome.problems.join("; "))
    } else if obj.spec.paused {
        (
            Status::False,
            "Paused",
            "spec.paused is true: no changes are made".to_string(),
        )
    } else if let Some((selected, _)) = &outcome.generated {
        status.selected_resources = selected.clone();
        let accepted: i32 = selected.iter().map(|s| s.accepted).sum();
        let rejected: i32 = selected.iter().map(|s| s.rejected).sum();
        if accepted + rejected == 0 {
            (
                Status::True,
                "NoSelectedResources",
                "configuration generated; no monitor, rule or scrape config is selected".to_string(),
            )
        } else {
            (
                Status::True,
                "Reconciled",
                format!("configuration generated from {accepted} objects; {rejected} rejected"),
            )
        }
    } else {
        (
            Status::Unknown,
            "Pending",
            "configuration not generated yet".to_string(),
        )
    };
    conditions::set(
        &mut status.conditions,
        NewCondition {
            type_: "Reconciled",
            status: cond_status,
            reason,
            message,
            observed_generation: generation,
        },
        now.clone(),
    );
    let want = obj.spec.replicas;
    let (avail, reason, message) = if want == 0 {
        (Status::False, "ScaledToZero", "spec.replicas is 0".to_string())
    } else if ready >= want {
        (
            Status::True,
            "AllReplicasReady",
            format!("{ready} of {want} replicas ready"),
        )
    } else if ready > 0 {
        (
            Status::True,
            "SomeReplicasReady",
            format!("{ready} of {want} replicas ready"),
        )
    } else {
        (
            Status::False,
            "NoReplicasReady",
            format!("0 of {want} replicas ready"),
        )
    };
    conditions::set(
        &mut status.conditions,
        NewCondition {
            type_: "Available",
            status: avail,
            reason,
            message,
            observed_generation: generation,
        },
        now,
    );
    status
}

/// The namespaces where `generated`'s monitors discover targets.
fn discovery_scope(p: &Prometheus, generated: &Generated, caches: &Caches) -> DiscoveryScope {
    let own = p.namespace().unwrap_or_default();
    let mut namespaces = BTreeSet::new();
    let smons = caches.service_monitors.state();
    let pmons = caches.pod_monitors.state();
    for o in &generated.accepted {
        let sel = match o.kind {
            Kind::ServiceMonitor => smons
                .iter()
                .find(|m| m.namespace().as_deref() == Some(o.namespace.as_str()) && m.name_any() == o.name)
                .map(|m| m.spec.namespace_selector.clone()),
            Kind::PodMonitor => pmons
                .iter()
                .find(|m| m.namespace().as_deref() == Some(o.namespace.as_str()) && m.name_any() == o.name)
                .map(|m| m.spec.namespace_selector.clone()),
            _ => None,
        };
        let Some(sel) = sel else { continue };
        let sel = sel.unwrap_or_default();
        if sel.any {
            return DiscoveryScope::All;
        }
        if sel.match_names.is_empty() {
            namespaces.insert(o.namespace.clone());
        } else {
            namespaces.extend(sel.match_names.iter().cloned());
        }
    }
    // Its own namespace always, so the Role set never goes empty and flaps.
    namespaces.insert(own);
    DiscoveryScope::Namespaces(namespaces)
}

async fn reconcile(obj: Arc<Prometheus>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(obj.name_any()))?;
    let api: Api<Prometheus> = Api::namespaced(ctx.client.clone(), &ns);
    let c = ctx.clone();
    finalizer(&api, FINALIZER, obj, |event| async move {
        match event {
            FinalizerEvent::Apply(p) => apply(p, c).await,
            FinalizerEvent::Cleanup(p) => cleanup(p, c).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

async fn cleanup(obj: Arc<Prometheus>, ctx: Arc<Context>) -> Result<Action, Error> {
    prune_rbac(&ctx, &obj, &[], &[], None).await?;
    if let Ok(mut last) = ctx.caches.last.lock() {
        last.remove(&ObjectRef::from_obj(obj.as_ref()));
    }
    Ok(Action::await_change())
}

async fn apply(obj: Arc<Prometheus>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = obj.name_any();
    let ns = obj.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let api: Api<Prometheus> = Api::namespaced(ctx.client.clone(), &ns);
    let mut outcome = Outcome {
        problems: validate(&obj),
        ..Default::default()
    };
    outcome.replicas = statefulset_replicas(&ctx, &obj).await;
    if !outcome.problems.is_empty() || obj.spec.paused {
        return finish(&ctx, &api, &obj, &outcome, Duration::from_secs(300)).await;
    }

    // Fetch: everything from the watch caches, Secrets from the API (only the namespaces
    // whose objects are selected).
    let c = &ctx.caches;
    let mut namespaces: Vec<Namespace> = c.namespaces.state().iter().map(|n| n.as_ref().clone()).collect();
    namespaces.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let smons = selected(&c.service_monitors, &obj, Kind::ServiceMonitor, &c.namespaces);
    let pmons = selected(&c.pod_monitors, &obj, Kind::PodMonitor, &c.namespaces);
    let scfgs = selected(&c.scrape_configs, &obj, Kind::ScrapeConfig, &c.namespaces);
    let rules = selected(&c.rules, &obj, Kind::PrometheusRule, &c.namespaces);
    let empty = config::Store::new();
    let mut inputs = Inputs {
        prometheus: &obj,
        namespaces: &namespaces,
        service_monitors: &smons,
        pod_monitors: &pmons,
        scrape_configs: &scfgs,
        rules: &rules,
        store: &empty,
    };
    let secret_namespaces: BTreeSet<String> = match config::select(&inputs) {
        Ok(sel) => sel
            .service_monitors
            .iter()
            .filter_map(|o| o.namespace())
            .chain(sel.pod_monitors.iter().filter_map(|o| o.namespace()))
            .chain(sel.scrape_configs.iter().filter_map(|o| o.namespace()))
            .chain(std::iter::once(ns.clone()))
            .collect(),
        Err(_) => BTreeSet::from([ns.clone()]),
    };
    let mut secrets = Vec::new();
    let mut config_maps = Vec::new();
    for sns in &secret_namespaces {
        let sapi: Api<Secret> = Api::namespaced(ctx.client.clone(), sns);
        let capi: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), sns);
        // Our own generated objects are never inputs.
        let lp =
            ListParams::default().labels(&format!("{}!={OPERATOR_NAME}", steward_core::labels::MANAGED_BY));
        secrets.extend(
            sapi.list(&lp)
                .await
                .map_err(|e| Error::Kube("list secrets", Box::new(e)))?
                .items,
        );
        config_maps.extend(
            capi.list(&lp)
                .await
                .map_err(|e| Error::Kube("list configmaps", Box::new(e)))?
                .items,
        );
    }
    let store = config::Store::from_objects(&secrets, &config_maps);
    inputs.store = &store;

    let started = Instant::now();
    let generated = config::generate(&inputs);
    ctx.metrics.generation.observe(started.elapsed().as_secs_f64());
    let generated = match generated {
        Ok(g) => g,
        Err(problem) => {
            outcome
                .problems
                .push(format!("{}: {}", problem.reason.as_str(), problem.message));
            if obj.status.as_ref().and_then(|s| s.observed_generation) != obj.metadata.generation {
                ctx.recorder
                    .warning(
                        obj.as_ref(),
                        "InvalidSpec",
                        "GenerateConfig",
                        outcome.problems.join("; "),
                    )
                    .await;
            }
            return finish(&ctx, &api, &obj, &outcome, Duration::from_secs(300)).await;
        }
    };
    let tuning = Tuning {
        retention_size: config::tuning::retention_size_for(&obj.spec),
        gomemlimit: config::tuning::gomemlimit_for(&obj.spec),
    };

    // Build and apply.
    let gz = crate::reloader::gzip(generated.prometheus_yaml.as_bytes())
        .map_err(|e| Error::Finalizer(e.to_string()))?;
    let cms = resources::rule_configmaps(&obj, &generated);
    let mut desired = vec![
        Desired::namespaced(&resources::statefulset(
            &obj,
            &ctx.reloader_image,
            cms.len(),
            &tuning,
        ))?,
        Desired::namespaced(&resources::service(&obj))?,
        Desired::namespaced(&resources::config_secret(&obj, gz))?,
    ];
    for cm in &cms {
        desired.push(Desired::namespaced(cm)?);
    }
    if let Some(sa) = resources::service_account(&obj) {
        desired.push(Desired::namespaced(&sa)?);
    }
    let own_ns_rbac;
    let scope = discovery_scope(&obj, &generated, &ctx.caches);
    let (roles, bindings, cluster) = resources::discovery_rbac(&obj, &scope);
    {
        // RBAC in its own namespace is owned like any child; elsewhere it is labelled and
        // cleaned up by the finalizer.
        own_ns_rbac = roles
            .iter()
            .any(|r| r.namespace().as_deref() == Some(ns.as_str()));
        for r in roles
            .iter()
            .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        {
            desired.push(Desired::namespaced(r)?);
        }
        for b in bindings
            .iter()
            .filter(|b| b.namespace().as_deref() == Some(ns.as_str()))
        {
            desired.push(Desired::namespaced(b)?);
        }
    }
    let selector = steward_core::labels::owner_selector("prometheus", &name, OPERATOR_NAME);
    let mut prune = vec![
        OwnedKind::namespaced::<StatefulSet>(),
        OwnedKind::namespaced::<Service>(),
        OwnedKind::namespaced::<Secret>(),
        OwnedKind::namespaced::<ConfigMap>(),
        OwnedKind::namespaced::<ServiceAccount>(),
    ];
    if own_ns_rbac || matches!(scope, DiscoveryScope::All) {
        prune.push(OwnedKind::namespaced::<Role>());
        prune.push(OwnedKind::namespaced::<RoleBinding>());
    }
    ctx.applier
        .apply_owned(obj.as_ref(), &selector, desired, &prune)
        .await?;
    let foreign_roles: Vec<Role> = roles
        .into_iter()
        .filter(|r| r.namespace().as_deref() != Some(ns.as_str()))
        .collect();
    let foreign_bindings: Vec<RoleBinding> = bindings
        .into_iter()
        .filter(|b| b.namespace().as_deref() != Some(ns.as_str()))
        .collect();
    apply_rbac(&ctx, &foreign_roles, &foreign_bindings, cluster.as_ref()).await?;
    prune_rbac(&ctx, &obj, &foreign_roles, &foreign_bindings, cluster.as_ref()).await?;
    apply_governing_service(&ctx, &ns).await?;

    // Status of every selected object, Events for newly rejected ones, metrics.
    report_objects(&ctx, &obj, &generated).await;
    let selected: SelectedSet = generated
        .accepted
        .iter()
        .map(|o| (o.kind, o.namespace.clone(), o.name.clone()))
        .chain(
            generated
                .rejected
                .iter()
                .map(|r| (r.object.kind, r.object.namespace.clone(), r.object.name.clone())),
        )
        .collect();
    if let Ok(mut last) = ctx.caches.last.lock() {
        last.insert(ObjectRef::from_obj(obj.as_ref()), (selected, secret_namespaces));
    }
    for kind in [
        Kind::ServiceMonitor,
        Kind::PodMonitor,
        Kind::PrometheusRule,
        Kind::ScrapeConfig,
    ] {
        for (state, n) in [
            (
                "accepted",
                generated.accepted.iter().filter(|o| o.kind == kind).count(),
            ),
            (
                "rejected",
                generated
                    .rejected
                    .iter()
                    .filter(|r| r.object.kind == kind)
                    .count(),
            ),
        ] {
            ctx.metrics
                .selected
                .get_or_create(&SelectedLabels {
                    namespace: ns.clone(),
                    prometheus: name.clone(),
                    kind: kind.as_str().to_string(),
                    state: state.to_string(),
                })
                .set(n as i64);
        }
    }
    outcome.generated = Some((generated.selected_resources(), cms.len()));
    outcome.tuning = tuning;
    let requeue = if outcome.replicas.1 < obj.spec.replicas {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(300)
    };
    finish(&ctx, &api, &obj, &outcome, requeue).await
}

async fn statefulset_replicas(ctx: &Context, obj: &Prometheus) -> (i32, i32) {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    match api.get_opt(&resources::base_name(obj)).await {
        Ok(Some(s)) => {
            let st = s.status.unwrap_or_default();
            (st.replicas, st.ready_replicas.unwrap_or(0))
        }
        _ => (0, 0),
    }
}

async fn finish(
    ctx: &Context,
    api: &Api<Prometheus>,
    obj: &Prometheus,
    outcome: &Outcome,
    requeue: Duration,
) -> Result<Action, Error> {
    if !outcome.problems.is_empty()
        && obj.status.as_ref().and_then(|s| s.observed_generation) != obj.metadata.generation
    {
        ctx.recorder
            .warning(obj, "InvalidSpec", "Validate", outcome.problems.join("; "))
            .await;
    }
    let status = desired_status(obj, outcome, conditions::now());
    if obj.status.as_ref() != Some(&status) {
        steward_core::apply::apply_status(api, obj, FIELD_MANAGER, &status)
            .await
            .map_err(|source| Error::Status {
                name: obj.name_any(),
                source,
            })?;
    }
    Ok(Action::requeue(requeue))
}

async fn apply_rbac(
    ctx: &Context,
    roles: &[Role],
    bindings: &[RoleBinding],
    cluster: Option<&(ClusterRole, ClusterRoleBinding)>,
) -> Result<(), Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let err = |what| move |e| Error::Kube(what, Box::new(e));
    for r in roles {
        let api: Api<Role> = Api::namespaced(ctx.client.clone(), &r.namespace().unwrap_or_default());
        api.patch(&r.name_any(), &params, &Patch::Apply(typed(r)?))
            .await
            .map_err(err("apply role"))?;
    }
    for b in bindings {
        let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &b.namespace().unwrap_or_default());
        api.patch(&b.name_any(), &params, &Patch::Apply(typed(b)?))
            .await
            .map_err(err("apply rolebinding"))?;
    }
    if let Some((role, binding)) = cluster {
        let api: Api<ClusterRole> = Api::all(ctx.client.clone());
        api.patch(&role.name_any(), &params, &Patch::Apply(typed(role)?))
            .await
            .map_err(err("apply clusterrole"))?;
        let api: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
        api.patch(&binding.name_any(), &params, &Patch::Apply(typed(binding)?))
            .await
            .map_err(err("apply clusterrolebinding"))?;
    }
    Ok(())
}

/// A typed object with apiVersion and kind, as apply needs.
fn typed<K: Resource<DynamicType = ()> + Serialize>(obj: &K) -> Result<serde_json::Value, Error> {
    let mut v = serde_json::to_value(obj).map_err(|e| Error::Finalizer(e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), K::api_version(&()).into());
        m.insert("kind".into(), K::kind(&()).into());
    }
    Ok(v)
}

/// Deletes labelled RBAC objects of `obj` outside its namespace that are not wanted.
async fn prune_rbac(
    ctx: &Context,
    obj: &Prometheus,
    roles: &[Role],
    bindings: &[RoleBinding],
    cluster: Option<&(ClusterRole, ClusterRoleBinding)>,
) -> Result<(), Error> {
    let own = obj.namespace().unwrap_or_default();
    let lp = ListParams::default().labels(&format!(
        "{}={}",
        resources::RBAC_OWNER_LABEL,
        resources::rbac_owner(obj)
    ));
    let dp = DeleteParams::default();
    let key = |ns: Option<String>, name: String| (ns.unwrap_or_default(), name);
    let want_roles: BTreeSet<_> = roles.iter().map(|r| key(r.namespace(), r.name_any())).collect();
    let want_bindings: BTreeSet<_> = bindings
        .iter()
        .map(|r| key(r.namespace(), r.name_any()))
        .collect();
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    let all_roles: Api<Role> = Api::all(ctx.client.clone());
    for r in all_roles
        .list(&lp)
        .await
        .map_err(|e| Error::Kube("list roles", Box::new(e)))?
        .items
    {
        let k = key(r.namespace(), r.name_any());
        if k.0 != own && !want_roles.contains(&k) {
            let api: Api<Role> = Api::namespaced(ctx.client.clone(), &k.0);
            if let Err(e) = api.delete(&k.1, &dp).await
                && !gone(&e)
            {
                return Err(Error::Kube("delete role", Box::new(e)));
            }
        }
    }
    let all_bindings: Api<RoleBinding> = Api::all(ctx.client.clone());
    for b in all_bindings
        .list(&lp)
        .await
        .map_err(|e| Error::Kube("list rolebindings", Box::new(e)))?
        .items
    {
        let k = key(b.namespace(), b.name_any());
        if k.0 != own && !want_bindings.contains(&k) {
            let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &k.0);
            if let Err(e) = api.delete(&k.1, &dp).await
                && !gone(&e)
            {
                return Err(Error::Kube("delete rolebinding", Box::new(e)));
            }
        }
    }
    if cluster.is_none() {
        let api: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
        for b in api
            .list(&lp)
            .await
            .map_err(|e| Error::Kube("list clusterrolebindings", Box::new(e)))?
            .items
        {
            if let Err(e) = api.delete(&b.name_any(), &dp).await
                && !gone(&e)
            {
                return Err(Error::Kube("delete clusterrolebinding", Box::new(e)));
            }
        }
        let api: Api<ClusterRole> = Api::all(ctx.client.clone());
        for r in api
            .list(&lp)
            .await
            .map_err(|e| Error::Kube("list clusterroles", Box::new(e)))?
            .items
        {
            if let Err(e) = api.delete(&r.name_any(), &dp).await
                && !gone(&e)
            {
                return Err(Error::Kube("delete clusterrole", Box::new(e)));
            }
        }
    }
    Ok(())
}

/// `prometheus-operated`, owned (without controller) by every Prometheus of the namespace, so
/// it goes when the last one does.
async fn apply_governing_service(ctx: &Context, ns: &str) -> Result<(), Error> {
    let mut owners: Vec<OwnerReference> = ctx
        .caches
        .prometheuses
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let mut r = p.controller_owner_ref(&())?;
            r.controller = None;
            r.block_owner_deletion = None;
            Some(r)
        })
        .collect();
    owners.sort_by(|a, b| a.uid.cmp(&b.uid));
    if owners.is_empty() {
        return Ok(());
    }
    let mut svc = resources::governing_service(ns);
    svc.metadata.owner_references = Some(owners);
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(
        resources::GOVERNING_SERVICE,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(typed(&svc)?),
    )
    .await
    .map_err(|e| Error::Kube("apply governing service", Box::new(e)))?;
    Ok(())
}

/// The next status of a monitor, rule or scrape config after Prometheus `me` judged it, or
/// `None` when nothing changes. Several Prometheus objects may select the same object and
/// judge it differently (a scrape timeout is checked against each one's own interval), so a
/// rejection wins and belongs to the Prometheus that reported it: the others leave it alone
/// while `holder_active` says that one still selects the object. Without this rule two
/// Prometheus objects would overwrite each other's verdict, and each write would wake the
/// other, forever.
fn accepted_condition(
    current: Option<&ConfigResourceStatus>,
    generation: Option<i64>,
    me: &str,
    verdict: Option<(&str, String)>,
    holder_active: impl Fn(&str) -> bool,
) -> Option<ConfigResourceStatus> {
    let held_by_other = current
        .filter(|c| {
            c.conditions
                .iter()
                .any(|c| c.type_ == "Accepted" && c.status == "False")
        })
        .and_then(|c| c.rejected_by.as_deref())
        .is_some_and(|holder| holder != me && holder_active(holder));
    if held_by_other {
        return None;
    }
    let (status, reason, message, rejected_by) = match verdict {
        None => (Status::True, "Accepted", "valid and in use".to_string(), None),
        Some((reason, message)) => (Status::False, reason, message, Some(me.to_string())),
    };
    let mut next = current.cloned().unwrap_or_default();
    next.observed_generation = generation;
    next.rejected_by = rejected_by;
    conditions::set(
        &mut next.conditions,
        NewCondition {
            type_: "Accepted",
            status,
            reason,
            message,
            observed_generation: generation,
        },
        conditions::now(),
    );
    (current != Some(&next)).then_some(next)
}

async fn set_status<K>(
    ctx: &Context,
    store: &Store<K>,
    ns: &str,
    name: &str,
    kind: Kind,
    me: &str,
    verdict: Option<(&str, String)>,
) -> bool
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + HasConfigStatus
        + 'static,
{
    let Some(obj) = store.get(&ObjectRef::new(name).within(ns)) else {
        return false;
    };
    let holder_active = |holder: &str| {
        let Some((pns, pname)) = holder.split_once('/') else {
            return false;
        };
        let ns_labels = ctx
            .caches
            .namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.labels().clone());
        ctx.caches
            .prometheuses
            .get(&ObjectRef::new(pname).within(pns))
            .is_some_and(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && selects(&p, kind, ns, obj.labels(), ns_labels.as_ref())
            })
    };
    let rejection = verdict
        .as_ref()
        .map(|(reason, message)| (reason.to_string(), message.clone()));
    let Some(next) = accepted_condition(
        obj.config_status(),
        obj.meta().generation,
        me,
        verdict,
        holder_active,
    ) else {
        return false;
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    if let Err(e) = steward_core::apply::apply_status(&api, obj.as_ref(), FIELD_MANAGER, &next).await {
        warn!(kind = K::kind(&()).as_ref(), %ns, %name, error = %e, "writing Accepted condition failed");
    }
    if let Some((reason, message)) = rejection {
        ctx.recorder
            .warning(
                obj.as_ref(),
                &reason,
                "Validate",
                format!("{message} (Prometheus {me})"),
            )
            .await;
    }
    true
}

/// Read access to the status of monitors, rules and scrape configs.
pub trait HasConfigStatus {
    /// The current status.
    fn config_status(&self) -> Option<&ConfigResourceStatus>;
}

macro_rules! has_status {
    ($($k:ty),*) => {$(
        impl HasConfigStatus for $k {
            fn config_status(&self) -> Option<&ConfigResourceStatus> {
                self.status.as_ref()
            }
        }
    )*};
}
has_status!(ServiceMonitor, PodMonitor, PrometheusRule, ScrapeConfig);

async fn report_objects(ctx: &Context, obj: &Prometheus, generated: &Generated) {
    let c = &ctx.caches;
    let me = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let me = me.as_str();
    let verdicts = generated.accepted.iter().map(|o| (o, None)).chain(
        generated
            .rejected
            .iter()
            .map(|r| (&r.object, Some((r.reason.as_str(), r.message.clone())))),
    );
    for (o, verdict) in verdicts {
        let (ns, name) = (o.namespace.as_str(), o.name.as_str());
        match o.kind {
            Kind::ServiceMonitor => set_status(ctx, &c.service_monitors, ns, name, o.kind, me, verdict).await,
            Kind::PodMonitor => set_status(ctx, &c.pod_monitors, ns, name, o.kind, me, verdict).await,
            Kind::PrometheusRule => set_status(ctx, &c.rules, ns, name, o.kind, me, verdict).await,
            Kind::ScrapeConfig => set_status(ctx, &c.scrape_configs, ns, name, o.kind, me, verdict).await,
        };
    }
}

fn wc() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// Runs the Prometheus controller until the runtime shuts down. `reloader_image` is the image
/// of the config-reloader sidecar (this operator's own image).
pub async fn run(rt: ControllerRuntime, metrics: PrometheusMetrics, reloader_image: String) {
    let client = rt.client.clone();
    let apis = rt.apis::<Prometheus>();
    let runs = apis.into_iter().map(|api| {
        let controller = Controller::new(api, wc());
        let prometheuses = controller.store();
        let (namespaces, ns_w) = reflector::store();
        let (service_monitors, smon_w) = reflector::store();
        let (pod_monitors, pmon_w) = reflector::store();
        let (rules, rule_w) = reflector::store();
        let (scrape_configs, scfg_w) = reflector::store();
        let caches = Caches {
            prometheuses,
            namespaces,
            service_monitors,
            pod_monitors,
            rules,
            scrape_configs,
            last: Arc::default(),
        };
        let ns_stream = watcher(Api::<Namespace>::all(client.clone()), wc())
            .default_backoff()
            .modify(drop_managed_fields)
            .reflect(ns_w)
            .touched_objects();
        let smon_stream = watcher(Api::<ServiceMonitor>::all(client.clone()), wc())
            .default_backoff()
            .modify(drop_managed_fields)
            .reflect(smon_w)
            .touched_objects();
        let pmon_stream = watcher(Api::<PodMonitor>::all(client.clone()), wc())
            .default_backoff()
            .modify(drop_managed_fields)
            .reflect(pmon_w)
            .touched_objects();
        let rule_stream = watcher(Api::<PrometheusRule>::all(client.clone()), wc())
            .default_backoff()
            .modify(drop_managed_fields)
            .reflect(rule_w)
            .touched_objects();
        let scfg_stream = watcher(Api::<ScrapeConfig>::all(client.clone()), wc())
            .default_backoff()
            .modify(drop_managed_fields)
            .reflect(scfg_w)
            .touched_objects();
        let secret_stream = watcher(
            Api::<kube::core::PartialObjectMeta<Secret>>::all(client.clone()),
            wc(),
        )
        .default_backoff()
        .touched_objects();
        let (c1, c2, c3, c4, c5, c6) = (
            caches.clone(),
            caches.clone(),
            caches.clone(),
            caches.clone(),
            caches.clone(),
            caches.clone(),
        );
        let mapped = |kind: Kind| {
            move |c: &Caches, m: &kube::api::ObjectMeta| {
                c.who_selects(
                    kind,
                    m.namespace.as_deref().unwrap_or_default(),
                    m.name.as_deref().unwrap_or_default(),
                    m.labels.as_ref().unwrap_or(&BTreeMap::new()),
                )
            }
        };
        let (f_smon, f_pmon, f_rule, f_scfg) = (
            mapped(Kind::ServiceMonitor),
            mapped(Kind::PodMonitor),
            mapped(Kind::PrometheusRule),
            mapped(Kind::ScrapeConfig),
        );
        let controller = controller
            .owns(Api::<StatefulSet>::all(client.clone()), wc())
            .watches_stream(ns_stream, move |_: Namespace| c1.all())
            .watches_stream(smon_stream, move |o: ServiceMonitor| f_smon(&c2, &o.metadata))
            .watches_stream(pmon_stream, move |o: PodMonitor| f_pmon(&c3, &o.metadata))
            .watches_stream(rule_stream, move |o: PrometheusRule| f_rule(&c4, &o.metadata))
            .watches_stream(scfg_stream, move |o: ScrapeConfig| f_scfg(&c5, &o.metadata))
            .watches_stream(secret_stream, move |s: kube::core::PartialObjectMeta<Secret>| {
                // Our own Secrets (generated configs) never feed a configuration.
                let ours = s
                    .labels()
                    .get(steward_core::labels::MANAGED_BY)
                    .map(String::as_str)
                    == Some(OPERATOR_NAME);
                if ours {
                    Vec::new()
                } else {
                    c6.reading_secrets_in(s.namespace().as_deref().unwrap_or_default())
                }
            });
        let ctx = Arc::new(Context {
            client: client.clone(),
            recorder: EventRecorder::new(client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
            applier: Applier::new(client.clone(), FIELD_MANAGER),
            reloader_image: reloader_image.clone(),
            caches,
            metrics: metrics.clone(),
        });
        steward_core::controller::run(&rt, CONTROLLER, controller, ctx, reconcile)
    });
    futures::future::join_all(runs).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use k8s_openapi::jiff::Timestamp;

    fn req(op: &str, values: Option<Vec<&str>>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: "team".into(),
            operator: op.into(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        }
    }

    fn prom(spec: serde_json::Value) -> Prometheus {
        let spec: crate::crd::PrometheusSpec = serde_json::from_value(spec).unwrap();
        let mut p = Prometheus::new("team-a", spec);
        p.metadata.namespace = Some("mon".into());
        p.metadata.generation = Some(2);
        p
    }

    #[test]
    fn selector_rules() {
        let ok = LabelSelector {
            match_expressions: Some(vec![req("In", Some(vec!["a"])), req("Exists", None)]),
            match_labels: None,
        };
        assert!(validate_selector("s", &ok).is_empty());
        let bad = LabelSelector {
            match_expressions: Some(vec![
                req("In", None),
                req("Exists", Some(vec!["x"])),
                req("Like", None),
            ]),
            match_labels: None,
        };
        let p = validate_selector("s", &bad);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[2].contains("unknown operator \"Like\""));
    }

    #[test]
    fn a_rejection_belongs_to_the_prometheus_that_reported_it() {
        let accepted = |st: &ConfigResourceStatus| {
            let c = st.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
            (c.status.clone(), c.reason.clone(), st.rejected_by.clone())
        };
        let timeout = || {
            Some((
                "InvalidScrapeTimeout",
                "scrapeTimeout 20s > interval 10s".to_string(),
            ))
        };
        // b rejects what a accepted.
        let a = accepted_condition(None, Some(1), "t/a", None, |_| true).unwrap();
        assert_eq!(accepted(&a), ("True".into(), "Accepted".into(), None));
        let b = accepted_condition(Some(&a), Some(1), "t/b", timeout(), |_| true).unwrap();
        assert_eq!(
            accepted(&b),
            ("False".into(), "InvalidScrapeTimeout".into(), Some("t/b".into()))
        );
        // a accepts again: b still selects the object, so nothing changes (no flip-flop).
        assert_eq!(accepted_condition(Some(&b), Some(1), "t/a", None, |_| true), None);
        // A third one rejecting for its own reason leaves b's report in place as well.
        assert_eq!(
            accepted_condition(Some(&b), Some(1), "t/c", timeout(), |h| h == "t/b"),
            None
        );
        // b repeats itself: no write.
        assert_eq!(
            accepted_condition(Some(&b), Some(1), "t/b", timeout(), |_| true),
            None
        );
        // b stops selecting it (or is gone): a's verdict applies.
        let a2 = accepted_condition(Some(&b), Some(1), "t/a", None, |_| false).unwrap();
        assert_eq!(accepted(&a2), ("True".into(), "Accepted".into(), None));
        // b accepts after a fix: its own rejection is lifted.
        let b2 = accepted_condition(Some(&b), Some(2), "t/b", None, |_| true).unwrap();
        assert_eq!(accepted(&b2), ("True".into(), "Accepted".into(), None));
        assert_eq!(b2.observed_generation, Some(2));
    }

    #[test]
    fn status_reports_invalid_selector() {
        let obj = prom(serde_json::json!({
            "ruleSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}
        }));
        assert_eq!(obj.spec.replicas, 1, "serde default");
        assert_eq!(obj.spec.version, crate::crd::DEFAULT_VERSION);
        let outcome = Outcome {
            problems: validate(&obj),
            ..Default::default()
        };
        let st = desired_status(&obj, &outcome, Time(Timestamp::from_second(5).unwrap()));
        let c = conditions::find(&st.conditions, "Reconciled").unwrap();
        assert_eq!(c.reason, "InvalidSpec");
        assert!(
            c.message.contains("spec.ruleSelector.matchExpressions[0]"),
            "{}",
            c.message
        );
        assert_eq!(st.observed_generation, Some(2));
        assert_eq!(
            conditions::find(&st.conditions, "Available").unwrap().reason,
            "NoReplicasReady"
        );
    }

    #[test]
    fn status_counts_and_availability() {
        let obj = prom(serde_json::json!({"replicas": 2}));
        let outcome = Outcome {
            generated: Some((
                vec![crate::crd::SelectedResources {
                    kind: "ServiceMonitor".into(),
                    accepted: 2,
                    rejected: 1,
                }],
                1,
            )),
            replicas: (2, 1),
            tuning: Tuning {
                retention_size: Some("8GiB".into()),
                gomemlimit: None,
            },
            ..Default::default()
        };
        let st = desired_status(&obj, &outcome, Time(Timestamp::from_second(5).unwrap()));
        assert_eq!(
            conditions::find(&st.conditions, "Reconciled").unwrap().reason,
            "Reconciled"
        );
        assert_eq!(
            conditions::find(&st.conditions, "Available").unwrap().reason,
            "SomeReplicasReady"
        );
        assert_eq!((st.replicas, st.available_replicas), (2, 1));
        assert_eq!(st.retention_size.as_deref(), Some("8GiB"));
        let none = Outcome {
            generated: Some((Vec::new(), 1)),
            ..Default::default()
        };
        let st = desired_status(&obj, &none, Time(Timestamp::from_second(5).unwrap()));
        assert_eq!(
            conditions::find(&st.conditions, "Reconciled").unwrap().reason,
            "NoSelectedResources"
        );
    }

    #[test]
    fn changes_wake_only_the_prometheus_objects_that_select_them() {
        let (prometheuses, mut pw) = reflector::store::<Prometheus>();
        let (namespaces, _nw) = reflector::store::<Namespace>();
        let a = prom(serde_json::json!({"serviceMonitorSelector": {"matchLabels": {"team": "a"}}}));
        let mut b = prom(serde_json::json!({"serviceMonitorSelector": {"matchLabels": {"team": "b"}}}));
        b.metadata.name = Some("team-b".into());
        pw.apply_watcher_event(&watcher::Event::Apply(a.clone()));
        pw.apply_watcher_event(&watcher::Event::Apply(b.clone()));
        let caches = Caches {
            prometheuses,
            namespaces,
            service_monitors: reflector::store().0,
            pod_monitors: reflector::store().0,
            rules: reflector::store().0,
            scrape_configs: reflector::store().0,
            last: Arc::default(),
        };
        let l = |v: &str| BTreeMap::from([("team".to_string(), v.to_string())]);
        assert_eq!(
            caches.who_selects(Kind::ServiceMonitor, "mon", "m", &l("a")),
            vec![ObjectRef::from_obj(&a)]
        );
        assert!(
            caches
                .who_selects(Kind::ServiceMonitor, "mon", "m", &l("c"))
                .is_empty()
        );
        assert!(
            caches
                .who_selects(Kind::PrometheusRule, "mon", "m", &l("a"))
                .is_empty()
        );
        // A monitor relabelled away from team a still wakes a, which must drop it.
        caches.last.lock().unwrap().insert(
            ObjectRef::from_obj(&a),
            (
                BTreeSet::from([(Kind::ServiceMonitor, "mon".to_string(), "m".to_string())]),
                BTreeSet::from(["mon".to_string()]),
            ),
        );
        assert_eq!(
            caches.who_selects(Kind::ServiceMonitor, "mon", "m", &l("c")),
            vec![ObjectRef::from_obj(&a)]
        );
        assert_eq!(caches.reading_secrets_in("mon"), vec![ObjectRef::from_obj(&a)]);
        assert!(caches.reading_secrets_in("other").is_empty());
        assert_eq!(caches.all().len(), 2);
    }

    #[test]
    fn selection_for_watch_mapping() {
        let p = prom(serde_json::json!({
            "serviceMonitorSelector": {"matchLabels": {"team": "a"}},
            "ruleSelector": {},
            "ruleNamespaceSelector": {"matchLabels": {"tier": "x"}}
        }));
        let l = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(selects(&p, Kind::ServiceMonitor, "mon", &l("team", "a"), None));
        assert!(
            !selects(&p, Kind::ServiceMonitor, "other", &l("team", "a"), None),
            "nil namespace selector: own only"
        );
        assert!(!selects(&p, Kind::ServiceMonitor, "mon", &l("team", "b"), None));
        assert!(
            !selects(&p, Kind::PodMonitor, "mon", &l("team", "a"), None),
            "nil selector selects nothing"
        );
        assert!(selects(
            &p,
            Kind::PrometheusRule,
            "x1",
            &BTreeMap::new(),
            Some(&l("tier", "x"))
        ));
        assert!(!selects(&p, Kind::PrometheusRule, "x1", &BTreeMap::new(), None));
    }
}
