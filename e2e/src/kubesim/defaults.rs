//! Per-kind behaviour of built-in resources: defaulting on create, checks before storing,
//! and follow-ups after writes (serving CRDs, issuing service-account tokens).

use serde_json::{Value, json};

use super::objects::{ensure_object, meta_mut};
use super::registry::ResourceType;
use super::server::ApiServer;

type FieldErr = (String, String);

fn is(rt: &ResourceType, group: &str, plural: &str) -> bool {
    rt.group == group && rt.plural == plural
}

fn set_default(obj: &mut Value, key: &str, value: Value) {
    let m = ensure_object(obj);
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// Defaults of a pod spec, as the apiserver fills them.
pub fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    if spec.get("serviceAccountName").is_none() {
        let sa = spec.get("serviceAccount").cloned().unwrap_or(json!("default"));
        spec["serviceAccountName"] = sa;
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                let image = c["image"].as_str().unwrap_or_default();
                let tag = image
                    .rsplit('/')
                    .next()
                    .and_then(|last| last.split_once(':'))
                    .map(|(_, t)| t);
                let policy = if tag.is_none_or(|t| t == "latest") {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                set_default(c, "imagePullPolicy", json!(policy));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Defaults of a Service spec (the clusterIP is allocated apart).
fn default_service_spec(spec: &mut Value) {
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
            let port = p["port"].clone();
            set_default(p, "targetPort", port);
        }
    }
}

/// Spec defaults of Deployments, ReplicaSets, StatefulSets and Jobs (not their templates).
fn default_workload_spec(rt: &ResourceType, spec: &mut Value) {
    match rt.plural.as_str() {
        "deployments" => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
        }
        "replicasets" => set_default(spec, "replicas", json!(1)),
        "statefulsets" => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        "jobs" => {
            set_default(spec, "parallelism", json!(1));
            set_default(spec, "completions", json!(1));
            set_default(spec, "backoffLimit", json!(6));
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
        }
        _ => {}
    }
}

/// Object-level defaults of Secrets and PersistentVolumeClaims.
fn default_object(rt: &ResourceType, obj: &mut Value) {
    match rt.plural.as_str() {
        "secrets" => set_default(obj, "type", json!("Opaque")),
        "persistentvolumeclaims" => set_default(
            ensure_object(obj).entry("spec").or_insert(json!({})),
            "volumeMode",
            json!("Filesystem"),
        ),
        _ => {}
    }
}

/// The defaults an update gets: upstream defaults every decoded object, so a client that
/// leaves out a defaulted field sends the same object as one that spells it out. Server-owned
/// values (a Service's clusterIP) are carried over from the old object before this runs.
fn default_on_update(server: &ApiServer, rt: &ResourceType, obj: &mut Value) {
    if rt.custom || !["", "apps", "batch"].contains(&rt.group.as_str()) {
        return;
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                default_pod_spec(spec);
            }
        }
        ("", "services") => {
            let spec = ensure_object(obj).entry("spec").or_insert(json!({}));
            default_service_spec(spec);
            let ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or_default();
            if ip.is_empty() && spec["type"] != "ExternalName" {
                // Becoming a ClusterIP Service (from ExternalName) allocates an address.
                spec["clusterIP"] = json!(server.allocate_cluster_ip());
            }
            let ips = spec.get("clusterIPs").and_then(Value::as_array);
            if ips.is_none_or(Vec::is_empty)
                && let Some(ip) = spec
                    .get("clusterIP")
                    .filter(|ip| ip.as_str().is_some_and(|s| !s.is_empty()))
            {
                spec["clusterIPs"] = json!([ip.clone()]);
            }
        }
        ("", "secrets" | "persistentvolumeclaims") => default_object(rt, obj),
        ("apps", "deployments" | "replicasets" | "statefulsets") | ("batch", "jobs") => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                default_workload_spec(rt, spec);
            }
            if let Some(spec) = obj.pointer_mut("/spec/template/spec").filter(|s| s.is_object()) {
                default_pod_spec(spec);
            }
        }
        _ => {}
    }
}

/// An update whose spec is unchanged once defaulted keeps the old generation (the write path
/// counts a spec change before defaulting).
fn keep_generation_if_spec_unchanged(old: &Value, obj: &mut Value) {
    let rest = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for k in ["metadata", "status", "apiVersion", "kind"] {
                m.remove(k);
            }
        }
        v
    };
    if let Some(g) = old.pointer("/metadata/generation").cloned()
        && rest(old) == rest(obj)
    {
        meta_mut(obj).insert("generation".into(), g);
    }
}

fn validate_pod_spec(spec: &Value, path: &str) -> Result<(), FieldErr> {
    let containers = spec["containers"].as_array().filter(|c| !c.is_empty());
    let Some(containers) = containers else {
        return Err((format!("{path}.containers"), "Required value".into()));
    };
    for (i, c) in containers.iter().enumerate() {
        if c["name"].as_str().is_none_or(str::is_empty) {
            return Err((format!("{path}.containers[{i}].name"), "Required value".into()));
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            return Err((format!("{path}.containers[{i}].image"), "Required value".into()));
        }
    }
    Ok(())
}

