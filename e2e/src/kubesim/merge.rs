//! Write-merge semantics of the Kubernetes API server, as pure functions on `serde_json::Value`.
//!
//! Every write verb merges something into an object, and every write records who owns which field:
//!
//! - [`json_patch()`]: RFC 6902 (`application/json-patch+json`).
//! - [`merge_patch`]: RFC 7386 (`application/merge-patch+json`).
//! - [`strategic_merge_patch`]: `application/strategic-merge-patch+json`. The apiserver refuses it
//!   for custom resources with 415 Unsupported Media Type; the caller checks that before calling.
//! - [`apply`]: server-side apply (`application/apply-patch+yaml`), following structured-merge-diff.
//! - [`record_update`]: field ownership for every other write (create, update, non-apply patch).
//!
//! Ownership lives in `metadata.managedFields`, in the real FieldsV1 encoding (see [`FieldSet`]).
//! The caller keeps what surrounds these in the apiserver: optimistic concurrency, defaulting,
//! validation, the status strategy, and filling `uid`, `resourceVersion`, `creationTimestamp`,
//! `generation`.
//!
//! Simplified on purpose, against the real apiserver:
//! - no version conversion: a manager that wrote through another apiVersion is compared in the
//!   shape of the current request;
//! - schema knowledge is limited to what [`ListTypes`] says (list types, atomic maps, key
//!   defaults, the empty object of a kind); every map key counts as a declared field, so keys of
//!   `map[string]object` fields never get a `.` entry in Apply sets;
//! - not modelled: the cap of 10 Update managers (`ancient-changes`), the upgrade paths of
//!   client-side apply (`last-applied-configuration`), unions;
//! - a `null` in an applied configuration is owned but stored as absent, as a typed object would;
//! - `$setElementOrder` is honoured with a simpler interleaving of server-only items.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;

use serde_json::{Map, Number, Value};

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// One step from a value to a child, as structured-merge-diff names it.
#[derive(Debug, Clone)]
pub enum PathElem {
    /// A field of a map (`f:name`).
    Field(String),
    /// The element of a `map` list with these key values, sorted by name (`k:{"name":"app"}`).
    Key(Vec<(String, Value)>),
    /// The element of a `set` list with this value (`v:"x"`).
    Value(Value),
    /// The element of an atomic list at this index (`i:0`); only a fallback here.
    Index(usize),
}

impl PathElem {
    fn rank(&self) -> u8 {
        match self {
            PathElem::Field(_) => 0,
            PathElem::Key(_) => 1,
            PathElem::Value(_) => 2,
            PathElem::Index(_) => 3,
        }
    }

    /// The key this element has in a FieldsV1 object, e.g. `f:spec` or `k:{"name":"app"}`.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElem::Field(name) => format!("f:{name}"),
            PathElem::Key(fields) => {
                let mut map = Map::new();
                for (name, value) in fields {
                    map.insert(name.clone(), value.clone());
                }
                format!("k:{}", Value::Object(map))
            }
            PathElem::Value(value) => format!("v:{value}"),
            PathElem::Index(index) => format!("i:{index}"),
        }
    }

    /// Parses a FieldsV1 key; `Ok(None)` for element types this module doesn't know, which the
    /// apiserver skips too.
    pub fn from_fields_v1_key(key: &str) -> Result<Option<PathElem>, String> {
        let (Some(kind), Some(rest)) = (key.get(..2), key.get(2..)) else {
            return Err(format!(
                "invalid FieldsV1 key {key:?}: must be at least 2 characters long"
            ));
        };
        if !kind.ends_with(':') {
            return Err(format!("invalid FieldsV1 key {key:?}: missing colon"));
        }
        let bad = |e: serde_json::Error| format!("invalid FieldsV1 key {key:?}: {e}");
        match kind {
            "f:" => Ok(Some(PathElem::Field(rest.to_string()))),
            "v:" => Ok(Some(PathElem::Value(serde_json::from_str(rest).map_err(bad)?))),
            "k:" => match serde_json::from_str(rest).map_err(bad)? {
                Value::Object(map) => {
                    let mut fields: Vec<(String, Value)> = map.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    Ok(Some(PathElem::Key(fields)))
                }
                _ => Err(format!("invalid FieldsV1 key {key:?}: keys must be JSON objects")),
            },
            "i:" => rest
                .parse()
                .map(|i| Some(PathElem::Index(i)))
                .map_err(|e| format!("invalid FieldsV1 key {key:?}: {e}")),
            _ => Ok(None),
        }
    }
}

impl Ord for PathElem {
    // structured-merge-diff's order: fields, then keys, then values, then indexes.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElem::Field(a), PathElem::Field(b)) => a.cmp(b),
            (PathElem::Key(a), PathElem::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| cmp_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElem::Value(a), PathElem::Value(b)) => cmp_values(a, b),
            (PathElem::Index(a), PathElem::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElem {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElem {}

impl fmt::Display for PathElem {
    /// The form the apiserver prints in conflicts: `.spec`, `[name="app"]`, `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElem::Field(name) => write!(f, ".{name}"),
            PathElem::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(n, v)| format!("{n}={}", value_to_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElem::Value(v) => write!(f, "[={}]", value_to_string(v)),
            PathElem::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as the apiserver prints it, e.g. `.spec.template.spec.containers[name="app"].image`.
pub fn path_string(path: &[PathElem]) -> String {
    path.iter().map(ToString::to_string).collect()
}

// Mirrors structured-merge-diff's value.ToString: strings quoted, the rest bare.
fn value_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(value_to_string).collect::<Vec<_>>().join(",")
            )
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", value_to_string(v)))
            .collect::<Vec<_>>()
            .join(""),
        other => other.to_string(),
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    // Ints and floats compare numerically, as in structured-merge-diff.
    let x = a.as_f64().unwrap_or(f64::NAN);
    let y = b.as_f64().unwrap_or(f64::NAN);
    x.total_cmp(&y)
}

/// A total order on JSON values (structured-merge-diff's: numbers, strings, bools, lists, maps,
/// null); `Equal` also means "the same value", with `1 == 1.0`.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = cmp_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((xk, xv), (yk, yv)) in xs.iter().zip(&ys) {
                let c = xk.cmp(yk).then_with(|| cmp_values(xv, yv));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    cmp_values(a, b) == Ordering::Equal
}

// ---------------------------------------------------------------------------------------------
// Field sets and FieldsV1
// ---------------------------------------------------------------------------------------------

/// A set of field paths: what one manager owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    paths: BTreeSet<Vec<PathElem>>,
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<PathElem, Node>,
}

impl Node {
    fn build(set: &FieldSet) -> Node {
        let mut root = Node::default();
        for path in &set.paths {
            let mut node = &mut root;
            for elem in path {
                node = node.children.entry(elem.clone()).or_default();
            }
            node.member = true;
        }
        root
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (elem, child) in &self.children {
            map.insert(elem.to_fields_v1_key(), child.to_json());
        }
        // "." marks a node that is owned itself and also has owned children.
        if self.member && !self.children.is_empty() {
            map.insert(".".to_string(), Value::Object(Map::new()));
        }
        Value::Object(map)
    }

    // structured-merge-diff's Set.Iterate order: this level's members, then each child subtree.
    fn iterate(&self, prefix: &mut Vec<PathElem>, out: &mut Vec<Vec<PathElem>>) {
        for (elem, child) in &self.children {
            if child.member {
                let mut path = prefix.clone();
                path.push(elem.clone());
                out.push(path);
            }
        }
        for (elem, child) in &self.children {
            if !child.children.is_empty() {
                prefix.push(elem.clone());
                child.iterate(prefix, out);
                prefix.pop();
            }
        }
    }
}

impl FieldSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a path.
    pub fn insert(&mut self, path: Vec<PathElem>) {
        if !path.is_empty() {
            self.paths.insert(path);
        }
    }

    /// Whether this exact path is in the set.
    pub fn contains(&self, path: &[PathElem]) -> bool {
        self.paths.contains(path)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The paths, in path order.
    pub fn iter(&self) -> impl Iterator<Item = &Vec<PathElem>> {
        self.paths.iter()
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.union(&other.paths).cloned().collect(),
        }
    }

    /// Paths in this set but not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.difference(&other.paths).cloned().collect(),
        }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.intersection(&other.paths).cloned().collect(),
        }
    }

    fn filter(&self, keep: impl Fn(&[PathElem]) -> bool) -> FieldSet {
        FieldSet {
            paths: self.paths.iter().filter(|p| keep(p)).cloned().collect(),
        }
    }

    fn has_strict_descendant(&self, prefix: &[PathElem]) -> bool {
        // Descendants sort right after their prefix, so one short scan finds them.
        self.paths
            .range::<[PathElem], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|p| p.starts_with(prefix))
            .any(|p| p.len() > prefix.len())
    }

    /// The paths in the order structured-merge-diff iterates them (and prints conflicts).
    fn ordered(&self) -> Vec<Vec<PathElem>> {
        let mut out = Vec::new();
        Node::build(self).iterate(&mut Vec::new(), &mut out);
        out
    }

    /// The FieldsV1 object, e.g. `{"f:spec":{"f:replicas":{}}}`. Keys come in
    /// structured-merge-diff's order (byte-identical to the apiserver when serde_json keeps
    /// insertion order); JSON readers don't depend on it.
    pub fn to_fields_v1(&self) -> Value {
        Node::build(self).to_json()
    }

    /// Reads a FieldsV1 object.
    pub fn from_fields_v1(fields: &Value) -> Result<FieldSet, String> {
        fn walk(v: &Value, prefix: &mut Vec<PathElem>, out: &mut FieldSet) -> Result<(), String> {
            let Value::Object(map) = v else {
                return Err("FieldsV1 nodes must be JSON objects".to_string());
            };
            for (key, child) in map {
                if key == "." {
                    out.insert(prefix.clone());
                    continue;
                }
                let Some(elem) = PathElem::from_fields_v1_key(key)? else {
                    continue;
                };
                prefix.push(elem);
                match child {
                    Value::Object(m) if m.is_empty() => out.insert(prefix.clone()),
                    _ => walk(child, prefix, out)?,
                }
                prefix.pop();
            }
            Ok(())
        }
        let mut out = FieldSet::new();
        walk(fields, &mut Vec::new(), &mut out)?;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Schema: list types
// ---------------------------------------------------------------------------------------------

/// How a list merges and how its elements are owned (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole, owned as one field.
    Atomic,
    /// Scalars merged by value, each owned on its own (`v:`).
    Set,
    /// Objects merged by these key fields, each owned on its own (`k:`). For strategic merge
    /// patch the first key is the patch merge key.
    Map(Vec<String>),
}

