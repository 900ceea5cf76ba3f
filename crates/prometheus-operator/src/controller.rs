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

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
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
use steward_core::children::{self, Children};
use steward_core::conditions::{self, NewCondition, Status};
use steward_core::{ControllerRuntime, EventRecorder, MetricsBuilder, ReconcileError};
use tracing::warn;

use crate::config::{self, Generated, Inputs, Kind, Rejection};
use crate::crd::common::ConfigResourceStatus;
use crate::crd::{PodMonitor, Prometheus, PrometheusRule, PrometheusStatus, ScrapeConfig, ServiceMonitor};
use crate::discovery::{self, Policy};
use crate::resources::{self, Tuning};
use crate::{FIELD_MANAGER, OPERATOR_NAME};

/// Name of the controller in metrics and logs.
pub const CONTROLLER: &str = "prometheus";
/// Finalizer that removes the discovery bindings, which the Prometheus cannot own (they live
/// in other namespaces, or are cluster-scoped).
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
    /// The generated configuration could not be compressed.
    #[error("compressing the configuration: {0}")]
    Compress(std::io::Error),
    /// An object could not be serialized for apply.
    #[error("serializing {kind} {name}: {source}")]
    Serialize {
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
        /// Cause.
        source: serde_json::Error,
    },
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::NoNamespace(_) => "invalid_object",
            Error::Status { .. } | Error::Kube(..) | Error::Finalizer(_) => "api",
            Error::Compress(_) | Error::Serialize { .. } => "build",
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
    /// This operator's RoleBindings (discovery bindings, and those of earlier versions).
    role_bindings: Store<RoleBinding>,
    /// Names, labels and resourceVersions of every Secret and ConfigMap (never their data):
    /// what tells whether a configuration's inputs changed without reading them.
    secret_meta: Store<kube::core::PartialObjectMeta<Secret>>,
    config_map_meta: Store<kube::core::PartialObjectMeta<ConfigMap>>,
    /// What each Prometheus selected at its last reconcile, and the namespaces whose Secrets
    /// it read; used to find who to re-render.
    last: Arc<Mutex<LastSeen>>,
    /// Prometheus objects known to have no ClusterRoleBinding (cluster-wide discovery only).
    cluster_unbound: Arc<Mutex<std::collections::HashSet<ObjectRef<Prometheus>>>>,
    /// True once every watch cache above has listed its objects: until then a reconcile
    /// would see too few monitors or bindings and thin the configuration or prune RBAC.
    ready: tokio::sync::watch::Receiver<bool>,
}

/// Shared state of the controller.
pub struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    applier: Applier,
    children: Arc<Children>,
    /// Per Prometheus UID, the fingerprint of everything its last successful reconcile read.
    fingerprints: Mutex<HashMap<String, u64>>,
    reloader_image: String,
    caches: Caches,
    metrics: PrometheusMetrics,
    policy: Policy,
}

/// How long after the operator's last write for a Prometheus its reads still go to the API
/// (see [`Applier::quiet_for`]).
const CACHE_QUIET: Duration = Duration::from_secs(10);

/// The kinds the controller owns, for pruning.
fn child_kinds() -> Vec<OwnedKind> {
    cached_kinds().into_iter().map(|(k, _)| k).collect()
}

/// The kinds of child the controller caches (every object labelled as ours), and what of them
/// it keeps: of the StatefulSet its claim templates and status, metadata otherwise (the
/// generated config Secret and rule ConfigMaps are large and never read back).
fn cached_kinds() -> Vec<(OwnedKind, children::Trim)> {
    vec![
        (OwnedKind::namespaced::<StatefulSet>(), statefulset_trim),
        (OwnedKind::namespaced::<Service>(), children::metadata_only),
        (OwnedKind::namespaced::<Secret>(), children::metadata_only),
        (OwnedKind::namespaced::<ConfigMap>(), children::metadata_only),
        (OwnedKind::namespaced::<ServiceAccount>(), children::metadata_only),
    ]
}