/// Defaults and checks applied when an object is created.
pub fn on_create(server: &ApiServer, rt: &ResourceType, obj: &mut Value) -> Result<(), FieldErr> {
    if rt.custom {
        return Ok(());
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "pods") => {
            validate_pod_spec(&obj["spec"], "spec")?;
            default_pod_spec(ensure_object(obj).entry("spec").or_insert(json!({})));
            let node = obj.pointer("/spec/nodeName").cloned();
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            if node.is_some() {
                obj["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": super::server::now()}]);
            }
        }
        ("", "services") => {
            let spec = ensure_object(obj).entry("spec").or_insert(json!({}));
            default_service_spec(spec);
            if spec
                .get("clusterIP")
                .is_none_or(|v| v.as_str().is_none_or(str::is_empty))
            {
                spec["clusterIP"] = json!(server.allocate_cluster_ip());
            }
            let ip = spec["clusterIP"].clone();
            spec["clusterIPs"] = json!([ip]);
            obj["status"] = json!({"loadBalancer": {}});
        }
        ("", "secrets") | ("", "persistentvolumeclaims") => {
            default_object(rt, obj);
            if rt.plural == "persistentvolumeclaims" {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        ("apps", "deployments" | "replicasets" | "statefulsets") => {
            default_workload_spec(rt, ensure_object(obj).entry("spec").or_insert(json!({})));
            workload_template(obj)?;
        }
        ("batch", "jobs") => {
            let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(json!(""));
            let name = obj.pointer("/metadata/name").cloned().unwrap_or(json!(""));
            let spec = ensure_object(obj).entry("spec").or_insert(json!({}));
            default_workload_spec(rt, spec);
            if spec.get("selector").is_none() {
                spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
                let labels = ensure_object(
                    ensure_object(ensure_object(spec).entry("template").or_insert(json!({})))
                        .entry("metadata")
                        .or_insert(json!({})),
                );
                let labels = ensure_object(labels.entry("labels").or_insert(json!({})));
                labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
                labels.insert("controller-uid".into(), uid);
                labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
                labels.insert("job-name".into(), name);
            }
            workload_template(obj)?;
            let policy = obj
                .pointer("/spec/template/spec/restartPolicy")
                .and_then(Value::as_str)
                .unwrap_or("Always");
            if policy == "Always" {
                return Err((
                    "spec.template.spec.restartPolicy".into(),
                    "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".into(),
                ));
            }
            obj["status"] = json!({});
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => validate_crd(obj)?,
        _ => {}
    }
    Ok(())
}

fn workload_template(obj: &mut Value) -> Result<(), FieldErr> {
    validate_pod_spec(
        obj.pointer("/spec/template/spec").unwrap_or(&Value::Null),
        "spec.template.spec",
    )?;
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
    // Selector must match the template labels.
    let selector = obj.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
    if let Ok(sel) = super::selectors::LabelSelector::from_object(&selector) {
        let labels = super::selectors::labels_of(obj.pointer("/spec/template").unwrap_or(&Value::Null));
        if sel.is_empty() || !sel.matches(&labels) {
            return Err((
                "spec.template.metadata.labels".into(),
                format!(
                    "Invalid value: {}: `selector` does not match template `labels`",
                    json!(labels)
                ),
            ));
        }
    }
    Ok(())
}

fn validate_crd(crd: &Value) -> Result<(), FieldErr> {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name != format!("{plural}.{group}") {
        return Err((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    Ok(())
}

/// Checks and adjustments before any write is stored (create and update). Fails with every
/// field error found (render them with `ApiError::invalid_all`).
pub fn before_store(
    server: &ApiServer,
    rt: &ResourceType,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<(), Vec<FieldErr>> {
    if is(rt, "apiextensions.k8s.io", "customresourcedefinitions") {
        // Serving must work before the CRD is stored: a broken schema is rejected here.
        let mut probe = super::registry::Registry::default();
        probe
            .register_crd(obj)
            .map_err(|e| vec![("spec.versions".to_string(), format!("Invalid value: {e}"))])?;
        let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let stored: Vec<Value> = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v["storage"] == json!(true))
                    .map(|v| v["name"].clone())
                    .collect()
            })
            .unwrap_or_default();
        let now = super::server::now();
        obj["status"] = json!({
            "acceptedNames": names,
            "storedVersions": stored,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        });
    }
    if is(rt, "", "secrets") {
        // stringData is write-only: it is merged into data.
        if let Some(sd) = ensure_object(obj)
            .remove("stringData")
            .and_then(|v| v.as_object().cloned())
        {
            use base64::Engine as _;
            let data = ensure_object(ensure_object(obj).entry("data").or_insert(json!({})));
            for (k, v) in sd {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
                data.insert(k, json!(encoded));
            }
        }
    }
    if let Some(old) = old.filter(|_| !rt.custom) {
        // Updates: carry over what the server owns, default like a create, then refuse changes
        // to immutable fields (pod specs, selectors, claims, ...) with upstream's 422.
        super::immutable::prepare_for_update(rt, old, obj);
        default_on_update(server, rt, obj);
        keep_generation_if_spec_unchanged(old, obj);
        let errors = super::immutable::check_update(rt, old, obj);
        if !errors.is_empty() {
            return Err(errors);
        }
    }
    if is(rt, "", "namespaces") && obj.pointer("/metadata/deletionTimestamp").is_some() {
        obj["status"]["phase"] = json!("Terminating");
    }
    let _ = meta_mut(obj);
    Ok(())
}

/// Follow-ups after an object was stored.
pub fn after_write(
    server: &ApiServer,
    rt: &ResourceType,
    _old: Option<&Value>,
    obj: &Value,
    warnings: &mut Vec<String>,
) {
    if is(rt, "apiextensions.k8s.io", "customresourcedefinitions") {
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        if let Err(e) = server.register_crd(obj) {
            warnings.push(format!("CRD not served: {e}"));
        }
    }
}

/// Follow-ups after an object is gone.
pub fn after_delete(server: &ApiServer, rt: &ResourceType, obj: &Value) {
    if is(rt, "apiextensions.k8s.io", "customresourcedefinitions") {
        let group = obj
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let plural = obj
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Instances go with their definition.
        let key = super::registry::StorageKey {
            group: group.clone(),
            plural: plural.clone(),
        };
        let (items, _) = server.store.list(&key, None);
        for item in items {
            let ns = item
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let _ = server.store.delete(&key, ns, name, None);
        }
        server.unregister_crd(&group, &plural);
    }
}

/// Whether deleting `obj` should wait for a graceful shutdown (pods on a process node).
pub fn graceful_delete(server: &ApiServer, rt: &ResourceType, obj: &Value, grace: Option<i64>) -> bool {
    is(rt, "", "pods")
        && server.node_mode == super::server::NodeMode::Process
        && obj.pointer("/spec/nodeName").is_some()
        && grace != Some(0)
        && !matches!(
            obj.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
}

/// Changes made when deletion starts.
pub fn on_delete_requested(rt: &ResourceType, obj: &mut Value) {
    if is(rt, "", "namespaces") {
        obj["status"]["phase"] = json!("Terminating");
    }
}

/// Converts a stored object to the version a client asked for.
pub fn convert(rt: &ResourceType, obj: &Value) -> Value {
    let mut out = obj.clone();
    let stored_version = obj["apiVersion"].as_str().unwrap_or_default();
    if stored_version == rt.api_version() {
        return out;
    }
    if rt.plural == "events" {
        out = convert_event(obj, &rt.group);
    }
    out["apiVersion"] = json!(rt.api_version());
    out["kind"] = json!(rt.kind);
    out
}

/// core/v1 Event ↔ events.k8s.io/v1 Event: one stored resource, two shapes.
fn convert_event(obj: &Value, to_group: &str) -> Value {
    let mut out = json!({"metadata": obj["metadata"].clone()});
    let copy = |out: &mut Value, from: &str, to: &str| {
        if let Some(v) = obj.get(from).filter(|v| !v.is_null()) {
            out[to] = v.clone();
        }
    };
    let common = [
        ("reason", "reason"),
        ("type", "type"),
        ("action", "action"),
        ("eventTime", "eventTime"),
        ("related", "related"),
        ("series", "series"),
        ("reportingInstance", "reportingInstance"),
    ];
    for (a, b) in common {
        copy(&mut out, a, b);
    }
    if to_group == "events.k8s.io" {
        copy(&mut out, "involvedObject", "regarding");
        copy(&mut out, "message", "note");
        copy(&mut out, "reportingComponent", "reportingController");
        copy(&mut out, "source", "deprecatedSource");
        copy(&mut out, "firstTimestamp", "deprecatedFirstTimestamp");
        copy(&mut out, "lastTimestamp", "deprecatedLastTimestamp");
        copy(&mut out, "count", "deprecatedCount");
    } else {
        copy(&mut out, "regarding", "involvedObject");
        copy(&mut out, "note", "message");
        copy(&mut out, "reportingController", "reportingComponent");
        copy(&mut out, "deprecatedSource", "source");
        copy(&mut out, "deprecatedFirstTimestamp", "firstTimestamp");
        copy(&mut out, "deprecatedLastTimestamp", "lastTimestamp");
        copy(&mut out, "deprecatedCount", "count");
        if out.get("involvedObject").is_none() {
            out["involvedObject"] = json!({});
        }
        if out.get("source").is_none() {
            out["source"] = json!({"component": obj["reportingController"].clone()});
        }
        if out.get("lastTimestamp").is_none() {
            out["lastTimestamp"] = obj.get("eventTime").cloned().unwrap_or(Value::Null);
        }
    }
    out
}