/// What the merge code needs to know about a kind's schema. Paths point at the list (or map)
/// itself; list elements on the way appear as [`PathElem::Key`]/[`PathElem::Value`].
pub trait ListTypes {
    /// The type of the list at `path`.
    fn list_type(&self, path: &[PathElem]) -> ListType;

    /// Whether the object at `path` is owned and replaced as a whole
    /// (`x-kubernetes-map-type: atomic`, Go `+structType=atomic`).
    fn is_atomic_map(&self, path: &[PathElem]) -> bool {
        let _ = path;
        false
    }

    /// The value a key field of a `map` list's element takes when the element omits it (e.g.
    /// `protocol: TCP` for container ports); `None` makes the omission an error in apply.
    fn key_default(&self, list: &[PathElem], field: &str) -> Option<Value> {
        let _ = (list, field);
        None
    }

    /// How a freshly made object of this kind looks to field tracking on create. Built-in kinds
    /// are Go structs whose non-pointer fields always exist, so they never count as added (no
    /// `.` entry); custom resources start from `{}`.
    fn empty_object(&self) -> Value {
        Value::Object(Map::new())
    }
}

/// List types of Kubernetes built-in kinds, from their patch merge keys and list-type markers.
/// Pod specs are recognised under `spec` (Pod), `template.spec` (PodTemplate),
/// `spec.template.spec` (workloads) and `spec.jobTemplate.spec.template.spec` (CronJob).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuiltinTypes {
    kind: String,
}

const POD_SPEC_PREFIXES: [&str; 4] = [
    "spec.jobTemplate.spec.template.spec.",
    "spec.template.spec.",
    "template.spec.",
    "spec.",
];
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

fn keys(names: &[&str]) -> ListType {
    ListType::Map(names.iter().map(|s| (*s).to_string()).collect())
}

// `spec.template.spec.containers[].ports`: field names, list elements as `[]`.
fn field_path(path: &[PathElem]) -> String {
    let mut out = String::new();
    for elem in path {
        match elem {
            PathElem::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            _ => out.push_str("[]"),
        }
    }
    out
}

fn pod_relative(path: &str) -> Option<&str> {
    POD_SPEC_PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
}

fn container_relative(pod_path: &str) -> Option<&str> {
    let (list, rest) = pod_path.split_once("[].")?;
    CONTAINER_LISTS.contains(&list).then_some(rest)
}

impl BuiltinTypes {
    /// List types for objects of this kind (e.g. `"Deployment"`); an empty kind guesses from
    /// paths alone.
    pub fn new(kind: &str) -> Self {
        BuiltinTypes {
            kind: kind.to_string(),
        }
    }

    /// List types for the kind named in `obj["kind"]`.
    pub fn for_object(obj: &Value) -> Self {
        Self::new(obj.get("kind").and_then(Value::as_str).unwrap_or_default())
    }

    fn kind_is(&self, kinds: &[&str]) -> bool {
        self.kind.is_empty() || kinds.contains(&self.kind.as_str())
    }

    fn pod_list_type(pod_path: &str) -> Option<ListType> {
        match pod_path {
            "containers" | "initContainers" | "ephemeralContainers" => Some(keys(&["name"])),
            "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates" => Some(keys(&["name"])),
            "hostAliases" => Some(keys(&["ip"])),
            "topologySpreadConstraints" => Some(keys(&["topologyKey", "whenUnsatisfiable"])),
            _ => match container_relative(pod_path)? {
                "ports" => Some(keys(&["containerPort", "protocol"])),
                "env" => Some(keys(&["name"])),
                "volumeMounts" => Some(keys(&["mountPath"])),
                "volumeDevices" => Some(keys(&["devicePath"])),
                "resources.claims" => Some(keys(&["name"])),
                _ => None,
            },
        }
    }
}

impl ListTypes for BuiltinTypes {
    fn list_type(&self, path: &[PathElem]) -> ListType {
        let p = field_path(path);
        match p.as_str() {
            "metadata.ownerReferences" => return keys(&["uid"]),
            "metadata.finalizers" => return ListType::Set,
            "status.conditions" => return keys(&["type"]),
            "spec.ports" if self.kind_is(&["Service"]) => return keys(&["port", "protocol"]),
            "status.podIPs" | "status.hostIPs" if self.kind_is(&["Pod"]) => return keys(&["ip"]),
            "status.addresses" if self.kind_is(&["Node"]) => return keys(&["type"]),
            _ => {}
        }
        pod_relative(&p)
            .and_then(Self::pod_list_type)
            .unwrap_or(ListType::Atomic)
    }

    fn is_atomic_map(&self, path: &[PathElem]) -> bool {
        let p = field_path(path);
        if p == "metadata.ownerReferences[]" {
            return true;
        }
        // Service and ReplicationController selectors are plain string maps; everywhere else a
        // selector is a LabelSelector, which is atomic.
        if p == "spec.selector" {
            return !matches!(self.kind.as_str(), "Service" | "ReplicationController");
        }
        const ATOMIC_SUFFIXES: [&str; 8] = [
            ".labelSelector",
            ".podSelector",
            ".namespaceSelector",
            ".valueFrom.fieldRef",
            ".valueFrom.resourceFieldRef",
            ".valueFrom.configMapKeyRef",
            ".valueFrom.secretKeyRef",
            "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution",
        ];
        ATOMIC_SUFFIXES.iter().any(|s| p.ends_with(s))
    }

    fn key_default(&self, list: &[PathElem], field: &str) -> Option<Value> {
        if field != "protocol" {
            return None;
        }
        let p = field_path(list);
        let container_ports = pod_relative(&p)
            .and_then(container_relative)
            .is_some_and(|rest| rest == "ports");
        let service_ports = p == "spec.ports" && self.kind_is(&["Service"]);
        (container_ports || service_ports).then(|| Value::String("TCP".to_string()))
    }

    fn empty_object(&self) -> Value {
        // Only the non-pointer structs and non-omitempty lists matter: they exist (possibly as
        // null) in a new Go object, so filling them isn't "adding" them.
        let template = || {
            let mut t = Map::new();
            t.insert("metadata".into(), object(&[("creationTimestamp", Value::Null)]));
            t.insert("spec".into(), object(&[("containers", Value::Null)]));
            Value::Object(t)
        };
        let empty = || Value::Object(Map::new());
        let spec = match self.kind.as_str() {
            "Pod" => object(&[("containers", Value::Null)]),
            "PodTemplate" => return object(&[("metadata", empty()), ("template", template())]),
            "Deployment" => object(&[
                ("selector", Value::Null),
                ("template", template()),
                ("strategy", empty()),
            ]),
            "ReplicaSet" => object(&[("selector", Value::Null), ("template", template())]),
            "StatefulSet" | "DaemonSet" => object(&[
                ("selector", Value::Null),
                ("template", template()),
                ("updateStrategy", empty()),
            ]),
            "Job" => object(&[("template", template())]),
            "CronJob" => object(&[(
                "jobTemplate",
                object(&[
                    ("metadata", object(&[("creationTimestamp", Value::Null)])),
                    ("spec", object(&[("template", template())])),
                ]),
            )]),
            _ => empty(),
        };
        let status = match self.kind.as_str() {
            "Service" => object(&[("loadBalancer", empty())]),
            _ => empty(),
        };
        object(&[("metadata", empty()), ("spec", spec), ("status", status)])
    }
}

fn object(fields: &[(&str, Value)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect(),
    )
}

/// List types read from a CustomResourceDefinition's `openAPIV3Schema`
/// (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`, key
/// defaults), walking `properties`, `items` and `additionalProperties`. Lists without a type are
/// atomic, as for the apiserver; `metadata` follows ObjectMeta's built-in rules.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdTypes {
    schema: Value,
}

impl CrdTypes {
    /// From the `openAPIV3Schema` of one version.
    pub fn new(open_api_v3_schema: Value) -> Self {
        CrdTypes {
            schema: open_api_v3_schema,
        }
    }

    /// From a whole CRD object and the served version name.
    pub fn from_crd(crd: &Value, version: &str) -> Option<Self> {
        let versions = crd.pointer("/spec/versions")?.as_array()?;
        let v = versions
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?;
        v.pointer("/schema/openAPIV3Schema").cloned().map(Self::new)
    }

    fn node(&self, path: &[PathElem]) -> Option<&Value> {
        let mut cur = &self.schema;
        for elem in path {
            cur = match elem {
                PathElem::Field(name) => match cur.get("properties").and_then(|p| p.get(name)) {
                    Some(s) => s,
                    None => cur.get("additionalProperties").filter(|s| s.is_object())?,
                },
                _ => cur.get("items")?,
            };
        }
        Some(cur)
    }
}

fn is_metadata(path: &[PathElem]) -> bool {
    matches!(path.first(), Some(PathElem::Field(f)) if f == "metadata")
}

impl ListTypes for CrdTypes {
    fn list_type(&self, path: &[PathElem]) -> ListType {
        if is_metadata(path) {
            return BuiltinTypes::default().list_type(path);
        }
        let Some(node) = self.node(path) else {
            return ListType::Atomic;
        };
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                node.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|ks| ks.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default(),
            ),
            _ => ListType::Atomic,
        }
    }

    fn is_atomic_map(&self, path: &[PathElem]) -> bool {
        if is_metadata(path) {
            return BuiltinTypes::default().is_atomic_map(path);
        }
        self.node(path)
            .and_then(|n| n.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "atomic")
    }

    fn key_default(&self, list: &[PathElem], field: &str) -> Option<Value> {
        self.node(list)?
            .pointer("/items/properties")?
            .get(field)?
            .get("default")
            .cloned()
    }
}

// ---------------------------------------------------------------------------------------------
// JSON patch, merge patch, strategic merge patch
// ---------------------------------------------------------------------------------------------

/// Why a JSON patch failed, with the status code the apiserver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchFailure {
    /// 400 for a malformed patch document, 422 for a patch that doesn't apply.
    pub code: u16,
    /// Text for the Status message.
    pub message: String,
}

/// Applies an RFC 6902 JSON patch. Atomic: on error nothing is applied.
pub fn json_patch(obj: &Value, patch: &Value) -> Result<Value, String> {
    json_patch_with_code(obj, patch).map_err(|f| f.message)
}

