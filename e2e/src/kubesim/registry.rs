//! Which resources the API server serves: the built-in table plus one entry per served
//! version of every established CustomResourceDefinition.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::schema::CompiledSchema;

/// How the `scale` subresource maps onto an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// JSON path (`.spec.replicas`) of the desired replica count.
    pub spec_replicas: String,
    /// JSON path of the observed replica count.
    pub status_replicas: String,
    /// JSON path of the label selector string, if any.
    pub label_selector: Option<String>,
}

/// One served resource in one version.
#[derive(Clone)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name, e.g. `deployments`.
    pub plural: String,
    /// Singular name, e.g. `deployment`.
    pub singular: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories for kubectl (`kubectl get all`, `kubectl get steward`).
    pub categories: Vec<String>,
    /// Has a status subresource: writes to the main resource ignore status.
    pub status: bool,
    /// Scale subresource, if any.
    pub scale: Option<ScalePaths>,
    /// Other subresources served (`log`, `binding`, `token`, `finalize`).
    pub extra_subresources: Vec<&'static str>,
    /// The CRD schema of a custom resource version.
    pub schema: Option<Arc<CompiledSchema>>,
    /// additionalPrinterColumns of a custom resource version.
    pub printer_columns: Vec<Value>,
    /// Whether this is a custom resource.
    pub custom: bool,
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.gvr())
    }
}

impl ResourceType {
    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.v1.apps` style identifier.
    pub fn gvr(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }

    /// The storage key: group and plural (all versions share storage).
    pub fn storage_key(&self) -> StorageKey {
        // events.k8s.io/v1 Events are core Events in another shape: one storage for both.
        if self.group == "events.k8s.io" && self.plural == "events" {
            return StorageKey {
                group: String::new(),
                plural: self.plural.clone(),
            };
        }
        StorageKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    /// `deployments.apps` or `pods`, as error messages name resources.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps`, as validation errors name kinds.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Served verbs, for discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// Storage identity of a resource, independent of version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageKey {
    /// API group.
    pub group: String,
    /// Plural name.
    pub plural: String,
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    scale: bool,
    extra: &'static [&'static str],
    categories: &'static [&'static str],
}

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        plural,
        kind,
        namespaced,
        short,
        status,
        scale: false,
        extra: &[],
        categories: &[],
    }
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "namespaces", "Namespace", false, &["ns"], true),
    Builtin {
        extra: &["log", "binding", "eviction"],
        categories: &["all"],
        ..b("", "v1", "pods", "Pod", true, &["po"], true)
    },
    Builtin {
        categories: &["all"],
        ..b("", "v1", "services", "Service", true, &["svc"], true)
    },
    b("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
    b("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
    b("", "v1", "secrets", "Secret", true, &[], false),
    Builtin {
        extra: &["token"],
        ..b(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
        )
    },
    b(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        true,
    ),
    b(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        &["pv"],
        true,
    ),
    b("", "v1", "events", "Event", true, &["ev"], false),
    b("", "v1", "nodes", "Node", false, &["no"], true),
    b(
        "",
        "v1",
        "resourcequotas",
        "ResourceQuota",
        true,
        &["quota"],
        true,
    ),
    b("events.k8s.io", "v1", "events", "Event", true, &["ev"], false),
    Builtin {
        scale: true,
        categories: &["all"],
        ..b("apps", "v1", "deployments", "Deployment", true, &["deploy"], true)
    },
    Builtin {
        scale: true,
        categories: &["all"],
        ..b("apps", "v1", "replicasets", "ReplicaSet", true, &["rs"], true)
    },
    Builtin {
        scale: true,
        categories: &["all"],
        ..b("apps", "v1", "statefulsets", "StatefulSet", true, &["sts"], true)
    },
    b(
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
        &[],
        false,
    ),
    Builtin {
        categories: &["all"],
        ..b("batch", "v1", "jobs", "Job", true, &[], true)
    },
    Builtin {
        categories: &["all"],
        ..b("batch", "v1", "cronjobs", "CronJob", true, &["cj"], true)
    },
    Builtin {
        categories: &["all"],
        ..b("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true)
    },
    b(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        &["ing"],
        true,
    ),
    b(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        false,
        &["pc"],
        false,
    ),
    b(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        true,
    ),
    b("coordination.k8s.io", "v1", "leases", "Lease", true, &[], false),
    b(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        &[],
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
];

fn builtin_types() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| ResourceType {
            group: b.group.to_string(),
            version: b.version.to_string(),
            plural: b.plural.to_string(),
            singular: b.kind.to_lowercase(),
            kind: b.kind.to_string(),
            namespaced: b.namespaced,
            short_names: b.short.iter().map(|s| s.to_string()).collect(),
            categories: b.categories.iter().map(|s| s.to_string()).collect(),
            status: b.status,
            scale: b.scale.then(|| ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: Some(".status.selector".into()),
            }),
            extra_subresources: b.extra.to_vec(),
            schema: None,
            printer_columns: Vec::new(),
            custom: false,
        })
        .collect()
}

