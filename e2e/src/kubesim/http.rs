//! The HTTP front of the API server: routing, authentication, authorization, and the
//! verbs, with the response shapes real clients expect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::auth::{self, Attributes, UserInfo};
use super::defaults;
use super::discovery;
use super::errors::ApiError;
use super::objects::{DeleteOpts, FieldValidation, Part, PatchType, WriteOpts, ensure_object};
use super::registry::ResourceType;
use super::selectors::{FieldSelector, LabelSelector, get_path, set_path};
use super::server::ApiServer;
use super::store::{EventType, StoreError, WatchEvent};
use super::table;

/// The router serving every path.
pub fn router(server: Arc<ApiServer>) -> Router {
    Router::new().fallback(handle).with_state(server)
}

fn json_response(code: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let mut resp = (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    for w in warnings {
        // RFC 7234 warn-text: a quoted string with backslash escapes, as the apiserver sends.
        let v = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(hv) = HeaderValue::from_str(&v) {
            resp.headers_mut().append(header::WARNING, hv);
        }
    }
    resp
}

fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
        &[],
    )
}

async fn handle(State(server): State<Arc<ApiServer>>, req: Request) -> Response {
    let query: HashMap<String, String> = req.uri().query().map(form_urlencoded_pairs).unwrap_or_default();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let labels =
        super::request_metrics::labels_for(req.method().as_str(), req.uri().path(), &query, content_type);
    // Who asked, for the audit log (dispatch authenticates again and refuses the unknown).
    let user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| server.tokens.authenticate(t.trim()));
    let path = req.uri().path().to_string();
    let resp = match dispatch(server.clone(), req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if let Some(l) = labels {
        let code = resp.status().as_u16();
        server.audit.record(user.as_ref(), &path, &l, code);
        server.request_metrics.record(l, code);
    }
    let delay = user.as_ref().and_then(|u| u.pod_name()).and_then(|pod| {
        server
            .response_delays
            .read()
            .ok()
            .and_then(|d| d.get(pod).copied())
    });
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    resp
}

/// Request-wide facts.
struct Ctx {
    user: UserInfo,
    query: HashMap<String, String>,
    headers: HeaderMap,
    method: Method,
    body: Bytes,
}

impl Ctx {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn wants_table(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=Table"))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
    }

    fn write_opts(&self) -> WriteOpts {
        let agent = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        let manager = self
            .q("fieldManager")
            .map(String::from)
            .unwrap_or_else(|| agent.split('/').next().unwrap_or("unknown").to_string());
        let validation = match self.q("fieldValidation") {
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            _ => FieldValidation::Warn,
        };
        WriteOpts {
            manager,
            validation,
            dry_run: self.q("dryRun") == Some("All"),
        }
    }