/// [`json_patch()`], telling a malformed patch (400) from one that doesn't apply (422).
pub fn json_patch_with_code(obj: &Value, patch: &Value) -> Result<Value, PatchFailure> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| PatchFailure {
        code: 400,
        message: format!("invalid JSON patch: {e}"),
    })?;
    let mut doc = obj.clone();
    for (i, op) in ops.0.iter().enumerate() {
        // Like the API server (evanphx/json-patch), a `test` for null passes when the path is
        // missing; kube-runtime's finalizer helper relies on it.
        if let json_patch::PatchOperation::Test(t) = op
            && t.value.is_null()
            && doc.pointer(t.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| PatchFailure {
            code: 422,
            message: format!("JSON patch failed: operation '/{i}': {e}"),
        })?;
    }
    Ok(doc)
}

/// Applies an RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces.
pub fn merge_patch(obj: &Value, patch: &Value) -> Value {
    let mut doc = obj.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Applies a strategic merge patch: like [`merge_patch`], but `map` lists merge by their first
/// key (the patch merge key) and `set` lists by value; atomic lists are replaced. Directives:
/// `$patch: delete` (map, or list element by merge key), `$patch: replace` (map, or as a list
/// element: replace the whole list), `$patch: merge`, `$retainKeys`,
/// `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` (listed elements take that
/// order; server-only elements keep their place relative to them, approximately).
pub fn strategic_merge_patch(obj: &Value, patch: &Value, schema: &dyn ListTypes) -> Result<Value, String> {
    let Value::Object(patch) = patch else {
        return Err("a strategic merge patch must be a JSON object".to_string());
    };
    let merged = smp_map(schema, &mut Vec::new(), obj.as_object(), patch)?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

// Returns None when the patch deletes the map.
fn smp_map(
    schema: &dyn ListTypes,
    path: &mut Vec<PathElem>,
    original: Option<&Map<String, Value>>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get("$patch") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "merge" => {}
        Some(Value::String(s)) if s == "delete" => return Ok(None),
        Some(Value::String(s)) if s == "replace" => {
            let mut rest = patch.clone();
            rest.remove("$patch");
            // The replacement may still carry directives of its own; resolve them against nothing.
            return smp_map(schema, path, None, &rest);
        }
        Some(other) => {
            return Err(format!(
                "unknown patch type: {other} in map: {}",
                Value::Object(patch.clone())
            ));
        }
    }
    let mut out = original.cloned().unwrap_or_default();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let Value::Array(gone) = value else {
                return Err(format!("{key} must be a list"));
            };
            if let Some(Value::Array(items)) = out.get_mut(field) {
                items.retain(|item| !gone.iter().any(|g| values_equal(g, item)));
            }
        }
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        path.push(PathElem::Field(key.clone()));
        let merged = match value {
            Value::Null => None,
            Value::Object(p) => {
                smp_map(schema, path, out.get(key).and_then(Value::as_object), p)?.map(Value::Object)
            }
            Value::Array(p) => Some(Value::Array(smp_list(
                schema,
                path,
                out.get(key).and_then(Value::as_array),
                p,
            )?)),
            other => Some(other.clone()),
        };
        path.pop();
        match merged {
            Some(v) => out.insert(key.clone(), v),
            None => out.remove(key),
        };
    }
    for (key, value) in patch {
        if let (Some(field), Value::Array(order)) = (key.strip_prefix("$setElementOrder/"), value) {
            path.push(PathElem::Field(field.to_string()));
            if let Some(Value::Array(items)) = out.get_mut(field) {
                reorder(schema, path, items, order);
            }
            path.pop();
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let Value::Array(names) = retain else {
            return Err("$retainKeys must be a list of field names".to_string());
        };
        out.retain(|k, _| names.iter().any(|n| n.as_str() == Some(k.as_str())));
    }
    Ok(Some(out))
}

fn smp_list(
    schema: &dyn ListTypes,
    path: &mut Vec<PathElem>,
    original: Option<&Vec<Value>>,
    patch: &[Value],
) -> Result<Vec<Value>, String> {
    let fresh = |path: &mut Vec<PathElem>, item: &Value| -> Result<Option<Value>, String> {
        match item {
            Value::Object(m) => Ok(smp_map(schema, path, None, m)?.map(Value::Object)),
            other => Ok(Some(other.clone())),
        }
    };
    if patch.iter().any(|e| directive(e) == Some("replace")) {
        let mut out = Vec::new();
        for item in patch.iter().filter(|e| directive(e).is_none()) {
            out.extend(fresh(path, item)?);
        }
        return Ok(out);
    }
    let ty = schema.list_type(path);
    let merge_key = match &ty {
        ListType::Map(ks) => ks.first(),
        _ => None,
    };
    match (&ty, merge_key) {
        (ListType::Set, _) => {
            let mut out = original.cloned().unwrap_or_default();
            for item in patch {
                if !out.iter().any(|x| values_equal(x, item)) {
                    out.push(item.clone());
                }
            }
            Ok(out)
        }
        (_, Some(key)) => {
            let mut out = original.cloned().unwrap_or_default();
            for item in patch {
                let Value::Object(element) = item else {
                    return Err(format!(
                        "{}: elements must be objects with merge key {key}",
                        path_string(path)
                    ));
                };
                let key_value = element.get(key).filter(|v| !v.is_null());
                match directive(item) {
                    None | Some("merge") => {}
                    Some("delete") => {
                        let Some(kv) = key_value else {
                            return Err(format!("delete patch type with no merge key defined: {item}"));
                        };
                        out.retain(|x| !x.get(key).is_some_and(|v| values_equal(v, kv)));
                        continue;
                    }
                    Some(other) => return Err(format!("unknown patch type: {other} in map: {item}")),
                }
                let Some(kv) = key_value else {
                    return Err(format!("map: {item} does not contain declared merge key: {key}"));
                };
                let pos = out
                    .iter()
                    .position(|x| x.get(key).is_some_and(|v| values_equal(v, kv)));
                path.push(PathElem::Key(vec![(key.clone(), kv.clone())]));
                let merged = smp_map(
                    schema,
                    path,
                    pos.and_then(|i| out.get(i)).and_then(Value::as_object),
                    element,
                )?;
                path.pop();
                match (pos, merged) {
                    (Some(i), Some(m)) => {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = Value::Object(m);
                        }
                    }
                    (Some(i), None) => {
                        out.remove(i);
                    }
                    (None, Some(m)) => out.push(Value::Object(m)),
                    (None, None) => {}
                }
            }
            Ok(out)
        }
        _ => {
            let mut out = Vec::new();
            for item in patch {
                out.extend(fresh(path, item)?);
            }
            Ok(out)
        }
    }
}

// $setElementOrder: listed elements in the given order, each server-only element placed before
// the first listed one that came after it in the merged list.
fn reorder(schema: &dyn ListTypes, path: &[PathElem], items: &mut Vec<Value>, order: &[Value]) {
    let ty = schema.list_type(path);
    let identity = |v: &Value| -> Option<Value> {
        match &ty {
            ListType::Map(ks) => ks.first().and_then(|k| v.get(k)).cloned(),
            _ => Some(v.clone()),
        }
    };
    let mut pending: Vec<(usize, Value)> = items.drain(..).enumerate().collect();
    let mut listed = Vec::new();
    for wanted in order.iter().filter_map(identity) {
        if let Some(pos) = pending
            .iter()
            .position(|(_, v)| identity(v).is_some_and(|id| values_equal(&id, &wanted)))
        {
            listed.push(pending.remove(pos));
        }
    }
    let mut at = 0;
    for server_only in pending {
        while listed.get(at).is_some_and(|(i, _)| *i < server_only.0) {
            at += 1;
        }
        listed.insert(at, server_only);
        at += 1;
    }
    items.extend(listed.into_iter().map(|(_, v)| v));
}

// ---------------------------------------------------------------------------------------------
// Structured merge: walking values with the schema
// ---------------------------------------------------------------------------------------------

enum Shape<'v> {
    Null,
    Leaf,
    Map(&'v Map<String, Value>),
    List(ListType, &'v [Value]),
}

fn shape<'v>(schema: &dyn ListTypes, path: &[PathElem], v: &'v Value) -> Shape<'v> {
    match v {
        Value::Null => Shape::Null,
        Value::Object(m) if !schema.is_atomic_map(path) => Shape::Map(m),
        Value::Array(items) => match schema.list_type(path) {
            ListType::Atomic => Shape::Leaf,
            ty => Shape::List(ty, items),
        },
        _ => Shape::Leaf,
    }
}

fn item_elem(
    schema: &dyn ListTypes,
    path: &[PathElem],
    ty: &ListType,
    index: usize,
    item: &Value,
) -> Result<PathElem, String> {
    match ty {
        ListType::Atomic => Ok(PathElem::Index(index)),
        ListType::Set => Ok(PathElem::Value(item.clone())),
        ListType::Map(names) => {
            let Value::Object(element) = item else {
                return Err(format!(
                    "element {index}: associative list with keys may only have map elements"
                ));
            };
            let mut fields = Vec::with_capacity(names.len());
            for name in names {
                let value = element
                    .get(name)
                    .filter(|v| !v.is_null())
                    .cloned()
                    .or_else(|| schema.key_default(path, name))
                    .ok_or_else(|| {
                        format!(
                            "element {index}: associative list with keys has an element that omits key \
                             field {name:?} (and doesn't have default value)"
                        )
                    })?;
                fields.push((name.clone(), value));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElem::Key(fields))
        }
    }
}

// Live objects may hold anything: unkeyable or duplicate elements fall back to their index.
fn elems_lenient(schema: &dyn ListTypes, path: &[PathElem], ty: &ListType, items: &[Value]) -> Vec<PathElem> {
    let mut seen = BTreeSet::new();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let elem = item_elem(schema, path, ty, i, item).unwrap_or(PathElem::Index(i));
            if seen.insert(elem.clone()) {
                elem
            } else {
                PathElem::Index(i)
            }
        })
        .collect()
}

fn elems_strict(
    schema: &dyn ListTypes,
    path: &[PathElem],
    ty: &ListType,
    items: &[Value],
) -> Result<Vec<PathElem>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let elem = item_elem(schema, path, ty, i, item).map_err(|e| format!("{}: {e}", path_string(path)))?;
        if !seen.insert(elem.clone()) {
            return Err(format!("{}: duplicate entries for key {elem}", path_string(path)));
        }
        out.push(elem);
    }
    Ok(out)
}

