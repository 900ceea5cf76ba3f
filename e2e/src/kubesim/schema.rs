//! TEMPORARY stand-in until the CRD schema engine lands.
#![allow(dead_code, missing_docs)]
use serde_json::{Value, json};

#[derive(Debug)]
pub struct CompiledSchema(Value);
impl CompiledSchema {
    pub fn new(v: &Value) -> Result<Self, String> {
        Ok(Self(v.clone()))
    }
    pub fn raw(&self) -> &Value {
        &self.0
    }
    pub fn unknown_fields(&self, _obj: &Value) -> Vec<String> {
        vec![]
    }
    pub fn prune(&self, _obj: &mut Value) {}
    pub fn apply_defaults(&self, _obj: &mut Value) {}
    pub fn validate(&self, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
        vec![]
    }
}
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}
impl FieldError {
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.detail)
    }
    pub fn reason(&self) -> &'static str {
        "FieldValueInvalid"
    }
}
pub fn invalid_status(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Value {
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"Invalid","code":422,
      "message": format!("{kind}.{group} \"{name}\" is invalid: {}", errors.iter().map(|e| e.message()).collect::<Vec<_>>().join(", ")),
      "details": {"name": name, "group": group, "kind": kind, "causes": []}})
}
