//! TEMPORARY stand-in until the merge engine lands.
#![allow(dead_code, missing_docs)]
use serde_json::Value;

pub trait ListTypes {}
pub struct BuiltinListTypes;
impl ListTypes for BuiltinListTypes {}
pub struct SchemaListTypes(pub Value);
impl SchemaListTypes {
    pub fn new(v: &Value) -> Self {
        Self(v.clone())
    }
}
impl ListTypes for SchemaListTypes {}

#[derive(Debug)]
pub struct Conflicts(pub Vec<(String, String)>);
impl Conflicts {
    pub fn message(&self) -> String {
        "conflict".into()
    }
    pub fn causes(&self) -> Vec<Value> {
        vec![]
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}
pub fn json_patch(obj: &Value, _patch: &Value) -> Result<Value, String> {
    Ok(obj.clone())
}
pub fn merge_patch(obj: &Value, patch: &Value) -> Value {
    let mut o = obj.clone();
    merge(&mut o, patch);
    o
}
pub fn strategic_merge_patch(obj: &Value, patch: &Value, _l: &dyn ListTypes) -> Result<Value, String> {
    Ok(merge_patch(obj, patch))
}
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    _m: &str,
    _f: bool,
    _now: &str,
    _l: &dyn ListTypes,
) -> Result<Value, Conflicts> {
    Ok(match live {
        Some(l) => merge_patch(l, applied),
        None => applied.clone(),
    })
}
pub fn record_update(_old: Option<&Value>, new: &Value, _m: &str, _now: &str, _l: &dyn ListTypes) -> Value {
    new.clone()
}