// structured-merge-diff's ToFieldSet: leaves, list elements, and maps that are null or empty.
fn collect(
    schema: &dyn ListTypes,
    path: &mut Vec<PathElem>,
    v: &Value,
    out: &mut FieldSet,
    strict: bool,
) -> Result<(), String> {
    match shape(schema, path, v) {
        Shape::Null => {}
        Shape::Leaf => out.insert(path.clone()),
        Shape::Map(map) => {
            for (key, child) in map {
                path.push(PathElem::Field(key.clone()));
                collect(schema, path, child, out, strict)?;
                if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                    out.insert(path.clone());
                }
                path.pop();
            }
        }
        Shape::List(ty, items) => {
            let elems = if strict {
                elems_strict(schema, path, &ty, items)?
            } else {
                elems_lenient(schema, path, &ty, items)
            };
            for (elem, item) in elems.into_iter().zip(items) {
                path.push(elem);
                collect(schema, path, item, out, strict)?;
                out.insert(path.clone());
                path.pop();
            }
        }
    }
    Ok(())
}

fn applied_set(schema: &dyn ListTypes, config: &Value) -> Result<FieldSet, String> {
    let mut out = FieldSet::new();
    collect(schema, &mut Vec::new(), config, &mut out, true)?;
    Ok(out)
}

fn object_set(schema: &dyn ListTypes, obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    // Lenient collection has nothing to fail on.
    let _ = collect(schema, &mut Vec::new(), obj, &mut out, false);
    out
}

// structured-merge-diff's EnsureNamedFieldsAreMembers: every field on the way to an owned path
// counts as owned too, so pruning can take whole maps away.
fn with_named_parents(set: &FieldSet) -> FieldSet {
    let mut out = set.clone();
    for path in set.iter() {
        for i in 1..path.len() {
            if matches!(path.get(i - 1), Some(PathElem::Field(_))) {
                out.insert(path[..i].to_vec());
            }
        }
    }
    out
}

#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    fn restrict(self, scope: &Scope) -> Comparison {
        let keep = |p: &[PathElem]| scope.covers(p);
        Comparison {
            added: self.added.filter(keep),
            modified: self.modified.filter(keep),
            removed: self.removed.filter(keep),
        }
    }
}

fn compare(
    schema: &dyn ListTypes,
    path: &mut Vec<PathElem>,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Comparison,
) {
    let os = old.map(|v| shape(schema, path, v));
    let ns = new.map(|v| shape(schema, path, v));
    let maplike = |s: &Option<Shape>| matches!(s, None | Some(Shape::Null) | Some(Shape::Map(_)));
    let listlike = |s: &Option<Shape>| matches!(s, None | Some(Shape::Null) | Some(Shape::List(..)));
    let any_map = matches!(os, Some(Shape::Map(_))) || matches!(ns, Some(Shape::Map(_)));
    let any_list = matches!(os, Some(Shape::List(..))) || matches!(ns, Some(Shape::List(..)));
    let container = (any_map && maplike(&os) && maplike(&ns)) || (any_list && listlike(&os) && listlike(&ns));
    if !container {
        match (old, new) {
            (None, Some(_)) => out.added.insert(path.clone()),
            (Some(_), None) => out.removed.insert(path.clone()),
            (Some(a), Some(b)) if !values_equal(a, b) => out.modified.insert(path.clone()),
            _ => {}
        }
        return;
    }
    // A container that exists (even as null) on one side only is added/removed itself.
    if old.is_none() {
        out.added.insert(path.clone());
    }
    if new.is_none() {
        out.removed.insert(path.clone());
    }
    if any_map {
        let om = if let Some(Shape::Map(m)) = os {
            Some(m)
        } else {
            None
        };
        let nm = if let Some(Shape::Map(m)) = ns {
            Some(m)
        } else {
            None
        };
        let keys: BTreeSet<&String> = om.into_iter().chain(nm).flat_map(|m| m.keys()).collect();
        for key in keys {
            path.push(PathElem::Field(key.clone()));
            compare(
                schema,
                path,
                om.and_then(|m| m.get(key)),
                nm.and_then(|m| m.get(key)),
                out,
            );
            path.pop();
        }
        return;
    }
    let (ty, oi, ni) = match (os, ns) {
        (Some(Shape::List(ty, o)), Some(Shape::List(_, n))) => (ty, o, n),
        (Some(Shape::List(ty, o)), _) => (ty, o, &[][..]),
        (_, Some(Shape::List(ty, n))) => (ty, &[][..], n),
        _ => return,
    };
    let index = |items: &[Value]| -> BTreeMap<PathElem, usize> {
        let mut m = BTreeMap::new();
        for (i, elem) in elems_lenient(schema, path, &ty, items).into_iter().enumerate() {
            m.entry(elem).or_insert(i);
        }
        m
    };
    let (om, nm) = (index(oi), index(ni));
    let elems: BTreeSet<&PathElem> = om.keys().chain(nm.keys()).collect();
    for elem in elems {
        path.push(elem.clone());
        let o = om.get(elem).and_then(|&i| oi.get(i));
        let n = nm.get(elem).and_then(|&i| ni.get(i));
        compare(schema, path, o, n, out);
        path.pop();
    }
}

fn compare_objects(schema: &dyn ListTypes, old: &Value, new: &Value) -> Comparison {
    let mut out = Comparison::default();
    compare(schema, &mut Vec::new(), Some(old), Some(new), &mut out);
    out
}

// structured-merge-diff's Merge: the configuration wins on leaves; maps and non-atomic lists
// merge. None means "absent".
fn merge(
    schema: &dyn ListTypes,
    path: &mut Vec<PathElem>,
    live: Option<&Value>,
    config: &Value,
) -> Option<Value> {
    let ls = live.map(|v| shape(schema, path, v));
    match shape(schema, path, config) {
        Shape::Null => match (live, ls) {
            // A null next to content is a no-op for containers, and an existing null stays.
            (Some(l), Some(Shape::Null)) => Some(l.clone()),
            (Some(l), Some(Shape::Map(m))) if !m.is_empty() => Some(l.clone()),
            (Some(l), Some(Shape::List(_, items))) if !items.is_empty() => Some(l.clone()),
            _ => None,
        },
        Shape::Map(cm) => {
            let mut out = match ls {
                Some(Shape::Map(lm)) => lm.clone(),
                _ => Map::new(),
            };
            for (key, cv) in cm {
                path.push(PathElem::Field(key.clone()));
                let merged = merge(schema, path, out.get(key), cv);
                path.pop();
                match merged {
                    Some(v) => out.insert(key.clone(), v),
                    None => out.remove(key),
                };
            }
            Some(Value::Object(out))
        }
        Shape::List(ty, ci) => {
            let li: &[Value] = match ls {
                Some(Shape::List(_, li)) => li,
                _ => &[],
            };
            Some(Value::Array(merge_list(schema, path, &ty, li, ci)))
        }
        Shape::Leaf => Some(config.clone()),
    }
}

// The configuration's order wins; live-only elements stay right after the element they followed.
fn merge_list(
    schema: &dyn ListTypes,
    path: &mut Vec<PathElem>,
    ty: &ListType,
    live: &[Value],
    config: &[Value],
) -> Vec<Value> {
    let le = elems_lenient(schema, path, ty, live);
    let ce = elems_lenient(schema, path, ty, config);
    let first = |elems: &[PathElem]| -> BTreeMap<PathElem, usize> {
        let mut m = BTreeMap::new();
        for (i, e) in elems.iter().enumerate() {
            m.entry(e.clone()).or_insert(i);
        }
        m
    };
    let (lpos, cpos) = (first(&le), first(&ce));
    let mut leading = Vec::new();
    let mut after: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    let mut anchor = None;
    for (i, (elem, item)) in le.iter().zip(live).enumerate() {
        match cpos.get(elem) {
            Some(&ci) => {
                if lpos.get(elem) == Some(&i) {
                    anchor = Some(ci);
                }
            }
            None => match anchor {
                None => leading.push(item.clone()),
                Some(ci) => after.entry(ci).or_default().push(item.clone()),
            },
        }
    }
    let mut out = leading;
    for (ci, (elem, item)) in ce.iter().zip(config).enumerate() {
        path.push(elem.clone());
        if let Some(v) = merge(schema, path, lpos.get(elem).and_then(|&i| live.get(i)), item) {
            out.push(v);
        }
        path.pop();
        if let Some(extra) = after.remove(&ci) {
            out.extend(extra);
        }
    }
    out
}

// structured-merge-diff's RemoveItems: drops every path in `set`, with what is under it.
fn remove_items(schema: &dyn ListTypes, path: &mut Vec<PathElem>, v: &Value, set: &FieldSet) -> Value {
    let keep = |path: &mut Vec<PathElem>, child: &Value| -> Option<Value> {
        if set.contains(path) {
            None
        } else if set.has_strict_descendant(path) {
            Some(remove_items(schema, path, child, set))
        } else {
            Some(child.clone())
        }
    };
    match shape(schema, path, v) {
        Shape::Map(map) => {
            let mut out = Map::new();
            for (key, child) in map {
                path.push(PathElem::Field(key.clone()));
                if let Some(c) = keep(path, child) {
                    out.insert(key.clone(), c);
                }
                path.pop();
            }
            Value::Object(out)
        }
        Shape::List(ty, items) => {
            let mut out = Vec::new();
            for (elem, item) in elems_lenient(schema, path, &ty, items).into_iter().zip(items) {
                path.push(elem);
                out.extend(keep(path, item));
                path.pop();
            }
            Value::Array(out)
        }
        _ => v.clone(),
    }
}

fn remove_from(schema: &dyn ListTypes, v: &Value, set: &FieldSet) -> Value {
    remove_items(schema, &mut Vec::new(), v, set)
}

// structured-merge-diff's prune: drop what the applier owned last time and no longer applies,
// unless some manager (the applier's new configuration included) still owns it.
fn prune(schema: &dyn ListTypes, merged: Value, owned_now: &FieldSet, last: &FieldSet) -> Value {
    if last.is_empty() {
        return merged;
    }
    let last = with_named_parents(last);
    let merged_set = with_named_parents(&object_set(schema, &merged));
    let first_cut = with_named_parents(&object_set(schema, &remove_from(schema, &merged, &last)));
    let owned = with_named_parents(owned_now);
    let kept = remove_from(schema, &merged, &merged_set.difference(&first_cut.union(&owned)));
    let kept_set = with_named_parents(&object_set(schema, &kept));
    remove_from(
        schema,
        &merged,
        &merged_set.difference(&kept_set).intersection(&last),
    )
}

