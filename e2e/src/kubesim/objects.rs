//! The write path every request and in-process controller goes through: admission
//! (defaults, CRD pruning and validation), system metadata, optimistic concurrency,
//! status/spec separation, generation, managedFields, finalizers and deletion.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::defaults;
use super::errors::ApiError;
use super::merge::{self, BuiltinTypes, CrdTypes, ListTypes, Scope, Writer};
use super::pod_security;
use super::registry::ResourceType;
use super::schema;
use super::server::{ApiServer, name_suffix, new_uid, now};
use super::store::{StoreError, rv_of};
use super::validation;

/// How unknown fields in a request body are treated (`fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Reject with 400 (kubectl's default).
    #[default]
    Strict,
    /// Prune and return a `Warning` header.
    Warn,
    /// Prune silently.
    Ignore,
}

/// Options of one write.
#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    /// Field manager.
    pub manager: String,
    /// Unknown-field handling.
    pub validation: FieldValidation,
    /// Compute but do not store.
    pub dry_run: bool,
}

impl WriteOpts {
    /// Options for kubesim's own controllers.
    pub fn system(manager: &str) -> Self {
        WriteOpts {
            manager: manager.to_string(),
            validation: FieldValidation::Ignore,
            dry_run: false,
        }
    }
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The object (status ignored when the type has a status subresource).
    Main,
    /// Only `.status`.
    Status,
    /// Namespace `spec.finalizers` (the `finalize` subresource).
    Finalize,
}

/// The result of a write.
#[derive(Clone, Debug)]
pub struct Written {
    /// The stored (or, for dry runs, computed) object.
    pub object: Arc<Value>,
    /// `Warning` header values.
    pub warnings: Vec<String>,
    /// Whether the write created the object.
    pub created: bool,
}

/// Patch flavours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902.
    Json,
    /// RFC 7386.
    Merge,
    /// Strategic merge.
    Strategic,
    /// Server-side apply.
    Apply {
        /// Take ownership from conflicting managers.
        force: bool,
    },
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    /// Background, Foreground or Orphan.
    pub propagation: Option<String>,
    /// UID precondition.
    pub uid: Option<String>,
    /// resourceVersion precondition.
    pub resource_version: Option<String>,
    /// Grace period for pods.
    pub grace_period: Option<i64>,
    /// Compute but do not store.
    pub dry_run: bool,
}

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `v` as an object map, replacing any non-object.
pub fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("replaced by an object above"),
    }
}

/// `metadata` of an object, created when missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    ensure_object(
        ensure_object(obj)
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new())),
    )
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Everything but metadata and status, to tell spec changes from the rest.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// Whether a write changed anything apart from bookkeeping.
fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// List semantics for merges of objects of `rt`.
pub fn list_types(rt: &ResourceType) -> Box<dyn ListTypes> {
    match &rt.schema {
        Some(s) => Box::new(CrdTypes::new(s.raw().clone())),
        None => Box::new(BuiltinTypes::new(&rt.kind)),
    }
}

/// Who writes which part, for managedFields.
fn writer<'a>(rt: &ResourceType, part: Part, manager: &'a str, now: &'a str) -> Writer<'a> {
    let mut w = Writer::new(manager, now);
    match part {
        Part::Status => {
            w.subresource = Some("status");
            w.scope = Scope::status();
        }
        Part::Main if rt.status => w.scope = Scope::main_resource(),
        _ => {}
    }
    w
}

fn apply_error(rt: &ResourceType, name: &str, e: merge::ApplyError) -> ApiError {
    match e {
        merge::ApplyError::Conflicts(c) => conflict_error(rt, name, &c),
        merge::ApplyError::BadRequest(m) => ApiError::bad_request(m),
        merge::ApplyError::Invalid(m) => ApiError::internal(m),
    }
}

