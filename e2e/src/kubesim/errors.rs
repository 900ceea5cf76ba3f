//! API errors in the Kubernetes `Status` shape.

use serde_json::{Value, json};

use super::registry::ResourceType;

/// An error answer.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Status reason, e.g. `NotFound`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Status details, if any.
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        let mut d = json!({"kind": rt.plural});
        if !name.is_empty() {
            d["name"] = json!(name);
        }
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        self.details = Some(d);
        self
    }

    /// 404 for a missing object.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        )
        .with_details(rt, name)
    }

    /// 404 for a missing namespace.
    pub fn namespace_not_found(ns: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"));
        e.details = Some(json!({"name": ns, "kind": "namespaces"}));
        e
    }

    /// 409 for a create of an existing object.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .with_details(rt, name)
    }

    /// 409 for a stale resourceVersion.
    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        )
        .with_details(rt, name)
    }

    /// 409 for a failed precondition.
    pub fn precondition(rt: &ResourceType, name: &str, what: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {what}",
                rt.qualified()
            ),
        )
        .with_details(rt, name)
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 Invalid with a plain message.
    pub fn invalid(rt: &ResourceType, name: &str, field: &str, detail: &str) -> Self {
        let message = format!("{} \"{name}\" is invalid: {field}: {detail}", rt.qualified_kind());
        let mut e = Self::new(422, "Invalid", message);
        let mut d = json!({"name": name, "kind": rt.kind, "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}]});
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        e.details = Some(d);
        e
    }

    /// 422 Invalid for a list of `(field, detail)` errors, rendered as upstream aggregates them:
    /// one error as `field: detail`, several as `[field1: detail1, field2: detail2]` (a repeated
    /// message once), each a cause whose reason follows the detail's kind (`Forbidden: ...` is
    /// `FieldValueForbidden`).
    pub fn invalid_all(rt: &ResourceType, name: &str, errors: &[(String, String)]) -> Self {
        let mut messages: Vec<String> = Vec::new();
        for (field, detail) in errors {
            let m = format!("{field}: {detail}");
            if !messages.contains(&m) {
                messages.push(m);
            }
        }
        let message = match messages.as_slice() {
            [] => format!("{} \"{name}\" is invalid", rt.qualified_kind()),
            [one] => format!("{} \"{name}\" is invalid: {one}", rt.qualified_kind()),
            many => format!(
                "{} \"{name}\" is invalid: [{}]",
                rt.qualified_kind(),
                many.join(", ")
            ),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|(field, detail)| json!({"reason": cause_reason(detail), "message": detail, "field": field}))
            .collect();
        let mut e = Self::new(422, "Invalid", message);
        let mut d = json!({"name": name, "kind": rt.kind, "causes": causes});
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        e.details = Some(d);
        e
    }

    /// 405 Method Not Allowed.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 410 Gone for a watch or list from a compacted resourceVersion.
    pub fn gone(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// The `StatusCause` reason of a field error, from the kind its detail starts with.
fn cause_reason(detail: &str) -> &'static str {
    const KINDS: [(&str, &str); 8] = [
        ("Forbidden", "FieldValueForbidden"),
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Not found", "FieldValueNotFound"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
        ("Internal error", "InternalError"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| detail.starts_with(prefix))
        .map_or("FieldValueInvalid", |(_, reason)| reason)
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}