/// The set of served resources. Cheap to clone (shared entries).
#[derive(Clone, Debug)]
pub struct Registry {
    /// group → version → plural → type.
    types: BTreeMap<String, BTreeMap<String, BTreeMap<String, Arc<ResourceType>>>>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut r = Registry {
            types: BTreeMap::new(),
        };
        for t in builtin_types() {
            r.insert(t);
        }
        r
    }
}

impl Registry {
    fn insert(&mut self, t: ResourceType) {
        self.types
            .entry(t.group.clone())
            .or_default()
            .entry(t.version.clone())
            .or_default()
            .insert(t.plural.clone(), Arc::new(t));
    }

    /// The type served at group/version/plural.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types.get(group)?.get(version)?.get(plural).cloned()
    }

    /// All served types of a group version.
    pub fn group_version(&self, group: &str, version: &str) -> Option<Vec<Arc<ResourceType>>> {
        self.types
            .get(group)?
            .get(version)
            .map(|m| m.values().cloned().collect())
    }

    /// Groups with their versions, in a stable order (preferred version first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        self.types
            .iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, vs)| {
                let mut versions: Vec<String> = vs.keys().cloned().collect();
                versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
                (g.clone(), versions)
            })
            .collect()
    }

    /// Every type, every version.
    pub fn all(&self) -> Vec<Arc<ResourceType>> {
        self.types
            .values()
            .flat_map(|vs| vs.values())
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// Every version of the resource stored under `key`.
    pub fn versions_of(&self, key: &StorageKey) -> Vec<Arc<ResourceType>> {
        self.types
            .get(&key.group)
            .map(|vs| vs.values().filter_map(|m| m.get(&key.plural).cloned()).collect())
            .unwrap_or_default()
    }

    /// The type for an apiVersion and kind (for owner references, RBAC, GC).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.types
            .get(group)?
            .get(version)?
            .values()
            .find(|t| t.kind == kind)
            .cloned()
    }

    /// Replaces the custom resources served from the CRD `crd` (a JSON object). Returns an
    /// error message when the CRD cannot be served (bad schema).
    pub fn register_crd(&mut self, crd: &Value) -> Result<(), String> {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default().to_string();
        let names = &spec["names"];
        let plural = names["plural"].as_str().unwrap_or_default().to_string();
        self.unregister(&group, &plural);
        let strs = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        let mut added = Vec::new();
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"] == Value::Bool(false) {
                continue;
            }
            let schema = match version.pointer("/schema/openAPIV3Schema") {
                Some(s) => Some(Arc::new(CompiledSchema::new(s)?)),
                None => None,
            };
            let scale = version.pointer("/subresources/scale").map(|s| ScalePaths {
                spec_replicas: s["specReplicasPath"]
                    .as_str()
                    .unwrap_or(".spec.replicas")
                    .to_string(),
                status_replicas: s["statusReplicasPath"]
                    .as_str()
                    .unwrap_or(".status.replicas")
                    .to_string(),
                label_selector: s["labelSelectorPath"].as_str().map(String::from),
            });
            added.push(ResourceType {
                group: group.clone(),
                version: version["name"].as_str().unwrap_or_default().to_string(),
                plural: plural.clone(),
                singular: names["singular"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| names["kind"].as_str().unwrap_or_default().to_lowercase()),
                kind: names["kind"].as_str().unwrap_or_default().to_string(),
                namespaced: spec["scope"] == "Namespaced",
                short_names: strs(&names["shortNames"]),
                categories: strs(&names["categories"]),
                status: version.pointer("/subresources/status").is_some(),
                scale,
                extra_subresources: Vec::new(),
                schema,
                printer_columns: version["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                custom: true,
            });
        }
        for t in added {
            self.insert(t);
        }
        Ok(())
    }

    /// Stops serving a custom resource.
    pub fn unregister(&mut self, group: &str, plural: &str) {
        if let Some(vs) = self.types.get_mut(group) {
            for m in vs.values_mut() {
                m.retain(|p, t| !(p == plural && t.custom));
            }
            vs.retain(|_, m| !m.is_empty());
        }
        self.types.retain(|_, vs| !vs.is_empty());
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}