/// `fieldValidation` for built-in kinds: fields the kind does not have (per the Kubernetes
/// protobuf descriptors) are refused (Strict), or dropped with a warning (Warn) or silently
/// (Ignore), as decoding into kube-apiserver's Go types does.
fn admit_builtin(rt: &ResourceType, obj: &mut Value, opts: &WriteOpts) -> Result<Vec<String>, ApiError> {
    let unknown = super::protobuf::prune_unknown_fields(&rt.api_version(), &rt.kind, obj)?;
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    match opts.validation {
        FieldValidation::Strict => {
            let status = schema::strict_decoding_status(&rt.kind, &rt.version, &unknown);
            Err(ApiError::bad_request(
                status["message"].as_str().unwrap_or_default(),
            ))
        }
        FieldValidation::Warn => Ok(unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect()),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

impl ApiServer {
    fn admit_custom(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOpts,
    ) -> Result<Vec<String>, ApiError> {
        let Some(schema) = &rt.schema else {
            return Ok(Vec::new());
        };
        let mut warnings = Vec::new();
        let unknown = schema.unknown_fields(obj);
        if !unknown.is_empty() {
            match opts.validation {
                FieldValidation::Strict => {
                    let status = schema::strict_decoding_status(&rt.kind, &rt.version, &unknown);
                    return Err(ApiError::bad_request(
                        status["message"].as_str().unwrap_or_default(),
                    ));
                }
                FieldValidation::Warn => {
                    warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
                }
                FieldValidation::Ignore => {}
            }
        }
        schema.prune(obj);
        schema.apply_defaults(obj);
        let errors = schema.validate(obj, old);
        if !errors.is_empty() {
            let status = schema::invalid_status(&rt.kind, &rt.group, &name_of(obj), &errors);
            return Err(ApiError {
                code: 422,
                reason: "Invalid",
                message: status["message"].as_str().unwrap_or_default().to_string(),
                details: Some(status["details"].clone()),
            });
        }
        Ok(warnings)
    }

    /// Pod Security admission: refuses a pod that violates its namespace's enforce level and
    /// returns the warnings for the warn level (and, for workload templates, both levels).
    /// Updates are checked only when the pod template changed (pod specs are immutable).
    fn admit_pod_security(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, ApiError> {
        if rt.custom || !rt.namespaced || !["", "apps", "batch"].contains(&rt.group.as_str()) {
            return Ok(Vec::new());
        }
        let is_pod = rt.group.is_empty() && rt.plural == "pods";
        let subject = if is_pod {
            Some(obj)
        } else {
            pod_security::template_of(&rt.plural, obj)
        };
        let Some(subject) = subject else {
            return Ok(Vec::new());
        };
        if let Some(old) = old
            && (is_pod || pod_security::template_of(&rt.plural, old) == Some(subject))
        {
            return Ok(Vec::new());
        }
        let key = super::registry::StorageKey {
            group: String::new(),
            plural: "namespaces".into(),
        };
        let Some(namespace) = self.store.get(&key, "", ns) else {
            return Ok(Vec::new());
        };
        let enforce = pod_security::policy(&namespace, "enforce");
        let warn = pod_security::policy(&namespace, "warn");
        if is_pod {
            if let Some(v) = pod_security::violations(&enforce, subject) {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!("pods \"{name}\" is forbidden: violates PodSecurity {v}"),
                ));
            }
            return Ok(pod_security::violations(&warn, subject)
                .map(|v| format!("would violate PodSecurity {v}"))
                .into_iter()
                .collect());
        }
        let mut warnings = Vec::new();
        for policy in [&enforce, &warn] {
            if let Some(v) = pod_security::violations(policy, subject) {
                let w = format!("would violate PodSecurity {v}");
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
        }
        Ok(warnings)
    }

    /// Creates an object of `rt` in `ns` ("" for cluster-scoped).
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        obj: Value,
        opts: &WriteOpts,
    ) -> Result<Written, ApiError> {
        self.create_inner(rt, ns, obj, opts, false)
    }

    /// `applied`: managedFields were computed by server-side apply and are kept.
    fn create_inner(
        &self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        opts: &WriteOpts,
        applied: bool,
    ) -> Result<Written, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let meta = meta_mut(&mut obj);
        if rt.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let name = match meta.get("name").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", name_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("resourceVersion");
        if !applied {
            meta.remove("managedFields");
        }
        if rt.namespaced {
            self.check_namespace(ns)?;
        }
        if rt.status
            && rt.custom
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let mut warnings = if rt.custom {
            self.admit_custom(rt, &mut obj, None, opts)?
        } else {
            admit_builtin(rt, &mut obj, opts)?
        };
        defaults::on_create(self, rt, &mut obj)
            .map_err(|(field, detail)| ApiError::invalid(rt, &name, &field, &detail))?;
        validation::check(rt, &name, &obj)?;
        warnings.extend(self.admit_pod_security(rt, ns, &name, &obj, None)?);
        if rt.custom || obj.get("spec").is_some() {
            meta_mut(&mut obj).insert("generation".into(), json!(1));
        }
        defaults::before_store(self, rt, None, &mut obj)
            .map_err(|errors| ApiError::invalid_all(rt, &name, &errors))?;
        if !applied {
            let t = now();
            obj = merge::record_update_as(
                None,
                &obj,
                &writer(rt, Part::Main, &opts.manager, &t),
                list_types(rt).as_ref(),
            );
        }
        if opts.dry_run {
            return Ok(Written {
                object: Arc::new(obj),
                warnings,
                created: true,
            });
        }
        let stored = match self.store.create(&rt.storage_key(), obj) {
            Ok(o) => o,
            Err(StoreError::AlreadyExists) => return Err(ApiError::already_exists(rt, &name)),
            Err(e) => return Err(ApiError::internal(format!("{e:?}"))),
        };
        defaults::after_write(self, rt, None, &stored, &mut warnings);
        Ok(Written {
            object: stored,
            warnings,
            created: true,
        })
    }

    fn check_namespace(&self, ns: &str) -> Result<(), ApiError> {
        let key = super::registry::StorageKey {
            group: String::new(),
            plural: "namespaces".into(),
        };
        match self.store.get(&key, "", ns) {
            None => Err(ApiError::namespace_not_found(ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::new(
                403,
                "Forbidden",
                format!("unable to create new content in namespace {ns} because it is being terminated"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.store
            .get(&rt.storage_key(), ns, name)
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Replaces an object (PUT). A resourceVersion in `obj` must match the stored one.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        part: Part,
        opts: &WriteOpts,
    ) -> Result<Written, ApiError> {
        let old = self.get(rt, ns, name)?;
        if let Some(rv) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && rv
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
        {
            return Err(ApiError::conflict(rt, name));
        }
        if !name_of(&obj).is_empty() && name_of(&obj) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&obj)
            )));
        }
        self.commit(rt, &old, obj, part, opts, None)
    }

    /// Patches an object; an apply patch creates it when absent.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
        part: Part,
        opts: &WriteOpts,
    ) -> Result<Written, ApiError> {
        let lists = list_types(rt);
        // Like the real apiserver, retry when another writer wins the race.
        for _ in 0..5 {
            let old = match self.store.get(&rt.storage_key(), ns, name) {
                Some(o) => o,
                None => {
                    if let PatchType::Apply { .. } = patch_type
                        && part == Part::Main
                    {
                        let mut obj = patch.clone();
                        meta_mut(&mut obj).insert("name".into(), json!(name));
                        let t = now();
                        let created = merge::apply_as(
                            None,
                            &obj,
                            &writer(rt, Part::Main, &opts.manager, &t),
                            true,
                            lists.as_ref(),
                        )
                        .map_err(|e| apply_error(rt, name, e))?;
                        return self.create_inner(rt, ns, created, opts, true);
                    }
                    return Err(ApiError::not_found(rt, name));
                }
            };
            if patch_type == PatchType::Strategic && rt.custom {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            let base = (*old).clone();
            let new = match patch_type {
                PatchType::Json => {
                    merge::json_patch(&base, patch).map_err(|e| ApiError::new(422, "Invalid", e))?
                }
                PatchType::Merge => merge::merge_patch(&base, patch),
                PatchType::Strategic => merge::strategic_merge_patch(&base, patch, lists.as_ref())
                    .map_err(|e| ApiError::new(422, "Invalid", e))?,
                PatchType::Apply { force } => {
                    let mut applied = patch.clone();
                    if let Some(m) = applied.as_object_mut() {
                        // Applying one part only: the other part of the applied config is ignored.
                        match part {
                            Part::Status => {
                                let status = m.get("status").cloned();
                                m.retain(|k, _| k == "apiVersion" || k == "kind" || k == "metadata");
                                if let Some(s) = status {
                                    m.insert("status".into(), s);
                                }
                            }
                            Part::Main if rt.status => {
                                m.remove("status");
                            }
                            _ => {}
                        }
                    }
                    let t = now();
                    merge::apply_as(
                        Some(&base),
                        &applied,
                        &writer(rt, part, &opts.manager, &t),
                        force,
                        lists.as_ref(),
                    )
                    .map_err(|e| apply_error(rt, name, e))?
                }
            };
            if let Some(rv) = patch.pointer("/metadata/resourceVersion").and_then(Value::as_str)
                && rv
                    != old
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
            {
                return Err(ApiError::conflict(rt, name));
            }
            let managed_by_apply = matches!(patch_type, PatchType::Apply { .. });
            match self.commit(rt, &old, new, part, opts, Some(managed_by_apply)) {
                Err(e)
                    if e.code == 409
                        && e.reason == "Conflict"
                        && patch.pointer("/metadata/resourceVersion").is_none() =>
                {
                    continue;
                }
                other => return other,
            }
        }
        Err(ApiError::conflict(rt, name))
    }

    /// Stores `new` as the successor of `old`. `applied` is `Some(true)` when managedFields
    /// were already computed by server-side apply.
    fn commit(
        &self,
        rt: &ResourceType,
        old: &Arc<Value>,
        mut new: Value,
        part: Part,
        opts: &WriteOpts,
        applied: Option<bool>,
    ) -> Result<Written, ApiError> {
        let name = name_of(old);
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        // The part not addressed by this write keeps its stored value.
        match part {
            Part::Main if rt.status => new["status"] = old.get("status").cloned().unwrap_or(Value::Null),
            Part::Status | Part::Finalize => {
                let mut keep = (**old).clone();
                if part == Part::Status {
                    keep["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                } else {
                    keep["spec"]["finalizers"] =
                        new.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
                }
                if let Some(mf) = new.pointer("/metadata/managedFields").cloned() {
                    meta_mut(&mut keep).insert("managedFields".into(), mf);
                }
                new = keep;
            }
            Part::Main => {}
        }
        if let Some(m) = new.as_object_mut()
            && m.get("status").is_some_and(Value::is_null)
        {
            m.remove("status");
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = json!(rt.kind);
        // System metadata is not the client's to change.
        {
            let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
            let meta = meta_mut(&mut new);
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(k) {
                    Some(v) => meta.insert(k.into(), v.clone()),
                    None => meta.remove(k),
                };
            }
            meta.insert(
                "resourceVersion".into(),
                old_meta.get("resourceVersion").cloned().unwrap_or(json!("")),
            );
        }
        let mut warnings = if rt.custom {
            self.admit_custom(rt, &mut new, Some(old), opts)?
        } else {
            admit_builtin(rt, &mut new, opts)?
        };
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let before = finalizers(old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    rt,
                    &name,
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if old.pointer("/metadata/generation").is_some() && spec_part(old) != spec_part(&new) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        defaults::before_store(self, rt, Some(old), &mut new)
            .map_err(|errors| ApiError::invalid_all(rt, &name, &errors))?;
        validation::check(rt, &name, &new)?;
        let ns = old["metadata"]["namespace"].as_str().unwrap_or_default();
        warnings.extend(self.admit_pod_security(rt, ns, &name, &new, Some(old))?);
        if applied != Some(true) {
            let t = now();
            new = merge::record_update_as(
                Some(old),
                &new,
                &writer(rt, part, &opts.manager, &t),
                list_types(rt).as_ref(),
            );
        }
        if same_object(old, &new) {
            return Ok(Written {
                object: old.clone(),
                warnings,
                created: false,
            });
        }
        if opts.dry_run {
            return Ok(Written {
                object: Arc::new(new),
                warnings,
                created: false,
            });
        }
        let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
        let done = deleting && finalizers(&new).is_empty() && !self.namespace_spec_finalizers(rt, &new);
        if done {
            let gone = self
                .store
                .delete(
                    &rt.storage_key(),
                    old["metadata"]["namespace"].as_str().unwrap_or_default(),
                    &name,
                    Some(rv_of(old)),
                )
                .map_err(|e| match e {
                    StoreError::Conflict => ApiError::conflict(rt, &name),
                    _ => ApiError::not_found(rt, &name),
                })?;
            defaults::after_delete(self, rt, &gone);
            return Ok(Written {
                object: Arc::new(new),
                warnings,
                created: false,
            });
        }
        let stored = match self.store.update(&rt.storage_key(), new, rv_of(old)) {
            Ok(o) => o,
            Err(StoreError::Conflict) => return Err(ApiError::conflict(rt, &name)),
            Err(StoreError::NotFound) => return Err(ApiError::not_found(rt, &name)),
            Err(e) => return Err(ApiError::internal(format!("{e:?}"))),
        };
        defaults::after_write(self, rt, Some(old), &stored, &mut warnings);
        Ok(Written {
            object: stored,
            warnings,
            created: false,
        })
    }

    fn namespace_spec_finalizers(&self, rt: &ResourceType, obj: &Value) -> bool {
        rt.group.is_empty()
            && rt.plural == "namespaces"
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
    }

    /// Deletes an object: at once, or by setting deletionTimestamp when finalizers (or a
    /// graceful pod shutdown) must run first. Returns the object as the API reports it.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Arc<Value>, ApiError> {
        for _ in 0..5 {
            let current = self.get(rt, ns, name)?;
            if let Some(uid) = &opts.uid {
                let actual = current
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::precondition(
                        rt,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                        ),
                    ));
                }
            }
            if let Some(rv) = &opts.resource_version
                && rv
                    != current
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
            {
                return Err(ApiError::precondition(
                    rt,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        current
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    ),
                ));
            }
            let mut fins = finalizers(&current);
            match opts.propagation.as_deref() {
                Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
                Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                    fins.push("foregroundDeletion".into())
                }
                _ => {}
            }
            let graceful = defaults::graceful_delete(self, rt, &current, opts.grace_period);
            let spec_fins = self.namespace_spec_finalizers(rt, &current);
            if fins.is_empty() && !graceful && !spec_fins {
                if opts.dry_run {
                    return Ok(current);
                }
                match self
                    .store
                    .delete(&rt.storage_key(), ns, name, Some(rv_of(&current)))
                {
                    Ok(gone) => {
                        defaults::after_delete(self, rt, &gone);
                        return Ok(gone);
                    }
                    Err(StoreError::Conflict) => continue,
                    Err(_) => return Err(ApiError::not_found(rt, name)),
                }
            }
            let mut next = (*current).clone();
            {
                let meta = meta_mut(&mut next);
                meta.insert("finalizers".into(), json!(fins));
                if !meta.contains_key("deletionTimestamp") {
                    meta.insert("deletionTimestamp".into(), json!(now()));
                    let grace = if graceful {
                        opts.grace_period.unwrap_or(30)
                    } else {
                        0
                    };
                    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
            }
            defaults::on_delete_requested(rt, &mut next);
            if opts.dry_run {
                return Ok(Arc::new(next));
            }
            match self.store.update(&rt.storage_key(), next, rv_of(&current)) {
                Ok(o) => {
                    let mut warnings = Vec::new();
                    defaults::after_write(self, rt, Some(&current), &o, &mut warnings);
                    return Ok(o);
                }
                Err(StoreError::Conflict) => continue,
                Err(_) => return Err(ApiError::not_found(rt, name)),
            }
        }
        Err(ApiError::conflict(rt, name))
    }

    /// Removes an object that is being deleted gracefully once its grace has passed (the
    /// kubelet's final step for pods). Finalizers still hold it.
    pub fn finish_graceful_delete(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
        let current = self.get(rt, ns, name)?;
        if !finalizers(&current).is_empty() {
            let mut next = (*current).clone();
            meta_mut(&mut next).insert("deletionGracePeriodSeconds".into(), json!(0));
            let _ = self.store.update(&rt.storage_key(), next, rv_of(&current));
            return Ok(());
        }
        if let Ok(gone) = self
            .store
            .delete(&rt.storage_key(), ns, name, Some(rv_of(&current)))
        {
            defaults::after_delete(self, rt, &gone);
        }
        Ok(())
    }
}