// ---------------------------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------------------------

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: String,
    set: FieldSet,
}

impl Entry {
    // The apiserver's manager identity: appliers are one manager whatever version they use.
    fn id(&self) -> (String, String, String, String) {
        let version = if self.operation == APPLY {
            String::new()
        } else {
            self.api_version.clone()
        };
        (
            self.manager.clone(),
            self.operation.clone(),
            version,
            self.subresource.clone(),
        )
    }

    fn display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == UPDATE {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }

    fn decode(v: &Value) -> Result<Entry, String> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let operation = text("operation");
        if operation != APPLY && operation != UPDATE {
            return Err("operation must be `Apply` or `Update`".to_string());
        }
        let api_version = text("apiVersion");
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".to_string());
        }
        match text("fieldsType").as_str() {
            "FieldsV1" => {}
            "" => return Err("missing fieldsType in managed fields entry".to_string()),
            other => return Err(format!("invalid fieldsType {other:?} in managed fields entry")),
        }
        let set = match v.get("fieldsV1") {
            Some(f) if !f.is_null() => FieldSet::from_fields_v1(f)?,
            _ => FieldSet::new(),
        };
        Ok(Entry {
            manager: text("manager"),
            operation,
            api_version,
            time: v.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: text("subresource"),
            set,
        })
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), Value::String(self.subresource.clone()));
        }
        Value::Object(m)
    }
}

fn decode_entries(list: Option<&Value>, strict: bool) -> Result<Vec<Entry>, String> {
    let Some(Value::Array(items)) = list else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Entry> = Vec::new();
    for item in items {
        match Entry::decode(item) {
            Ok(e) => match out.iter_mut().find(|x| x.id() == e.id()) {
                Some(x) => x.set = x.set.union(&e.set),
                None => out.push(e),
            },
            Err(err) if strict => return Err(err),
            Err(_) => {}
        }
    }
    Ok(out)
}

fn live_entries(obj: Option<&Value>) -> Vec<Entry> {
    decode_entries(obj.and_then(|o| o.pointer("/metadata/managedFields")), false).unwrap_or_default()
}

// `[]` or `[{}]` written by a client clears managedFields (the apiserver's isResetManagedFields).
fn is_reset(list: Option<&Value>) -> bool {
    match list {
        Some(Value::Array(items)) => {
            items.is_empty()
                || (items.len() == 1
                    && items
                        .first()
                        .and_then(Value::as_object)
                        .is_some_and(Map::is_empty))
        }
        _ => false,
    }
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.remove("managedFields");
    }
    out
}

fn set_managed_fields(obj: &mut Value, mut entries: Vec<Entry>) {
    // The apiserver's order: operation, time, manager, apiVersion, subresource.
    entries.sort_by(|a, b| {
        (&a.operation, &a.time, &a.manager, &a.api_version, &a.subresource).cmp(&(
            &b.operation,
            &b.time,
            &b.manager,
            &b.api_version,
            &b.subresource,
        ))
    });
    let Value::Object(root) = obj else {
        return;
    };
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            meta.remove("managedFields");
        }
        return;
    }
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::encode).collect()),
        );
    }
}

// The apiserver never records these as owned (its stripMeta manager).
fn strip_meta(set: &FieldSet) -> FieldSet {
    const META: [&str; 9] = [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ];
    set.filter(|p| match p {
        [PathElem::Field(f)] => !matches!(f.as_str(), "apiVersion" | "kind" | "metadata"),
        [PathElem::Field(m), PathElem::Field(f)] if m == "metadata" => !META.contains(&f.as_str()),
        _ => true,
    })
}

// Restores the old timestamps when a write changed nothing but them, so a no-op write stays a
// no-op (the apiserver's IgnoreManagedFieldsTimestampsTransformer).
fn keep_old_timestamps(old: Option<&Value>, mut new: Value) -> Value {
    let Some(old) = old else {
        return new;
    };
    let entries = |v: &Value| -> Vec<Value> {
        let list = v
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .cloned();
        list.unwrap_or_default()
            .into_iter()
            .map(|mut e| {
                if let Value::Object(m) = &mut e {
                    m.remove("time");
                }
                e
            })
            .collect()
    };
    let (old_entries, new_entries) = (entries(old), entries(&new));
    let same_entries = old_entries.len() == new_entries.len()
        && old_entries
            .iter()
            .zip(&new_entries)
            .all(|(a, b)| values_equal(a, b));
    if same_entries
        && values_equal(&without_managed_fields(old), &without_managed_fields(&new))
        && let (Some(Value::Object(meta)), Some(list)) =
            (new.get_mut("metadata"), old.pointer("/metadata/managedFields"))
    {
        meta.insert("managedFields".into(), list.clone());
    }
    new
}

// ---------------------------------------------------------------------------------------------
// Conflicts and errors
// ---------------------------------------------------------------------------------------------

/// One field an apply would change while another manager owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// The manager as messages show it: `"name"` for an applier, `"name" using apps/v1` for an
    /// updater, with ` with subresource "status"` after the name where it applies.
    pub manager_display: String,
    /// The field, e.g. `.spec.replicas`.
    pub field: String,
}

/// The conflicts that make an apply fail with 409 Conflict unless forced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    /// The Status message, word for word as the apiserver writes it.
    pub fn message(&self) -> String {
        let list = &self.0;
        if let [only] = list.as_slice() {
            return format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.manager_display, only.field
            );
        }
        let mut lines = Vec::new();
        let mut current: Option<&str> = None;
        for c in list {
            if current != Some(c.manager_display.as_str()) {
                lines.push(format!("conflicts with {}:", c.manager_display));
                current = Some(&c.manager_display);
            }
            lines.push(format!("- {}", c.field));
        }
        format!("Apply failed with {} conflicts: {}", list.len(), lines.join("\n"))
    }

    /// `details.causes` of the Status: `{reason: FieldManagerConflict, message, field}` each.
    pub fn causes(&self) -> Vec<Value> {
        self.0
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("reason".into(), Value::String("FieldManagerConflict".into()));
                m.insert(
                    "message".into(),
                    Value::String(format!("conflict with {}", c.manager_display)),
                );
                m.insert("field".into(), Value::String(c.field.clone()));
                Value::Object(m)
            })
            .collect()
    }

    /// The whole 409 Status object.
    pub fn to_status(&self) -> Value {
        let mut details = Map::new();
        details.insert("causes".into(), Value::Array(self.causes()));
        let mut m = Map::new();
        m.insert("kind".into(), Value::String("Status".into()));
        m.insert("apiVersion".into(), Value::String("v1".into()));
        m.insert("metadata".into(), Value::Object(Map::new()));
        m.insert("status".into(), Value::String("Failure".into()));
        m.insert("message".into(), Value::String(self.message()));
        m.insert("reason".into(), Value::String("Conflict".into()));
        m.insert("details".into(), Value::Object(details));
        m.insert("code".into(), Value::from(409));
        Value::Object(m)
    }
}

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Conflicts {}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// 409 Conflict: see [`Conflicts::to_status`]; retrying with `force` takes the fields over.
    Conflicts(Conflicts),
    /// 400 Bad Request, e.g. `metadata.managedFields must be nil`.
    BadRequest(String),
    /// The configuration doesn't fit the schema (list element without its key, duplicate keys);
    /// the apiserver answers 500 with this message ("failed to create typed patch object ...").
    Invalid(String),
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Conflicts(c) => c.fmt(f),
            ApplyError::BadRequest(m) | ApplyError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ApplyError {}

impl From<Conflicts> for ApplyError {
    fn from(c: Conflicts) -> Self {
        ApplyError::Conflicts(c)
    }
}

// ---------------------------------------------------------------------------------------------
// Apply and update
// ---------------------------------------------------------------------------------------------

/// The part of the object a write covers; fields outside it are neither merged from an applied
/// configuration nor owned (the apiserver's "reset fields").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// The whole object (the caller already removed what the write may not touch).
    #[default]
    Whole,
    /// Everything but these field paths, e.g. `[["status"]]` for the main resource of a kind
    /// with a status subresource.
    Except(Vec<Vec<String>>),
    /// Only this subtree, e.g. `["status"]` for the `/status` subresource.
    Only(Vec<String>),
}

fn starts_with_fields(path: &[PathElem], fields: &[String]) -> bool {
    path.len() >= fields.len()
        && fields
            .iter()
            .zip(path)
            .all(|(f, e)| matches!(e, PathElem::Field(n) if n == f))
}

impl Scope {
    /// The main resource of a kind that has a status subresource: `status` is off limits.
    pub fn main_resource() -> Self {
        Scope::Except(vec![vec!["status".to_string()]])
    }

    /// The `/status` subresource: only `status`.
    pub fn status() -> Self {
        Scope::Only(vec!["status".to_string()])
    }

    fn covers(&self, path: &[PathElem]) -> bool {
        match self {
            Scope::Whole => true,
            Scope::Except(paths) => !paths.iter().any(|p| starts_with_fields(path, p)),
            Scope::Only(p) => starts_with_fields(path, p),
        }
    }

    fn filter(&self, v: &Value) -> Value {
        match self {
            Scope::Whole => v.clone(),
            Scope::Except(paths) => {
                let mut out = v.clone();
                for p in paths {
                    if let Some((last, parents)) = p.split_last() {
                        let mut cur = Some(&mut out);
                        for name in parents {
                            cur = cur.and_then(|c| c.get_mut(name.as_str()));
                        }
                        if let Some(Value::Object(m)) = cur {
                            m.remove(last);
                        }
                    }
                }
                out
            }
            Scope::Only(p) => {
                let mut sub = p.iter().try_fold(v, |cur, name| cur.get(name.as_str())).cloned();
                for name in p.iter().rev() {
                    sub = sub.map(|s| object(&[(name.as_str(), s)]));
                }
                sub.unwrap_or_else(|| Value::Object(Map::new()))
            }
        }
    }
}

/// Who writes, when, and to which part of the object.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// The `fieldManager`.
    pub manager: &'a str,
    /// `Some("status")` for writes through the status subresource (recorded in the entry).
    pub subresource: Option<&'a str>,
    /// The time to record, RFC 3339 (`2025-09-03T10:19:29Z`).
    pub now: &'a str,
    /// The part of the object the write covers.
    pub scope: Scope,
}

