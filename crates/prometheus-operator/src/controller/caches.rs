//! The watch caches the controller reads instead of the API, who to wake when a cached object
//! changes, and the fingerprint that lets an idle reconcile send nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DynamicObject, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use steward_core::apply::OwnedKind;
use steward_core::children::{self, Children};

use crate::OPERATOR_NAME;
use crate::config::{self, Kind};
use crate::crd::{PodMonitor, Prometheus, PrometheusRule, ScrapeConfig, ServiceMonitor};
use crate::resources;

/// What one Prometheus selected at its last reconcile: `(kind, namespace, name)`.
pub(super) type SelectedSet = BTreeSet<(Kind, String, String)>;
/// Per Prometheus: the objects it selected and the namespaces whose Secrets it read.
pub(super) type LastSeen = HashMap<ObjectRef<Prometheus>, (SelectedSet, BTreeSet<String>)>;

/// Caches shared by the reconciler and the watch mappers.
#[derive(Clone)]
pub(super) struct Caches {
    pub prometheuses: Store<Prometheus>,
    pub namespaces: Store<Namespace>,
    pub service_monitors: Store<ServiceMonitor>,
    pub pod_monitors: Store<PodMonitor>,
    pub rules: Store<PrometheusRule>,
    pub scrape_configs: Store<ScrapeConfig>,
    /// This operator's RoleBindings (discovery bindings, and those of earlier versions).
    pub role_bindings: Store<RoleBinding>,
    /// Names, labels and resourceVersions of every Secret and ConfigMap (never their data):
    /// what tells whether a configuration's inputs changed without reading them.
    pub secret_meta: Store<PartialObjectMeta<Secret>>,
    pub config_map_meta: Store<PartialObjectMeta<ConfigMap>>,
    /// Upstream prometheus-operator's objects (empty without their CRDs or with
    /// `--upstream-monitors=false`).
    pub upstream: super::upstream::UpstreamCaches,
    /// What each Prometheus selected at its last reconcile, and the namespaces whose Secrets
    /// it read; used to find who to re-render.
    pub last: Arc<Mutex<LastSeen>>,
    /// Prometheus objects known to have no ClusterRoleBinding (cluster-wide discovery only).
    pub cluster_unbound: Arc<Mutex<HashSet<ObjectRef<Prometheus>>>>,
    /// True once every watch cache above has listed its objects: until then a reconcile
    /// would see too few monitors or bindings and thin the configuration or prune RBAC.
    pub ready: tokio::sync::watch::Receiver<bool>,
}

/// The kinds the controller owns, for pruning.
pub(super) fn child_kinds() -> Vec<OwnedKind> {
    cached_kinds().into_iter().map(|(k, _)| k).collect()
}

