//! Reading upstream prometheus-operator's objects (`monitoring.coreos.com`) into our types.
//!
//! The spec is deserialized into the same Rust type as ours; fields our type does not have
//! would be dropped by serde without a word, so [`from_dynamic`] compares the spec with what
//! the typed value serializes back to and names every field that did not survive. The caller
//! reports them (a Warning Event on the object: its status belongs to whichever operator owns
//! the group, so we never write it).

use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An upstream object read into our type `K`, and the fields of its spec we do not support
/// (JSON paths like `spec.endpoints[0].attachMetadata`), which the configuration leaves out.
#[derive(Clone, Debug)]
pub struct Read<K> {
    /// The object, with upstream's metadata and spec, and no status.
    pub object: K,
    /// Spec fields that were not read, sorted.
    pub unsupported: Vec<String>,
}

/// Reads `obj` (its metadata and `spec`; the status is the owning operator's) into `K`.
/// An `Err` is the deserialization error: a spec that does not fit our type at all.
pub fn from_dynamic<K: DeserializeOwned + HasSpec>(obj: &DynamicObject) -> Result<Read<K>, String> {
    let spec = obj.data.get("spec").cloned().unwrap_or(Value::Null);
    let doc = serde_json::json!({
        "metadata": obj.metadata,
        "spec": spec,
    });
    let object: K = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    let back = object.spec_json().map_err(|e| e.to_string())?;
    let mut unsupported = Vec::new();
    dropped(&spec, &back, "spec", &mut unsupported);
    unsupported.sort();
    Ok(Read { object, unsupported })
}

/// Typed objects whose spec can be serialized back for the comparison.
pub trait HasSpec {
    /// The spec as JSON.
    fn spec_json(&self) -> serde_json::Result<Value>;
}

macro_rules! has_spec {
    ($($t:ty),*) => {$(
        impl HasSpec for $t {
            fn spec_json(&self) -> serde_json::Result<Value> {
                serde_json::to_value(&self.spec)
            }
        }
    )*};
}
has_spec!(
    crate::crd::ServiceMonitor,
    crate::crd::PodMonitor,
    crate::crd::PrometheusRule,
    crate::crd::ScrapeConfig
);

/// Pushes the path of every field in `original` missing from `back`. Empty values (null, `""`,
/// `[]`, `{}`) are not reported: our types leave empty fields out, and they mean the default.
fn dropped(original: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => dropped(v, bv, &p, out),
                    None if !is_empty(v) => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(o), Value::Array(b)) => {
            for (i, (v, bv)) in o.iter().zip(b).enumerate() {
                dropped(v, bv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The `DynamicObject` an upstream object of `kind` in `version` would arrive as; for tests
/// and golden cases that express our objects in upstream's group.
pub fn to_dynamic<K: kube::Resource + HasSpec>(obj: &K, kind: &str, version: &str) -> DynamicObject {
    let mut data = serde_json::Map::new();
    if let Ok(spec) = obj.spec_json() {
        data.insert("spec".into(), spec);
    }
    DynamicObject {
        types: Some(kube::api::TypeMeta {
            api_version: format!("{}/{version}", crate::crd::UPSTREAM_GROUP),
            kind: kind.to_string(),
        }),
        metadata: obj.meta().clone(),
        data: Value::Object(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ServiceMonitor;

    fn dynamic(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reads_spec_and_names_unsupported_fields() {
        let obj = dynamic(serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "a"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "attachMetadata": {"node": true},
                "targetLabels": [],
                "endpoints": [{"port": "http", "interval": "15s", "scrapeProtocols": ["OpenMetricsText1.0.0"]}]
            },
            "status": {"bindings": []}
        }));
        let read = from_dynamic::<ServiceMonitor>(&obj).unwrap();
        assert_eq!(read.object.metadata.name.as_deref(), Some("web"));
        assert_eq!(read.object.spec.endpoints[0].port.as_deref(), Some("http"));
        assert!(read.object.status.is_none());
        assert_eq!(
            read.unsupported,
            ["spec.attachMetadata", "spec.endpoints[0].scrapeProtocols"]
        );
    }

    #[test]
    fn a_spec_that_does_not_fit_is_an_error() {
        let obj = dynamic(serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": "app=web", "endpoints": []}
        }));
        assert!(from_dynamic::<ServiceMonitor>(&obj).is_err());
    }

    #[test]
    fn round_trip_has_nothing_unsupported() {
        let obj = dynamic(serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {}, "endpoints": [{"port": "http"}]}
        }));
        let sm = from_dynamic::<ServiceMonitor>(&obj).unwrap().object;
        let again = from_dynamic::<ServiceMonitor>(&to_dynamic(&sm, "ServiceMonitor", "v1")).unwrap();
        assert_eq!(again.object.spec, sm.spec);
        assert_eq!(again.object.metadata, sm.metadata);
        assert!(again.unsupported.is_empty());
    }
}