/// A cached StatefulSet keeps what the reconcile reads: replicas, claim templates, status
/// (and the fields a StatefulSet cannot be parsed without, the pod template emptied).
fn statefulset_trim(o: &mut kube::api::DynamicObject) {
    let mut spec = serde_json::Map::new();
    for key in ["replicas", "selector", "serviceName", "volumeClaimTemplates"] {
        if let Some(v) = o.data["spec"].get(key).filter(|v| !v.is_null()) {
            spec.insert(key.to_string(), v.clone());
        }
    }
    spec.insert("template".into(), serde_json::json!({}));
    let mut kept = serde_json::Map::new();
    kept.insert("spec".into(), serde_json::Value::Object(spec));
    if let Some(status) = o.data.get("status").filter(|v| !v.is_null()) {
        kept.insert("status".into(), status.clone());
    }
    o.data = serde_json::Value::Object(kept);
}

/// A fingerprint of everything a reconcile of `p` reads: the Prometheus itself, the
/// namespaces, the objects it selects, the Secrets and ConfigMaps where those live, its
/// children and its discovery bindings, all by resourceVersion. `None` while a cache is not
/// filled. When it matches the last successful reconcile's, nothing it would write can differ.
fn fingerprint(p: &Prometheus, c: &Caches, children: &Children) -> Option<u64> {
    use std::fmt::Write as _;
    use std::hash::{Hash, Hasher};
    if !children.is_ready() {
        return None;
    }
    let ns = p.namespace()?;
    let mut text = String::new();
    let spec = serde_json::to_string(&p.spec).ok()?;
    let _ = write!(
        text,
        "{:?}|{:?}|{:?}|{spec}|",
        p.metadata.uid, p.metadata.generation, p.metadata.deletion_timestamp
    );
    let rv = |m: &kube::api::ObjectMeta| {
        format!(
            "{}/{}@{};",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
            m.resource_version.as_deref().unwrap_or_default()
        )
    };
    let mut lines: Vec<String> = c.namespaces.state().iter().map(|n| rv(&n.metadata)).collect();
    let mut read_in = BTreeSet::from([ns.clone()]);
    for m in selected(&c.service_monitors, p, Kind::ServiceMonitor, &c.namespaces) {
        read_in.extend(m.namespace());
        lines.push(format!("smon:{}", rv(&m.metadata)));
    }
    for m in selected(&c.pod_monitors, p, Kind::PodMonitor, &c.namespaces) {
        read_in.extend(m.namespace());
        lines.push(format!("pmon:{}", rv(&m.metadata)));
    }
    for m in selected(&c.scrape_configs, p, Kind::ScrapeConfig, &c.namespaces) {
        read_in.extend(m.namespace());
        lines.push(format!("scfg:{}", rv(&m.metadata)));
    }
    for m in selected(&c.rules, p, Kind::PrometheusRule, &c.namespaces) {
        lines.push(format!("rule:{}", rv(&m.metadata)));
    }
    let inputs = |m: &kube::api::ObjectMeta| {
        m.namespace.as_ref().is_some_and(|n| read_in.contains(n))
            && m.labels
                .as_ref()
                .and_then(|l| l.get(steward_core::labels::MANAGED_BY))
                .map(String::as_str)
                != Some(OPERATOR_NAME)
    };
    lines.extend(
        c.secret_meta
            .state()
            .iter()
            .filter(|s| inputs(&s.metadata))
            .map(|s| format!("secret:{}", rv(&s.metadata))),
    );
    lines.extend(
        c.config_map_meta
            .state()
            .iter()
            .filter(|s| inputs(&s.metadata))
            .map(|s| format!("cm:{}", rv(&s.metadata))),
    );
    let owner = steward_core::labels::owner_selector("prometheus", &p.name_any(), OPERATOR_NAME);
    for kind in child_kinds() {
        for o in children.list(&kind, Some(&ns), &owner)? {
            lines.push(format!("{}:{}", kind.resource.kind, rv(&o.metadata)));
        }
    }
    lines.extend(
        c.role_bindings
            .state()
            .iter()
            .filter(|b| resources::is_discovery_binding_of(p, &b.metadata))
            .map(|b| format!("rb:{}", rv(&b.metadata))),
    );
    // The shared governing Service is owned by every Prometheus of the namespace.
    lines.extend(
        c.prometheuses
            .state()
            .iter()
            .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
            .map(|o| format!("peer:{:?}", o.metadata.uid)),
    );
    lines.sort();
    text.push_str(&lines.concat());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    Some(h.finish())
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

    /// The Prometheus a discovery binding serves, when it still exists (a binding deleted or
    /// changed by someone else is put back).
    fn binding_owner(&self, m: &kube::api::ObjectMeta) -> Vec<ObjectRef<Prometheus>> {
        let labels = m.labels.clone().unwrap_or_default();
        let (Some(ns), Some(name)) = (
            labels.get(resources::PROMETHEUS_NAMESPACE_LABEL),
            labels.get(steward_core::labels::INSTANCE),
        ) else {
            return Vec::new();
        };
        let r = ObjectRef::new(name).within(ns);
        if self.prometheuses.get(&r).is_some() {
            vec![r]
        } else {
            Vec::new()
        }
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
    .chain(resources::binding_name_problem(obj))
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
    /// What the user should know although everything applied.
    pub notes: Vec<String>,
    /// Objects we would write that belong to someone else (nothing was written).
    pub conflict: Option<String>,
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
    } else if let Some(conflict) = &outcome.conflict {
        (Status::False, "ChildConflict", conflict.clone())
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
        let (s, r, mut m) = if accepted + rejected == 0 {
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
        };
        for note in &outcome.notes {
            m.push_str("; ");
            m.push_str(note);
        }
        (s, r, m)
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

/// Namespace name → labels, for the discovery checks.
type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;
/// Where each admitted monitor discovers (`None`: every namespace).
type Wanted = BTreeMap<(Kind, String, String), Option<BTreeSet<String>>>;

/// What discovery a Prometheus in `prom_ns` may have.
struct Admission<'a> {
    prom_ns: &'a str,
    namespaces: &'a NamespaceLabels,
    policy: Policy,
}

/// Keeps the monitors whose discovery `adm` allows; the others become rejections. Pure.
fn admit<K: Resource>(
    adm: &Admission<'_>,
    monitors: Vec<K>,
    kind: Kind,
    selector: impl Fn(&K) -> Option<&crate::crd::common::NamespaceSelector>,
    wanted: &mut Wanted,
    refused: &mut Vec<Rejection>,
) -> Vec<K> {
    let mut kept = Vec::with_capacity(monitors.len());
    for m in monitors {
        let ns = m.meta().namespace.clone().unwrap_or_default();
        let name = m.meta().name.clone().unwrap_or_default();
        let sel = selector(&m);
        let what = match sel {
            Some(s) if s.any => "namespaceSelector.any",
            Some(s) if !s.match_names.is_empty() => "namespaceSelector.matchNames",
            _ => "the monitor's own namespace",
        };
        let want = discovery::monitor_namespaces(sel, &ns);
        match discovery::check(adm.prom_ns, want.as_ref(), adm.namespaces, adm.policy, what) {
            Ok(()) => {
                wanted.insert((kind, ns, name), want);
                kept.push(m);
            }
            Err(r) => refused.push(Rejection {
                object: config::ObjectRef {
                    kind,
                    namespace: ns,
                    name,
                },
                reason: r.reason,
                message: r.message,
            }),
        }
    }
    kept
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
        if let Some(w) = wanted.get(&(o.kind, o.namespace.clone(), o.name.clone())) {
            scope.add(w.clone());
        }
    }
    scope
}