    fn body_json(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        if self
            .content_type()
            .starts_with("application/vnd.kubernetes.protobuf")
        {
            return super::protobuf::decode(&self.body);
        }
        if self.content_type().starts_with("application/cbor") {
            // Clients fall back to JSON on 415, as they do against servers without CBOR.
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {}",
                    self.content_type()
                ),
            ));
        }
        match super::strict_json::parse(&self.body) {
            Ok((v, duplicates)) => {
                if !duplicates.is_empty() && self.q("fieldValidation") == Some("Strict") {
                    let list: Vec<String> = duplicates
                        .iter()
                        .map(|d| format!("duplicate field \"{d}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                Ok(v)
            }
            // Apply patches may be YAML.
            Err(e) => serde_yaml_ng::from_slice::<Value>(&self.body).map_err(|_| {
                ApiError::bad_request(format!("the request body is not valid JSON or YAML: {e}"))
            }),
        }
    }
}

async fn dispatch(server: Arc<ApiServer>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_string();
    tracing::debug!(method = %parts.method, uri = %parts.uri, content_type = ?parts.headers.get(header::CONTENT_TYPE), accept = ?parts.headers.get(header::ACCEPT), "request");
    if ["/healthz", "/readyz", "/livez"].contains(&path.as_str()) {
        return Ok((StatusCode::OK, "ok").into_response());
    }
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let user = token
        .and_then(|t| server.tokens.authenticate(t))
        .ok_or_else(ApiError::unauthorized)?;
    let query: HashMap<String, String> = parts.uri.query().map(form_urlencoded_pairs).unwrap_or_default();
    // kube-apiserver's limit on request bodies (--max-request-body-bytes' default).
    const MAX_BODY: usize = 3 * 1024 * 1024;
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {MAX_BODY}"),
        )
    })?;
    let ctx = Ctx {
        user,
        query,
        headers: parts.headers,
        method: parts.method,
        body,
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let reg = server.registry();
    let non_resource = |p: &str| -> Result<(), ApiError> {
        let a = Attributes {
            verb: "get".into(),
            path: Some(p.to_string()),
            ..Default::default()
        };
        if auth::authorize(&server.store, &ctx.user, &a) {
            Ok(())
        } else {
            Err(ApiError::new(
                403,
                "Forbidden",
                auth::forbidden_message(&ctx.user, &a),
            ))
        }
    };
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v, &[]));
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    match segs.as_slice() {
        ["version"] => {
            non_resource(&path)?;
            ok(discovery::version())
        }
        ["metrics"] => {
            non_resource(&path)?;
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                server.request_metrics.render(),
            )
                .into_response())
        }
        ["api"] => {
            non_resource(&path)?;
            let addr = server
                .server_url
                .read()
                .map(|u| u.trim_start_matches("https://").to_string())
                .unwrap_or_default();
            ok(discovery::core_versions(&addr))
        }
        ["apis"] => {
            non_resource(&path)?;
            ok(discovery::group_list(&reg))
        }
        ["api", v] => {
            non_resource(&path)?;
            discovery::resource_list(&reg, "", v).map_or_else(|| Err(not_found()), ok)
        }
        ["apis", g] => {
            non_resource(&path)?;
            discovery::group(&reg, g).map_or_else(|| Err(not_found()), ok)
        }
        ["apis", g, v] => {
            non_resource(&path)?;
            discovery::resource_list(&reg, g, v).map_or_else(|| Err(not_found()), ok)
        }
        ["openapi", "v3"] => {
            non_resource(&path)?;
            ok(discovery::openapi_v3_root(&reg))
        }
        ["openapi", "v3", "api", v] => {
            non_resource(&path)?;
            discovery::openapi_v3_group_version(&reg, "", v).map_or_else(|| Err(not_found()), ok)
        }
        ["openapi", "v3", "apis", g, v] => {
            non_resource(&path)?;
            discovery::openapi_v3_group_version(&reg, g, v).map_or_else(|| Err(not_found()), ok)
        }
        ["api", v, rest @ ..] => resource(&server, &ctx, "", v, rest).await,
        ["apis", g, v, rest @ ..] => resource(&server, &ctx, g, v, rest).await,
        _ => {
            non_resource(&path)?;
            Err(not_found())
        }
    }
}

fn form_urlencoded_pairs(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// What a resource path addresses.
struct Target<'a> {
    rt: Arc<ResourceType>,
    ns: String,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn parse_target<'a>(
    server: &ApiServer,
    group: &str,
    version: &str,
    rest: &[&'a str],
) -> Result<Target<'a>, ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let (ns, rest): (String, &[&'a str]) = match rest {
        ["namespaces", ns, third, ..] if !(rest.len() == 3 && ["status", "finalize"].contains(third)) => {
            (ns.to_string(), &rest[2..])
        }
        _ => (String::new(), rest),
    };
    let plural = rest.first().ok_or_else(not_found)?;
    let rt = server.resource(group, version, plural).ok_or_else(not_found)?;
    if rest.len() > 3 {
        return Err(not_found());
    }
    if !rt.namespaced && !ns.is_empty() {
        return Err(not_found());
    }
    Ok(Target {
        rt,
        ns,
        name: rest.get(1).copied(),
        sub: rest.get(2).copied(),
    })
}