impl<'a> Writer<'a> {
    /// A writer of the whole object through the main resource.
    pub fn new(manager: &'a str, now: &'a str) -> Self {
        Writer {
            manager,
            subresource: None,
            now,
            scope: Scope::Whole,
        }
    }
}

fn api_version_of(obj: &Value) -> String {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn typed_patch_error(applied: &Value, err: &str) -> String {
    let text = |p: &str| applied.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let api_version = text("/apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!(
        "failed to create typed patch object ({}/{}; {group}/{version}, Kind={}): {err}",
        text("/metadata/namespace"),
        text("/metadata/name"),
        text("/kind"),
    )
}

/// Server-side apply of `applied` by `manager` onto `live` (None: the object is created), for the
/// whole object. See [`apply_as`].
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
    schema: &dyn ListTypes,
) -> Result<Value, ApplyError> {
    apply_as(live, applied, &Writer::new(manager, now), force, schema)
}

/// Server-side apply as structured-merge-diff does it: the configuration is merged into the live
/// object; what the manager applied last time and left out now is removed unless another manager
/// owns it; a changed field owned by another manager is a conflict unless `force`, which moves it
/// to the applier; the same value shares ownership. The result carries the updated
/// `metadata.managedFields`. `metadata.resourceVersion`, `uid`, `creationTimestamp` and
/// `generation` are taken from `live`, never from `applied`.
pub fn apply_as(
    live: Option<&Value>,
    applied: &Value,
    writer: &Writer<'_>,
    force: bool,
    schema: &dyn ListTypes,
) -> Result<Value, ApplyError> {
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".to_string(),
        ));
    }
    let api_version = api_version_of(applied);
    let subresource = writer.subresource.unwrap_or_default().to_string();
    let mut config = applied.clone();
    if let Some(Value::Object(meta)) = config.get_mut("metadata") {
        for field in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
        ] {
            meta.remove(field);
        }
    }
    let config = writer.scope.filter(&config);
    // Unstripped on purpose: apiVersion, kind and metadata.name keep `metadata` from being pruned.
    let applied_now = applied_set(schema, &config)
        .map_err(|e| ApplyError::Invalid(typed_patch_error(applied, &e)))?
        .filter(|p| writer.scope.covers(p));

    let live_obj = live
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut entries = live_entries(live);
    if live.is_some() && entries.is_empty() {
        // Fields set before anyone applied belong to "before-first-apply", as in the apiserver.
        let cmp = compare_objects(schema, &schema.empty_object(), &live_obj).restrict(&writer.scope);
        let set = strip_meta(&cmp.changed());
        if !set.is_empty() {
            entries.push(Entry {
                manager: "before-first-apply".to_string(),
                operation: UPDATE.to_string(),
                api_version: api_version.clone(),
                time: Some(writer.now.to_string()),
                subresource: subresource.clone(),
                set,
            });
        }
    }

    let merged = merge(schema, &mut Vec::new(), Some(&live_obj), &config).unwrap_or_default();
    let me = (
        writer.manager.to_string(),
        APPLY.to_string(),
        String::new(),
        subresource.clone(),
    );
    let last = entries
        .iter()
        .position(|e| e.id() == me)
        .map(|i| entries.remove(i).set);
    let owned_now = entries
        .iter()
        .fold(applied_now.clone(), |acc, e| acc.union(&e.set));
    let new_obj = match &last {
        Some(last) => prune(schema, merged, &owned_now, last),
        None => merged,
    };

    let cmp = compare_objects(schema, &live_obj, &new_obj).restrict(&writer.scope);
    let changed = cmp.changed();
    let mut found: Vec<(&Entry, FieldSet)> = entries
        .iter()
        .map(|e| (e, e.set.intersection(&changed)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if !force && !found.is_empty() {
        found.sort_by_key(|a| a.0.id());
        let conflicts = found
            .iter()
            .flat_map(|(e, set)| {
                set.ordered().into_iter().map(|p| Conflict {
                    manager: e.manager.clone(),
                    manager_display: e.display(),
                    field: path_string(&p),
                })
            })
            .collect();
        return Err(ApplyError::Conflicts(Conflicts(conflicts)));
    }
    for e in &mut entries {
        e.set = e.set.difference(&changed).difference(&cmp.removed);
    }
    entries.retain(|e| !e.set.is_empty());
    let mine = strip_meta(&applied_now);
    if !mine.is_empty() {
        entries.push(Entry {
            manager: writer.manager.to_string(),
            operation: APPLY.to_string(),
            api_version,
            time: Some(writer.now.to_string()),
            subresource,
            set: mine,
        });
    }
    let mut out = new_obj;
    set_managed_fields(&mut out, entries);
    Ok(keep_old_timestamps(live, out))
}

/// Field ownership for a non-apply write of the whole object. See [`record_update_as`].
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    now: &str,
    schema: &dyn ListTypes,
) -> Value {
    record_update_as(old, new, &Writer::new(manager, now), schema)
}