/// The namespaces of `p`'s Alertmanager endpoints, or why it may not discover there.
fn alerting_namespaces(
    p: &Prometheus,
    namespaces: &NamespaceLabels,
    policy: Policy,
) -> Result<BTreeSet<String>, String> {
    let own = p.namespace().unwrap_or_default();
    let mut out = BTreeSet::new();
    let ams = p
        .spec
        .alerting
        .as_ref()
        .map(|a| a.alertmanagers.as_slice())
        .unwrap_or_default();
    for (i, am) in ams.iter().enumerate() {
        let ns = am
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| own.clone());
        let want = BTreeSet::from([ns]);
        let what = format!("alerting.alertmanagers[{i}].namespace");
        discovery::check(&own, Some(&want), namespaces, policy, &what)
            .map_err(|r| format!("{}: {}", r.reason.as_str(), r.message))?;
        out.extend(want);
    }
    Ok(out)
}

async fn reconcile(obj: Arc<Prometheus>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Nothing is written before every watch cache is filled (after a start or a failover);
    // `run` reconciles everything once they are.
    if !*ctx.caches.ready.borrow() {
        return Ok(Action::await_change());
    }
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
    // The cache may not have seen a binding created just before the deletion: ask the API.
    let api: Api<RoleBinding> = Api::all(ctx.client.clone());
    let lp = ListParams::default().labels(&format!(
        "{},{}={}",
        steward_core::labels::to_selector(&steward_core::labels::owner_selector(
            "prometheus",
            &obj.name_any(),
            OPERATOR_NAME
        )),
        resources::PROMETHEUS_NAMESPACE_LABEL,
        obj.namespace().unwrap_or_default()
    ));
    let mut candidates: Vec<kube::api::ObjectMeta> = api
        .list_metadata(&lp)
        .await
        .map_err(|e| Error::Kube("list rolebindings", Box::new(e)))?
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
    prune_bindings(&ctx, &obj, &BTreeSet::new(), candidates).await?;
    prune_cluster_binding(&ctx, &obj, false).await?;
    if let Ok(mut last) = ctx.caches.last.lock() {
        last.remove(&ObjectRef::from_obj(obj.as_ref()));
    }
    Ok(Action::await_change())
}