fn verb_of(method: &Method, has_name: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET if watch => "watch",
        Method::GET if has_name => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

async fn resource(
    server: &Arc<ApiServer>,
    ctx: &Ctx,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    let t = parse_target(server, group, version, rest)?;
    let watch = matches!(ctx.q("watch"), Some("true" | "1"));
    let verb = verb_of(&ctx.method, t.name.is_some(), watch);
    // POSTs to subresources (binding, token, eviction) are creates of the subresource.
    let attrs = Attributes {
        verb: verb.to_string(),
        group: group.to_string(),
        resource: t.rt.plural.clone(),
        subresource: t.sub.unwrap_or_default().to_string(),
        namespace: t.ns.clone(),
        name: t.name.unwrap_or_default().to_string(),
        path: None,
    };
    if !auth::authorize(&server.store, &ctx.user, &attrs) {
        let mut e = ApiError::new(403, "Forbidden", auth::forbidden_message(&ctx.user, &attrs));
        let mut d = json!({"kind": t.rt.plural});
        if let Some(n) = t.name {
            d["name"] = json!(n);
        }
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        e.details = Some(d);
        return Err(e);
    }
    let writes = matches!(ctx.method, Method::POST | Method::PUT | Method::PATCH) && t.sub.is_none();
    if writes && ctx.method == Method::PATCH && ctx.content_type().starts_with("application/apply-patch") {
        // A server-side apply that creates its object needs `create` as well.
        let name = t.name.unwrap_or_default();
        if server.store.get(&t.rt.storage_key(), &t.ns, name).is_none() {
            let create = Attributes {
                verb: "create".into(),
                ..attrs.clone()
            };
            if !auth::authorize(&server.store, &ctx.user, &create) {
                let mut e = ApiError::new(403, "Forbidden", auth::forbidden_message(&ctx.user, &create));
                e.details = Some(json!({"kind": t.rt.plural, "name": name, "group": group}));
                return Err(e);
            }
        }
    }
    if writes && t.rt.group == "rbac.authorization.k8s.io" {
        let body = ctx.body_json()?;
        let name = t
            .name
            .map(str::to_string)
            .or_else(|| {
                body.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        super::rbac_admission::check_write(&server.store, &ctx.user, &t.rt, &t.ns, &name, &body)?;
    }
    let rt = &t.rt;
    let ns = t.ns.as_str();
    match (&ctx.method, t.name, t.sub) {
        (&Method::GET, None, None) if watch => {
            Ok(watch_response(server.clone(), rt.clone(), ns.to_string(), ctx)?)
        }
        (&Method::GET, None, None) => list(server, rt, ns, ctx),
        (&Method::GET, Some(name), None | Some("status")) => {
            let obj = server.get(rt, ns, name)?;
            if ctx.wants_table() {
                let rv = super::store::rv_of(&obj);
                let include = ctx.q("includeObject").unwrap_or("Metadata");
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(rt, &[obj], rv, include, None),
                    &[],
                ));
            }
            Ok(json_response(StatusCode::OK, &defaults::convert(rt, &obj), &[]))
        }
        (&Method::GET, Some(name), Some("scale")) if rt.scale.is_some() => {
            let obj = server.get(rt, ns, name)?;
            Ok(json_response(StatusCode::OK, &scale_of(rt, &obj), &[]))
        }
        (&Method::GET, Some(name), Some("log")) if rt.plural == "pods" => pod_log(server, ns, name, ctx),
        (&Method::POST, None, None) => {
            let w = server.create(rt, ns, ctx.body_json()?, &ctx.write_opts())?;
            Ok(json_response(
                StatusCode::CREATED,
                &defaults::convert(rt, &w.object),
                &w.warnings,
            ))
        }
        (&Method::POST, Some(name), Some("binding")) if rt.plural == "pods" => {
            let body = ctx.body_json()?;
            let node = body
                .pointer("/target/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            server.bind_pod(ns, name, node)?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                &[],
            ))
        }
        (&Method::POST, Some(name), Some("eviction")) if rt.plural == "pods" => {
            server.evict(rt, ns, name)?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                &[],
            ))
        }
        (&Method::POST, Some(name), Some("token")) if rt.plural == "serviceaccounts" => {
            server.get(rt, ns, name)?;
            let body = ctx.body_json()?;
            let seconds = body
                .pointer("/spec/expirationSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(3600);
            let token = server.tokens.issue_service_account(ns, name);
            let expires = k8s_openapi::jiff::Timestamp::now()
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            let resp = json!({
                "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
                "spec": body.get("spec").cloned().unwrap_or(json!({})),
                "status": {"token": token, "expirationTimestamp": expires},
            });
            Ok(json_response(StatusCode::CREATED, &resp, &[]))
        }
        (&Method::PUT, Some(name), sub) => {
            let part = part_of(sub)?;
            if sub == Some("scale") {
                return write_scale(server, rt, ns, name, ctx, None);
            }
            let w = server.update(rt, ns, name, ctx.body_json()?, part, &ctx.write_opts())?;
            Ok(json_response(
                StatusCode::OK,
                &defaults::convert(rt, &w.object),
                &w.warnings,
            ))
        }
        (&Method::PATCH, Some(name), sub) => {
            let ptype = match ctx.content_type().split(';').next().unwrap_or_default().trim() {
                "application/json-patch+json" => PatchType::Json,
                "application/merge-patch+json" => PatchType::Merge,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchType::Apply {
                    force: ctx.q("force") == Some("true"),
                },
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {other:?}"
                        ),
                    ));
                }
            };
            if matches!(ptype, PatchType::Apply { .. }) && ctx.q("fieldManager").is_none() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let patch = ctx.body_json()?;
            if sub == Some("scale") {
                return write_scale(server, rt, ns, name, ctx, Some((ptype, patch)));
            }
            let part = part_of(sub)?;
            let w = server.patch(rt, ns, name, ptype, &patch, part, &ctx.write_opts())?;
            let code = if w.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(
                code,
                &defaults::convert(rt, &w.object),
                &w.warnings,
            ))
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_opts(ctx)?;
            let obj = server.delete(rt, ns, name, &opts)?;
            if server.store.get(&rt.storage_key(), ns, name).is_some() {
                return Ok(json_response(StatusCode::OK, &defaults::convert(rt, &obj), &[]));
            }
            let mut details = json!({"name": name, "kind": rt.plural, "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)});
            if !rt.group.is_empty() {
                details["group"] = json!(rt.group);
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
                &[],
            ))
        }
        (&Method::DELETE, None, None) => {
            let opts = delete_opts(ctx)?;
            let (items, _) = selected(server, rt, ns, ctx)?;
            for item in items {
                let ins = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let n = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match server.delete(rt, ins, n, &opts) {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                &[],
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn part_of(sub: Option<&str>) -> Result<Part, ApiError> {
    match sub {
        None => Ok(Part::Main),
        Some("status") => Ok(Part::Status),
        Some("finalize") => Ok(Part::Finalize),
        Some("scale") => Ok(Part::Main),
        Some(other) => Err(ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({other})"),
        )),
    }
}

fn delete_opts(ctx: &Ctx) -> Result<DeleteOpts, ApiError> {
    let body = if ctx.body.is_empty() {
        json!({})
    } else {
        ctx.body_json()?
    };
    Ok(DeleteOpts {
        propagation: body["propagationPolicy"]
            .as_str()
            .or(ctx.q("propagationPolicy"))
            .map(String::from),
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        grace_period: body["gracePeriodSeconds"]
            .as_i64()
            .or_else(|| ctx.q("gracePeriodSeconds").and_then(|g| g.parse().ok())),
        dry_run: ctx.q("dryRun") == Some("All")
            || body["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "All")),
    })
}

/// Objects of a collection after namespace, label and field selection.
fn selected(
    server: &ApiServer,
    rt: &ResourceType,
    ns: &str,
    ctx: &Ctx,
) -> Result<(Vec<Arc<Value>>, u64), ApiError> {
    let labels =
        LabelSelector::parse(ctx.q("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    let fields =
        FieldSelector::parse(ctx.q("fieldSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    fields.check_supported(rt).map_err(ApiError::bad_request)?;
    let (items, rv) = server
        .store
        .list(&rt.storage_key(), if ns.is_empty() { None } else { Some(ns) });
    let items = items
        .into_iter()
        .filter(|o| labels.matches_object(o))
        .filter(|o| fields.is_empty() || fields.matches(&defaults::convert(rt, o)))
        .collect();
    Ok((items, rv))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    after: String,
}

fn list(server: &ApiServer, rt: &Arc<ResourceType>, ns: &str, ctx: &Ctx) -> Result<Response, ApiError> {
    let (mut items, rv) = selected(server, rt, ns, ctx)?;
    let key = |o: &Value| {
        format!(
            "{}/{}",
            o.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )
    };
    let mut list_rv = rv;
    if let Some(c) = ctx.q("continue") {
        let token: ContinueToken = base64::engine::general_purpose::STANDARD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        items.retain(|o| key(o) > token.after);
        list_rv = token.rv;
    }
    let mut cont = None;
    let mut remaining = None;
    if let Some(limit) = ctx
        .q("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        && items.len() > limit
    {
        remaining = Some(items.len() - limit);
        items.truncate(limit);
        let after = items.last().map(|o| key(o)).unwrap_or_default();
        let token = serde_json::to_vec(&ContinueToken { rv: list_rv, after }).unwrap_or_default();
        cont = Some(base64::engine::general_purpose::STANDARD.encode(token));
    }
    if ctx.wants_table() {
        let include = ctx.q("includeObject").unwrap_or("Metadata");
        return Ok(json_response(
            StatusCode::OK,
            &table::table(rt, &items, list_rv, include, cont.as_deref()),
            &[],
        ));
    }
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
        meta["remainingItemCount"] = json!(remaining);
    }
    let items: Vec<Value> = items.iter().map(|o| defaults::convert(rt, o)).collect();
    let body = json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": meta, "items": items});
    Ok(json_response(StatusCode::OK, &body, &[]))
}

fn selector_string(rt: &ResourceType, obj: &Value) -> Option<String> {
    let paths = rt.scale.as_ref()?;
    if !rt.custom {
        let sel = obj.pointer("/spec/selector")?;
        let mut parts: Vec<String> = sel["matchLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        for e in sel["matchExpressions"].as_array().into_iter().flatten() {
            let vals: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let k = e["key"].as_str().unwrap_or_default();
            parts.push(match e["operator"].as_str() {
                Some("In") => format!("{k} in ({})", vals.join(",")),
                Some("NotIn") => format!("{k} notin ({})", vals.join(",")),
                Some("Exists") => k.to_string(),
                _ => format!("!{k}"),
            });
        }
        return Some(parts.join(","));
    }
    get_path(obj, paths.label_selector.as_deref()?)
        .and_then(Value::as_str)
        .map(String::from)
}

fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let Some(paths) = &rt.scale else {
        return Value::Null;
    };
    let m = &obj["metadata"];
    let mut status =
        json!({"replicas": get_path(obj, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0)});
    if let Some(sel) = selector_string(rt, obj) {
        status["selector"] = json!(sel);
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"], "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": get_path(obj, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    })
}

fn write_scale(
    server: &ApiServer,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    ctx: &Ctx,
    patch: Option<(PatchType, Value)>,
) -> Result<Response, ApiError> {
    let Some(paths) = rt.scale.clone() else {
        return Err(ApiError::method_not_allowed());
    };
    let obj = server.get(rt, ns, name)?;
    let current = scale_of(rt, &obj);
    let desired = match patch {
        None => ctx.body_json()?,
        Some((PatchType::Json, p)) => {
            super::merge::json_patch(&current, &p).map_err(|e| ApiError::new(422, "Invalid", e))?
        }
        Some((_, p)) => super::merge::merge_patch(&current, &p),
    };
    if let Some(rv) = desired
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        && Some(rv) != obj.pointer("/metadata/resourceVersion").and_then(Value::as_str)
    {
        return Err(ApiError::conflict(rt, name));
    }
    let replicas = desired
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            rt,
            name,
            "spec.replicas",
            &format!("Invalid value: {replicas}: must be greater than or equal to 0"),
        ));
    }
    let mut next = (*obj).clone();
    set_path(&mut next, &paths.spec_replicas, json!(replicas));
    let w = server.update(rt, ns, name, next, Part::Main, &ctx.write_opts())?;
    Ok(json_response(
        StatusCode::OK,
        &scale_of(rt, &w.object),
        &w.warnings,
    ))
}

fn pod_log(server: &ApiServer, ns: &str, name: &str, ctx: &Ctx) -> Result<Response, ApiError> {
    let rt = server
        .resource("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods not served"))?;
    let pod = server.get(&rt, ns, name)?;
    let container = match ctx.q("container") {
        Some(c) => c.to_string(),
        None => pod
            .pointer("/spec/containers/0/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    };
    let source = server.log_source.read().ok().and_then(|s| s.clone());
    let Some(source) = source else {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" has no logs: kubesim runs in instant mode, where pods are marked running without starting any process"
        )));
    };
    let tail = ctx.q("tailLines").and_then(|t| t.parse().ok());
    let text = source
        .logs(ns, name, &container, tail)
        .map_err(ApiError::bad_request)?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response())
}

/// Turns one stored change into what a selector-filtered watch reports.
fn filter_event(
    ev: &WatchEvent,
    rt: &ResourceType,
    ns: &str,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<(&'static str, Value)> {
    if ev.key != rt.storage_key() || (!ns.is_empty() && ev.namespace != ns) {
        return None;
    }
    let matches = |o: &Value| {
        labels.matches_object(o) && (fields.is_empty() || fields.matches(&defaults::convert(rt, o)))
    };
    let now = matches(&ev.object);
    let kind = match ev.type_ {
        EventType::Added if now => "ADDED",
        EventType::Deleted if now => "DELETED",
        EventType::Modified => {
            let before = ev.previous.as_deref().is_some_and(matches);
            match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        }
        _ => return None,
    };
    Some((kind, defaults::convert(rt, &ev.object)))
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch_response(
    server: Arc<ApiServer>,
    rt: Arc<ResourceType>,
    ns: String,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let labels =
        LabelSelector::parse(ctx.q("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    let fields =
        FieldSelector::parse(ctx.q("fieldSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    fields.check_supported(&rt).map_err(ApiError::bad_request)?;
    let bookmarks = ctx.q("allowWatchBookmarks") == Some("true");
    let initial_events = ctx.q("sendInitialEvents") == Some("true");
    let timeout = ctx
        .q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let requested: Option<u64> = ctx
        .q("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1024);
    let mut epoch = server.watch_epoch.subscribe();
    let delay = Duration::from_millis(server.watch_delay_ms.load(std::sync::atomic::Ordering::Relaxed));

    // Initial state: synthetic ADDED events when no version (or sendInitialEvents) is asked.
    let mut initial = Vec::new();
    let start = match requested {
        Some(rv) if !initial_events => rv,
        _ => {
            let (items, rv) = server
                .store
                .list(&rt.storage_key(), if ns.is_empty() { None } else { Some(&ns) });
            for o in items
                .iter()
                .filter(|o| labels.matches_object(o) && (fields.is_empty() || fields.matches(o)))
            {
                initial.push(watch_line("ADDED", &defaults::convert(&rt, o)));
            }
            if initial_events {
                let bm = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                initial.push(watch_line("BOOKMARK", &bm));
            }
            rv
        }
    };
    let subscription = server.store.watch_from(start);
    tokio::spawn(async move {
        let (backlog, mut live) = match subscription {
            Ok(s) => s,
            Err(StoreError::Gone(oldest)) => {
                let _ = tx
                    .send(Ok(watch_line(
                        "ERROR",
                        &ApiError::gone(start, oldest).to_status(),
                    )))
                    .await;
                return;
            }
            Err(_) => return,
        };
        for line in initial {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let mut last = start;
        for ev in backlog {
            last = ev.rv;
            if let Some((kind, obj)) = filter_event(&ev, &rt, &ns, &labels, &fields)
                && tx.send(Ok(watch_line(kind, &obj))).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = epoch.changed() => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": last.max(server.store.current_rv()).to_string()}});
                    if tx.send(Ok(watch_line("BOOKMARK", &bm))).await.is_err() {
                        return;
                    }
                }
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last {
                            continue;
                        }
                        last = ev.rv;
                        if let Some((kind, obj)) = filter_event(&ev, &rt, &ns, &labels, &fields)
                            && tx.send(Ok(watch_line(kind, &obj))).await.is_err()
                        {
                            return;
                        }
                    }
                    // Lagged or closed: end the watch; the client resumes from its last version.
                    Err(_) => return,
                }
            }
        }
    });
    let body = if delay.is_zero() {
        Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    } else {
        Body::from_stream(delayed(rx, delay))
    };
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// The lines of `rx`, each passed on `delay` after it was sent (in order; a slow watch).
fn delayed(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    delay: Duration,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let (timed_tx, timed_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if timed_tx
                .send((tokio::time::Instant::now() + delay, item))
                .is_err()
            {
                return;
            }
        }
    });
    futures::stream::unfold(timed_rx, |mut rx| async move {
        let (due, item) = rx.recv().await?;
        tokio::time::sleep_until(due).await;
        Some((item, rx))
    })
}

/// Used by tests: a JSON object's map.
pub fn object_map(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    ensure_object(v)
}
