//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl sends them for
//! typed commands (`kubectl create namespace`, `create secret`, `run`, `expose`, `create token`).
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope naming the apiVersion
//! and kind, whose `raw` bytes are the object's own message. The messages are described by the
//! Kubernetes `.proto` files, compiled by `make test-deps` into `.cache/bin/kubernetes-api.fds`;
//! prost-reflect decodes against them and this module maps the result onto the JSON the API
//! server would have received (the k8s-pb crate has the typed messages but no reflection or
//! JSON mapping, so every kind would need its own conversion code).
//!
//! Go writes every non-pointer field, so a decoded message carries zero values the JSON form
//! omits: empty strings and zero timestamps are dropped (numbers and booleans are kept, as a
//! pointer field may well be set to 0 or false).

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, ReflectMessage, Value as Pb};
use serde_json::{Map, Value, json};

use super::errors::ApiError;

/// The magic prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// Where the descriptor set lives: `$KUBESIM_PROTO_DESCRIPTORS`, else next to the test binaries.
pub fn descriptor_path() -> PathBuf {
    match std::env::var_os("KUBESIM_PROTO_DESCRIPTORS") {
        Some(p) => PathBuf::from(p),
        None => crate::bins::bin_dir().join("kubernetes-api.fds"),
    }
}

fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let path = descriptor_path();
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "kubesim cannot decode protobuf bodies: {} is unreadable ({e}); run `make test-deps`",
                path.display()
            )
        })?;
        DescriptorPool::decode(bytes.as_slice())
            .map_err(|e| format!("kubesim cannot decode protobuf bodies: {}: {e}", path.display()))
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn unsupported(msg: impl Into<String>) -> ApiError {
    ApiError::new(415, "UnsupportedMediaType", msg.into())
}