async fn apply(obj: Arc<Prometheus>, ctx: Arc<Context>) -> Result<Action, Error> {
    let uid = obj.uid().unwrap_or_default();
    let cached = ctx.applier.quiet_for(&uid, CACHE_QUIET);
    // Nothing it reads changed since the last successful reconcile: nothing to write either,
    // and no request to make (an idle Prometheus costs the API nothing).
    let fp = fingerprint(&obj, &ctx.caches, &ctx.children);
    if cached && fp.is_some() && ctx.fingerprints.lock().ok().and_then(|f| f.get(&uid).copied()) == fp {
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    let action = apply_all(obj.clone(), ctx.clone(), cached).await?;
    if let (Some(fp), Ok(mut f)) = (fp, ctx.fingerprints.lock()) {
        f.insert(uid, fp);
    }
    Ok(action)
}

async fn apply_all(obj: Arc<Prometheus>, ctx: Arc<Context>, cached: bool) -> Result<Action, Error> {
    let name = obj.name_any();
    let ns = obj.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let api: Api<Prometheus> = Api::namespaced(ctx.client.clone(), &ns);
    let mut outcome = Outcome {
        problems: validate(&obj),
        ..Default::default()
    };
    let live = match cached.then(|| {
        ctx.children
            .get_as::<StatefulSet>(Some(&ns), &resources::base_name(&obj))
    }) {
        Some(Some(sts)) => sts,
        _ => live_statefulset(&ctx, &obj).await?,
    };
    outcome.replicas = live
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .map_or((0, 0), |st| (st.replicas, st.ready_replicas.unwrap_or(0)));
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
    // Validate discovery: a monitor reading where this Prometheus may not is rejected alone.
    let ns_labels: NamespaceLabels = namespaces
        .iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect();
    let alerting = match alerting_namespaces(&obj, &ns_labels, ctx.policy) {
        Ok(a) => a,
        Err(problem) => {
            outcome.problems.push(problem);
            return finish(&ctx, &api, &obj, &outcome, Duration::from_secs(300)).await;
        }
    };
    let mut wanted = Wanted::new();
    let mut refused = Vec::new();
    let adm = Admission {
        prom_ns: &ns,
        namespaces: &ns_labels,
        policy: ctx.policy,
    };
    let smons = admit(
        &adm,
        smons,
        Kind::ServiceMonitor,
        |m: &ServiceMonitor| m.spec.namespace_selector.as_ref(),
        &mut wanted,
        &mut refused,
    );
    let pmons = admit(
        &adm,
        pmons,
        Kind::PodMonitor,
        |m: &PodMonitor| m.spec.namespace_selector.as_ref(),
        &mut wanted,
        &mut refused,
    );
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
    let mut generated = match generated {
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
    generated.rejected.extend(refused);
    // The StatefulSet is built with the storage it can take (see storage_in_effect).
    let (storage, storage_note) = resources::storage_in_effect(&obj, live.as_ref());
    let mut sts_obj = obj.as_ref().clone();
    sts_obj.spec.storage = storage;
    outcome.notes.extend(storage_note);
    let tuning = Tuning {
        retention_size: config::tuning::retention_size_for(&sts_obj.spec),
        gomemlimit: config::tuning::gomemlimit_for(&sts_obj.spec),
    };

    // Build and apply.
    let gz = crate::reloader::gzip(generated.prometheus_yaml.as_bytes()).map_err(Error::Compress)?;
    let cms = resources::rule_configmaps(&obj, &generated);
    let mut desired = vec![
        Desired::namespaced(&resources::statefulset(
            &sts_obj,
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
    let selector = steward_core::labels::owner_selector("prometheus", &name, OPERATOR_NAME);
    let prune = [
        OwnedKind::namespaced::<StatefulSet>(),
        OwnedKind::namespaced::<Service>(),
        OwnedKind::namespaced::<Secret>(),
        OwnedKind::namespaced::<ConfigMap>(),
        OwnedKind::namespaced::<ServiceAccount>(),
    ];
    let written = async {
        ctx.applier
            .apply_owned(obj.as_ref(), &selector, desired, &prune)
            .await?;
        apply_discovery_bindings(&ctx, &obj, &generated, &wanted, &alerting).await?;
        apply_governing_service(&ctx, &ns).await
    };
    match written.await {
        Ok(()) => {}
        Err(Error::Apply(ApplyError::Conflict(conflicts))) => {
            let message = conflicts
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            let known = obj
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Reconciled"))
                .is_some_and(|c| c.reason == "ChildConflict" && c.message == message);
            if !known {
                ctx.recorder
                    .warning(obj.as_ref(), "ChildConflict", "Apply", message.clone())
                    .await;
            }
            outcome.conflict = Some(message);
            return finish(&ctx, &api, &obj, &outcome, Duration::from_secs(60)).await;
        }
        Err(e) => return Err(e),
    }

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

/// Discovery bindings: labelled, not owned (owner references cannot cross namespaces),
/// removed by the finalizer. A binding of that name that is not ours is left alone.
async fn apply_discovery_bindings(
    ctx: &Context,
    obj: &Prometheus,
    generated: &Generated,
    wanted: &Wanted,
    alerting: &BTreeSet<String>,
) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let scope = discovery_scope(&ns, generated, wanted, alerting);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for b in resources::discovery_role_bindings(obj, &scope.namespaces) {
        let bns = b.namespace().unwrap_or_default();
        let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &bns);
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
            // Not in the cache of our bindings: absent, or someone else's.
            None => {
                // (Ours, just written and not in the cache yet, is fine.)
                if let Some(foreign) = api
                    .get_opt(&b.name_any())
                    .await
                    .map_err(|e| Error::Kube("get rolebinding", Box::new(e)))?
                    .filter(|live| !resources::is_discovery_binding_of(obj, &live.metadata))
                {
                    return Err(Error::Apply(ApplyError::Conflict(vec![steward_core::Conflict {
                        kind: "RoleBinding".into(),
                        name: format!("{bns}/{}", foreign.name_any()),
                        holder: "was not created by this operator".into(),
                    }])));
                }
            }
        }
        api.patch(&b.name_any(), &params, &Patch::Apply(typed(&b)?))
            .await
            .map_err(|e| Error::Kube("apply rolebinding", Box::new(e)))?;
    }
    let cached: Vec<kube::api::ObjectMeta> = ctx
        .caches
        .role_bindings
        .state()
        .iter()
        .map(|b| b.metadata.clone())
        .collect();
    prune_bindings(ctx, obj, &scope.namespaces, cached).await?;
    prune_cluster_binding(ctx, obj, scope.cluster_wide).await
}

async fn live_statefulset(ctx: &Context, obj: &Prometheus) -> Result<Option<StatefulSet>, Error> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    api.get_opt(&resources::base_name(obj))
        .await
        .map_err(|e| Error::Kube("get statefulset", Box::new(e)))
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

/// A typed object with apiVersion and kind, as apply needs.
fn typed<K: Resource<DynamicType = ()> + Serialize>(obj: &K) -> Result<serde_json::Value, Error> {
    let mut v = serde_json::to_value(obj).map_err(|source| Error::Serialize {
        kind: K::kind(&()).to_string(),
        name: obj.meta().name.clone().unwrap_or_default(),
        source,
    })?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), K::api_version(&()).into());
        m.insert("kind".into(), K::kind(&()).into());
    }
    Ok(v)
}

