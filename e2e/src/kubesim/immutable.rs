//! Immutable fields on update, as kube-apiserver 1.32 enforces them (the update validation of
//! `pkg/apis/{core,apps,batch}/validation` and the update strategies that run before it).
//!
//! [`prepare_for_update`] makes the carry-overs upstream's update path makes before validating,
//! so that a client omitting a server-owned value keeps it instead of being refused: a Service
//! keeps its clusterIP(s), NodePorts and healthCheckNodePort. [`check_update`] is a pure
//! function returning every `(field, detail)` error of an update, in upstream's order and with
//! upstream's wording; the caller renders them as one 422.
//!
//! Both run after kubesim's defaulting of the new object (`defaults::before_store`), so a
//! manifest that omits defaulted fields compares equal to the stored, defaulted object.
//! Comparisons are semantic, like apimachinery's `Semantic.DeepEqual`: a null, an empty list
//! and an empty map equal an absent field, and resource quantities compare by value
//! (`1Gi` == `1024Mi`).
//!
//! Known gaps, all lenient or simplified compared with upstream:
//! - `Invalid value:` renderings of structs are abbreviated (`core.PodTemplateSpec{...}`), and
//!   pod/PVC `Forbidden` messages omit the spec diff upstream appends on a new line.
//! - Empty maps and empty objects equal absent ones everywhere, although Go tells a nil
//!   `*struct` from an empty one (e.g. `emptyDir: {}`).
//! - Gated pods (with `schedulingGates`) may only add to `nodeSelector`; upstream also lets them
//!   change `affinity.nodeAffinity`, which is refused here.
//! - Jobs: the suspended-and-never-started relaxation covers node affinity, nodeSelector,
//!   tolerations, schedulingGates, template labels and annotations, like upstream; the
//!   `MutablePodResourcesForSuspendedJobs` relaxation of later releases is not modelled.
//! - PVCs: `volumeAttributesClassName` may change on bound claims (as with the
//!   VolumeAttributesClass gate on; 1.32 has it off by default). Shrinking follows 1.32's
//!   default `RecoverVolumeExpansionFailure` rule: a request may go back down, but not to or
//!   below `status.capacity`.
//! - Services: only the clusterIP(s) rule; ipFamilies changes are not checked.

use serde_json::{Map, Value, json};

use super::objects::ensure_object;
use super::registry::ResourceType;

/// A field error: (field path, detail), e.g. `("spec", "Forbidden: ...")`.
pub type FieldErr = (String, String);

const IMMUTABLE: &str = "field is immutable";
const IMMUTABLE_WHEN_SET: &str = "Forbidden: field is immutable when `immutable` is set";