/// Field ownership for create, update and non-apply patch: returns `new` with managedFields
/// where every field this write added or changed belongs to the writer (one entry per manager,
/// Update, apiVersion and subresource) and no longer to anyone else, and removed fields belong
/// to nobody. Entries left empty are dropped. As in the apiserver: managedFields that `new`
/// carries are kept when valid (through the main resource), `[]`/`[{}]` clears them, and an
/// existing object without managedFields stays untracked until its first apply.
pub fn record_update_as(
    old: Option<&Value>,
    new: &Value,
    writer: &Writer<'_>,
    schema: &dyn ListTypes,
) -> Value {
    let api_version = api_version_of(new);
    let subresource = writer.subresource.unwrap_or_default().to_string();
    let requested = new.pointer("/metadata/managedFields");
    let mut entries = if writer.subresource.is_some() {
        live_entries(old)
    } else if is_reset(requested) {
        Vec::new()
    } else {
        match decode_entries(requested, true) {
            Ok(given) if !given.is_empty() => given,
            _ => live_entries(old),
        }
    };
    let mut out = without_managed_fields(new);
    if entries.is_empty() && old.is_some() {
        return out;
    }
    let old_obj = old
        .map(without_managed_fields)
        .unwrap_or_else(|| schema.empty_object());
    let cmp = compare_objects(schema, &old_obj, &out).restrict(&writer.scope);
    let changed = cmp.changed();
    for e in &mut entries {
        e.set = e.set.difference(&changed).difference(&cmp.removed);
    }
    entries.retain(|e| !e.set.is_empty());
    let mine = strip_meta(&changed);
    if !mine.is_empty() {
        let me = (
            writer.manager.to_string(),
            UPDATE.to_string(),
            api_version.clone(),
            subresource.clone(),
        );
        match entries.iter_mut().find(|e| e.id() == me) {
            Some(e) => {
                e.set = e.set.union(&mine);
                e.time = Some(writer.now.to_string());
            }
            None => entries.push(Entry {
                manager: writer.manager.to_string(),
                operation: UPDATE.to_string(),
                api_version,
                time: Some(writer.now.to_string()),
                subresource,
                set: mine,
            }),
        }
    }
    set_managed_fields(&mut out, entries);
    keep_old_timestamps(old, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2025-01-01T00:00:00Z";
    const T1: &str = "2025-01-01T00:01:00Z";
    const T2: &str = "2025-01-01T00:02:00Z";

    fn deploy() -> BuiltinTypes {
        BuiltinTypes::new("Deployment")
    }

    fn entries(obj: &Value) -> Vec<Value> {
        obj.pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    fn fields_of(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
        entries(obj)
            .into_iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
            .map(|e| e["fieldsV1"].clone())
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": data})
    }

    fn replicas(n: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": n}})
    }

    #[test]
    fn apply_creates_and_owns_everything() {
        let cfg = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
            "data": {"key": "value"}
        });
        let obj = apply(
            None,
            &cfg,
            "apply_test",
            false,
            T0,
            &BuiltinTypes::new("ConfigMap"),
        )
        .unwrap();
        assert_eq!(obj["data"], json!({"key": "value"}));
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{
                "manager": "apply_test", "operation": "Apply", "apiVersion": "v1", "time": T0,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}
            }])
        );
    }

    #[test]
    fn reapply_without_a_field_removes_it() {
        let s = BuiltinTypes::new("ConfigMap");
        let v1 = apply(None, &cm(json!({"a": "1", "b": "2"})), "m", false, T0, &s).unwrap();
        let v2 = apply(Some(&v1), &cm(json!({"a": "1"})), "m", false, T1, &s).unwrap();
        assert_eq!(v2["data"], json!({"a": "1"}));
        assert_eq!(
            fields_of(&v2, "m", "Apply").unwrap(),
            json!({"f:data": {"f:a": {}}})
        );
        // Dropping the last owned key takes the whole map away.
        let mut bare = cm(json!(null));
        bare.as_object_mut().unwrap().remove("data");
        let v3 = apply(Some(&v2), &bare, "m", false, T2, &s).unwrap();
        assert!(v3.get("data").is_none(), "{v3}");
        assert!(v3.pointer("/metadata/managedFields").is_none());
        assert_eq!(v3["metadata"]["name"], "c");
    }

    #[test]
    fn two_appliers_share_a_field_with_the_same_value() {
        let s = deploy();
        let a = apply(None, &replicas(3), "a", false, T0, &s).unwrap();
        let b = apply(Some(&a), &replicas(3), "b", false, T1, &s).unwrap();
        assert_eq!(
            fields_of(&b, "a", "Apply").unwrap(),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert_eq!(
            fields_of(&b, "b", "Apply").unwrap(),
            json!({"f:spec": {"f:replicas": {}}})
        );
        // a stops applying replicas: b still owns it, so it stays.
        let mut cfg = replicas(3);
        cfg["spec"] = json!({});
        let c = apply(Some(&b), &cfg, "a", false, T2, &s).unwrap();
        assert_eq!(c["spec"]["replicas"], 3);
        assert_eq!(fields_of(&c, "a", "Apply").unwrap(), json!({"f:spec": {}}));
    }

    #[test]
    fn conflict_without_force_has_the_apiservers_message() {
        let s = deploy();
        let a = apply(None, &replicas(3), "reconciler-controller", false, T0, &s).unwrap();
        let err = apply(Some(&a), &replicas(8), "kubectl", false, T1, &s).unwrap_err();
        let ApplyError::Conflicts(c) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            c.message(),
            r#"Apply failed with 1 conflict: conflict with "reconciler-controller": .spec.replicas"#
        );

        // Updaters are shown with their version.
        let mut edited = replicas(3);
        edited["spec"]["paused"] = json!(false);
        let u = record_update(None, &edited, "kubectl-client-side-apply", T0, &s);
        let mut cfg = replicas(5);
        cfg["spec"]["paused"] = json!(true);
        let ApplyError::Conflicts(c) = apply(Some(&u), &cfg, "kubectl", false, T1, &s).unwrap_err() else {
            panic!()
        };
        assert_eq!(
            c.message(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n\
             - .spec.paused\n- .spec.replicas"
        );
        assert_eq!(
            c.to_status()["details"]["causes"][1],
            json!({"reason": "FieldManagerConflict", "field": ".spec.replicas",
                   "message": "conflict with \"kubectl-client-side-apply\" using apps/v1"})
        );
        assert_eq!(c.to_status()["code"], 409);
    }

    #[test]
    fn force_moves_ownership() {
        let s = deploy();
        let mut cfg = replicas(3);
        cfg["spec"]["paused"] = json!(false);
        let a = apply(None, &cfg, "a", false, T0, &s).unwrap();
        let b = apply(Some(&a), &replicas(8), "b", true, T1, &s).unwrap();
        assert_eq!(b["spec"]["replicas"], 8);
        assert_eq!(
            fields_of(&b, "a", "Apply").unwrap(),
            json!({"f:spec": {"f:paused": {}}})
        );
        assert_eq!(
            fields_of(&b, "b", "Apply").unwrap(),
            json!({"f:spec": {"f:replicas": {}}})
        );
    }

    fn env_cfg(name: &str, value: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"template": {"spec": {"containers": [
                   {"name": "app", "env": [{"name": name, "value": value}]}]}}}})
    }

    #[test]
    fn map_list_elements_are_owned_one_by_one() {
        let s = deploy();
        let a = apply(None, &env_cfg("FOO", "1"), "a", false, T0, &s).unwrap();
        let b = apply(Some(&a), &env_cfg("BAR", "2"), "b", false, T1, &s).unwrap();
        let env = &b["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(
            env,
            &json!([{"name": "FOO", "value": "1"}, {"name": "BAR", "value": "2"}])
        );
        let fa = fields_of(&b, "a", "Apply").unwrap();
        let container = &fa["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"app"}"#];
        assert_eq!(
            container,
            &json!({".": {}, "f:name": {}, "f:env": {r#"k:{"name":"FOO"}"#: {".": {}, "f:name": {}, "f:value": {}}}})
        );
        // a drops FOO: only FOO goes; the container stays because b co-owns it.
        let mut cfg = env_cfg("x", "y");
        cfg["spec"]["template"]["spec"]["containers"][0] = json!({"name": "app"});
        let c = apply(Some(&b), &cfg, "a", false, T2, &s).unwrap();
        let env = &c["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env, &json!([{"name": "BAR", "value": "2"}]));
    }

    #[test]
    fn set_lists_merge_by_value() {
        let s = BuiltinTypes::new("ConfigMap");
        let with = |f: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}});
        let a = apply(None, &with(json!(["a.io/x"])), "a", false, T0, &s).unwrap();
        let b = apply(Some(&a), &with(json!(["b.io/y"])), "b", false, T1, &s).unwrap();
        assert_eq!(b["metadata"]["finalizers"], json!(["a.io/x", "b.io/y"]));
        assert_eq!(
            fields_of(&b, "a", "Apply").unwrap(),
            json!({"f:metadata": {"f:finalizers": {r#"v:"a.io/x""#: {}}}})
        );
        let c = apply(Some(&b), &with(json!([])), "a", false, T2, &s).unwrap();
        assert_eq!(c["metadata"]["finalizers"], json!(["b.io/y"]));
        assert_eq!(fields_of(&c, "a", "Apply"), None);
    }

    #[test]
    fn record_update_takes_fields_over() {
        let s = BuiltinTypes::new("ConfigMap");
        let mut cfg = cm(json!({"key": "value"}));
        cfg["metadata"]["labels"] = json!({"test-label": "test"});
        let a = apply(None, &cfg, "apply_test", false, T0, &s).unwrap();
        let mut edited = a.clone();
        edited["data"] = json!({"key": "new value", "new-key": "value"});
        let u = record_update(Some(&a), &edited, "updater", T1, &s);
        // Same outcome as the apiserver's TestApplyManagedFields.
        assert_eq!(
            u["metadata"]["managedFields"],
            json!([
                {"manager": "apply_test", "operation": "Apply", "apiVersion": "v1", "time": T0,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}}},
                {"manager": "updater", "operation": "Update", "apiVersion": "v1", "time": T1,
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:key": {}, "f:new-key": {}}}}
            ])
        );
        // Taking the last field of an entry drops the entry; a no-op write changes nothing.
        let mut relabel = u.clone();
        relabel["metadata"]["labels"]["test-label"] = json!("other");
        let v = record_update(Some(&u), &relabel, "updater", T2, &s);
        assert_eq!(entries(&v).len(), 1);
        assert_eq!(record_update(Some(&v), &v, "someone", T2, &s), v);
        // `[{}]` clears managedFields, and the object then stays untracked.
        let mut reset = v.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        let w = record_update(Some(&v), &reset, "x", T2, &s);
        assert!(w.pointer("/metadata/managedFields").is_none());
        let mut again = w.clone();
        again["data"]["key"] = json!("z");
        assert!(
            record_update(Some(&w), &again, "x", T2, &s)
                .pointer("/metadata/managedFields")
                .is_none()
        );
    }

    #[test]
    fn noop_apply_keeps_timestamps() {
        let s = deploy();
        let a = apply(None, &replicas(3), "a", false, T0, &s).unwrap();
        let again = apply(Some(&a), &replicas(3), "a", false, T1, &s).unwrap();
        assert_eq!(again, a);
    }

    #[test]
    fn strategic_merge_containers_by_name() {
        let s = BuiltinTypes::new("Pod");
        let pod = json!({"spec": {
            "containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "side:1"}],
            "tolerations": [{"key": "a"}],
            "volumes": [{"name": "v", "emptyDir": {}}]},
            "metadata": {"finalizers": ["x", "y"], "labels": {"a": "1", "b": "2"}}});
        let patch = json!({
            "metadata": {"labels": {"b": null}, "$deleteFromPrimitiveList/finalizers": ["x"], "finalizers": ["z"]},
            "spec": {
                "containers": [
                    {"name": "sidecar", "$patch": "delete"},
                    {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
                    {"name": "new", "image": "new:1"}],
                "tolerations": [{"key": "b"}],
                "volumes": [{"name": "v", "$retainKeys": ["name", "configMap"], "configMap": {"name": "cm"}}]}});
        let out = strategic_merge_patch(&pod, &patch, &s).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["y", "z"], "labels": {"a": "1"}},
                   "spec": {
                "containers": [
                    {"name": "app", "image": "app:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "new", "image": "new:1"}],
                "tolerations": [{"key": "b"}],
                "volumes": [{"name": "v", "configMap": {"name": "cm"}}]}})
        );
        let replace = json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "only"}]}});
        let out = strategic_merge_patch(&pod, &replace, &s).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "only"}]));
        let ordered =
            json!({"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}});
        let out = strategic_merge_patch(&pod, &ordered, &s).unwrap();
        assert_eq!(out["spec"]["containers"][0]["name"], "sidecar");
        let err =
            strategic_merge_patch(&pod, &json!({"spec": {"containers": [{"image": "x"}]}}), &s).unwrap_err();
        assert!(err.contains("does not contain declared merge key: name"), "{err}");
    }

    #[test]
    fn json_patch_and_merge_patch() {
        let obj = json!({"spec": {"replicas": 1}});
        let ok = json_patch(
            &obj,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 2}]),
        )
        .unwrap();
        assert_eq!(ok, json!({"spec": {"replicas": 2}}));
        let e = json_patch_with_code(&obj, &json!([{"op": "frobnicate", "path": "/x"}])).unwrap_err();
        assert_eq!(e.code, 400);
        let e = json_patch_with_code(&obj, &json!([{"op": "remove", "path": "/spec/missing"}])).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("/spec/missing"), "{}", e.message);
        let e = json_patch(
            &obj,
            &json!([{"op": "add", "path": "/a", "value": 1}, {"op": "test", "path": "/spec/replicas", "value": 9}]),
        )
        .unwrap_err();
        assert!(e.contains("did not match"), "{e}");
        // A null test on a missing path passes (the finalizer pattern), on a present one fails.
        let added = json_patch(
            &obj,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata", "value": {"finalizers": ["f"]}}]),
        )
        .unwrap();
        assert_eq!(added["metadata"]["finalizers"], json!(["f"]));
        assert!(
            json_patch(
                &added,
                &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}])
            )
            .is_err()
        );
        assert_eq!(
            merge_patch(&obj, &json!({"spec": {"replicas": null, "paused": true}})),
            json!({"spec": {"paused": true}})
        );
    }

    #[test]
    fn fields_v1_round_trip_and_paths() {
        let v = json!({"f:spec": {"f:ports": {".": {}, r#"k:{"port":80,"protocol":"TCP"}"#: {".": {}, "f:port": {}}}},
                       "f:metadata": {"f:finalizers": {r#"v:"a""#: {}}}});
        let set = FieldSet::from_fields_v1(&v).unwrap();
        assert_eq!(set.to_fields_v1(), v);
        let paths: Vec<String> = set.ordered().iter().map(|p| path_string(p)).collect();
        assert_eq!(
            paths,
            [
                r#".metadata.finalizers[="a"]"#,
                ".spec.ports",
                r#".spec.ports[port=80,protocol="TCP"]"#,
                r#".spec.ports[port=80,protocol="TCP"].port"#
            ]
        );
    }

    #[test]
    fn apply_errors() {
        let s = BuiltinTypes::new("Pod");
        let mut cfg = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        let err = apply(None, &cfg, "m", false, T0, &s).unwrap_err();
        assert_eq!(
            err,
            ApplyError::Invalid(
                r#"failed to create typed patch object (ns/p; /v1, Kind=Pod): .spec.containers: duplicate entries for key [name="a"]"#.into()
            )
        );
        cfg["spec"]["containers"] = json!([{"name": "a", "ports": [{"containerPort": 80}]}]);
        let ok = apply(None, &cfg, "m", false, T0, &s).unwrap();
        let f = fields_of(&ok, "m", "Apply").unwrap();
        assert!(
            f["f:spec"]["f:containers"][r#"k:{"name":"a"}"#]["f:ports"]
                .get(r#"k:{"containerPort":80,"protocol":"TCP"}"#)
                .is_some()
        );
        cfg["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            apply(None, &cfg, "m", false, T0, &s).unwrap_err(),
            ApplyError::BadRequest("metadata.managedFields must be nil".into())
        );
    }

    #[test]
    fn scopes_keep_status_and_spec_apart() {
        let s = deploy();
        let mut cfg = replicas(2);
        cfg["status"] = json!({"replicas": 7});
        let main = Writer {
            scope: Scope::main_resource(),
            ..Writer::new("a", T0)
        };
        let a = apply_as(None, &cfg, &main, false, &s).unwrap();
        assert!(a.get("status").is_none());
        let mut st = without_managed_fields(&a);
        st["status"] = json!({"replicas": 2});
        st["spec"]["replicas"] = json!(99);
        let w = Writer {
            subresource: Some("status"),
            scope: Scope::status(),
            ..Writer::new("kcm", T1)
        };
        let out = apply_as(Some(&a), &st, &w, false, &s).unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(out["status"]["replicas"], 2);
        let e = entries(&out).into_iter().find(|e| e["manager"] == "kcm").unwrap();
        assert_eq!(e["subresource"], "status");
        assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    }

    #[test]
    fn crd_schema_list_types() {
        let crd = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["port", "protocol"],
                          "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
                "extra": {"type": "object", "additionalProperties": {"type": "array", "x-kubernetes-list-type": "set"}},
                "args": {"type": "array"}}}}}}}]}});
        let s = CrdTypes::from_crd(&crd, "v1").unwrap();
        let p = |names: &[&str]| {
            names
                .iter()
                .map(|n| PathElem::Field((*n).into()))
                .collect::<Vec<_>>()
        };
        assert_eq!(s.list_type(&p(&["spec", "hosts"])), ListType::Set);
        assert_eq!(s.list_type(&p(&["spec", "ports"])), keys(&["port", "protocol"]));
        assert_eq!(s.list_type(&p(&["spec", "args"])), ListType::Atomic);
        assert_eq!(s.list_type(&p(&["spec", "extra", "anything"])), ListType::Set);
        assert_eq!(s.list_type(&p(&["metadata", "finalizers"])), ListType::Set);
        assert!(s.is_atomic_map(&p(&["spec", "selector"])));
        assert_eq!(
            s.key_default(&p(&["spec", "ports"]), "protocol"),
            Some(json!("TCP"))
        );
    }

    #[test]
    fn dropped_container_is_pruned_and_untracked_objects_get_before_first_apply() {
        let s = deploy();
        let with = |cs: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"template": {"spec": {"containers": cs}}}})
        };
        let both = with(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
        let v1 = apply(None, &both, "m", false, T0, &s).unwrap();
        let v2 = apply(
            Some(&v1),
            &with(json!([{"name": "a", "image": "a"}])),
            "m",
            false,
            T1,
            &s,
        )
        .unwrap();
        assert_eq!(
            v2["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "a"}])
        );

        let untracked = without_managed_fields(&v2);
        let v3 = apply(Some(&untracked), &replicas(2), "m2", false, T2, &s).unwrap();
        let before = fields_of(&v3, "before-first-apply", "Update").unwrap();
        let c = &before["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"a"}"#];
        assert_eq!(c, &json!({".": {}, "f:image": {}, "f:name": {}}));
        assert_eq!(
            fields_of(&v3, "m2", "Apply").unwrap(),
            json!({"f:spec": {"f:replicas": {}}})
        );
    }

    // A Pod created by `kubectl apply` (client side), as captured in an AdmissionReview from a
    // Kubernetes 1.25 apiserver: the object after defaulting and the managedFields it carried.
    #[test]
    fn pod_created_by_update_matches_a_real_apiserver() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nginx", "namespace": "default", "uid": "eae00ed2-72d2-4ab4-9012-51ba11a284d0",
                "creationTimestamp": "2022-09-14T20:33:50Z",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}], "resources": {},
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent"}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                "securityContext": {}, "schedulerName": "default-scheduler", "enableServiceLinks": true},
            "status": {}});
        let w = Writer {
            scope: Scope::main_resource(),
            ..Writer::new("kubectl-client-side-apply", T0)
        };
        let out = record_update_as(None, &pod, &w, &BuiltinTypes::new("Pod"));
        let expected = json!({
            "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
            "f:spec": {"f:containers": {r#"k:{"name":"nginx"}"#: {".": {}, "f:image": {}, "f:imagePullPolicy": {},
                "f:name": {},
                "f:ports": {".": {}, r#"k:{"containerPort":80,"protocol":"TCP"}"#:
                    {".": {}, "f:containerPort": {}, "f:protocol": {}}},
                "f:resources": {}, "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}});
        assert_eq!(
            fields_of(&out, "kubectl-client-side-apply", "Update").unwrap(),
            expected
        );
    }

    // A real Deployment's history, from a blog post showing `kubectl get -o yaml
    // --show-managed-fields` (https://github.com/andreaskaris/reconciler-operator): the operator
    // ("main") creates it, its controller applies with force, kubectl applies replicas, the
    // controller forces them back. The managedFields below are what that apiserver stored.
    #[test]
    fn realistic_deployment_history_matches_a_real_apiserver() {
        let s = deploy();
        let owner = json!({"apiVersion": "test.example.com/v1alpha1", "kind": "Reconciler", "name": "reconciler-sample",
                           "uid": "6c9e435e-5edf-4a13-868d-d0b85aa09d1a", "controller": true, "blockOwnerDeletion": true});
        let container = json!({"name": "netshoot", "image": "nicolaka/netshoot", "command": ["sleep", "infinity"],
            "resources": {}, "imagePullPolicy": "IfNotPresent",
            "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsUser": 1001, "runAsNonRoot": false,
                                "allowPrivilegeEscalation": false}});
        let pod_security = json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
        // As stored after the create: defaulted by the apiserver.
        let mut created_container = container.clone();
        created_container["terminationMessagePath"] = json!("/dev/termination-log");
        created_container["terminationMessagePolicy"] = json!("File");
        let created = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "reconciler", "namespace": "reconciler", "uid": "u1", "resourceVersion": "1",
                         "generation": 1, "creationTimestamp": "2025-09-03T10:19:29Z", "ownerReferences": [owner]},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "reconciler-deployment"}},
                "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "reconciler-deployment"}},
                    "spec": {"containers": [created_container], "restartPolicy": "Always",
                             "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                             "securityContext": pod_security, "schedulerName": "default-scheduler"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
            "status": {}});
        let main = Writer {
            scope: Scope::main_resource(),
            ..Writer::new("main", "2025-09-03T10:19:29Z")
        };
        let v1 = record_update_as(None, &created, &main, &s);
        // The typed Deployment controller-runtime sends: Go zero values and all.
        let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "reconciler", "namespace": "reconciler", "creationTimestamp": null, "ownerReferences": [owner]},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "reconciler-deployment"}},
                "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "reconciler-deployment"}},
                    "spec": {"containers": [container], "securityContext": pod_security}},
                "strategy": {}},
            "status": {}});
        let ctl = |t| Writer {
            scope: Scope::main_resource(),
            ..Writer::new("reconciler-controller", t)
        };
        let v2 = apply_as(Some(&v1), &applied, &ctl("2025-09-03T10:24:31Z"), true, &s).unwrap();
        let kubectl = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "reconciler", "namespace": "reconciler"}, "spec": {"replicas": 8}});
        let err = apply(Some(&v2), &kubectl, "kubectl", false, "2025-09-03T10:33:02Z", &s).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "reconciler-controller": .spec.replicas"#
        );
        let v3 = apply(Some(&v2), &kubectl, "kubectl", true, "2025-09-03T10:33:02Z", &s).unwrap();
        let order: Vec<Value> = entries(&v3).iter().map(|e| e["manager"].clone()).collect();
        assert_eq!(
            order,
            [json!("reconciler-controller"), json!("kubectl"), json!("main")]
        );
        let v4 = apply_as(Some(&v3), &applied, &ctl("2025-09-03T10:35:04Z"), true, &s).unwrap();
        assert_eq!(v4["spec"]["replicas"], 3);

        let expected = json!([
          {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "manager": "reconciler-controller", "operation": "Apply",
           "time": "2025-09-03T10:35:04Z", "fieldsV1": {
            "f:metadata": {"f:ownerReferences": {r#"k:{"uid":"6c9e435e-5edf-4a13-868d-d0b85aa09d1a"}"#: {}}},
            "f:spec": {"f:replicas": {}, "f:selector": {}, "f:strategy": {},
              "f:template": {
                "f:metadata": {"f:creationTimestamp": {}, "f:labels": {"f:app": {}}},
                "f:spec": {
                  "f:containers": {r#"k:{"name":"netshoot"}"#: {".": {}, "f:command": {}, "f:image": {},
                    "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
                    "f:securityContext": {"f:allowPrivilegeEscalation": {}, "f:capabilities": {"f:drop": {}},
                                          "f:runAsNonRoot": {}, "f:runAsUser": {}}}},
                  "f:securityContext": {"f:runAsNonRoot": {}, "f:seccompProfile": {"f:type": {}}}}}}}},
          {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "manager": "main", "operation": "Update",
           "time": "2025-09-03T10:19:29Z", "fieldsV1": {
            "f:metadata": {"f:ownerReferences": {".": {}, r#"k:{"uid":"6c9e435e-5edf-4a13-868d-d0b85aa09d1a"}"#: {}}},
            "f:spec": {"f:progressDeadlineSeconds": {}, "f:revisionHistoryLimit": {}, "f:selector": {},
              "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
              "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                  "f:containers": {r#"k:{"name":"netshoot"}"#: {".": {}, "f:command": {}, "f:image": {},
                    "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
                    "f:securityContext": {".": {}, "f:allowPrivilegeEscalation": {},
                                          "f:capabilities": {".": {}, "f:drop": {}},
                                          "f:runAsNonRoot": {}, "f:runAsUser": {}},
                    "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                  "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                  "f:securityContext": {".": {}, "f:runAsNonRoot": {}, "f:seccompProfile": {".": {}, "f:type": {}}},
                  "f:terminationGracePeriodSeconds": {}}}}}}
        ]);
        assert_eq!(v4["metadata"]["managedFields"], expected);
        assert_eq!(v4["metadata"]["uid"], "u1");
    }
}