/// Deletes the RoleBindings of `obj` among `candidates` that are not in `keep` (namespaces).
async fn prune_bindings(
    ctx: &Context,
    obj: &Prometheus,
    keep: &BTreeSet<String>,
    candidates: Vec<kube::api::ObjectMeta>,
) -> Result<(), Error> {
    let want = resources::discovery_binding_name(obj);
    let mut done = BTreeSet::new();
    for b in candidates {
        let (Some(bns), Some(bname)) = (b.namespace.clone(), b.name.clone()) else {
            continue;
        };
        let wanted = bname == want && keep.contains(&bns);
        if wanted
            || !resources::is_discovery_binding_of(obj, &b)
            || !done.insert((bns.clone(), bname.clone()))
        {
            continue;
        }
        let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &bns);
        match api.delete(&bname, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Kube("delete rolebinding", Box::new(e))),
        }
    }
    Ok(())
}

/// Applies (`wanted`) or removes `obj`'s ClusterRoleBinding. Only with cluster-wide
/// discovery allowed: otherwise the operator has no RBAC for ClusterRoleBindings at all.
async fn prune_cluster_binding(ctx: &Context, obj: &Prometheus, wanted: bool) -> Result<(), Error> {
    if !ctx.policy.cluster_wide {
        return Ok(());
    }
    let key = ObjectRef::from_obj(obj);
    let api: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    let crb = resources::discovery_cluster_role_binding(obj);
    let unbound = &ctx.caches.cluster_unbound;
    if wanted {
        if let Ok(mut u) = unbound.lock() {
            u.remove(&key);
        }
        api.patch(
            &crb.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(typed(&crb)?),
        )
        .await
        .map_err(|e| Error::Kube("apply clusterrolebinding", Box::new(e)))?;
        return Ok(());
    }
    // Delete once after a start (it may exist from before) or after binding, not every time.
    if unbound.lock().is_ok_and(|u| u.contains(&key)) {
        return Ok(());
    }
    match api.delete(&crb.name_any(), &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(Error::Kube("delete clusterrolebinding", Box::new(e))),
    }
    if let Ok(mut u) = unbound.lock() {
        u.insert(key);
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
                .map_err(|e| Error::Kube("get governing service", Box::new(e)))?;
            let ours = |s: &Service| {
                s.labels()
                    .get(steward_core::labels::MANAGED_BY)
                    .map(String::as_str)
                    == Some(OPERATOR_NAME)
            };
            if let Some(live) = live.filter(|s| !ours(s)) {
                return Err(Error::Apply(ApplyError::Conflict(vec![steward_core::Conflict {
                    kind: "Service".into(),
                    name: format!("{ns}/{}", live.name_any()),
                    holder: "was not created by this operator".into(),
                }])));
            }
        }
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

/// Keeps watch events of Prometheus objects in `scope` (every namespace when `None`).
fn in_scope(scope: &Option<BTreeSet<String>>, ev: &watcher::Event<Prometheus>) -> bool {
    let Some(scope) = scope else { return true };
    match ev {
        watcher::Event::Apply(p) | watcher::Event::Delete(p) | watcher::Event::InitApply(p) => {
            p.namespace().is_some_and(|ns| scope.contains(&ns))
        }
        watcher::Event::Init | watcher::Event::InitDone => true,
    }
}

/// Marks `flag` once `store` has listed its objects.
async fn wait_ready<K>(store: Store<K>, flag: Arc<std::sync::atomic::AtomicBool>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    // The readiness signal wakes only its latest waiter and others wait on some of these
    // stores too: poll again now and then instead of waiting once.
    loop {
        match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            Ok(Ok(())) => {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
}

/// Runs the Prometheus controller until the runtime shuts down. `reloader_image` is the image
/// of the config-reloader sidecar (this operator's own image); `policy` is what discovery
/// the cluster admin allows.
///
/// One set of watches whatever `--namespace` says: Prometheus objects of other namespaces are
/// dropped from the watch before they reach the cache, while monitors, rules, scrape configs,
/// namespaces, Secrets and ConfigMaps are watched everywhere (a Prometheus may select them in
/// any namespace).
pub async fn run(rt: ControllerRuntime, metrics: PrometheusMetrics, reloader_image: String, policy: Policy) {
    let client = rt.client.clone();
    let scope: Option<BTreeSet<String>> =
        (!rt.namespaces.is_empty()).then(|| rt.namespaces.iter().cloned().collect());
    let (prometheuses, prom_w) = reflector::store();
    let prom_stream = watcher(Api::<Prometheus>::all(client.clone()), wc())
        .default_backoff()
        .filter(move |ev| std::future::ready(ev.as_ref().map_or(true, |ev| in_scope(&scope, ev))))
        .modify(drop_managed_fields)
        .reflect(prom_w)
        .applied_objects();
    let controller = Controller::for_stream(prom_stream, prometheuses.clone());
    let (namespaces, ns_w) = reflector::store();
    let (service_monitors, smon_w) = reflector::store();
    let (pod_monitors, pmon_w) = reflector::store();
    let (rules, rule_w) = reflector::store();
    let (scrape_configs, scfg_w) = reflector::store();
    let (role_bindings, rb_w) = reflector::store();
    let (secret_meta, secret_w) = reflector::store();
    let (config_map_meta, cm_w) = reflector::store();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let caches = Caches {
        prometheuses: prometheuses.clone(),
        namespaces: namespaces.clone(),
        service_monitors: service_monitors.clone(),
        pod_monitors: pod_monitors.clone(),
        rules: rules.clone(),
        scrape_configs: scrape_configs.clone(),
        role_bindings: role_bindings.clone(),
        secret_meta: secret_meta.clone(),
        config_map_meta: config_map_meta.clone(),
        last: Arc::default(),
        cluster_unbound: Arc::default(),
        ready: ready_rx.clone(),
    };
    // Every cache shows in /readyz, and the first reconcile waits for all of them.
    let r = &rt.readiness;
    let flags = [
        r.register_cache("prometheus/prometheuses"),
        r.register_cache("prometheus/namespaces"),
        r.register_cache("prometheus/servicemonitors"),
        r.register_cache("prometheus/podmonitors"),
        r.register_cache("prometheus/prometheusrules"),
        r.register_cache("prometheus/scrapeconfigs"),
        r.register_cache("prometheus/rolebindings"),
        r.register_cache("prometheus/secrets"),
        r.register_cache("prometheus/configmaps"),
    ];
    let waits = vec![
        tokio::spawn(wait_ready(prometheuses, flags[0].clone())),
        tokio::spawn(wait_ready(namespaces, flags[1].clone())),
        tokio::spawn(wait_ready(service_monitors, flags[2].clone())),
        tokio::spawn(wait_ready(pod_monitors, flags[3].clone())),
        tokio::spawn(wait_ready(rules, flags[4].clone())),
        tokio::spawn(wait_ready(scrape_configs, flags[5].clone())),
        tokio::spawn(wait_ready(role_bindings, flags[6].clone())),
        tokio::spawn(wait_ready(secret_meta, flags[7].clone())),
        tokio::spawn(wait_ready(config_map_meta, flags[8].clone())),
    ];
    tokio::spawn(async move {
        for w in waits {
            let _ = w.await;
        }
        if flags.iter().all(|f| f.load(std::sync::atomic::Ordering::SeqCst)) {
            let _ = ready_tx.send(true);
        }
        // Keep the sender, so the receivers never see the channel closed.
        ready_tx.closed().await;
    });
    let mut all_ready = ready_rx;
    let reconcile_all = futures::stream::once(async move {
        let _ = all_ready.wait_for(|r| *r).await;
    });

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
    let ours = format!("{}={OPERATOR_NAME}", steward_core::labels::MANAGED_BY);
    let rb_stream = watcher(Api::<RoleBinding>::all(client.clone()), wc().labels(&ours))
        .default_backoff()
        .modify(drop_managed_fields)
        .reflect(rb_w)
        .touched_objects();
    // Metadata only, and only what tells a change: names, labels, resourceVersions.
    fn thin<K>(o: &mut kube::core::PartialObjectMeta<K>) {
        o.metadata.managed_fields = None;
        o.metadata.annotations = None;
    }
    let secret_stream = watcher(
        Api::<kube::core::PartialObjectMeta<Secret>>::all(client.clone()),
        wc(),
    )
    .default_backoff()
    .modify(thin)
    .reflect(secret_w)
    .touched_objects();
    // ConfigMaps feed the configuration too (TLS CAs, for instance).
    let cm_stream = watcher(
        Api::<kube::core::PartialObjectMeta<ConfigMap>>::all(client.clone()),
        wc(),
    )
    .default_backoff()
    .modify(thin)
    .reflect(cm_w)
    .touched_objects();
    let (c1, c2, c3, c4, c5, c6, c7) = (
        caches.clone(),
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
    // Our own Secrets and ConfigMaps (generated configs, rule files) never feed a
    // configuration.
    let input_in = |c: &Caches, m: &kube::api::ObjectMeta| {
        let ours = m
            .labels
            .as_ref()
            .and_then(|l| l.get(steward_core::labels::MANAGED_BY))
            .map(String::as_str)
            == Some(OPERATOR_NAME);
        if ours {
            Vec::new()
        } else {
            c.reading_secrets_in(m.namespace.as_deref().unwrap_or_default())
        }
    };
    let c8 = caches.clone();
    // Our children wake their Prometheus and fill the caches a steady reconcile reads.
    let (children, child_streams) = Children::watch_cluster_wide(&rt, OPERATOR_NAME, &cached_kinds());
    let mut controller = controller;
    for s in child_streams {
        controller = controller.owns_stream_with(s.stream, s.resource);
    }
    let controller = controller
        .reconcile_all_on(reconcile_all)
        .watches_stream(ns_stream, move |_: Namespace| c1.all())
        .watches_stream(smon_stream, move |o: ServiceMonitor| f_smon(&c2, &o.metadata))
        .watches_stream(pmon_stream, move |o: PodMonitor| f_pmon(&c3, &o.metadata))
        .watches_stream(rule_stream, move |o: PrometheusRule| f_rule(&c4, &o.metadata))
        .watches_stream(scfg_stream, move |o: ScrapeConfig| f_scfg(&c5, &o.metadata))
        .watches_stream(rb_stream, move |b: RoleBinding| c7.binding_owner(&b.metadata))
        .watches_stream(secret_stream, move |s: kube::core::PartialObjectMeta<Secret>| {
            input_in(&c6, &s.metadata)
        })
        .watches_stream(cm_stream, move |s: kube::core::PartialObjectMeta<ConfigMap>| {
            input_in(&c8, &s.metadata)
        });
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: EventRecorder::new(client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
        applier: Applier::new(client.clone(), FIELD_MANAGER).with_children(children.clone()),
        children,
        fingerprints: Mutex::default(),
        reloader_image,
        caches,
        metrics,
        policy,
    });
    steward_core::controller::run(&rt, CONTROLLER, controller, ctx, reconcile).await;
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
    fn a_trimmed_statefulset_still_parses_with_what_the_reconcile_reads() {
        let sts = resources::statefulset(
            &prom(serde_json::json!({"storage": {"volumeClaimTemplate": {"size": "10Gi"}}})),
            "img",
            1,
            &Tuning::default(),
        );
        let ar = kube::api::ApiResource::erase::<StatefulSet>(&());
        let mut o: kube::api::DynamicObject =
            serde_json::from_value(serde_json::to_value(&sts).unwrap()).unwrap();
        o.types = Some(kube::api::TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        });
        statefulset_trim(&mut o);
        let back: StatefulSet = o.try_parse().unwrap();
        let (storage, note) = resources::storage_in_effect(
            &prom(serde_json::json!({"storage": {"volumeClaimTemplate": {"size": "10Gi"}}})),
            Some(&back),
        );
        assert!(note.is_none(), "{note:?}");
        assert!(storage.is_some());
        assert!(back.spec.template.spec.is_none());
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
            role_bindings: reflector::store().0,
            secret_meta: reflector::store().0,
            config_map_meta: reflector::store().0,
            last: Arc::default(),
            cluster_unbound: Arc::default(),
            ready: tokio::sync::watch::channel(true).1,
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