/// The kinds of child the controller caches (every object labelled as ours), and what of them
/// it keeps: of the StatefulSet its claim templates and status, metadata otherwise (the
/// generated config Secret and rule ConfigMaps are large and never read back).
pub(super) fn cached_kinds() -> Vec<(OwnedKind, children::Trim)> {
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
pub(super) fn statefulset_trim(o: &mut DynamicObject) {
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

/// Whether `m` is one of this operator's own objects (a generated config Secret or rule
/// ConfigMap): those never feed a configuration.
pub(super) fn is_ours(m: &ObjectMeta) -> bool {
    m.labels
        .as_ref()
        .and_then(|l| l.get(steward_core::labels::MANAGED_BY))
        .map(String::as_str)
        == Some(OPERATOR_NAME)
}

/// `namespace/name@resourceVersion;`, what the fingerprint hashes of each object.
fn version_of(m: &ObjectMeta) -> String {
    format!(
        "{}/{}@{};",
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
        m.resource_version.as_deref().unwrap_or_default()
    )
}

impl Caches {
    /// The objects of `kind` that `p` selects, cloned out of `store` in a stable order. Only
    /// the selected ones are cloned: with many teams, copying every monitor for every
    /// reconcile dominated the operator's memory.
    pub fn selected<K>(&self, store: &Store<K>, p: &Prometheus, kind: Kind) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let mut v: Vec<K> = store
            .state()
            .iter()
            .filter(|o| {
                let ns = o.meta().namespace.as_deref().unwrap_or_default();
                self.selects(p, kind, ns, o.labels())
            })
            .map(|o| o.as_ref().clone())
            .collect();
        v.sort_by(|a, b| {
            (a.meta().namespace.as_deref(), a.meta().name.as_deref())
                .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
        });
        v
    }

    /// [`config::selects`] with the namespace's labels from the cache.
    pub fn selects(
        &self,
        p: &Prometheus,
        kind: Kind,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        let ns_labels = self
            .namespaces
            .get(&ObjectRef::new(namespace))
            .map(|n| n.labels().clone());
        config::selects(p, kind, namespace, labels, ns_labels.as_ref())
    }

    /// The upstream objects of `kind` that `p` selects, in a stable order (see [`Self::selected`]).
    pub fn selected_upstream(&self, p: &Prometheus, kind: Kind) -> Vec<DynamicObject> {
        let mut v: Vec<DynamicObject> = self
            .upstream
            .of(kind)
            .state()
            .iter()
            .filter(|o| {
                let ns = o.metadata.namespace.as_deref().unwrap_or_default();
                self.selects(p, kind, ns, o.labels())
            })
            .map(|o| o.as_ref().clone())
            .collect();
        v.sort_by(|a, b| {
            (a.metadata.namespace.as_deref(), a.metadata.name.as_deref())
                .cmp(&(b.metadata.namespace.as_deref(), b.metadata.name.as_deref()))
        });
        v
    }

    /// The other Prometheus objects `p` federates, cloned out of the cache, sorted.
    pub fn federated(&self, p: &Prometheus) -> Vec<Prometheus> {
        if p.spec.federation.is_none() {
            return Vec::new();
        }
        let mut v: Vec<Prometheus> = self
            .prometheuses
            .state()
            .iter()
            .filter(|o| {
                let ns_labels = o
                    .namespace()
                    .and_then(|ns| self.namespaces.get(&ObjectRef::new(&ns)))
                    .map(|n| n.labels().clone());
                config::federation::federates(p, o, ns_labels.as_ref())
            })
            .map(|o| o.as_ref().clone())
            .collect();
        v.sort_by_key(|o| (o.namespace(), o.name_any()));
        v
    }

    /// The Prometheus objects to wake when `changed` changes: every one with a federation
    /// (few, and the fingerprint lets those it does not concern send nothing), but itself.
    pub fn federating(&self, changed: &Prometheus) -> Vec<ObjectRef<Prometheus>> {
        let me = ObjectRef::from_obj(changed);
        self.prometheuses
            .state()
            .iter()
            .filter(|p| p.spec.federation.is_some())
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .filter(|r| *r != me)
            .collect()
    }

    /// Prometheus objects that select (or selected) an object of `kind`.
    pub fn who_selects(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<ObjectRef<Prometheus>> {
        let mut out: Vec<ObjectRef<Prometheus>> = self
            .prometheuses
            .state()
            .iter()
            .filter(|p| self.selects(p, kind, namespace, labels))
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
    pub fn binding_owner(&self, m: &ObjectMeta) -> Vec<ObjectRef<Prometheus>> {
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

    /// Every Prometheus in the cache.
    pub fn all(&self) -> Vec<ObjectRef<Prometheus>> {
        self.prometheuses
            .state()
            .iter()
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect()
    }

    /// The Prometheus objects whose last configuration read Secrets in `namespace`.
    pub fn reading_secrets_in(&self, namespace: &str) -> Vec<ObjectRef<Prometheus>> {
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

    /// The Prometheus objects to wake for a change of a Secret or ConfigMap.
    pub fn reading_input(&self, m: &ObjectMeta) -> Vec<ObjectRef<Prometheus>> {
        if is_ours(m) {
            return Vec::new();
        }
        self.reading_secrets_in(m.namespace.as_deref().unwrap_or_default())
    }

    /// A fingerprint of everything a reconcile of `p` reads: the Prometheus itself, the
    /// namespaces, the objects it selects, the Secrets and ConfigMaps where those live, its
    /// children and its discovery bindings, all by resourceVersion. `None` while a cache is not
    /// filled. When it matches the last successful reconcile's, nothing it would write can
    /// differ.
    pub fn fingerprint(&self, p: &Prometheus, children: &Children) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        if !children.is_ready() {
            return None;
        }
        let ns = p.namespace()?;
        let spec = serde_json::to_string(&p.spec).ok()?;
        let mut text = format!(
            "{:?}|{:?}|{:?}|{spec}|",
            p.metadata.uid, p.metadata.generation, p.metadata.deletion_timestamp
        );
        let mut lines: Vec<String> = self
            .namespaces
            .state()
            .iter()
            .map(|n| version_of(&n.metadata))
            .collect();
        let mut read_in = BTreeSet::from([ns.clone()]);
        let mut add = |tag: &str, m: &ObjectMeta, reads_secrets: bool| {
            if reads_secrets {
                read_in.extend(m.namespace.clone());
            }
            lines.push(format!("{tag}:{}", version_of(m)));
        };
        for m in self.selected(&self.service_monitors, p, Kind::ServiceMonitor) {
            add("smon", &m.metadata, true);
        }
        for m in self.selected(&self.pod_monitors, p, Kind::PodMonitor) {
            add("pmon", &m.metadata, true);
        }
        for m in self.selected(&self.scrape_configs, p, Kind::ScrapeConfig) {
            add("scfg", &m.metadata, true);
        }
        for m in self.selected(&self.rules, p, Kind::PrometheusRule) {
            add("rule", &m.metadata, false);
        }
        // A federated Prometheus' name, namespace and shards shape the federation jobs.
        for o in self.federated(p) {
            add("fed", &o.metadata, false);
        }
        for (kind, tag) in [
            (Kind::ServiceMonitor, "u-smon"),
            (Kind::PodMonitor, "u-pmon"),
            (Kind::ScrapeConfig, "u-scfg"),
            (Kind::PrometheusRule, "u-rule"),
        ] {
            for m in self.selected_upstream(p, kind) {
                add(tag, &m.metadata, kind != Kind::PrometheusRule);
            }
        }
        let input = |m: &ObjectMeta| m.namespace.as_ref().is_some_and(|n| read_in.contains(n)) && !is_ours(m);
        let secrets = self.secret_meta.state();
        let config_maps = self.config_map_meta.state();
        let inputs = (secrets.iter().map(|s| ("secret", &s.metadata)))
            .chain(config_maps.iter().map(|c| ("cm", &c.metadata)))
            .filter(|(_, m)| input(m))
            .map(|(tag, m)| format!("{tag}:{}", version_of(m)));
        lines.extend(inputs);
        let owner = steward_core::labels::owner_selector("prometheus", &p.name_any(), OPERATOR_NAME);
        for kind in child_kinds() {
            for o in children.list(&kind, Some(&ns), &owner)? {
                lines.push(format!("{}:{}", kind.resource.kind, version_of(&o.metadata)));
            }
        }
        lines.extend(
            self.role_bindings
                .state()
                .iter()
                .filter(|b| resources::is_discovery_binding_of(p, &b.metadata))
                .map(|b| format!("rb:{}", version_of(&b.metadata))),
        );
        // The shared governing Service is owned by every Prometheus of the namespace.
        lines.extend(
            self.prometheuses
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher};

    use crate::controller::tests::prom;
    use crate::resources::Tuning;

    #[test]
    fn a_trimmed_statefulset_still_parses_with_what_the_reconcile_reads() {
        let sts = resources::statefulset(
            &prom(serde_json::json!({"storage": {"volumeClaimTemplate": {"size": "10Gi"}}})),
            "img",
            1,
            &Tuning::default(),
        );
        let ar = kube::api::ApiResource::erase::<StatefulSet>(&());
        let mut o: DynamicObject = serde_json::from_value(serde_json::to_value(&sts).unwrap()).unwrap();
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
            upstream: crate::controller::upstream::UpstreamCaches::empty(),
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
}