impl ApiServer {
    /// Assigns a pending pod to a node (the `binding` subresource).
    pub fn bind_pod(&self, ns: &str, name: &str, node: &str) -> Result<(), ApiError> {
        let rt = self
            .resource("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods not served"))?;
        for _ in 0..5 {
            let pod = self.get(&rt, ns, name)?;
            if let Some(current) = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\""
                    ),
                ));
            }
            let mut next = (*pod).clone();
            next["spec"]["nodeName"] = json!(node);
            let conds = ensure_object(&mut next).entry("status").or_insert(json!({}));
            let conds = ensure_object(conds).entry("conditions").or_insert(json!([]));
            if let Some(a) = conds.as_array_mut() {
                a.retain(|c| c["type"] != "PodScheduled");
                a.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
            }
            match self.store.update(&rt.storage_key(), next, rv_of(&pod)) {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(_) => return Err(ApiError::not_found(&rt, name)),
            }
        }
        Err(ApiError::conflict(&rt, name))
    }
}

fn conflict_error(rt: &ResourceType, name: &str, c: &merge::Conflicts) -> ApiError {
    let mut e = ApiError::new(409, "Conflict", c.message());
    let mut d = json!({"name": name, "kind": rt.plural, "causes": c.causes()});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    e.details = Some(d);
    e
}