/// Decodes a protobuf request body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let pool = pool().map_err(unsupported)?;
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ApiError::bad_request("protobuf body without the k8s magic prefix"))?;
    let unknown_desc = pool
        .get_message_by_name("k8s.io.apimachinery.pkg.runtime.Unknown")
        .ok_or_else(|| unsupported("descriptor set lacks runtime.Unknown"))?;
    let unknown = DynamicMessage::decode(unknown_desc, envelope)
        .map_err(|e| ApiError::bad_request(format!("decoding the protobuf envelope: {e}")))?;
    let type_meta = match unknown.get_field_by_name("typeMeta").as_deref() {
        Some(Pb::Message(m)) => m.clone(),
        _ => return Err(ApiError::bad_request("protobuf envelope without typeMeta")),
    };
    let text = |m: &DynamicMessage, f: &str| match m.get_field_by_name(f).as_deref() {
        Some(Pb::String(s)) => s.clone(),
        _ => String::new(),
    };
    let api_version = text(&type_meta, "apiVersion");
    let kind = text(&type_meta, "kind");
    let raw = match unknown.get_field_by_name("raw").as_deref() {
        Some(Pb::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let desc = message_for(pool, &api_version, &kind).ok_or_else(|| {
        unsupported(format!(
            "no protobuf message known for {api_version} {kind}; send JSON instead"
        ))
    })?;
    let msg = DynamicMessage::decode(desc, raw.as_ref())
        .map_err(|e| ApiError::bad_request(format!("decoding {api_version} {kind}: {e}")))?;
    let mut obj = match to_json(&msg) {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    // TypeMeta travels in the envelope only.
    if !api_version.is_empty() {
        obj.insert("apiVersion".into(), json!(api_version));
    }
    if !kind.is_empty() {
        obj.insert("kind".into(), json!(kind));
    }
    Ok(Value::Object(obj))
}

/// Fields of a built-in object that its kind does not have, as paths (`spec.foo`,
/// `spec.containers[0].bar`), after removing them from `obj` (decoding into Go structs drops
/// them too). `Err` when the descriptors are missing; an unknown kind has no unknown fields.
pub fn prune_unknown_fields(api_version: &str, kind: &str, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    let pool = pool().map_err(ApiError::internal)?;
    let Some(desc) = message_for(pool, api_version, kind) else {
        return Ok(Vec::new());
    };
    let mut unknown = Vec::new();
    if let Value::Object(map) = obj {
        // TypeMeta is not part of the message.
        let keep: Vec<(String, Value)> = ["apiVersion", "kind"]
            .iter()
            .filter_map(|k| map.remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        prune_message(&desc, map, "", &mut unknown);
        map.extend(keep);
    }
    Ok(unknown)
}

/// Message types whose JSON form is a scalar or free-form: nothing inside them is checked.
fn is_leaf(full_name: &str) -> bool {
    matches!(
        full_name,
        "k8s.io.apimachinery.pkg.api.resource.Quantity"
            | "k8s.io.apimachinery.pkg.apis.meta.v1.Time"
            | "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime"
            | "k8s.io.apimachinery.pkg.apis.meta.v1.Duration"
            | "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
            | "k8s.io.apimachinery.pkg.runtime.RawExtension"
            | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1"
    )
}

fn prune_message(
    desc: &MessageDescriptor,
    obj: &mut Map<String, Value>,
    path: &str,
    unknown: &mut Vec<String>,
) {
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        let field = desc.get_field_by_name(&key).or_else(|| {
            // Fields of embedded (inline) structs sit in the parent.
            desc.fields().find_map(|f| match f.kind() {
                prost_reflect::Kind::Message(m) if is_inline(f.name(), m.name()) => m.get_field_by_name(&key),
                _ => None,
            })
        });
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let Some(field) = field else {
            obj.remove(&key);
            unknown.push(here);
            continue;
        };
        let prost_reflect::Kind::Message(m) = field.kind() else {
            continue;
        };
        if field.is_map() || is_leaf(m.full_name()) {
            continue;
        }
        match obj.get_mut(&key) {
            Some(Value::Object(child)) if !field.is_list() => prune_message(&m, child, &here, unknown),
            Some(Value::Array(items)) if field.is_list() => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let Value::Object(child) = item {
                        prune_message(&m, child, &format!("{here}[{i}]"), unknown);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The message of `kind` in `api_version`: `k8s.io.api.<first label of the group>.<version>`
/// for API groups (`core` for the legacy group), meta/v1 for options kinds.
fn message_for(pool: &DescriptorPool, api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let label = match group.split('.').next().unwrap_or_default() {
        "" => "core",
        "internal" => "apiserverinternal",
        other => other,
    };
    [
        format!("k8s.io.api.{label}.{version}.{kind}"),
        format!("k8s.io.apiextensions_apiserver.pkg.apis.{label}.{version}.{kind}"),
        format!("k8s.io.apimachinery.pkg.apis.meta.v1.{kind}"),
    ]
    .iter()
    .find_map(|name| pool.get_message_by_name(name))
}

/// The JSON form of a message, `None` for a value the JSON form leaves out.
fn to_json(msg: &DynamicMessage) -> Option<Value> {
    let desc = msg.descriptor();
    match desc.full_name() {
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            return string_field(msg, "string").map(Value::String);
        }
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => return time(msg, false),
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => return time(msg, true),
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => {
            let ns = int_field(msg, "duration").unwrap_or(0);
            return Some(json!(go_duration(ns)));
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            return if int_field(msg, "type") == Some(1) {
                Some(json!(string_field(msg, "strVal").unwrap_or_default()))
            } else {
                Some(json!(int_field(msg, "intVal").unwrap_or(0)))
            };
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension" | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let raw = match msg.get_field_by_name("raw").as_deref() {
                Some(Pb::Bytes(b)) => b.clone(),
                _ => return None,
            };
            return serde_json::from_slice(&raw).ok();
        }
        _ => {}
    }
    let mut out = Map::new();
    for (field, value) in msg.fields() {
        let Some(v) = value_json(value) else { continue };
        let inline = match field.kind() {
            prost_reflect::Kind::Message(m) => is_inline(field.name(), m.name()),
            _ => false,
        };
        match v {
            // Go embeds these structs (`json:",inline"`): their fields sit in the parent.
            Value::Object(inner) if inline => out.extend(inner),
            // Generation is the server's; Go writes its zero for kinds that never set it.
            Value::Number(n) if field.name() == "generation" && n.as_i64() == Some(0) => {}
            v => {
                out.insert(field.name().to_string(), v);
            }
        }
    }
    Some(Value::Object(out))
}

/// Fields that are embedded Go structs, serialised inline in JSON (`Volume.volumeSource`,
/// `ConfigMapKeySelector.localObjectReference`, `Probe.handler`, ...).
fn is_inline(field: &str, message: &str) -> bool {
    matches!(
        (field, message),
        ("localObjectReference", "LocalObjectReference")
            | ("volumeSource", "VolumeSource")
            | ("persistentVolumeSource", "PersistentVolumeSource")
            | ("handler", "ProbeHandler")
            | ("ephemeralContainerCommon", "EphemeralContainerCommon")
            | ("ingressRuleValue", "IngressRuleValue")
    )
}

fn value_json(value: &Pb) -> Option<Value> {
    Some(match value {
        Pb::Bool(b) => json!(b),
        Pb::I32(n) => json!(n),
        Pb::I64(n) => json!(n),
        Pb::U32(n) => json!(n),
        Pb::U64(n) => json!(n),
        Pb::F32(n) => json!(n),
        Pb::F64(n) => json!(n),
        Pb::EnumNumber(n) => json!(n),
        Pb::String(s) if s.is_empty() => return None,
        Pb::String(s) => json!(s),
        Pb::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Pb::Message(m) => to_json(m)?,
        Pb::List(items) => {
            if items.is_empty() {
                return None;
            }
            // An item the JSON form omits (an empty string in a list) still holds its place.
            Value::Array(items.iter().map(|i| value_json(i).unwrap_or(json!(""))).collect())
        }
        Pb::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                // Map values are kept even when empty: `data: {key: ""}` is meaningful.
                let v = match v {
                    Pb::String(s) => json!(s),
                    other => value_json(other).unwrap_or(Value::Null),
                };
                m.insert(key, v);
            }
            Value::Object(m)
        }
    })
}

fn string_field(msg: &DynamicMessage, name: &str) -> Option<String> {
    match msg.get_field_by_name(name).as_deref() {
        Some(Pb::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int_field(msg: &DynamicMessage, name: &str) -> Option<i64> {
    match msg.get_field_by_name(name).as_deref() {
        Some(Pb::I64(n)) => Some(*n),
        Some(Pb::I32(n)) => Some(i64::from(*n)),
        _ => None,
    }
}

/// metav1.Time: RFC 3339 in UTC, seconds (or, for MicroTime, microseconds); the zero time is
/// null in JSON, so it is left out.
fn time(msg: &DynamicMessage, micro: bool) -> Option<Value> {
    let secs = int_field(msg, "seconds").unwrap_or(0);
    let nanos = int_field(msg, "nanos").unwrap_or(0);
    if secs == 0 && nanos == 0 {
        return None;
    }
    let t = chrono::DateTime::from_timestamp(secs, u32::try_from(nanos).unwrap_or(0))?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Some(json!(t.format(format).to_string()))
}

/// A Go `time.Duration` string (`1h2m3.5s`, `0s`) from nanoseconds.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let ns = ns.unsigned_abs();
    let (h, rem) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let (s, frac) = (rem / 1_000_000_000, rem % 1_000_000_000);
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let f = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(90_500_000_000), "1m30.5s");
        assert_eq!(go_duration(-2_000_000_000), "-2s");
    }
}
