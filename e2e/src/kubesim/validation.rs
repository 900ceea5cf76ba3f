//! Object metadata and size validation that kube-apiserver applies to every kind: names
//! (DNS-1123 subdomain, DNS-1123 label for Namespaces, DNS-1035 label for Services), label
//! keys and values, the total size of annotations, and the 1 MiB limit of ConfigMaps and
//! Secrets. Messages are upstream's (apimachinery's validation package).

use serde_json::Value;

use super::errors::ApiError;
use super::registry::ResourceType;

/// A field error: (field path, detail).
pub type FieldError = (String, String);

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const SUBDOMAIN_EXAMPLE: &str = " (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Annotations of one object may hold at most this many bytes (keys and values).
pub const TOTAL_ANNOTATION_BYTES: usize = 256 * 1024;
/// ConfigMap and Secret payloads may hold at most this many bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// The DNS-1123 label pattern, without its length limit (upstream checks that apart).
fn label_pattern(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|c| alnum(*c) || *c == b'-')
}

fn subdomain_pattern(s: &str) -> bool {
    s.split('.').all(label_pattern)
}

fn dns1035_pattern(s: &str) -> bool {
    label_pattern(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && subdomain_pattern(s)
}

/// The name rule of `rt`'s objects: one detail per broken rule (none when `name` is valid).
pub fn name_errors(rt: &ResourceType, name: &str) -> Vec<String> {
    let builtin = !rt.custom && ["", "apps", "batch"].contains(&rt.group.as_str());
    let (max, valid, msg) = match rt.plural.as_str() {
        "namespaces" if builtin => (63, label_pattern(name), LABEL_MSG.to_string()),
        "services" if builtin => (63, dns1035_pattern(name), DNS1035_MSG.to_string()),
        _ => (
            253,
            subdomain_pattern(name),
            format!("{SUBDOMAIN_MSG}{SUBDOMAIN_EXAMPLE}"),
        ),
    };
    let mut out = Vec::new();
    if name.len() > max {
        out.push(format!(
            "Invalid value: {name:?}: must be no more than {max} characters"
        ));
    }
    if !valid {
        out.push(format!("Invalid value: {name:?}: {msg}"));
    }
    out
}

fn qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && ok(b[0])
        && ok(b[b.len() - 1])
        && b.iter().all(|c| ok(*c) || matches!(c, b'-' | b'_' | b'.'))
}

/// Errors of a qualified name (label or annotation key): `[prefix/]name`.
fn key_errors(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut out = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else if !is_dns_subdomain(p) {
            out.push(format!("prefix part {SUBDOMAIN_MSG}{SUBDOMAIN_EXAMPLE}"));
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        out.push("name part must be no more than 63 characters".to_string());
    }
    if !name.is_empty() && !qualified_name_part(name) {
        out.push(QUALIFIED_NAME_MSG.to_string());
    }
    if key.matches('/').count() > 1 {
        out.push("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_string());
    }
    out
}

/// Metadata errors: label keys and values, annotation keys and their total size.
pub fn metadata_errors(obj: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    for (k, v) in labels.into_iter().flatten() {
        for e in key_errors(k) {
            out.push(("metadata.labels".into(), format!("Invalid value: {k:?}: {e}")));
        }
        let v = v.as_str().unwrap_or_default();
        if v.len() > 63 {
            out.push((
                "metadata.labels".into(),
                format!("Invalid value: {v:?}: must be no more than 63 characters"),
            ));
        }
        if !v.is_empty() && !qualified_name_part(v) {
            out.push((
                "metadata.labels".into(),
                format!("Invalid value: {v:?}: {LABEL_VALUE_MSG}"),
            ));
        }
    }
    let annotations = obj.pointer("/metadata/annotations").and_then(Value::as_object);
    let mut total = 0;
    for (k, v) in annotations.into_iter().flatten() {
        for e in key_errors(&k.to_lowercase()) {
            out.push((
                "metadata.annotations".into(),
                format!("Invalid value: {k:?}: {e}"),
            ));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_BYTES {
        out.push((
            "metadata.annotations".into(),
            format!("Too long: must have at most {TOTAL_ANNOTATION_BYTES} bytes"),
        ));
    }
    out
}

/// ConfigMap and Secret payload limits.
pub fn payload_errors(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    if !rt.group.is_empty() || rt.custom {
        return Vec::new();
    }
    let size = |field: &str, decode: bool| -> usize {
        obj.get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let v = v.as_str().unwrap_or_default();
                // Secret data is base64 on the wire; the limit counts the decoded bytes.
                k.len() + if decode { v.len() / 4 * 3 } else { v.len() }
            })
            .sum()
    };
    match rt.plural.as_str() {
        "configmaps" if size("data", false) + size("binaryData", true) > MAX_PAYLOAD_BYTES => vec![(
            "[]".into(),
            format!("Too long: must have at most {MAX_PAYLOAD_BYTES} bytes"),
        )],
        "secrets" if size("data", true) + size("stringData", false) > MAX_PAYLOAD_BYTES => vec![(
            "data".into(),
            format!("Too long: must have at most {MAX_PAYLOAD_BYTES} bytes"),
        )],
        _ => Vec::new(),
    }
}

/// Everything `create` and `update` check for every kind, as one 422 with upstream's
/// rendering (`Kind "x" is invalid: field: detail`, several as `[a, b]`).
pub fn check(rt: &ResourceType, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut errs: Vec<FieldError> = name_errors(rt, name)
        .into_iter()
        .map(|d| ("metadata.name".to_string(), d))
        .collect();
    errs.extend(metadata_errors(obj));
    errs.extend(payload_errors(rt, obj));
    if errs.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid_all(rt, name, &errs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_keys_and_values() {
        let obj = json!({"metadata": {"labels": {
            "app.kubernetes.io/name": "web",
            "ok": "",
            "bad key": "x",
            "Example.com/x": "y",
            "k": "v!",
            "long": "a".repeat(64),
        }}});
        let errs = metadata_errors(&obj);
        let text: Vec<String> = errs.iter().map(|(f, d)| format!("{f}: {d}")).collect();
        assert_eq!(errs.len(), 4, "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters")), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("metadata.labels: Invalid value: \"Example.com/x\": prefix part a lowercase RFC 1123 subdomain")), "{text:#?}");
        assert!(
            text.iter().any(|t| t.starts_with(
                "metadata.labels: Invalid value: \"v!\": a valid label must be an empty string"
            )),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.ends_with("must be no more than 63 characters")),
            "{text:#?}"
        );
    }

    #[test]
    fn annotation_size() {
        let obj = json!({"metadata": {"annotations": {"a": "x".repeat(TOTAL_ANNOTATION_BYTES)}}});
        assert_eq!(
            metadata_errors(&obj),
            vec![(
                "metadata.annotations".to_string(),
                "Too long: must have at most 262144 bytes".to_string()
            )]
        );
    }
}