/// The fields of a pod spec an update may change, as upstream lists them in its message.
const UPDATABLE_POD_SPEC_FIELDS: [&str; 5] = [
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// Spec fields of a StatefulSet an update may change.
const STATEFULSET_MUTABLE: [&str; 6] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

/// Keys whose values are maps of resource quantities.
const QUANTITY_MAPS: [&str; 6] = [
    "requests",
    "limits",
    "capacity",
    "hard",
    "overhead",
    "allocatable",
];

const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn is(rt: &ResourceType, group: &str, plural: &str) -> bool {
    !rt.custom && rt.group == group && rt.plural == plural
}

/// Carries server-owned values of `old` into `new` where the client left them out, like
/// upstream's update path does before validation.
pub fn prepare_for_update(rt: &ResourceType, old: &Value, new: &mut Value) {
    if is(rt, "", "services") {
        prepare_service(old, new);
    }
}

/// Every immutability error of the update `old` → `new` (both defaulted).
pub fn check_update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<FieldErr> {
    if rt.custom {
        return Vec::new();
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => pod_update(old, new),
        ("", "persistentvolumeclaims") => pvc_update(old, new),
        ("", "secrets") => secret_update(old, new),
        ("", "configmaps") => configmap_update(old, new),
        ("", "services") => service_update(old, new),
        ("apps", "deployments" | "replicasets" | "daemonsets") => selector_immutable(old, new),
        ("apps", "statefulsets") => statefulset_update(old, new),
        ("batch", "jobs") => job_update(old, new),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Semantic comparison

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn quantity_value(v: &Value) -> Value {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return normalize(other),
    };
    parse_quantity(&text).map_or_else(|| v.clone(), |q| json!(format!("quantity:{q}")))
}

/// `v` with nulls and empty lists and maps dropped from objects and quantities canonical, so
/// that `==` is apimachinery's semantic equality (near enough).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let n = match x {
                    Value::Object(q) if QUANTITY_MAPS.contains(&k.as_str()) => {
                        let mut qm = Map::new();
                        for (qk, qv) in q {
                            if !qv.is_null() {
                                qm.insert(qk.clone(), quantity_value(qv));
                            }
                        }
                        Value::Object(qm)
                    }
                    _ if k == "sizeLimit" => quantity_value(x),
                    _ => normalize(x),
                };
                if !is_empty(&n) {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Sets (or, for null, removes) `key` of object `v`.
fn put(v: &mut Value, key: &str, value: Value) {
    let m = ensure_object(v);
    if value.is_null() {
        m.remove(key);
    } else {
        m.insert(key.to_string(), value);
    }
}

// ---------------------------------------------------------------------------------------------
// Quantities

/// A Kubernetes resource quantity (`500m`, `1.5Gi`, `2k`, `1e3`, `10`) in nano-units, rounded up
/// like upstream rounds below its precision. `None` when `s` is not a quantity or too large.
pub fn parse_quantity(s: &str) -> Option<i128> {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = digits.parse().ok()?;
    let (pow10, pow2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse::<i32>().ok()?, 0),
        _ => return None,
    };
    let mut v = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    let frac_len = i32::try_from(frac_part.len()).ok()?;
    let exp = pow10.checked_add(9)?.checked_sub(frac_len)?;
    if exp >= 0 {
        v = v.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?;
    } else {
        let d = 10i128.checked_pow(u32::try_from(-exp).ok()?)?;
        v = v.checked_add(d - 1)? / d;
    }
    Some(if negative { -v } else { v })
}

fn quantity_at(v: &Value, pointer: &str) -> Option<i128> {
    match v.pointer(pointer)? {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => parse_quantity(&n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Go-style renderings of values, as `field.Invalid` prints them (`%q`, `%v` and `%#v`)

fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A nil pointer prints as the string "null".
const GO_NULL: &str = "\"null\"";

/// A `*string` or `*SomeStringType` / `*int32` / `*bool` value.
fn go_scalar(v: &Value) -> String {
    match v {
        Value::Null => GO_NULL.to_string(),
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}

fn go_strings(v: &Value) -> String {
    match v.as_array() {
        None => "[]string(nil)".to_string(),
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| go_quote(x.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// `*metav1.LabelSelector` as `%#v` prints it.
pub fn go_label_selector(sel: &Value) -> String {
    if sel.is_null() {
        return GO_NULL.to_string();
    }
    let labels = match sel.get("matchLabels").and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let mut pairs: Vec<(&String, &Value)> = m.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            let items: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or_default())))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    };
    let expressions = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(str_at(r, "/key")),
                        go_quote(str_at(r, "/operator")),
                        go_strings(at(r, "/values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")
}

/// A struct (behind a pointer) as an abbreviated `%#v`.
fn go_struct(type_name: &str, v: &Value) -> String {
    if v.is_null() {
        GO_NULL.to_string()
    } else {
        format!("{type_name}{{...}}")
    }
}

fn immutable_field(
    path: &str,
    old: &Value,
    new: &Value,
    render: impl Fn(&Value) -> String,
) -> Option<FieldErr> {
    (!same(old, new)).then(|| {
        (
            path.to_string(),
            format!("Invalid value: {}: {IMMUTABLE}", render(new)),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Pods (ValidatePodUpdate)

fn pod_update(old: &Value, new: &Value) -> Vec<FieldErr> {
    let os = at(old, "/spec");
    let ns = at(new, "/spec");
    let mut errs = Vec::new();
    for (key, path) in [
        ("containers", "spec.containers"),
        ("initContainers", "spec.initContainers"),
    ] {
        let (oc, nc) = (list(os, key), list(ns, key));
        if oc.len() != nc.len() {
            errs.push((
                path.to_string(),
                "Forbidden: pod updates may not add or remove containers".into(),
            ));
            return errs;
        }
        for (i, c) in nc.iter().enumerate() {
            let image = str_at(c, "/image");
            if image.is_empty() {
                errs.push((format!("{path}[{i}].image"), "Required value".into()));
            }
            if image.trim() != image {
                errs.push((
                    format!("{path}[{i}].image"),
                    format!(
                        "Invalid value: {}: must not have leading or trailing whitespace",
                        go_quote(image)
                    ),
                ));
            }
        }
    }
    // activeDeadlineSeconds: set from nil, or lowered.
    let new_ads = ns.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let old_ads = os.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (new_ads, old_ads) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push((
                "spec.activeDeadlineSeconds".into(),
                format!(
                    "Invalid value: {n}: must be between 0 and {}, inclusive",
                    i32::MAX
                ),
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push((
                "spec.activeDeadlineSeconds".into(),
                format!("Invalid value: {n}: must be less than or equal to previous value"),
            ));
            return errs;
        }
        (None, Some(_)) => errs.push((
            "spec.activeDeadlineSeconds".into(),
            format!("Invalid value: {GO_NULL}: must not update from a positive integer to nil value"),
        )),
        _ => {}
    }
    // Tolerations: only additions (and tolerationSeconds changes).
    let strip_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        normalize(&t)
    };
    let new_tolerations: Vec<Value> = list(ns, "tolerations").iter().map(strip_seconds).collect();
    if list(os, "tolerations")
        .iter()
        .any(|t| !new_tolerations.contains(&strip_seconds(t)))
    {
        errs.push((
            "spec.tolerations".into(),
            "Forbidden: existing toleration can not be modified except its tolerationSeconds".into(),
        ));
    }
    // Scheduling gates: only deletions.
    let old_gates: Vec<&str> = list(os, "schedulingGates")
        .iter()
        .map(|g| str_at(g, "/name"))
        .collect();
    for (i, g) in list(ns, "schedulingGates").iter().enumerate() {
        let name = str_at(g, "/name");
        if !old_gates.contains(&name) {
            errs.push((
                format!("spec.schedulingGates[{i}].name"),
                format!("Forbidden: only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    if same(os, ns) {
        return errs;
    }
    // Munge the updatable fields back to their old values; anything left is forbidden.
    let mut munged = ns.clone();
    for key in ["containers", "initContainers"] {
        if let Some(cs) = munged.get_mut(key).and_then(Value::as_array_mut) {
            for (c, o) in cs.iter_mut().zip(list(os, key)) {
                put(c, "image", o.get("image").cloned().unwrap_or(Value::Null));
            }
        }
    }
    for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
        put(&mut munged, key, os.get(key).cloned().unwrap_or(Value::Null));
    }
    let old_grace = os.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
    let new_grace = munged
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        put(&mut munged, "terminationGracePeriodSeconds", json!(old_grace));
    }
    // Gated pods may add to nodeSelector.
    if !list(os, "schedulingGates").is_empty() {
        let old_sel = os
            .get("nodeSelector")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let new_sel = munged
            .get("nodeSelector")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if old_sel.iter().all(|(k, v)| new_sel.get(k) == Some(v)) {
            put(
                &mut munged,
                "nodeSelector",
                os.get("nodeSelector").cloned().unwrap_or(Value::Null),
            );
        }
    }
    if !same(&munged, os) {
        errs.push((
            "spec".into(),
            format!(
                "Forbidden: pod updates may not change fields other than {}",
                UPDATABLE_POD_SPEC_FIELDS.join(",")
            ),
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// PersistentVolumeClaims (ValidatePersistentVolumeClaimUpdate)

fn pvc_update(old: &Value, new: &Value) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let mut o = at(old, "/spec").clone();
    let mut n = at(new, "/spec").clone();
    // The PV controller binds a claim once.
    if str_at(&o, "/volumeName").is_empty() {
        put(
            &mut o,
            "volumeName",
            n.get("volumeName").cloned().unwrap_or(Value::Null),
        );
    }
    let annotation = |v: &Value| {
        v.pointer("/metadata/annotations")
            .and_then(|a| a.get(STORAGE_CLASS_ANNOTATION))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let (old_ann, new_ann) = (annotation(old), annotation(new));
    let old_class = o
        .get("storageClassName")
        .and_then(Value::as_str)
        .map(String::from);
    let new_class = n
        .get("storageClassName")
        .and_then(Value::as_str)
        .map(String::from);
    let upgrade_from_annotation = old_ann.is_some()
        && old_class.is_none()
        && new_class.is_some()
        && new_class == old_ann
        && (new_ann.is_none() || new_ann == old_ann);
    if upgrade_from_annotation {
        put(&mut n, "storageClassName", Value::Null);
    } else {
        if new_ann != old_ann {
            errs.push((
                format!("metadata.annotations.{STORAGE_CLASS_ANNOTATION}"),
                format!(
                    "Invalid value: {}: {IMMUTABLE}",
                    go_quote(new_ann.as_deref().unwrap_or_default())
                ),
            ));
        }
        // A claim without a class may get one (retroactive default StorageClass).
        if new_class.is_some() && old_class.is_none() && (old_ann.is_none() || new_class == old_ann) {
            put(&mut n, "storageClassName", Value::Null);
        }
    }
    // Bound claims may change their storage request and volume attributes class.
    let bound = str_at(old, "/status/phase") == "Bound";
    if bound {
        if let Some(req) = n.pointer_mut("/resources/requests") {
            put(req, "storage", at(&o, "/resources/requests/storage").clone());
        }
        if n.get("volumeAttributesClassName").is_some_and(|v| !v.is_null()) {
            put(
                &mut n,
                "volumeAttributesClassName",
                o.get("volumeAttributesClassName").cloned().unwrap_or(Value::Null),
            );
        }
    }
    if !same(&n, &o) {
        errs.push((
            "spec".into(),
            "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into(),
        ));
    }
    let size = |v: &Value| quantity_at(v, "/spec/resources/requests/storage").unwrap_or(0);
    let (old_size, new_size) = (size(old), size(new));
    let status_size = quantity_at(old, "/status/capacity/storage").unwrap_or(0);
    // 1.32 enables RecoverVolumeExpansionFailure: a request may go back down to just above
    // what was actually provisioned.
    if new_size < old_size && new_size <= status_size {
        errs.push((
            "spec.resources.requests.storage".into(),
            "Forbidden: field can not be less than status.capacity".into(),
        ));
    }
    if let Some(e) = immutable_field(
        "volumeMode",
        at(old, "/spec/volumeMode"),
        at(new, "/spec/volumeMode"),
        go_scalar,
    ) {
        errs.push(e);
    }
    let old_vac = at(old, "/spec/volumeAttributesClassName");
    let new_vac = at(new, "/spec/volumeAttributesClassName");
    if !old_vac.is_null() && old_vac != new_vac {
        if new_vac.is_null() {
            errs.push((
                "spec.volumeAttributesClassName".into(),
                "Forbidden: update from non-nil value to nil is forbidden".into(),
            ));
        } else if new_vac.as_str() == Some("") {
            errs.push((
                "spec.volumeAttributesClassName".into(),
                "Forbidden: update from non-nil value to an empty string is forbidden".into(),
            ));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Secrets and ConfigMaps (ValidateSecretUpdate, ValidateConfigMapUpdate)

fn immutable_set(obj: &Value) -> bool {
    obj.get("immutable").and_then(Value::as_bool) == Some(true)
}

fn secret_update(old: &Value, new: &Value) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    if let Some(e) = immutable_field("type", at(old, "/type"), at(new, "/type"), go_scalar) {
        errs.push(e);
    }
    if immutable_set(old) {
        if !immutable_set(new) {
            errs.push(("immutable".into(), IMMUTABLE_WHEN_SET.into()));
        }
        // stringData was merged into data before this check, as upstream does.
        if !same(at(old, "/data"), at(new, "/data")) {
            errs.push(("data".into(), IMMUTABLE_WHEN_SET.into()));
        }
    }
    errs
}

fn configmap_update(old: &Value, new: &Value) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    if immutable_set(old) {
        if !immutable_set(new) {
            errs.push(("immutable".into(), IMMUTABLE_WHEN_SET.into()));
        }
        for key in ["data", "binaryData"] {
            if !same(at(old, &format!("/{key}")), at(new, &format!("/{key}"))) {
                errs.push((key.into(), IMMUTABLE_WHEN_SET.into()));
            }
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Services (patchAllocatedValues, normalizeClusterIPs, validateUpgradeDowngradeClusterIPs)

fn service_type(svc: &Value) -> &str {
    match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    }
}

fn needs_node_port(svc: &Value) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => at(svc, "/spec/allocateLoadBalancerNodePorts").as_bool() != Some(false),
        _ => false,
    }
}

fn needs_health_check_node_port(svc: &Value) -> bool {
    service_type(svc) == "LoadBalancer" && str_at(svc, "/spec/externalTrafficPolicy") == "Local"
}

fn prepare_service(old: &Value, new: &mut Value) {
    if service_type(old) == "ExternalName" || service_type(new) == "ExternalName" {
        return;
    }
    let needs_np = needs_node_port(old) && needs_node_port(new);
    let needs_hc = needs_health_check_node_port(old) && needs_health_check_node_port(new);
    let os = at(old, "/spec");
    let spec = ensure_object(new).entry("spec").or_insert_with(|| json!({}));
    if str_at(spec, "/clusterIP").is_empty() && !str_at(os, "/clusterIP").is_empty() {
        put(spec, "clusterIP", os["clusterIP"].clone());
    }
    if list(spec, "clusterIPs").is_empty() && !list(os, "clusterIPs").is_empty() {
        put(spec, "clusterIPs", os["clusterIPs"].clone());
    }
    // A changed clusterIP with unchanged clusterIPs means the client only knew the singular.
    let (old_ip, new_ip) = (
        str_at(os, "/clusterIP").to_string(),
        str_at(spec, "/clusterIP").to_string(),
    );
    let same_ips = same(at(os, "/clusterIPs"), at(spec, "/clusterIPs"));
    if old_ip != new_ip && same_ips {
        let ips = if new_ip.is_empty() {
            Value::Null
        } else {
            json!([new_ip])
        };
        put(spec, "clusterIPs", ips);
    }
    if needs_np {
        let old_ports = list(os, "ports");
        let used: Vec<i64> = list(spec, "ports")
            .iter()
            .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
            .filter(|np| {
                old_ports
                    .iter()
                    .any(|o| o.get("nodePort").and_then(Value::as_i64) == Some(*np))
            })
            .collect();
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                    continue;
                }
                let name = str_at(p, "/name").to_string();
                let old_np = old_ports
                    .iter()
                    .find(|o| str_at(o, "/name") == name)
                    .and_then(|o| o.get("nodePort").and_then(Value::as_i64));
                if let Some(np) = old_np.filter(|np| !used.contains(np)) {
                    put(p, "nodePort", json!(np));
                }
            }
        }
    }
    if needs_hc
        && spec
            .get("healthCheckNodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
    {
        put(
            spec,
            "healthCheckNodePort",
            os.get("healthCheckNodePort").cloned().unwrap_or(Value::Null),
        );
    }
    for key in ["ipFamilies", "ipFamilyPolicy"] {
        if spec.get(key).is_none_or(is_empty) {
            put(spec, key, os.get(key).cloned().unwrap_or(Value::Null));
        }
    }
}

fn service_update(old: &Value, new: &Value) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    if service_type(old) == "ExternalName" || service_type(new) == "ExternalName" {
        return errs;
    }
    let headless = |v: &Value| str_at(v, "/spec/clusterIP") == "None";
    if headless(old) && headless(new) {
        return errs;
    }
    let strings = |v: &Value| -> Vec<String> {
        list(at(v, "/spec"), "clusterIPs")
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (o, n) = (strings(old), strings(new));
    let value = go_strings(at(new, "/spec/clusterIPs"));
    let changed = |i: usize| {
        (
            format!("spec.clusterIPs[{i}]"),
            format!("Invalid value: {value}: may not change once set"),
        )
    };
    if o.len() == n.len() {
        for i in (0..o.len()).filter(|i| o[*i] != n[*i]) {
            errs.push(changed(i));
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push((
                "spec.clusterIPs[0]".into(),
                format!("Invalid value: {value}: primary clusterIP can not be unset"),
            ));
        } else if n[0] != o[0] {
            errs.push(changed(0));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        errs.push(changed(0));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// apps/v1 and batch/v1

fn selector_immutable(old: &Value, new: &Value) -> Vec<FieldErr> {
    immutable_field(
        "spec.selector",
        at(old, "/spec/selector"),
        at(new, "/spec/selector"),
        go_label_selector,
    )
    .into_iter()
    .collect()
}

fn statefulset_update(old: &Value, new: &Value) -> Vec<FieldErr> {
    let without_mutable = |v: &Value| {
        let mut spec = at(v, "/spec").clone();
        if let Some(m) = spec.as_object_mut() {
            for k in STATEFULSET_MUTABLE {
                m.remove(k);
            }
            // The claim templates' type meta and status are the server's to fill.
            if let Some(claims) = m.get_mut("volumeClaimTemplates").and_then(Value::as_array_mut) {
                for c in claims.iter_mut().filter_map(Value::as_object_mut) {
                    for k in ["apiVersion", "kind", "status"] {
                        c.remove(k);
                    }
                }
            }
        }
        spec
    };
    if same(&without_mutable(old), &without_mutable(new)) {
        return Vec::new();
    }
    vec![(
        "spec".into(),
        format!(
            "Forbidden: updates to statefulset spec for fields other than {} are forbidden",
            "'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds'"
        ),
    )]
}

fn job_update(old: &Value, new: &Value) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let (os, ns) = (at(old, "/spec"), at(new, "/spec"));
    // Completions: immutable, except for Indexed jobs scaled in tandem with parallelism.
    let (oc, nc) = (at(os, "/completions"), at(ns, "/completions"));
    if str_at(ns, "/completionMode") == "Indexed" {
        if !same(oc, nc) && !nc.is_null() && nc != at(ns, "/parallelism") {
            errs.push((
                "spec.completions".into(),
                format!(
                    "Invalid value: {}: can only be modified in tandem with spec.parallelism",
                    go_scalar(nc)
                ),
            ));
        }
    } else if let Some(e) = immutable_field("spec.completions", oc, nc, go_scalar) {
        errs.push(e);
    }
    errs.extend(immutable_field(
        "spec.selector",
        at(os, "/selector"),
        at(ns, "/selector"),
        go_label_selector,
    ));
    // Suspended jobs that never started may change their scheduling directives.
    let nt = at(ns, "/template");
    let mut ot = at(os, "/template").clone();
    let suspended = at(os, "/suspend").as_bool() == Some(true);
    if suspended && at(old, "/status/startTime").is_null() {
        let new_affinity = at(nt, "/spec/affinity");
        let old_spec = ensure_object(&mut ot).entry("spec").or_insert_with(|| json!({}));
        match (new_affinity.is_null(), at(old_spec, "/affinity").is_null()) {
            (true, false) => {
                if let Some(a) = old_spec.get_mut("affinity") {
                    put(a, "nodeAffinity", Value::Null);
                }
                if old_spec.get("affinity").is_some_and(is_empty) {
                    put(old_spec, "affinity", Value::Null);
                }
            }
            (false, true) => put(
                old_spec,
                "affinity",
                json!({"nodeAffinity": at(new_affinity, "/nodeAffinity").clone()}),
            ),
            (false, false) => {
                if let Some(a) = old_spec.get_mut("affinity") {
                    put(a, "nodeAffinity", at(new_affinity, "/nodeAffinity").clone());
                }
            }
            (true, true) => {}
        }
        for key in ["nodeSelector", "tolerations", "schedulingGates"] {
            put(old_spec, key, at(nt, &format!("/spec/{key}")).clone());
        }
        let meta = ensure_object(&mut ot)
            .entry("metadata")
            .or_insert_with(|| json!({}));
        for key in ["annotations", "labels"] {
            put(meta, key, at(nt, &format!("/metadata/{key}")).clone());
        }
    }
    errs.extend(immutable_field("spec.template", &ot, nt, |v| {
        go_struct("core.PodTemplateSpec", v)
    }));
    errs.extend(immutable_field(
        "spec.completionMode",
        at(os, "/completionMode"),
        at(ns, "/completionMode"),
        go_scalar,
    ));
    errs.extend(immutable_field(
        "spec.podFailurePolicy",
        at(os, "/podFailurePolicy"),
        at(ns, "/podFailurePolicy"),
        |v| go_struct("batch.PodFailurePolicy", v),
    ));
    for key in ["backoffLimitPerIndex", "managedBy"] {
        errs.extend(immutable_field(
            &format!("spec.{key}"),
            at(os, &format!("/{key}")),
            at(ns, &format!("/{key}")),
            go_scalar,
        ));
    }
    errs.extend(immutable_field(
        "spec.successPolicy",
        at(os, "/successPolicy"),
        at(ns, "/successPolicy"),
        |v| go_struct("batch.SuccessPolicy", v),
    ));
    errs
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::kubesim::registry::Registry;

    fn rt(group: &str, plural: &str) -> ResourceType {
        let version = if group.is_empty() || group == "apps" || group == "batch" {
            "v1"
        } else {
            ""
        };
        (*Registry::default().get(group, version, plural).unwrap()).clone()
    }

    fn check(group: &str, plural: &str, old: &Value, new: &Value) -> Vec<String> {
        check_update(&rt(group, plural), old, new)
            .into_iter()
            .map(|(f, d)| format!("{f}: {d}"))
            .collect()
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("1Gi"), parse_quantity("1024Mi"));
        assert_eq!(parse_quantity("1k"), parse_quantity("1000"));
        assert_eq!(parse_quantity("1e3"), parse_quantity("1k"));
        assert_eq!(parse_quantity("500m"), parse_quantity("0.5"));
        assert_eq!(parse_quantity("1.5Gi"), parse_quantity("1536Mi"));
        assert_eq!(parse_quantity("100m"), Some(100_000_000));
        assert_eq!(parse_quantity("-1"), Some(-1_000_000_000));
        assert_eq!(parse_quantity("1E"), Some(1_000_000_000_000_000_000_000_000_000));
        assert!(parse_quantity("2Gi") > parse_quantity("2G"));
        for bad in ["", "Gi", "1.2.3", "1Xi", "1e", "abc", "1 Gi"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn label_selector_like_go() {
        assert_eq!(
            go_label_selector(&json!({"matchLabels": {"b": "2", "a": "1"}})),
            "v1.LabelSelector{MatchLabels:map[string]string{\"a\":\"1\", \"b\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
        assert_eq!(
            go_label_selector(
                &json!({"matchExpressions": [{"key": "k", "operator": "In", "values": ["x", "y"]}]})
            ),
            "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"k\", Operator:\"In\", Values:[]string{\"x\", \"y\"}}}}"
        );
        assert_eq!(go_label_selector(&Value::Null), "\"null\"");
    }

    fn sts(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn statefulset_spec() {
        let base = json!({"replicas": 1, "serviceName": "s", "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]});
        let old = sts(base.clone());
        let mut allowed = base.clone();
        allowed["replicas"] = json!(3);
        allowed["template"]["spec"]["containers"][0]["image"] = json!("i:2");
        allowed["minReadySeconds"] = json!(5);
        allowed["updateStrategy"] = json!({"type": "OnDelete"});
        allowed["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = json!("1024Mi");
        allowed["volumeClaimTemplates"][0]["status"] = json!({"phase": "Pending"});
        assert!(check("apps", "statefulsets", &old, &sts(allowed)).is_empty());
        for (key, value) in [
            ("serviceName", json!("other")),
            ("podManagementPolicy", json!("Parallel")),
            ("selector", json!({"matchLabels": {"a": "c"}})),
            ("revisionHistoryLimit", json!(3)),
        ] {
            let mut refused = base.clone();
            refused[key] = value;
            assert_eq!(
                check("apps", "statefulsets", &old, &sts(refused)),
                vec![
                    "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
                ],
                "{key}"
            );
        }
        let mut claims = base;
        claims["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(check("apps", "statefulsets", &old, &sts(claims)).len(), 1);
    }

    #[test]
    fn workload_selectors() {
        let old = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "replicas": 1}});
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(5);
        let mut moved = old.clone();
        moved["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
        for plural in ["deployments", "replicasets", "daemonsets"] {
            assert!(check("apps", plural, &old, &scaled).is_empty(), "{plural}");
            assert_eq!(
                check("apps", plural, &old, &moved),
                vec![
                    "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"api\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
                ],
                "{plural}"
            );
        }
        // An empty matchExpressions list is no change.
        let mut same_sel = old.clone();
        same_sel["spec"]["selector"]["matchExpressions"] = json!([]);
        assert!(check("apps", "deployments", &old, &same_sel).is_empty());
    }

    fn job(suspend: bool) -> Value {
        json!({"spec": {"parallelism": 1, "completions": 1, "completionMode": "NonIndexed", "suspend": suspend,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
            "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i:1"}]}}}, "status": {}})
    }

    #[test]
    fn jobs() {
        let old = job(false);
        let mut ok = old.clone();
        ok["spec"]["parallelism"] = json!(3);
        ok["spec"]["suspend"] = json!(true);
        ok["spec"]["activeDeadlineSeconds"] = json!(60);
        assert!(check("batch", "jobs", &old, &ok).is_empty());

        let mut image = old.clone();
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
        assert_eq!(
            check("batch", "jobs", &old, &image),
            vec!["spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"]
        );
        let mut many = image.clone();
        many["spec"]["completions"] = json!(4);
        many["spec"]["selector"] = json!({"matchLabels": {"x": "y"}});
        many["spec"]["completionMode"] = json!("Indexed");
        let errs = check("batch", "jobs", &old, &many);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with(
                "spec.completions: Invalid value: 4: can only be modified in tandem with spec.parallelism"
            ),
            "{errs:#?}"
        );
        assert!(
            errs[1].starts_with("spec.selector: Invalid value: v1.LabelSelector{"),
            "{errs:#?}"
        );
        assert!(errs[2].starts_with("spec.template:"), "{errs:#?}");
        assert_eq!(
            errs[3],
            "spec.completionMode: Invalid value: \"Indexed\": field is immutable"
        );

        let mut completions = old.clone();
        completions["spec"]["completions"] = json!(2);
        assert_eq!(
            check("batch", "jobs", &old, &completions),
            vec!["spec.completions: Invalid value: 2: field is immutable"]
        );

        // Suspended, never started: scheduling directives and template labels may change.
        let suspended = job(true);
        let mut sched = suspended.clone();
        sched["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        sched["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        sched["spec"]["template"]["metadata"]["annotations"] = json!({"a": "b"});
        sched["spec"]["template"]["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}});
        assert!(check("batch", "jobs", &suspended, &sched).is_empty());
        let mut started = suspended.clone();
        started["status"]["startTime"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(check("batch", "jobs", &started, &sched).len(), 1);
        let mut suspended_image = suspended.clone();
        suspended_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
        assert_eq!(check("batch", "jobs", &suspended, &suspended_image).len(), 1);
    }

    fn pvc(storage: &str, phase: &str, capacity: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": storage}}}, "status": {"phase": phase}});
        if let Some(c) = capacity {
            p["status"]["capacity"] = json!({"storage": c});
        }
        p
    }

    #[test]
    fn claims() {
        const SPEC: &str = "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";
        let bound = pvc("1Gi", "Bound", Some("1Gi"));
        assert!(check("", "persistentvolumeclaims", &bound, &pvc("2Gi", "Bound", None)).is_empty());
        assert!(
            check(
                "",
                "persistentvolumeclaims",
                &bound,
                &pvc("1024Mi", "Bound", None)
            )
            .is_empty()
        );
        assert_eq!(
            check("", "persistentvolumeclaims", &bound, &pvc("500Mi", "Bound", None)),
            vec!["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
        );
        // Back down after a failed expansion, still above what was provisioned.
        let expanding = pvc("4Gi", "Bound", Some("1Gi"));
        assert!(
            check(
                "",
                "persistentvolumeclaims",
                &expanding,
                &pvc("2Gi", "Bound", None)
            )
            .is_empty()
        );
        // Pending claims may not resize at all.
        let pending = pvc("1Gi", "Pending", None);
        assert_eq!(
            check(
                "",
                "persistentvolumeclaims",
                &pending,
                &pvc("2Gi", "Pending", None)
            ),
            vec![SPEC]
        );
        let mut modes = bound.clone();
        modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(check("", "persistentvolumeclaims", &bound, &modes), vec![SPEC]);
        let mut block = bound.clone();
        block["spec"]["volumeMode"] = json!("Block");
        assert_eq!(
            check("", "persistentvolumeclaims", &bound, &block),
            vec![
                SPEC.to_string(),
                "volumeMode: Invalid value: \"Block\": field is immutable".to_string()
            ]
        );
        // The PV controller binds once and may fill in a missing class.
        let mut claimed = pending.clone();
        claimed["spec"]["volumeName"] = json!("pv-1");
        claimed["spec"]["storageClassName"] = json!("standard");
        assert!(check("", "persistentvolumeclaims", &pending, &claimed).is_empty());
        let mut rebound = claimed.clone();
        rebound["spec"]["volumeName"] = json!("pv-2");
        assert_eq!(
            check("", "persistentvolumeclaims", &claimed, &rebound),
            vec![SPEC]
        );
        let mut vac = bound.clone();
        vac["spec"]["volumeAttributesClassName"] = json!("fast");
        assert!(check("", "persistentvolumeclaims", &bound, &vac).is_empty());
        assert_eq!(
            check("", "persistentvolumeclaims", &vac, &bound),
            vec![
                SPEC.to_string(),
                "spec.volumeAttributesClassName: Forbidden: update from non-nil value to nil is forbidden"
                    .to_string()
            ]
        );
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn pods() {
        const FORBIDDEN: &str = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";
        let base = json!({"containers": [{"name": "c", "image": "i:1", "resources": {"requests": {"memory": "1Gi"}}}],
            "initContainers": [{"name": "init", "image": "i:1"}], "terminationGracePeriodSeconds": 30,
            "tolerations": [{"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}],
            "activeDeadlineSeconds": 100, "nodeName": "node-1"});
        let old = pod(base.clone());
        let mut allowed = base.clone();
        allowed["containers"][0]["image"] = json!("i:2");
        allowed["initContainers"][0]["image"] = json!("i:2");
        allowed["activeDeadlineSeconds"] = json!(50);
        allowed["tolerations"][0]["tolerationSeconds"] = json!(20);
        allowed["tolerations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "b", "operator": "Exists"}));
        allowed["containers"][0]["resources"]["requests"]["memory"] = json!("1024Mi");
        assert!(check("", "pods", &old, &pod(allowed)).is_empty());

        let mut port = base.clone();
        port["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        assert_eq!(check("", "pods", &old, &pod(port)), vec![FORBIDDEN]);
        let mut node = base.clone();
        node["nodeName"] = json!("node-2");
        assert_eq!(check("", "pods", &old, &pod(node)), vec![FORBIDDEN]);
        let mut grace = base.clone();
        grace["terminationGracePeriodSeconds"] = json!(1);
        assert_eq!(check("", "pods", &old, &pod(grace.clone())), vec![FORBIDDEN]);
        let mut negative = base.clone();
        negative["terminationGracePeriodSeconds"] = json!(-1);
        assert!(check("", "pods", &pod(negative), &pod(grace)).is_empty());

        let mut added = base.clone();
        added["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "d", "image": "i:1"}));
        assert_eq!(
            check("", "pods", &old, &pod(added)),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
        let mut raised = base.clone();
        raised["activeDeadlineSeconds"] = json!(200);
        assert_eq!(
            check("", "pods", &old, &pod(raised)),
            vec![
                "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"
            ]
        );
        let mut dropped = base.clone();
        dropped["tolerations"] = json!([]);
        assert_eq!(
            check("", "pods", &old, &pod(dropped)),
            vec![
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
            ]
        );
        let mut empty_image = base.clone();
        empty_image["containers"][0]["image"] = json!("");
        assert_eq!(
            check("", "pods", &old, &pod(empty_image)),
            vec!["spec.containers[0].image: Required value"]
        );
        // Gated pods may drop gates and add to nodeSelector, not add gates.
        let mut gated_spec = base.clone();
        gated_spec["schedulingGates"] = json!([{"name": "g"}]);
        let gated = pod(gated_spec.clone());
        let mut ungated = gated_spec.clone();
        ungated["schedulingGates"] = json!([]);
        ungated["nodeSelector"] = json!({"disk": "ssd"});
        assert!(check("", "pods", &gated, &pod(ungated)).is_empty());
        let mut more = gated_spec;
        more["schedulingGates"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "h"}));
        assert_eq!(
            check("", "pods", &gated, &pod(more)),
            vec![
                "spec.schedulingGates[1].name: Forbidden: only deletion is allowed, but found new scheduling gate 'h'"
            ]
        );
    }

    #[test]
    fn secrets_and_configmaps() {
        let secret = json!({"type": "Opaque", "data": {"k": "dg=="}});
        let mut edited = secret.clone();
        edited["data"]["k"] = json!("dzI=");
        assert!(check("", "secrets", &secret, &edited).is_empty());
        let mut retyped = secret.clone();
        retyped["type"] = json!("kubernetes.io/tls");
        assert_eq!(
            check("", "secrets", &secret, &retyped),
            vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
        let mut locked = secret.clone();
        locked["immutable"] = json!(true);
        let mut locked_edit = edited.clone();
        locked_edit["immutable"] = json!(false);
        assert_eq!(
            check("", "secrets", &locked, &locked_edit),
            vec![
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set"
            ]
        );
        let mut relabelled = locked.clone();
        relabelled["metadata"] = json!({"labels": {"a": "b"}});
        assert!(check("", "secrets", &locked, &relabelled).is_empty());

        let cm = json!({"data": {"k": "v"}, "binaryData": {"b": "AA=="}, "immutable": true});
        let mut cm_edit = cm.clone();
        cm_edit["data"]["k"] = json!("w");
        cm_edit["binaryData"] = json!({});
        assert_eq!(
            check("", "configmaps", &cm, &cm_edit),
            vec![
                "data: Forbidden: field is immutable when `immutable` is set",
                "binaryData: Forbidden: field is immutable when `immutable` is set"
            ]
        );
        let mutable = json!({"data": {"k": "v"}});
        assert!(
            check(
                "",
                "configmaps",
                &mutable,
                &json!({"data": {"k": "w"}, "immutable": true})
            )
            .is_empty()
        );
    }

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn services() {
        let services = rt("", "services");
        let old = svc(
            json!({"type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        );
        // Omitted server-owned values are kept.
        let mut new =
            svc(json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}], "selector": {"a": "b"}}));
        prepare_for_update(&services, &old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.5");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.5"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(new["spec"]["ipFamilies"], json!(["IPv4"]));
        assert!(check_update(&services, &old, &new).is_empty());
        // A changed clusterIP is refused, whether sent alone or with clusterIPs.
        let mut moved = svc(
            json!({"type": "NodePort", "clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 80}]}),
        );
        prepare_for_update(&services, &old, &mut moved);
        let want =
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.9\"}: may not change once set"];
        assert_eq!(check("", "services", &old, &moved), want);
        let both = svc(json!({"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"]}));
        assert_eq!(check("", "services", &old, &both), want);
        // Headless stays headless; ExternalName is exempt.
        let headless = svc(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
        assert!(check("", "services", &headless, &headless).is_empty());
        let external = svc(json!({"type": "ExternalName", "externalName": "db.example"}));
        assert!(check("", "services", &old, &external).is_empty());
    }
}
