//! CustomResourceDefinition schema semantics as kube-apiserver applies them: structural
//! pruning, defaulting, OpenAPI value validation and `x-kubernetes-validations` CEL rules,
//! with errors worded exactly as the apiserver words them.
//!
//! Sources followed (read for behaviour, not copied):
//! - k8s.io/apiextensions-apiserver: `apiserver/schema/{pruning,defaulting,listtype,objectmeta,cel}`,
//!   `apiserver/validation/validation.go` (kube-openapi result to field errors),
//!   `apiserver/customresource_handler.go` (decode-time coercion, strict field errors),
//!   `registry/customresource/strategy.go` (error order, CEL skipped after blocking errors).
//! - k8s.io/kube-openapi `pkg/validation/{validate,errors}` (value validation and its messages).
//! - k8s.io/apimachinery `util/validation/field/errors.go` and `api/errors` (`NewInvalid`).
//!
//! Where the apiserver walks Go maps (random order), this module walks keys sorted by name so
//! the error order is stable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use kube_cel::KubeCelExt;
use kube_cel::cel::objects::OptionalValue;
use kube_cel::cel::{Context, ExecutionError, Program, Value as Cel};
use regex::Regex;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// Field errors
// ---------------------------------------------------------------------------------------------

/// The kind of a field error, matching `field.ErrorType` in apimachinery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `FieldValueNotFound`.
    NotFound,
    /// `FieldValueRequired`.
    Required,
    /// `FieldValueDuplicate`.
    Duplicate,
    /// `FieldValueInvalid`.
    Invalid,
    /// `FieldValueNotSupported`.
    NotSupported,
    /// `FieldValueForbidden`.
    Forbidden,
    /// `FieldValueTooLong`.
    TooLong,
    /// `FieldValueTooMany`.
    TooMany,
    /// `InternalError`.
    Internal,
    /// `FieldValueTypeInvalid`.
    TypeInvalid,
}

impl ErrorKind {
    /// The Status cause reason (`details.causes[].reason`).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "FieldValueNotFound",
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Internal => "InternalError",
            ErrorKind::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The words the apiserver prints for this kind.
    fn label(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "Not found",
            ErrorKind::Required => "Required value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::Invalid | ErrorKind::TypeInvalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::Internal => "Internal error",
        }
    }
}

/// One field-level validation error, as `field.Error` in apimachinery.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field path as the apiserver prints it, e.g. `spec.items[0].name`, or `<nil>` for the
    /// object root.
    pub field: String,
    /// What is wrong.
    pub kind: ErrorKind,
    /// The offending value as the apiserver holds it; `None` when the apiserver omits it.
    /// JSON `null` prints as `"null"`, like a Go nil.
    pub bad_value: Option<Value>,
    /// Free-form detail appended after the value.
    pub detail: String,
}

impl FieldError {
    fn new(field: String, kind: ErrorKind, bad_value: Option<Value>, detail: impl Into<String>) -> Self {
        FieldError {
            field,
            kind,
            bad_value,
            detail: detail.into(),
        }
    }

    fn invalid(path: &FPath, value: Value, detail: impl Into<String>) -> Self {
        Self::new(fp_str(path), ErrorKind::Invalid, Some(value), detail)
    }

    /// The Status cause reason, e.g. `FieldValueInvalid`.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The error without its field, as `field.Error.ErrorBody()`; this is the cause message.
    pub fn body(&self) -> String {
        let label = self.kind.label();
        let mut s = match (self.kind, &self.bad_value) {
            (ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong | ErrorKind::Internal, _)
            | (_, None) => label.to_string(),
            (_, Some(v)) => format!("{label}: {}", format_bad_value(v)),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The error exactly as the apiserver prints one error: `<field>: <body>`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// The aggregate text of an error list as `ErrorList.ToAggregate().Error()` prints it: one
/// message alone, several as `[a, b]`, repeated messages once.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let m = e.message();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen.concat(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// The 422 Status body the apiserver sends for invalid objects (`apierrors.NewInvalid`).
/// `group` may be empty for the core group.
pub fn invalid_status(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Value {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let message = if errors.is_empty() {
        format!("{qualified} {} is invalid", go_quote(name))
    } else {
        format!(
            "{qualified} {} is invalid: {}",
            go_quote(name),
            aggregate_message(errors)
        )
    };
    // Go omits empty fields of StatusDetails and StatusCause (omitempty).
    let mut details = Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        details.insert("kind".into(), json!(kind));
    }
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| {
            let mut c = Map::new();
            c.insert("reason".into(), json!(e.reason()));
            c.insert("message".into(), json!(e.body()));
            if !e.field.is_empty() {
                c.insert("field".into(), json!(e.field));
            }
            Value::Object(c)
        })
        .collect();
    if !causes.is_empty() {
        details.insert("causes".into(), Value::Array(causes));
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": Value::Object(details),
        "code": 422,
    })
}

/// The message of the 400 the apiserver sends when strict field validation finds unknown
/// fields: `strict decoding error: unknown field "spec.x", unknown field "spec.y"`.
pub fn strict_decoding_message(unknown_fields: &[String]) -> String {
    let parts: Vec<String> = unknown_fields
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    format!("strict decoding error: {}", parts.join(", "))
}

/// The full 400 Status for a strict-decoding failure on create or update, as the handler
/// wraps it: `<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: ...`.
pub fn strict_decoding_status(kind: &str, version: &str, unknown_fields: &[String]) -> Value {
    let message = format!(
        "{kind} in version {} cannot be handled as a {kind}: {}",
        go_quote(version),
        strict_decoding_message(unknown_fields)
    );
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "BadRequest",
        "code": 400,
    })
}

// ---------------------------------------------------------------------------------------------
// Go value formatting
// ---------------------------------------------------------------------------------------------

/// Formats a bad value the way `ErrorBody` does: strings `%q`, numbers and bools `%v`, nil as
/// `"null"`, maps and slices `%#v`.
fn format_bad_value(v: &Value) -> String {
    match v {
        Value::Null => "\"null\"".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number_v(n),
        Value::String(s) => go_quote(s),
        Value::Array(_) | Value::Object(_) => go_sharp_v(v),
    }
}

fn go_number_v(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        // Numbers past int64 decode as float64 in the apiserver.
        return go_float_v(u as f64);
    }
    go_float_v(n.as_f64().unwrap_or(0.0))
}

/// Go's `%v` for float64, i.e. `strconv.FormatFloat(f, 'g', -1, 64)`: shortest digits, in
/// exponent form (`1e+06`) when the exponent is below -4 or at least 6.
fn go_float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = (exp + 1) as usize;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        let (i, frac) = digits.split_at(int_len);
        format!("{sign}{i}.{frac}")
    }
}

/// Go's `%#v` for decoded JSON (`map[string]interface {}`, `[]interface {}`).
fn go_sharp_v(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number_v(n),
        Value::String(s) => go_quote(s),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_sharp_v).collect();
            format!("[]interface {{}}{{{}}}", items.join(", "))
        }
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_sharp_v(v)))
                .collect();
            format!("map[string]interface {{}}{{{}}}", items.join(", "))
        }
    }
}

/// Go's `strconv.Quote` (close enough: control characters escaped, printable text kept).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `encoding/json` text of a value, keys sorted (used for enum lists and set keys).
fn go_json(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                let a = f.abs();
                if a != 0.0 && !(1e-6..1e21).contains(&a) {
                    // Go writes e-7 rather than e-07 in JSON.
                    let s = go_float_v(f);
                    s.replace("e-0", "e-").replace("e+0", "e+")
                } else {
                    format!("{f}")
                }
            }
        }
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_json).collect::<Vec<_>>().join(",")),
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap_or_default(), go_json(v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// A `field.Path`: `None` is the nil root, printed `<nil>`.
type FPath = Option<String>;

fn fp_str(p: &FPath) -> String {
    p.clone().unwrap_or_else(|| "<nil>".to_string())
}

fn fp_child(p: &FPath, name: &str) -> FPath {
    Some(match p {
        None => name.to_string(),
        Some(p) => format!("{p}.{name}"),
    })
}

fn fp_key(p: &FPath, key: &str) -> FPath {
    Some(format!("{}[{key}]", p.as_deref().unwrap_or("")))
}

fn fp_index(p: &FPath, i: usize) -> FPath {
    Some(format!("{}[{i}]", p.as_deref().unwrap_or("")))
}

/// kube-openapi and the pruner join names with dots, map keys included (`spec.labels.foo`).
fn oa_child(p: &str, name: &str) -> String {
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}.{name}")
    }
}

fn sorted_keys(m: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = m.keys().cloned().collect();
    keys.sort();
    keys
}

// ---------------------------------------------------------------------------------------------
// Schema model
// ---------------------------------------------------------------------------------------------

/// String formats the apiserver keeps for validation (others are stripped).
const SUPPORTED_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
];

const META_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

#[derive(Debug)]
enum Additional {
    None,
    /// `additionalProperties: true|false`: no schema behind it.
    Bool,
    Schema(Box<Node>),
}

impl Additional {
    fn is_set(&self) -> bool {
        !matches!(self, Additional::None)
    }

    /// The `Structural` behind additionalProperties; `None` for the boolean form.
    fn schema(&self) -> Option<&Node> {
        match self {
            Additional::Schema(n) => Some(n),
            _ => None,
        }
    }
}

struct CelRule {
    rule: String,
    program: Program,
    message: String,
    message_expression: Option<Program>,
    reason: ErrorKind,
    field_path: Option<String>,
    uses_old_self: bool,
    optional_old_self: bool,
}

impl fmt::Debug for CelRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CelRule")
            .field("rule", &self.rule)
            .field("message", &self.message)
            .finish()
    }
}

#[derive(Debug, Default)]
struct Node {
    /// The structural `type` as written ("" when unset); CEL errors print it as the bad value.
    ty: String,
    /// Types the OpenAPI type check accepts.
    types: Vec<String>,
    nullable: bool,
    /// Format as written (CEL conversion) and as validated (supported ones only).
    raw_format: Option<String>,
    format: Option<String>,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    multiple_of: Option<f64>,
    max_length: Option<i64>,
    min_length: Option<i64>,
    pattern: Option<(String, Regex)>,
    max_items: Option<i64>,
    min_items: Option<i64>,
    unique_items: bool,
    max_properties: Option<i64>,
    min_properties: Option<i64>,
    required: Vec<String>,
    enum_values: Option<Vec<Value>>,
    properties: BTreeMap<String, Node>,
    additional: AdditionalHolder,
    items: Option<Box<Node>>,
    default: Option<Value>,
    preserve_unknown: bool,
    embedded: bool,
    int_or_string: bool,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    rules: Vec<CelRule>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
}

/// Wrapper so `Node` can derive `Default`.
#[derive(Debug)]
struct AdditionalHolder(Additional);

impl Default for AdditionalHolder {
    fn default() -> Self {
        AdditionalHolder(Additional::None)
    }
}

fn get_f64(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

fn get_i64(m: &Map<String, Value>, k: &str) -> Option<i64> {
    m.get(k)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

fn get_bool(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn get_str(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

impl Node {
    fn parse(v: &Value, at: &str) -> Result<Node, String> {
        let m = v
            .as_object()
            .ok_or_else(|| format!("{at}: schema must be an object"))?;
        let mut n = Node {
            ty: get_str(m, "type").unwrap_or_default(),
            ..Node::default()
        };
        n.int_or_string = get_bool(m, "x-kubernetes-int-or-string");
        n.types = if n.int_or_string {
            vec!["integer".into(), "string".into()]
        } else if n.ty.is_empty() {
            Vec::new()
        } else {
            vec![n.ty.clone()]
        };
        n.nullable = get_bool(m, "nullable");
        n.raw_format = get_str(m, "format");
        n.format = n
            .raw_format
            .clone()
            .filter(|f| SUPPORTED_FORMATS.contains(&f.as_str()));
        n.maximum = get_f64(m, "maximum");
        n.exclusive_maximum = get_bool(m, "exclusiveMaximum");
        n.minimum = get_f64(m, "minimum");
        n.exclusive_minimum = get_bool(m, "exclusiveMinimum");
        n.multiple_of = get_f64(m, "multipleOf");
        n.max_length = get_i64(m, "maxLength");
        n.min_length = get_i64(m, "minLength");
        if let Some(p) = get_str(m, "pattern") {
            let re = Regex::new(&p).map_err(|e| format!("{at}.pattern: invalid pattern {p:?}: {e}"))?;
            n.pattern = Some((p, re));
        }
        n.max_items = get_i64(m, "maxItems");
        n.min_items = get_i64(m, "minItems");
        n.unique_items = get_bool(m, "uniqueItems");
        n.max_properties = get_i64(m, "maxProperties");
        n.min_properties = get_i64(m, "minProperties");
        if let Some(Value::Array(req)) = m.get("required") {
            n.required = req
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect();
        }
        if let Some(Value::Array(e)) = m.get("enum") {
            n.enum_values = Some(e.clone());
        }
        if let Some(Value::Object(props)) = m.get("properties") {
            for (k, pv) in props {
                n.properties
                    .insert(k.clone(), Node::parse(pv, &format!("{at}.properties[{k}]"))?);
            }
        }
        n.additional = AdditionalHolder(match m.get("additionalProperties") {
            Some(Value::Bool(_)) => Additional::Bool,
            Some(ap @ Value::Object(_)) => {
                Additional::Schema(Box::new(Node::parse(ap, &format!("{at}.additionalProperties"))?))
            }
            _ => Additional::None,
        });
        if let Some(items) = m.get("items") {
            n.items = Some(Box::new(Node::parse(items, &format!("{at}.items"))?));
        }
        n.preserve_unknown = get_bool(m, "x-kubernetes-preserve-unknown-fields");
        n.embedded = get_bool(m, "x-kubernetes-embedded-resource");
        n.list_type = get_str(m, "x-kubernetes-list-type");
        if let Some(Value::Array(keys)) = m.get("x-kubernetes-list-map-keys") {
            n.list_map_keys = keys
                .iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect();
        }
        for (key, list) in [
            ("allOf", &mut n.all_of),
            ("anyOf", &mut n.any_of),
            ("oneOf", &mut n.one_of),
        ] {
            if let Some(Value::Array(subs)) = m.get(key) {
                for (i, s) in subs.iter().enumerate() {
                    list.push(Node::parse(s, &format!("{at}.{key}[{i}]"))?);
                }
            }
        }
        if let Some(not) = m.get("not") {
            n.not = Some(Box::new(Node::parse(not, &format!("{at}.not"))?));
        }
        if let Some(Value::Array(rules)) = m.get("x-kubernetes-validations") {
            for (i, r) in rules.iter().enumerate() {
                let rule = compile_rule(r, &n, &format!("{at}.x-kubernetes-validations[{i}]"))?;
                n.rules.push(rule);
            }
        }
        if let Some(d) = m.get("default") {
            // The apiserver prunes defaults by their own schema when it builds the CRD.
            let mut d = d.clone();
            let mut ignored = Vec::new();
            prune_value(&mut d, Some(&n), n.embedded, "", &mut ignored);
            n.default = Some(d);
        }
        Ok(n)
    }

    fn has_rules(&self) -> bool {
        !self.rules.is_empty()
            || self.all_of.iter().any(Node::has_rules)
            || self.properties.values().any(Node::has_rules)
            || self.additional.0.schema().is_some_and(Node::has_rules)
            || self.items.as_deref().is_some_and(Node::has_rules)
    }
}

fn compile_rule(v: &Value, node: &Node, at: &str) -> Result<CelRule, String> {
    let m = v.as_object().ok_or_else(|| format!("{at}: must be an object"))?;
    let rule = get_str(m, "rule").ok_or_else(|| format!("{at}.rule: Required value"))?;
    let program = Program::compile(&rule)
        .map_err(|e| format!("{at}.rule: compilation failed for rule {rule:?}: {e}"))?;
    let uses_old_self = program.references().has_variable("oldSelf");
    let message_expression = match get_str(m, "messageExpression") {
        Some(expr) => Some(Program::compile(&expr).map_err(|e| {
            format!("{at}.messageExpression: compilation failed for {expr:?} (rule {rule:?}): {e}")
        })?),
        None => None,
    };
    let reason = match get_str(m, "reason").as_deref() {
        None | Some("FieldValueInvalid") => ErrorKind::Invalid,
        Some("FieldValueForbidden") => ErrorKind::Forbidden,
        Some("FieldValueRequired") => ErrorKind::Required,
        Some("FieldValueDuplicate") => ErrorKind::Duplicate,
        Some(other) => {
            return Err(format!(
                "{at}.reason: unsupported reason {other:?} for rule {rule:?}"
            ));
        }
    };
    let field_path = match get_str(m, "fieldPath") {
        Some(fp) => Some(
            normalize_field_path(&fp, node)
                .map_err(|e| format!("{at}.fieldPath: {fp:?} for rule {rule:?}: {e}"))?,
        ),
        None => None,
    };
    Ok(CelRule {
        rule,
        program,
        message: get_str(m, "message").unwrap_or_default(),
        message_expression,
        reason,
        field_path,
        uses_old_self,
        optional_old_self: get_bool(m, "optionalOldSelf"),
    })
}

/// Turns a rule's `fieldPath` (`.a.b`, `.m['k']`) into the form the apiserver appends to the
/// error path (`a.b`, `m[k]`), checking it names a field of the schema.
fn normalize_field_path(fp: &str, node: &Node) -> Result<String, String> {
    let chars: Vec<char> = fp.chars().collect();
    let mut i = 0;
    let mut out: FPath = None;
    let mut cur = node;
    while i < chars.len() {
        let name = match chars.get(i) {
            Some('.') => {
                i += 1;
                let start = i;
                while i < chars.len() && !matches!(chars.get(i), Some('.') | Some('[')) {
                    i += 1;
                }
                chars
                    .get(start..i)
                    .map(|c| c.iter().collect::<String>())
                    .unwrap_or_default()
            }
            Some('[') => {
                i += 1;
                if chars.get(i) != Some(&'\'') {
                    return Err("expected single quoted string".into());
                }
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err("unexpected end of JSON path".into()),
                        Some('\\') => {
                            s.push(*chars.get(i + 1).ok_or("unexpected end of JSON path")?);
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                if chars.get(i) != Some(&']') {
                    return Err("expected ]".into());
                }
                i += 1;
                s
            }
            _ => return Err("expected [ or .".into()),
        };
        if !cur.properties.is_empty() {
            cur = cur
                .properties
                .get(&name)
                .ok_or("does not refer to a valid field")?;
            out = fp_child(&out, &name);
        } else if let Some(ap) = cur.additional.0.schema() {
            cur = ap;
            out = fp_key(&out, &name);
        } else {
            return Err("does not refer to a valid field".into());
        }
    }
    out.ok_or_else(|| "empty field path".to_string())
}

// ---------------------------------------------------------------------------------------------
// Compiled schema
// ---------------------------------------------------------------------------------------------

/// One CRD version's `openAPIV3Schema`, parsed and with its CEL rules compiled.
#[derive(Debug)]
pub struct CompiledSchema {
    root: Node,
    has_rules: bool,
    raw: Value,
}

impl CompiledSchema {
    /// Parses the schema and compiles every CEL rule and message expression; the error names
    /// the schema location and the rule that failed.
    pub fn new(openapi_v3: &Value) -> Result<Self, String> {
        let root = Node::parse(openapi_v3, "openAPIV3Schema")?;
        let has_rules = root.has_rules();
        Ok(CompiledSchema {
            root,
            has_rules,
            raw: openapi_v3.clone(),
        })
    }

    /// The schema as given (for list-type lookups by the merge engine).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Paths of the fields the apiserver reports as unknown under strict field validation, in
    /// its order: unknown `metadata` fields, then pruned fields (sorted), then unknown fields in
    /// the metadata of embedded resources. List items print as `spec.items[0].y`.
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        let mut copy = obj.clone();
        self.prune_reporting(&mut copy)
    }

    /// Drops what the apiserver drops when it decodes an object: unknown fields (honouring
    /// `x-kubernetes-preserve-unknown-fields` and embedded resources, never the top-level
    /// `apiVersion`, `kind` and `metadata`), unknown `metadata` fields, and `null`s of
    /// non-nullable fields that have no default.
    pub fn prune(&self, obj: &mut Value) {
        self.prune_reporting(obj);
    }

    /// Prunes like [`CompiledSchema::prune`] and returns what [`CompiledSchema::unknown_fields`]
    /// would.
    pub fn prune_reporting(&self, obj: &mut Value) -> Vec<String> {
        let mut paths = Vec::new();
        if let Some(meta) = obj.get_mut("metadata") {
            paths.extend(coerce_object_meta(meta, "metadata"));
        }
        let mut pruned = Vec::new();
        prune_value(obj, Some(&self.root), true, "", &mut pruned);
        pruned.sort();
        paths.extend(pruned);
        prune_nulls(obj, Some(&self.root));
        coerce_embedded(obj, &self.root, &None, &mut paths);
        paths
    }

    /// Applies schema defaults as the apiserver does on create, update and read: recursively,
    /// defaults inside applied defaults included, and replacing `null` in non-nullable fields.
    pub fn apply_defaults(&self, obj: &mut Value) {
        apply_default(obj, Some(&self.root));
    }

    /// Validates a pruned and defaulted object. `old` is the stored object on update; with it,
    /// errors in unchanged parts are dropped (validation ratcheting) and transition rules run.
    ///
    /// Order as the apiserver's: OpenAPI value errors, embedded resource errors, list set/map
    /// duplicates, then CEL errors — or, when a blocking error (required, enum, too long, too
    /// many, type) is present, one `<nil>` error saying the rules were not checked.
    /// ObjectMeta validation (name and the like) is not done here; the apiserver lists it first.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut oa = Vec::new();
        oa_validate(&self.root, obj, "", old, &mut oa);
        let mut seen: Vec<String> = Vec::new();
        let mut errs = Vec::new();
        for e in oa {
            // kube-openapi keeps one error per message.
            if seen.contains(&e.msg) {
                continue;
            }
            seen.push(e.msg.clone());
            errs.push(e.into_field_error());
        }
        validate_embedded(obj, Some(&self.root), &None, &mut errs);
        let old_list_ok = old.is_none_or(|o| {
            let mut e = Vec::new();
            validate_lists(o, Some(&self.root), &None, &mut e);
            e.is_empty()
        });
        if old_list_ok {
            validate_lists(obj, Some(&self.root), &None, &mut errs);
        }
        if self.has_rules {
            let blocking = errs.iter().any(|e| {
                matches!(
                    e.kind,
                    ErrorKind::NotSupported
                        | ErrorKind::Required
                        | ErrorKind::TooLong
                        | ErrorKind::TooMany
                        | ErrorKind::TypeInvalid
                )
            });
            if blocking {
                errs.push(FieldError::invalid(
                    &None,
                    Value::Null,
                    "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                ));
            } else {
                let base = base_context();
                let unchanged = old.is_some_and(|o| o == obj);
                cel_validate(&self.root, obj, old, &None, unchanged, true, &base, &mut errs);
            }
        }
        errs
    }
}

// ---------------------------------------------------------------------------------------------
// Pruning and decode-time coercion
// ---------------------------------------------------------------------------------------------

fn prune_value(x: &mut Value, s: Option<&Node>, embedded: bool, path: &str, out: &mut Vec<String>) {
    if let Some(node) = s
        && node.preserve_unknown
    {
        skip_prune(x, node, embedded, path, out);
        return;
    }
    match x {
        Value::Object(m) => {
            let Some(node) = s else {
                for k in sorted_keys(m) {
                    out.push(oa_child(path, &k));
                }
                m.clear();
                return;
            };
            prune_fields(m, node, embedded, false, path, out);
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|n| n.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                let child = format!("{path}[{i}]");
                prune_value(
                    v,
                    item_schema,
                    item_schema.is_some_and(|n| n.embedded),
                    &child,
                    out,
                );
            }
        }
        _ => {}
    }
}

/// Inside `x-kubernetes-preserve-unknown-fields`: keep unknown fields, still prune known ones.
fn skip_prune(x: &mut Value, node: &Node, embedded: bool, path: &str, out: &mut Vec<String>) {
    match x {
        Value::Object(m) => prune_fields(m, node, embedded, true, path, out),
        Value::Array(items) => {
            if let Some(item_schema) = node.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    skip_prune(v, item_schema, item_schema.embedded, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Prunes the fields of an object under `node`: known ones by their schema; an unknown one
/// is dropped and reported unless `keep_unknown` (inside
/// `x-kubernetes-preserve-unknown-fields`). `metadata`'s own fields of an embedded object
/// are left to the metadata rules.
fn prune_fields(
    m: &mut Map<String, Value>,
    node: &Node,
    embedded: bool,
    keep_unknown: bool,
    path: &str,
    out: &mut Vec<String>,
) {
    for k in sorted_keys(m) {
        if embedded && META_FIELDS.contains(&k.as_str()) {
            continue;
        }
        let child = oa_child(path, &k);
        let schema = match node.properties.get(&k) {
            Some(prop) => Some((Some(prop), prop.embedded)),
            None if node.additional.0.is_set() => {
                let ap = node.additional.0.schema();
                Some((ap, ap.is_some_and(|a| a.embedded)))
            }
            None => None,
        };
        match schema {
            Some((s, emb)) => {
                if let Some(v) = m.get_mut(&k) {
                    prune_value(v, s, emb, &child, out);
                }
            }
            None if keep_unknown => {}
            None => {
                if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                    out.push(child);
                }
                m.remove(&k);
            }
        }
    }
}

/// Drops `null` values of non-nullable fields that have no default (those with one are
/// defaulted later).
fn prune_nulls(x: &mut Value, s: Option<&Node>) {
    match x {
        Value::Object(m) => {
            for k in sorted_keys(m) {
                let schema = s.and_then(|n| n.properties.get(&k).or_else(|| n.additional.0.schema()));
                let drop = matches!(m.get(&k), Some(Value::Null))
                    && schema.is_some_and(|n| !n.nullable && n.default.is_none());
                if drop {
                    m.remove(&k);
                } else if let Some(v) = m.get_mut(&k) {
                    prune_nulls(v, schema);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|n| n.items.as_deref());
            for v in items {
                prune_nulls(v, item_schema);
            }
        }
        _ => {}
    }
}

/// Fields of `metav1.ObjectMeta`; anything else in `metadata` is unknown and dropped.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];
const OWNER_REFERENCE_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "name",
    "uid",
    "controller",
    "blockOwnerDeletion",
];
const MANAGED_FIELDS_FIELDS: &[&str] = &[
    "manager",
    "operation",
    "apiVersion",
    "time",
    "fieldsType",
    "fieldsV1",
    "subresource",
];

/// Drops unknown ObjectMeta fields and returns their paths, `prefix` being the metadata path.
fn coerce_object_meta(meta: &mut Value, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Value::Object(m) = meta else { return out };
    for k in sorted_keys(m) {
        if !OBJECT_META_FIELDS.contains(&k.as_str()) {
            out.push(format!("{prefix}.{k}"));
            m.remove(&k);
            continue;
        }
        let allowed = match k.as_str() {
            "ownerReferences" => OWNER_REFERENCE_FIELDS,
            "managedFields" => MANAGED_FIELDS_FIELDS,
            _ => continue,
        };
        if let Some(Value::Array(items)) = m.get_mut(&k) {
            for (i, item) in items.iter_mut().enumerate() {
                if let Value::Object(im) = item {
                    for ik in sorted_keys(im) {
                        if !allowed.contains(&ik.as_str()) {
                            out.push(format!("{prefix}.{k}[{i}].{ik}"));
                            im.remove(&ik);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Coerces the metadata of embedded resources (below the root) and collects unknown fields.
fn coerce_embedded(x: &mut Value, node: &Node, path: &FPath, out: &mut Vec<String>) {
    match x {
        Value::Object(m) => {
            if node.embedded
                && let Some(meta) = m.get_mut("metadata")
            {
                let prefix = fp_str(&fp_child(path, "metadata"));
                out.extend(coerce_object_meta(meta, &prefix));
            }
            for k in sorted_keys(m) {
                if let Some(prop) = node.properties.get(&k) {
                    if let Some(v) = m.get_mut(&k) {
                        coerce_embedded(v, prop, &fp_child(path, &k), out);
                    }
                } else if let Some(ap) = node.additional.0.schema()
                    && let Some(v) = m.get_mut(&k)
                {
                    coerce_embedded(v, ap, &fp_key(path, &k), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = node.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    coerce_embedded(v, item_schema, &fp_index(path, i), out);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------------------------

fn is_non_nullable_null(x: Option<&Value>, s: Option<&Node>) -> bool {
    matches!(x, Some(Value::Null)) && s.is_some_and(|n| !n.nullable)
}

fn apply_default(x: &mut Value, s: Option<&Node>) {
    let Some(node) = s else { return };
    match x {
        Value::Object(m) => {
            for (k, prop) in &node.properties {
                let Some(d) = &prop.default else { continue };
                if !m.contains_key(k) || is_non_nullable_null(m.get(k), Some(prop)) {
                    m.insert(k.clone(), d.clone());
                }
            }
            for k in sorted_keys(m) {
                if let Some(prop) = node.properties.get(&k) {
                    if let Some(v) = m.get_mut(&k) {
                        apply_default(v, Some(prop));
                    }
                } else if node.additional.0.is_set() {
                    let ap = node.additional.0.schema();
                    if let Some(v) = m.get_mut(&k) {
                        if is_non_nullable_null(Some(v), ap) {
                            *v = ap.and_then(|a| a.default.clone()).unwrap_or(Value::Null);
                        }
                        apply_default(v, ap);
                    }
                }
            }
        }
        Value::Array(items) => {
            let item_schema = node.items.as_deref();
            for v in items.iter_mut() {
                if is_non_nullable_null(Some(v), item_schema) {
                    *v = item_schema.and_then(|a| a.default.clone()).unwrap_or(Value::Null);
                }
                apply_default(v, item_schema);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAPI value validation (kube-openapi)
// ---------------------------------------------------------------------------------------------

enum OaKind {
    Required,
    Enum(Vec<Value>),
    TooLong(i64),
    /// Actual count and maximum, for maxItems and maxProperties.
    TooMany(i64, i64),
    InvalidType,
    Other,
    /// anyOf/oneOf/allOf/not summaries: not `errors.Validation`, so reported at `<nil>`.
    Composite,
}

/// One kube-openapi error: its code, `Name` (dotted path), `Value` and message.
struct OaErr {
    kind: OaKind,
    name: String,
    value: Option<Value>,
    msg: String,
}

impl OaErr {
    fn new(kind: OaKind, name: &str, value: Option<Value>, msg: String) -> Self {
        OaErr {
            kind,
            name: name.to_string(),
            value,
            msg,
        }
    }

    /// `kubeOpenAPIResultToFieldErrors`.
    fn into_field_error(self) -> FieldError {
        let path: FPath = if self.name.is_empty() || self.name == "." {
            None
        } else {
            Some(self.name.trim_start_matches('.').to_string())
        };
        let field = fp_str(&path);
        // A Go nil value is replaced by "" for most codes.
        let or_empty = |v: Option<Value>| Some(v.unwrap_or_else(|| Value::String(String::new())));
        match self.kind {
            OaKind::Composite => FieldError::new(fp_str(&None), ErrorKind::Invalid, or_empty(None), self.msg),
            OaKind::Required => FieldError::new(field, ErrorKind::Required, None, ""),
            OaKind::Enum(values) => {
                let quoted: Vec<String> = values
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => go_quote(s),
                        other => go_quote(&go_json(other)),
                    })
                    .collect();
                let detail = if quoted.is_empty() {
                    String::new()
                } else {
                    format!("supported values: {}", quoted.join(", "))
                };
                FieldError::new(
                    field,
                    ErrorKind::NotSupported,
                    Some(self.value.unwrap_or(Value::Null)),
                    detail,
                )
            }
            OaKind::TooLong(max) => FieldError::new(
                field,
                ErrorKind::TooLong,
                None,
                format!("may not be more than {max} bytes"),
            ),
            OaKind::TooMany(actual, max) => FieldError::new(
                field,
                ErrorKind::TooMany,
                Some(json!(actual)),
                format!("must have at most {max} items"),
            ),
            OaKind::InvalidType => {
                FieldError::new(field, ErrorKind::TypeInvalid, or_empty(self.value), self.msg)
            }
            OaKind::Other => FieldError::new(field, ErrorKind::Invalid, or_empty(self.value), self.msg),
        }
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_json_integer(f: f64) -> bool {
    f.is_finite() && (f - f.round()).abs() < 1e-9
}

/// Validates `data` at kube-openapi path `path`. With `old` (the correlated old value), an
/// unchanged subtree yields no errors (ratcheting).
fn oa_validate(node: &Node, data: &Value, path: &str, old: Option<&Value>, out: &mut Vec<OaErr>) {
    if old.is_some_and(|o| o == data) {
        return;
    }
    if data.is_null() {
        if !node.types.is_empty() && !node.types.iter().any(|t| t == "null") && !node.nullable {
            out.push(invalid_type(path, &node.types.join(","), "null"));
        }
        oa_enum(node, data, path, out);
        return;
    }
    oa_type(node, data, path, out);
    oa_schema_props(node, data, path, old, out);
    match data {
        Value::String(s) => {
            oa_string(node, s, path, out);
            oa_format(node, s, path, out);
        }
        Value::Number(n) => oa_number(node, n, path, out),
        Value::Array(items) => oa_array(node, items, path, old, out),
        _ => {}
    }
    oa_enum(node, data, path, out);
    if let Value::Object(m) = data {
        oa_object(node, m, path, old, out);
    }
}

fn invalid_type(path: &str, type_name: &str, value: &str) -> OaErr {
    OaErr::new(
        OaKind::InvalidType,
        path,
        Some(Value::String(value.to_string())),
        format!("{path} in body must be of type {type_name}: {}", go_quote(value)),
    )
}

fn oa_type(node: &Node, data: &Value, path: &str, out: &mut Vec<OaErr>) {
    if node.types.is_empty() && node.format.is_none() {
        return;
    }
    let sch_type = json_type_name(data);
    // Whole JSON numbers like 1.0 are float64 in Go but satisfy "integer".
    let float_int = matches!(data, Value::Number(n) if !n.is_i64())
        && data.as_f64().is_some_and(is_json_integer)
        && node.types.iter().any(|t| t == "integer");
    let int_float = sch_type == "integer" && node.types.iter().any(|t| t == "number");
    let contains = node.types.iter().any(|t| t == sch_type);
    let str_or_slice = matches!(data, Value::String(_) | Value::Array(_));
    if let Some(format) = &node.format {
        let data_format = match sch_type {
            "integer" => "int64",
            "number" => "float64",
            _ => "",
        };
        if !(str_or_slice || contains || data_format == format || float_int || int_float) {
            out.push(invalid_type(path, format, data_format));
            return;
        }
        if !node.types.iter().any(|t| t == "number" || t == "integer") && str_or_slice {
            return;
        }
    }
    if !(contains || float_int || int_float) {
        out.push(invalid_type(path, &node.types.join(","), sch_type));
    }
}

fn oa_schema_props(node: &Node, data: &Value, path: &str, old: Option<&Value>, out: &mut Vec<OaErr>) {
    let run = |n: &Node| {
        let mut r = Vec::new();
        oa_validate(n, data, path, old, &mut r);
        r
    };
    if !node.any_of.is_empty() {
        let mut best: Option<Vec<OaErr>> = None;
        let mut ok = false;
        for sub in &node.any_of {
            let r = run(sub);
            if r.is_empty() {
                ok = true;
                best = None;
                break;
            }
            // kube-openapi keeps the branch with most passing checks; fewest errors is close.
            if best.as_ref().is_none_or(|b| r.len() < b.len()) {
                best = Some(r);
            }
        }
        if !ok {
            out.push(OaErr::new(
                OaKind::Composite,
                path,
                None,
                format!("{} must validate at least one schema (anyOf)", go_quote(path)),
            ));
        }
        out.extend(best.unwrap_or_default());
    }
    if !node.one_of.is_empty() {
        let mut best: Option<Vec<OaErr>> = None;
        let mut valid = 0;
        for sub in &node.one_of {
            let r = run(sub);
            if r.is_empty() {
                valid += 1;
                best = None;
                continue;
            }
            if valid == 0 && best.as_ref().is_none_or(|b| r.len() < b.len()) {
                best = Some(r);
            }
        }
        if valid != 1 {
            let extra = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            out.push(OaErr::new(
                OaKind::Composite,
                path,
                None,
                format!(
                    "{} must validate one and only one schema (oneOf). {extra}",
                    go_quote(path)
                ),
            ));
            out.extend(best.unwrap_or_default());
        }
    }
    if !node.all_of.is_empty() {
        let mut valid = 0;
        for sub in &node.all_of {
            let r = run(sub);
            if r.is_empty() {
                valid += 1;
            }
            out.extend(r);
        }
        if valid != node.all_of.len() {
            let extra = if valid == 0 { ". None validated" } else { "" };
            out.push(OaErr::new(
                OaKind::Composite,
                path,
                None,
                format!("{} must validate all the schemas (allOf){extra}", go_quote(path)),
            ));
        }
    }
    if let Some(not) = &node.not
        && run(not).is_empty()
    {
        out.push(OaErr::new(
            OaKind::Composite,
            path,
            None,
            format!("{} must not validate the schema (not)", go_quote(path)),
        ));
    }
}

fn oa_string(node: &Node, s: &str, path: &str, out: &mut Vec<OaErr>) {
    let len = s.chars().count() as i64;
    let val = Some(Value::String(s.to_string()));
    // kube-openapi stops at the first failing string check.
    if let Some(max) = node.max_length
        && len > max
    {
        out.push(OaErr::new(
            OaKind::TooLong(max),
            path,
            val,
            format!("{path} in body should be at most {max} chars long"),
        ));
        return;
    }
    if let Some(min) = node.min_length
        && len < min
    {
        out.push(OaErr::new(
            OaKind::Other,
            path,
            val,
            format!("{path} in body should be at least {min} chars long"),
        ));
        return;
    }
    if let Some((p, re)) = &node.pattern
        && !re.is_match(s)
    {
        out.push(OaErr::new(
            OaKind::Other,
            path,
            val,
            format!("{path} in body should match '{p}'"),
        ));
    }
}

fn oa_format(node: &Node, s: &str, path: &str, out: &mut Vec<OaErr>) {
    let Some(format) = &node.format else { return };
    if !format_ok(format, s) {
        out.push(OaErr::new(
            OaKind::InvalidType,
            path,
            Some(Value::String(s.to_string())),
            format!("{path} in body must be of type {format}: {}", go_quote(s)),
        ));
    }
}

fn oa_number(node: &Node, n: &serde_json::Number, path: &str, out: &mut Vec<OaErr>) {
    let value = Some(Value::Number(n.clone()));
    let err = |msg: String| OaErr::new(OaKind::Other, path, value.clone(), msg);
    // Go compares int64 data against the bound truncated to int64.
    if let Some(d) = n.as_i64() {
        if let Some(f) = node.multiple_of {
            let factor = f as i64;
            if f < 0.0 {
                out.push(err(format!(
                    "factor MultipleOf declared for {path} must be positive: {}",
                    go_float_v(f)
                )));
            } else if factor != 0 && d % factor != 0 {
                out.push(err(format!("{path} in body should be a multiple of {factor}")));
            } else if factor == 0 && !is_json_integer(d as f64 / f) {
                out.push(err(format!(
                    "{path} in body should be a multiple of {}",
                    go_float_v(f)
                )));
            }
        }
        if let Some(min) = node.minimum {
            let m = min as i64;
            if (!node.exclusive_minimum && d < m) || (node.exclusive_minimum && d <= m) {
                let words = if node.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                out.push(err(format!("{path} in body should be {words} {m}")));
            }
        }
        if let Some(max) = node.maximum {
            let m = max as i64;
            if (!node.exclusive_maximum && d > m) || (node.exclusive_maximum && d >= m) {
                let words = if node.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                out.push(err(format!("{path} in body should be {words} {m}")));
            }
        }
        return;
    }
    let d = n.as_f64().unwrap_or(0.0);
    if let Some(f) = node.multiple_of {
        if f < 0.0 {
            out.push(err(format!(
                "factor MultipleOf declared for {path} must be positive: {}",
                go_float_v(f)
            )));
        } else {
            let mult = if f < 1.0 { 1.0 / f * d } else { d / f };
            if !is_json_integer(mult) {
                out.push(err(format!(
                    "{path} in body should be a multiple of {}",
                    go_float_v(f)
                )));
            }
        }
    }
    if let Some(min) = node.minimum
        && ((!node.exclusive_minimum && d < min) || (node.exclusive_minimum && d <= min))
    {
        let words = if node.exclusive_minimum {
            "greater than"
        } else {
            "greater than or equal to"
        };
        out.push(err(format!(
            "{path} in body should be {words} {}",
            go_float_v(min)
        )));
    }
    if let Some(max) = node.maximum
        && ((!node.exclusive_maximum && d > max) || (node.exclusive_maximum && d >= max))
    {
        let words = if node.exclusive_maximum {
            "less than"
        } else {
            "less than or equal to"
        };
        out.push(err(format!(
            "{path} in body should be {words} {}",
            go_float_v(max)
        )));
    }
}

fn oa_array(node: &Node, items: &[Value], path: &str, old: Option<&Value>, out: &mut Vec<OaErr>) {
    if let Some(item_schema) = node.items.as_deref() {
        for (i, item) in items.iter().enumerate() {
            let old_item = correlate_item(node, item, old);
            oa_validate(item_schema, item, &format!("{path}[{i}]"), old_item, out);
        }
    }
    let size = items.len() as i64;
    if let Some(min) = node.min_items
        && size < min
    {
        out.push(OaErr::new(
            OaKind::Other,
            path,
            Some(json!(size)),
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = node.max_items
        && size > max
    {
        out.push(OaErr::new(
            OaKind::TooMany(size, max),
            path,
            Some(json!(size)),
            format!("{path} in body should have at most {max} items"),
        ));
    }
    if node.unique_items {
        let mut seen: Vec<&Value> = Vec::new();
        for item in items {
            if seen.contains(&item) {
                out.push(OaErr::new(
                    OaKind::Other,
                    path,
                    None,
                    format!("{path} in body shouldn't contain duplicates"),
                ));
                break;
            }
            seen.push(item);
        }
    }
}

/// The old element of a `x-kubernetes-list-type: map` list with the same keys; other lists do
/// not correlate items.
fn correlate_item<'a>(node: &Node, item: &Value, old: Option<&'a Value>) -> Option<&'a Value> {
    if node.list_type.as_deref() != Some("map") || node.list_map_keys.is_empty() {
        return None;
    }
    let old_items = old?.as_array()?;
    let item = item.as_object()?;
    old_items.iter().find(|o| {
        o.as_object()
            .is_some_and(|om| node.list_map_keys.iter().all(|k| om.get(k) == item.get(k)))
    })
}

fn enum_matches(data: &Value, candidate: &Value) -> bool {
    match (data, candidate) {
        (Value::Number(d), Value::Number(c)) => {
            // Go converts the data to the enum value's type before comparing.
            if let Some(ci) = c.as_i64() {
                match d.as_i64() {
                    Some(di) => di == ci,
                    None => d.as_f64().is_some_and(|f| f as i64 == ci),
                }
            } else {
                d.as_f64() == c.as_f64()
            }
        }
        _ => data == candidate,
    }
}

fn oa_enum(node: &Node, data: &Value, path: &str, out: &mut Vec<OaErr>) {
    let Some(values) = &node.enum_values else { return };
    if values.is_empty() || values.iter().any(|c| !data.is_null() && enum_matches(data, c)) {
        return;
    }
    let listed: Vec<String> = values.iter().map(go_enum_v).collect();
    out.push(OaErr::new(
        OaKind::Enum(values.clone()),
        path,
        Some(data.clone()),
        format!("{path} in body should be one of [{}]", listed.join(" ")),
    ));
}

/// `%v` of one enum value inside `[...]` (only used to tell messages apart).
fn go_enum_v(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => go_json(other),
    }
}

fn oa_object(node: &Node, m: &Map<String, Value>, path: &str, old: Option<&Value>, out: &mut Vec<OaErr>) {
    let num = m.len() as i64;
    if let Some(min) = node.min_properties
        && num < min
    {
        out.push(OaErr::new(
            OaKind::Other,
            path,
            Some(json!(num)),
            format!("{path} in body should have at least {min} properties"),
        ));
        return;
    }
    if let Some(max) = node.max_properties
        && num > max
    {
        out.push(OaErr::new(
            OaKind::TooMany(num, max),
            path,
            Some(json!(num)),
            format!("{path} in body should have at most {max} properties"),
        ));
        return;
    }
    let old_map = old.and_then(Value::as_object);
    let keys = sorted_keys(m);
    if let Some(ap) = node.additional.0.schema() {
        for k in &keys {
            if node.properties.contains_key(k) {
                continue;
            }
            if let Some(v) = m.get(k) {
                oa_validate(ap, v, &oa_child(path, k), old_map.and_then(|o| o.get(k)), out);
            }
        }
    }
    for (k, prop) in &node.properties {
        if let Some(v) = m.get(k) {
            oa_validate(prop, v, &oa_child(path, k), old_map.and_then(|o| o.get(k)), out);
        }
    }
    for k in &node.required {
        if !m.contains_key(k) {
            let name = format!("{path}.{k}");
            out.push(OaErr::new(
                OaKind::Required,
                &name,
                None,
                format!("{name} in body is required"),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------------------------

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => is_date_time(s),
        "date" => parse_date(s).is_some(),
        "duration" => parse_go_duration(s).is_some() || parse_long_duration(s),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" | "uuid3" | "uuid4" | "uuid5" => is_uuid(format, s),
        "byte" => base64_decode(s).is_some(),
        "hostname" => is_hostname(s),
        "email" => is_email(s),
        "hexcolor" => regex_ok(r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", s),
        "bsonobjectid" => s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit()),
        // uri, isbn*, creditcard, ssn, rgbcolor, password: not checked here.
        _ => true,
    }
}

fn regex_ok(re: &str, s: &str) -> bool {
    Regex::new(re).is_ok_and(|r| r.is_match(s))
}

fn is_date_time(s: &str) -> bool {
    regex_ok(
        r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$",
        s,
    ) && s.get(..10).and_then(parse_date).is_some()
}

fn parse_date(s: &str) -> Option<chrono::NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    if ip.parse::<std::net::Ipv4Addr>().is_ok() {
        bits <= 32
    } else {
        ip.parse::<std::net::Ipv6Addr>().is_ok() && bits <= 128
    }
}

fn is_mac(s: &str) -> bool {
    regex_ok(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$", s)
        || regex_ok(r"^([0-9a-fA-F]{2}[:-]){7}[0-9a-fA-F]{2}$", s)
        || regex_ok(r"^([0-9a-fA-F]{4}\.){2}[0-9a-fA-F]{4}$", s)
}

fn is_uuid(format: &str, s: &str) -> bool {
    let version = match format {
        "uuid3" => "3",
        "uuid4" => "4",
        "uuid5" => "5",
        _ => "[0-9a-fA-F]",
    };
    regex_ok(
        &format!(
            r"^[0-9a-fA-F]{{8}}-?[0-9a-fA-F]{{4}}-?{version}[0-9a-fA-F]{{3}}-?[0-9a-fA-F]{{4}}-?[0-9a-fA-F]{{12}}$"
        ),
        s,
    )
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 255
        && regex_ok(
            r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
            s,
        )
}

fn is_email(s: &str) -> bool {
    regex_ok(r"^[^@\s]+@[^@\s]+$", s)
}

/// Go's `time.ParseDuration`, to nanoseconds.
fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    Some(if neg { -(total as i128) } else { total as i128 })
}

/// strfmt also accepts durations such as `3 days` or `1w`.
fn parse_long_duration(s: &str) -> bool {
    regex_ok(
        r"^(\d+)\s*(ns|us|µs|ms|s|m|h|d|w|(sec|second|min|minute|hour|day|week)s?)$",
        s.trim(),
    )
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s: Vec<u8> = s.bytes().filter(|b| *b != b'\r' && *b != b'\n').collect();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let chunks: Vec<&[u8]> = s.chunks(4).collect();
    for (ci, chunk) in chunks.iter().enumerate() {
        let last = ci + 1 == chunks.len();
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut acc: u32 = 0;
        for (i, b) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { val(*b)? };
            acc = (acc << 6) | v;
        }
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(bytes.get(..3 - pad)?);
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Embedded resources and list invariants
// ---------------------------------------------------------------------------------------------

fn validate_embedded(x: &Value, s: Option<&Node>, path: &FPath, out: &mut Vec<FieldError>) {
    let Some(node) = s else { return };
    match x {
        Value::Object(m) => {
            if node.embedded {
                validate_embedded_resource(m, path, out);
            }
            for k in sorted_keys(m) {
                let Some(v) = m.get(&k) else { continue };
                if let Some(prop) = node.properties.get(&k) {
                    validate_embedded(v, Some(prop), &fp_child(path, &k), out);
                } else if node.additional.0.is_set() {
                    validate_embedded(v, node.additional.0.schema(), &fp_key(path, &k), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                validate_embedded(v, node.items.as_deref(), &fp_index(path, i), out);
            }
        }
        _ => {}
    }
}

fn validate_embedded_resource(m: &Map<String, Value>, path: &FPath, out: &mut Vec<FieldError>) {
    for k in ["apiVersion", "kind"] {
        if !m.contains_key(k) {
            out.push(FieldError::new(
                fp_str(&fp_child(path, k)),
                ErrorKind::Required,
                None,
                "",
            ));
        }
    }
    for k in sorted_keys(m) {
        let Some(v) = m.get(&k) else { continue };
        let p = fp_child(path, &k);
        match (k.as_str(), v) {
            ("apiVersion", Value::String(s)) if s.is_empty() => {
                out.push(FieldError::invalid(&p, v.clone(), "must not be empty"))
            }
            ("apiVersion", Value::String(s)) if s.matches('/').count() > 1 => out.push(FieldError::invalid(
                &p,
                v.clone(),
                format!("unexpected GroupVersion string: {s}"),
            )),
            ("kind", Value::String(s)) if s.is_empty() => {
                out.push(FieldError::invalid(&p, v.clone(), "must not be empty"))
            }
            ("kind", Value::String(s)) => {
                let errs = dns1035_label_errors(&s.to_lowercase());
                if !errs.is_empty() {
                    out.push(FieldError::invalid(
                        &p,
                        v.clone(),
                        format!(
                            "may have mixed case, but should otherwise match: {}",
                            errs.join(",")
                        ),
                    ));
                }
            }
            ("apiVersion", Value::String(_)) => {}
            ("apiVersion" | "kind", _) => out.push(FieldError::invalid(&p, v.clone(), "must be a string")),
            _ => {}
        }
    }
}

fn dns1035_label_errors(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !regex_ok(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", s) {
        errs.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    errs
}

fn validate_lists(x: &Value, s: Option<&Node>, path: &FPath, out: &mut Vec<FieldError>) {
    let Some(node) = s else { return };
    match x {
        Value::Object(m) => {
            // The apiserver checks additionalProperties first, then properties.
            if let Some(ap) = node.additional.0.schema() {
                for k in sorted_keys(m) {
                    if let Some(v) = m.get(&k) {
                        validate_lists(v, Some(ap), &fp_key(path, &k), out);
                    }
                }
            }
            for k in sorted_keys(m) {
                if let (Some(prop), Some(v)) = (node.properties.get(&k), m.get(&k)) {
                    validate_lists(v, Some(prop), &fp_child(path, &k), out);
                }
            }
        }
        Value::Array(items) => {
            match node.list_type.as_deref() {
                Some("set") => {
                    for i in non_unique(items) {
                        if let Some(v) = items.get(i) {
                            out.push(FieldError::new(
                                fp_str(&fp_index(path, i)),
                                ErrorKind::Duplicate,
                                Some(v.clone()),
                                "",
                            ));
                        }
                    }
                }
                Some("map") => validate_list_map(node, items, path, out),
                _ => {}
            }
            for (i, v) in items.iter().enumerate() {
                validate_lists(v, node.items.as_deref(), &fp_index(path, i), out);
            }
        }
        _ => {}
    }
}

/// Indexes of the second appearance of each repeated value (Go compares scalars by type and
/// value, compound values by their JSON text).
fn non_unique(items: &[Value]) -> Vec<usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, x) in items.iter().enumerate() {
        let key = match x {
            Value::Object(_) | Value::Array(_) => format!("c:{}", go_json(x)),
            Value::Number(n) if n.is_f64() => format!("f:{}", go_json(x)),
            Value::Number(_) => format!("i:{}", go_json(x)),
            other => format!("s:{}", go_json(other)),
        };
        let c = counts.entry(key).or_insert(0);
        *c += 1;
        if *c == 2 {
            out.push(i);
        }
    }
    out
}

fn validate_list_map(node: &Node, items: &[Value], path: &FPath, out: &mut Vec<FieldError>) {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            out.push(FieldError::invalid(
                &fp_index(path, i),
                x.clone(),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    if items.len() <= 1 {
        return;
    }
    let keys: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut key = Map::new();
            if let Value::Object(m) = x {
                for k in &node.list_map_keys {
                    if let Some(v) = m.get(k) {
                        key.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(key)
        })
        .collect();
    if node.list_map_keys.len() == 1 {
        // One key: compared as scalars, an absent key being its own value.
        let key_values: Vec<Value> = keys
            .iter()
            .map(|k| match k.as_object().and_then(|m| m.values().next()) {
                Some(v) => v.clone(),
                None => json!({"__unspecified__": true}),
            })
            .collect();
        for i in non_unique(&key_values) {
            if let Some(k) = keys.get(i) {
                out.push(FieldError::new(
                    fp_str(&fp_index(path, i)),
                    ErrorKind::Duplicate,
                    Some(k.clone()),
                    "",
                ));
            }
        }
        return;
    }
    for i in non_unique(&keys) {
        if let Some(k) = keys.get(i) {
            out.push(FieldError::new(
                fp_str(&fp_index(path, i)),
                ErrorKind::Duplicate,
                Some(k.clone()),
                "",
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CEL
// ---------------------------------------------------------------------------------------------

const CEL_RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The CEL name of a property: reserved words become `__word__`; `__`, `.`, `-`, `/` are
/// spelled out. Names CEL cannot express give `None` and are not visible to rules.
fn cel_escape(name: &str) -> Option<String> {
    if CEL_RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut chars = name.chars();
    let first = chars.next()?;
    let ok_first = first.is_ascii_alphabetic() || matches!(first, '_' | '.' | '-' | '/');
    if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')) {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("__") {
            out.push_str("__underscores__");
            rest = rest.get(2..).unwrap_or("");
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c => out.push(c),
        }
        rest = rest.get(c.len_utf8()..).unwrap_or("");
    }
    Some(out)
}

/// The standard and Kubernetes CEL libraries, plus `type()`: cel-rust has no type values, so
/// types are modelled by name and the identifiers `int`, `string`, ... are bound to their names,
/// which keeps rules such as `type(self) == int` (common for int-or-string) working.
fn base_context() -> Context<'static> {
    let mut ctx = Context::default().with_all();
    ctx.add_function("type", |v: Cel| -> String { cel_type_name(&v).to_string() });
    for t in [
        "int",
        "uint",
        "double",
        "bool",
        "string",
        "bytes",
        "list",
        "map",
        "null_type",
    ] {
        ctx.add_variable_from_value(t, t);
    }
    ctx
}

fn cel_type_name(v: &Cel) -> &'static str {
    match v {
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bytes(_) => "bytes",
        Cel::Bool(_) => "bool",
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        Cel::Null => "null_type",
        Cel::Timestamp(_) => "google.protobuf.Timestamp",
        Cel::Duration(_) => "google.protobuf.Duration",
        Cel::Function(..) => "function",
        Cel::Opaque(_) => "optional_type",
    }
}

fn cel_str(s: &str) -> Cel {
    Cel::String(Arc::new(s.to_string()))
}

fn cel_object(fields: HashMap<String, Cel>) -> Cel {
    Cel::from(fields)
}

/// Converts JSON to a CEL value the way the apiserver types it from the schema: `number` as
/// double, `integer` as int, `byte`/`date`/`date-time`/`duration` strings as bytes, timestamps
/// and durations, object fields by escaped name, resource roots showing only `apiVersion`,
/// `kind`, `metadata.name` and `metadata.generateName` beyond their schema.
fn to_cel(v: &Value, node: Option<&Node>, resource_root: bool) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => {
            let as_double = node.is_some_and(|s| s.ty == "number");
            match (as_double, n.as_i64()) {
                (false, Some(i)) => Cel::Int(i),
                (false, None)
                    if node.is_some_and(|s| s.ty == "integer") && n.as_f64().is_some_and(is_json_integer) =>
                {
                    Cel::Int(n.as_f64().unwrap_or(0.0) as i64)
                }
                _ => Cel::Float(n.as_f64().unwrap_or(0.0)),
            }
        }
        Value::String(s) => string_to_cel(s, node.and_then(|n| n.raw_format.as_deref())),
        Value::Array(items) => {
            let item_schema = node.and_then(|n| n.items.as_deref());
            let embedded = item_schema.is_some_and(|n| n.embedded);
            Cel::List(Arc::new(
                items.iter().map(|i| to_cel(i, item_schema, embedded)).collect(),
            ))
        }
        Value::Object(m) => {
            let mut fields = HashMap::new();
            match node {
                Some(n) if n.properties.is_empty() && n.additional.0.schema().is_some() && !resource_root => {
                    let ap = n.additional.0.schema();
                    let embedded = ap.is_some_and(|a| a.embedded);
                    for (k, val) in m {
                        fields.insert(k.clone(), to_cel(val, ap, embedded));
                    }
                }
                Some(n) => {
                    for (k, prop) in &n.properties {
                        if resource_root && META_FIELDS.contains(&k.as_str()) {
                            continue;
                        }
                        if let (Some(val), Some(name)) = (m.get(k), cel_escape(k)) {
                            fields.insert(name, to_cel(val, Some(prop), prop.embedded));
                        }
                    }
                    if resource_root {
                        for k in ["apiVersion", "kind"] {
                            if let Some(Value::String(s)) = m.get(k) {
                                fields.insert(k.to_string(), cel_str(s));
                            }
                        }
                        if let Some(Value::Object(meta)) = m.get("metadata") {
                            let mut mf = HashMap::new();
                            for k in ["name", "generateName"] {
                                if let Some(Value::String(s)) = meta.get(k) {
                                    mf.insert(k.to_string(), cel_str(s));
                                }
                            }
                            fields.insert("metadata".to_string(), cel_object(mf));
                        }
                    }
                }
                None => {
                    for (k, val) in m {
                        fields.insert(k.clone(), to_cel(val, None, false));
                    }
                }
            }
            cel_object(fields)
        }
    }
}

fn string_to_cel(s: &str, format: Option<&str>) -> Cel {
    match format {
        Some("byte") => match base64_decode(s) {
            Some(b) => Cel::Bytes(Arc::new(b)),
            None => cel_str(s),
        },
        Some("date-time") => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => Cel::Timestamp(t),
            Err(_) => cel_str(s),
        },
        Some("date") => match parse_date(s).and_then(|d| d.and_hms_opt(0, 0, 0)) {
            Some(t) => Cel::Timestamp(t.and_utc().fixed_offset()),
            None => cel_str(s),
        },
        Some("duration") => match parse_go_duration(s).and_then(|n| i64::try_from(n).ok()) {
            Some(n) => Cel::Duration(chrono::Duration::nanoseconds(n)),
            None => cel_str(s),
        },
        _ => cel_str(s),
    }
}

/// cel-go's wording for common runtime errors.
fn cel_error_text(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::DivisionByZero(_) => "division by zero".into(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        ExecutionError::Overflow(..) => "integer overflow".into(),
        ExecutionError::NoSuchOverload => "no such overload".into(),
        other => other.to_string(),
    }
}

fn optional(v: Option<Cel>) -> Cel {
    Cel::Opaque(Arc::new(match v {
        Some(v) => OptionalValue::of(v),
        None => OptionalValue::none(),
    }))
}

/// Evaluates the message expression; `None` when it fails, as the apiserver then falls back.
fn eval_message(program: &Program, ctx: &Context<'_>) -> Option<String> {
    match program.execute(ctx) {
        Ok(Cel::String(s)) => {
            let t = s.trim();
            (!t.is_empty() && !t.contains('\n') && t.len() <= 5 * 1024).then(|| t.to_string())
        }
        _ => None,
    }
}

/// Runs the rules of `node` and below. `old` is the correlated old value; `unchanged` says
/// whether this value (or its nearest correlatable ancestor) equals the old one, in which case
/// failures of rules without `oldSelf` are dropped (ratcheting).
#[allow(clippy::too_many_arguments)]
fn cel_validate(
    node: &Node,
    new: &Value,
    old: Option<&Value>,
    path: &FPath,
    unchanged: bool,
    resource_root: bool,
    base: &Context<'_>,
    out: &mut Vec<FieldError>,
) {
    if new.is_null() {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    let rules: Vec<&CelRule> = node
        .rules
        .iter()
        .chain(node.all_of.iter().flat_map(|a| a.rules.iter()))
        .collect();
    if !rules.is_empty() {
        let self_val = to_cel(new, Some(node), resource_root);
        let old_val = old.map(|o| to_cel(o, Some(node), resource_root));
        let mut plain = base.new_inner_scope();
        plain.add_variable_from_value("self", self_val.clone());
        if let Some(o) = &old_val {
            plain.add_variable_from_value("oldSelf", o.clone());
        }
        let mut with_optional = base.new_inner_scope();
        with_optional.add_variable_from_value("self", self_val);
        with_optional.add_variable_from_value("oldSelf", optional(old_val.clone()));
        let bad_type = Value::String(node.ty.clone());
        for rule in rules {
            if rule.uses_old_self && old_val.is_none() && !rule.optional_old_self {
                continue;
            }
            let ctx = if rule.optional_old_self {
                &with_optional
            } else {
                &plain
            };
            let what = if rule.message.trim().is_empty() {
                rule.rule.trim()
            } else {
                rule.message.trim()
            };
            match rule.program.execute(ctx) {
                Ok(Cel::Bool(true)) => continue,
                Ok(_) => {}
                Err(e) => {
                    let text = cel_error_text(&e);
                    let detail = if text.starts_with("no such overload") {
                        format!(
                            "'{text}': call arguments did not match a supported operator, function or macro signature for rule: {what}"
                        )
                    } else {
                        format!("{text} evaluating rule: {what}")
                    };
                    out.push(FieldError::invalid(path, bad_type.clone(), detail));
                    continue;
                }
            }
            if !rule.uses_old_self && unchanged {
                continue;
            }
            let err_path = match &rule.field_path {
                Some(fp) => fp_child(path, fp),
                None => path.clone(),
            };
            let detail = rule
                .message_expression
                .as_ref()
                .and_then(|m| eval_message(m, &plain))
                .unwrap_or_else(|| {
                    if rule.message.trim().is_empty() {
                        format!("failed rule: {}", rule.rule.trim())
                    } else {
                        rule.message.trim().to_string()
                    }
                });
            let field = fp_str(&err_path);
            out.push(match rule.reason {
                ErrorKind::Forbidden => FieldError::new(field, ErrorKind::Forbidden, None, detail),
                ErrorKind::Required => FieldError::new(field, ErrorKind::Required, None, detail),
                ErrorKind::Duplicate => {
                    FieldError::new(field, ErrorKind::Duplicate, Some(bad_type.clone()), "")
                }
                _ => FieldError::new(field, ErrorKind::Invalid, Some(bad_type.clone()), detail),
            });
        }
    }
    let child_unchanged = |old_child: Option<&Value>, new_child: &Value| match old_child {
        Some(o) => o == new_child,
        None => unchanged,
    };
    match new {
        Value::Array(items) => {
            if let Some(item_schema) = node.items.as_deref() {
                for (i, item) in items.iter().enumerate() {
                    let old_item = correlate_item(node, item, old);
                    let u = child_unchanged(old_item, item);
                    cel_validate(
                        item_schema,
                        item,
                        old_item,
                        &fp_index(path, i),
                        u,
                        item_schema.embedded,
                        base,
                        out,
                    );
                }
            }
        }
        Value::Object(m) => {
            let old_map = old.and_then(Value::as_object);
            let keys = sorted_keys(m);
            if let Some(ap) = node.additional.0.schema() {
                for k in &keys {
                    if let Some(v) = m.get(k) {
                        let o = old_map.and_then(|om| om.get(k));
                        cel_validate(
                            ap,
                            v,
                            o,
                            &fp_key(path, k),
                            child_unchanged(o, v),
                            ap.embedded,
                            base,
                            out,
                        );
                    }
                }
            }
            for k in &keys {
                if let (Some(prop), Some(v)) = (node.properties.get(k), m.get(k)) {
                    let o = old_map.and_then(|om| om.get(k));
                    cel_validate(
                        prop,
                        v,
                        o,
                        &fp_child(path, k),
                        child_unchanged(o, v),
                        prop.embedded,
                        base,
                        out,
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd_schema() -> Value {
        json!({
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.metadata.name.size() <= 20", "message": "name is too long"}
            ],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "x-kubernetes-validations": [
                        {"rule": "self.minReplicas <= self.size", "message": "minReplicas must not exceed size"},
                        {"rule": "self.mode != 'Burst' || self.size >= 3"}
                    ],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 9},
                        "minReplicas": {"type": "integer", "default": 1},
                        "ratio": {"type": "number", "maximum": 1.5, "multipleOf": 0.25},
                        "version": {"type": "string", "pattern": "^v[0-9]+\\.[0-9]+$", "maxLength": 10},
                        "mode": {"type": "string", "enum": ["Standard", "Burst"], "default": "Standard"},
                        "tags": {
                            "type": "array", "maxItems": 3, "x-kubernetes-list-type": "set",
                            "items": {"type": "string", "minLength": 2}
                        },
                        "storage": {
                            "type": "object", "default": {},
                            "properties": {
                                "class": {"type": "string", "default": "standard"},
                                "capacity": {"type": "string", "default": "1Gi"},
                                "backup": {
                                    "type": "object", "default": {},
                                    "properties": {"enabled": {"type": "boolean", "default": false}}
                                }
                            }
                        },
                        "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "port": {
                            "x-kubernetes-int-or-string": true,
                            "x-kubernetes-validations": [
                                {"rule": "type(self) == int ? self > 0 : self.endsWith('%')",
                                 "message": "must be a positive port or a percentage"}
                            ]
                        },
                        "clusterName": {
                            "type": "string",
                            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]
                        },
                        "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith('app-')"}]},
                        "items": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {
                                "type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string"}, "value": {"type": "integer"}}
                            }
                        },
                        "template": {
                            "type": "object",
                            "x-kubernetes-embedded-resource": true,
                            "x-kubernetes-preserve-unknown-fields": true
                        },
                        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 5}},
                        "note": {"type": "string", "nullable": true},
                        "owner": {"type": "string"}
                    }
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
            }
        })
    }

    fn schema() -> CompiledSchema {
        match CompiledSchema::new(&crd_schema()) {
            Ok(s) => s,
            Err(e) => panic!("schema: {e}"),
        }
    }

    fn valid_obj() -> Value {
        json!({
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "default"},
            "spec": {"size": 3, "minReplicas": 1, "mode": "Standard", "storage": {"class": "fast", "capacity": "1Gi", "backup": {"enabled": true}}}
        })
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn validate_spec(spec: Value) -> Vec<String> {
        let s = schema();
        let mut obj = valid_obj();
        obj["spec"] = spec;
        s.apply_defaults(&mut obj);
        messages(&s.validate(&obj, None))
    }

    const BLOCKED: &str = "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

    #[test]
    fn unknown_fields_use_apiserver_paths_and_order() {
        let s = schema();
        let obj = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "foo": 1, "ownerReferences": [{"name": "o", "bogus": true}]},
            "spec": {
                "size": 3, "x": 1,
                "items": [{"name": "a", "y": 2}],
                "config": {"anything": {"deep": true}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "weird": 1}, "spec": {"free": 1}},
                "labels": {"a": "b"}
            },
            "status": {"bogus": 1},
            "extra": true
        });
        assert_eq!(
            s.unknown_fields(&obj),
            vec![
                "metadata.foo",
                "metadata.ownerReferences[0].bogus",
                "extra",
                "spec.items[0].y",
                "spec.x",
                "status.bogus",
                "spec.template.metadata.weird",
            ]
        );
        assert_eq!(
            strict_decoding_message(&s.unknown_fields(&obj)[3..5]),
            "strict decoding error: unknown field \"spec.items[0].y\", unknown field \"spec.x\""
        );
        let status = strict_decoding_status("Widget", "v1", &["spec.x".to_string()]);
        assert_eq!(
            status["message"],
            "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.x\""
        );
        assert_eq!(status["code"], 400);
        assert_eq!(status["reason"], "BadRequest");
    }

    #[test]
    fn prune_keeps_preserved_and_meta_fields() {
        let s = schema();
        let mut obj = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "foo": 1},
            "spec": {
                "size": 3, "x": 1, "owner": null, "note": null,
                "config": {"anything": {"deep": true}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"free": 1}},
                "items": [{"name": "a", "y": 2}]
            }
        });
        s.prune(&mut obj);
        assert_eq!(
            obj,
            json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w1"},
                "spec": {
                    "size": 3, "note": null,
                    "config": {"anything": {"deep": true}},
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"free": 1}},
                    "items": [{"name": "a"}]
                }
            })
        );
    }

    #[test]
    fn defaults_apply_recursively_and_replace_nulls() {
        let s = schema();
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                             "spec": {"size": 2, "mode": null, "note": null}});
        s.apply_defaults(&mut obj);
        assert_eq!(
            obj["spec"],
            json!({
                "size": 2, "minReplicas": 1, "mode": "Standard", "note": null,
                "storage": {"class": "standard", "capacity": "1Gi", "backup": {"enabled": false}}
            })
        );
        let mut partial = json!({"spec": {"size": 2, "storage": {"class": "x", "backup": {}}}});
        s.apply_defaults(&mut partial);
        assert_eq!(
            partial["spec"]["storage"],
            json!({"class": "x", "capacity": "1Gi", "backup": {"enabled": false}})
        );
    }

    #[test]
    fn valid_object_has_no_errors() {
        let s = schema();
        let mut obj = valid_obj();
        s.apply_defaults(&mut obj);
        assert_eq!(messages(&s.validate(&obj, None)), Vec::<String>::new());
    }

    #[test]
    fn numeric_bounds() {
        assert_eq!(
            validate_spec(json!({"size": 10})),
            vec!["spec.size: Invalid value: 10: spec.size in body should be less than or equal to 9"]
        );
        assert_eq!(
            validate_spec(json!({"size": 0, "minReplicas": 0})),
            vec!["spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "ratio": 1.6})),
            vec![
                "spec.ratio: Invalid value: 1.6: spec.ratio in body should be a multiple of 0.25",
                "spec.ratio: Invalid value: 1.6: spec.ratio in body should be less than or equal to 1.5",
            ]
        );
    }

    #[test]
    fn type_errors_block_cel() {
        assert_eq!(
            validate_spec(json!({"size": "big"})),
            vec![
                "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
                BLOCKED,
            ]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "port": true})),
            vec![
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                BLOCKED,
            ]
        );
    }

    #[test]
    fn string_checks() {
        assert_eq!(
            validate_spec(json!({"size": 3, "version": "x"})),
            vec![
                "spec.version: Invalid value: \"x\": spec.version in body should match '^v[0-9]+\\.[0-9]+$'"
            ]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "version": "v1.12345678"})),
            vec!["spec.version: Too long: may not be more than 10 bytes", BLOCKED]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "mode": "Fast"})),
            vec![
                "spec.mode: Unsupported value: \"Fast\": supported values: \"Standard\", \"Burst\"",
                BLOCKED
            ]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "labels": {"team": "toolong"}})),
            vec![
                "spec.labels.team: Too long: may not be more than 5 bytes",
                BLOCKED
            ]
        );
    }

    #[test]
    fn arrays_and_lists() {
        assert_eq!(
            validate_spec(json!({"size": 3, "tags": ["aa", "bb", "cc", "dd"]})),
            vec!["spec.tags: Too many: 4: must have at most 3 items", BLOCKED]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "tags": ["a", "bb", "bb"]})),
            vec![
                "spec.tags[0]: Invalid value: \"a\": spec.tags[0] in body should be at least 2 chars long",
                "spec.tags[2]: Duplicate value: \"bb\"",
            ]
        );
        assert_eq!(
            validate_spec(
                json!({"size": 3, "items": [{"name": "a"}, {"name": "a", "value": 1}, {"value": 2}]})
            ),
            vec![
                "spec.items[2].name: Required value",
                "spec.items[1]: Duplicate value: map[string]interface {}{\"name\":\"a\"}",
                BLOCKED,
            ]
        );
    }

    #[test]
    fn required_and_embedded() {
        assert_eq!(
            validate_spec(json!({"minReplicas": 1})),
            vec!["spec.size: Required value", BLOCKED]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "template": {"metadata": {"name": "x"}}})),
            vec![
                "spec.template.apiVersion: Required value",
                "spec.template.kind: Required value",
                BLOCKED
            ]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "template": {"apiVersion": "v1", "kind": "My_Kind"}})),
            vec![
                "spec.template.kind: Invalid value: \"My_Kind\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn cel_messages() {
        assert_eq!(
            validate_spec(json!({"size": 2, "minReplicas": 3})),
            vec!["spec: Invalid value: \"object\": minReplicas must not exceed size"]
        );
        assert_eq!(
            validate_spec(json!({"size": 2, "mode": "Burst"})),
            vec!["spec: Invalid value: \"object\": failed rule: self.mode != 'Burst' || self.size >= 3"]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "name": "web"})),
            vec!["spec.name: Invalid value: \"string\": failed rule: self.startsWith('app-')"]
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "port": 8080})),
            Vec::<String>::new()
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "port": "50%"})),
            Vec::<String>::new()
        );
        assert_eq!(
            validate_spec(json!({"size": 3, "port": 0})),
            vec!["spec.port: Invalid value: \"\": must be a positive port or a percentage"]
        );
        let s = schema();
        let mut obj = valid_obj();
        obj["metadata"]["name"] = json!("a-name-that-is-far-too-long");
        s.apply_defaults(&mut obj);
        assert_eq!(
            messages(&s.validate(&obj, None)),
            vec!["<nil>: Invalid value: \"object\": name is too long"]
        );
    }

    #[test]
    fn transition_rules_need_old_value() {
        let s = schema();
        let mut new = valid_obj();
        new["spec"]["clusterName"] = json!("b");
        s.apply_defaults(&mut new);
        assert!(s.validate(&new, None).is_empty());
        let mut old = valid_obj();
        s.apply_defaults(&mut old);
        assert!(
            s.validate(&new, Some(&old)).is_empty(),
            "no old clusterName: rule skipped"
        );
        old["spec"]["clusterName"] = json!("a");
        assert_eq!(
            messages(&s.validate(&new, Some(&old))),
            vec!["spec.clusterName: Invalid value: \"string\": immutable"]
        );
        old["spec"]["clusterName"] = json!("b");
        assert!(s.validate(&new, Some(&old)).is_empty());
    }

    #[test]
    fn unchanged_invalid_fields_ratchet_on_update() {
        let s = schema();
        let mut old = valid_obj();
        old["spec"]["size"] = json!(12);
        old["spec"]["name"] = json!("web");
        s.apply_defaults(&mut old);
        let mut new = old.clone();
        new["spec"]["owner"] = json!("me");
        assert!(s.validate(&new, Some(&old)).is_empty());
        new["spec"]["size"] = json!(11);
        assert_eq!(
            messages(&s.validate(&new, Some(&old))),
            vec!["spec.size: Invalid value: 11: spec.size in body should be less than or equal to 9"]
        );
    }

    #[test]
    fn rule_options() {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [
                        {"rule": "self.a < 5", "messageExpression": "'a is ' + string(self.a)", "fieldPath": ".a"},
                        {"rule": "!has(self.b)", "message": "b is not allowed", "reason": "FieldValueForbidden"},
                        {"rule": "!oldSelf.hasValue() || self.a >= oldSelf.value().a", "message": "a may not shrink", "optionalOldSelf": true},
                        {"rule": "self.missing == 1"}
                    ],
                    "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}
                }
            }
        });
        let s = match CompiledSchema::new(&schema) {
            Ok(s) => s,
            Err(e) => panic!("schema: {e}"),
        };
        let obj = json!({"spec": {"a": 7, "b": "x"}});
        assert_eq!(
            messages(&s.validate(&obj, None)),
            vec![
                "spec.a: Invalid value: \"object\": a is 7",
                "spec: Forbidden: b is not allowed",
                "spec: Invalid value: \"object\": no such key: missing evaluating rule: self.missing == 1",
            ]
        );
        let bad = json!({"spec": {"a": "x"}});
        assert!(
            CompiledSchema::new(
                &json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a <"}]})
            )
            .is_err()
        );
        assert!(!s.validate(&bad, None).is_empty());
    }

    #[test]
    fn compile_errors_name_the_rule() {
        let err = CompiledSchema::new(&json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==="}]}}
        }));
        match err {
            Ok(_) => panic!("expected an error"),
            Err(e) => assert!(e.contains("self.a ===") && e.contains("properties[spec]"), "{e}"),
        }
    }

    #[test]
    fn invalid_status_shape() {
        let s = schema();
        let mut obj = valid_obj();
        obj["spec"] = json!({"size": 10, "mode": "Fast"});
        s.apply_defaults(&mut obj);
        let errs = s.validate(&obj, None);
        let status = invalid_status("Widget", "example.com", "w1", &errs);
        assert_eq!(
            status,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("Widget.example.com \"w1\" is invalid: [spec.mode: Unsupported value: \"Fast\": supported values: \"Standard\", \"Burst\", spec.size: Invalid value: 10: spec.size in body should be less than or equal to 9, {BLOCKED}]"),
                "reason": "Invalid",
                "details": {
                    "name": "w1", "group": "example.com", "kind": "Widget",
                    "causes": [
                        {"reason": "FieldValueNotSupported", "message": "Unsupported value: \"Fast\": supported values: \"Standard\", \"Burst\"", "field": "spec.mode"},
                        {"reason": "FieldValueInvalid", "message": "Invalid value: 10: spec.size in body should be less than or equal to 9", "field": "spec.size"},
                        {"reason": "FieldValueInvalid", "message": "Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation", "field": "<nil>"}
                    ]
                },
                "code": 422
            })
        );
        let one = invalid_status("Widget", "example.com", "w1", &errs[1..2]);
        assert_eq!(
            one["message"],
            "Widget.example.com \"w1\" is invalid: spec.size: Invalid value: 10: spec.size in body should be less than or equal to 9"
        );
    }

    #[test]
    fn composite_and_null_errors() {
        let s = match CompiledSchema::new(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
                    "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string", "enum": ["x"]}}
                }
            }
        })) {
            Ok(s) => s,
            Err(e) => panic!("schema: {e}"),
        };
        assert_eq!(
            messages(&s.validate(&json!({"spec": {"c": null}}), None)),
            vec![
                "<nil>: Invalid value: \"\": \"spec\" must validate at least one schema (anyOf)",
                "spec.a: Required value",
                "spec.c: Invalid value: \"null\": spec.c in body must be of type string: \"null\"",
                "spec.c: Unsupported value: \"null\": supported values: \"x\"",
            ]
        );
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_float_v(1.5), "1.5");
        assert_eq!(go_float_v(9.0), "9");
        assert_eq!(go_float_v(1e6), "1e+06");
        assert_eq!(go_float_v(123456.0), "123456");
        assert_eq!(go_float_v(0.0001), "0.0001");
        assert_eq!(go_float_v(0.00001), "1e-05");
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(cel_escape("foo-bar").as_deref(), Some("foo__dash__bar"));
        assert_eq!(cel_escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(cel_escape("a__b.c").as_deref(), Some("a__underscores__b__dot__c"));
        assert_eq!(cel_escape("1abc"), None);
    }

    fn compile(schema: Value) -> CompiledSchema {
        CompiledSchema::new(&schema).expect("schema compiles")
    }

    #[test]
    fn more_value_validations() {
        let s = compile(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "n": {"type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 5, "exclusiveMaximum": true},
                "list": {"type": "array", "minItems": 2, "items": {"type": "integer"}},
                "m": {"type": "object", "minProperties": 1, "maxProperties": 2, "additionalProperties": {"type": "integer"}},
                "when": {"type": "string", "format": "date-time"},
                "ip": {"type": "string", "format": "ipv4"},
                "f": {"type": "number", "minimum": 0.5}
            }}}
        }));
        let check = |spec: Value| messages(&s.validate(&json!({ "spec": spec }), None));
        assert_eq!(
            check(json!({"n": 0})),
            vec!["spec.n: Invalid value: 0: spec.n in body should be greater than 0"]
        );
        assert_eq!(
            check(json!({"n": 5})),
            vec!["spec.n: Invalid value: 5: spec.n in body should be less than 5"]
        );
        assert_eq!(
            check(json!({"list": [1]})),
            vec!["spec.list: Invalid value: 1: spec.list in body should have at least 2 items"]
        );
        assert_eq!(
            check(json!({"m": {}})),
            vec!["spec.m: Invalid value: 0: spec.m in body should have at least 1 properties"]
        );
        assert_eq!(
            check(json!({"m": {"a": 1, "b": 2, "c": "x"}})),
            vec!["spec.m: Too many: 3: must have at most 2 items"]
        );
        assert_eq!(
            check(json!({"m": {"a": "x"}})),
            vec!["spec.m.a: Invalid value: \"string\": spec.m.a in body must be of type integer: \"string\""]
        );
        assert_eq!(
            check(json!({"when": "yesterday", "ip": "1.2.3"})),
            vec![
                "spec.ip: Invalid value: \"1.2.3\": spec.ip in body must be of type ipv4: \"1.2.3\"",
                "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
            ]
        );
        assert_eq!(
            check(json!({"when": "2024-01-02T03:04:05Z", "ip": "10.0.0.1", "n": 1.0})),
            Vec::<String>::new()
        );
        assert_eq!(
            check(json!({"f": 0.25})),
            vec!["spec.f: Invalid value: 0.25: spec.f in body should be greater than or equal to 0.5"]
        );
        assert_eq!(
            check(json!({"n": 1.5})),
            vec!["spec.n: Invalid value: \"number\": spec.n in body must be of type integer: \"number\""]
        );
    }

    #[test]
    fn cel_paths_types_and_reasons() {
        let s = compile(json!({
            "type": "object",
            "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": [
                    {"rule": "has(self.x)", "message": "x is required", "reason": "FieldValueRequired"},
                    {"rule": "false", "reason": "FieldValueDuplicate"},
                    {"rule": "false", "message": "fallback", "messageExpression": "self.nope"},
                    {"rule": "int('5') == 5 && string(1) == '1' && type(self) == map"},
                    {"rule": "self.expiry > timestamp('2020-01-01T00:00:00Z') && self.timeout <= duration('1h')",
                     "message": "bad times"},
                    {"rule": "quantity(self.capacity).isLessThan(quantity('10Gi'))", "message": "capacity too big"},
                    {"rule": "self.__namespace__ == 'ns' && self.foo__dash__bar == 1", "message": "escaped names"}
                ],
                "properties": {
                    "x": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string",
                        "x-kubernetes-validations": [{"rule": "self.size() < 4", "message": "label value too long"}]}},
                    "expiry": {"type": "string", "format": "date-time"},
                    "timeout": {"type": "string", "format": "duration"},
                    "capacity": {"type": "string"},
                    "namespace": {"type": "string"},
                    "foo-bar": {"type": "integer"},
                    "n": {"type": "integer", "x-kubernetes-validations": [
                        {"rule": "self >= oldSelf", "message": "n may not decrease"},
                        {"rule": "!oldSelf.hasValue() || oldSelf.value() != 7", "message": "n was seven", "optionalOldSelf": true}
                    ]}
                }
            }}
        }));
        let spec = json!({"labels": {"team": "platform", "ok": "a"}, "expiry": "2030-01-01T00:00:00Z",
                          "timeout": "30m", "capacity": "1Gi", "namespace": "ns", "foo-bar": 1, "n": 3});
        assert_eq!(
            messages(&s.validate(&json!({"spec": spec.clone()}), None)),
            vec![
                "spec: Required value: x is required",
                "spec: Duplicate value: \"object\"",
                "spec: Invalid value: \"object\": fallback",
                "spec.labels[team]: Invalid value: \"string\": label value too long",
            ]
        );
        let old = json!({"spec": {"n": 7}});
        let mut new_spec = spec.clone();
        new_spec["x"] = json!("y");
        new_spec["labels"] = json!({});
        let errs = messages(&s.validate(&json!({"spec": new_spec}), Some(&old)));
        assert_eq!(
            errs,
            vec![
                "spec: Duplicate value: \"object\"",
                "spec: Invalid value: \"object\": fallback",
                "spec.n: Invalid value: \"integer\": n may not decrease",
                "spec.n: Invalid value: \"integer\": n was seven",
            ]
        );
    }

    #[test]
    fn root_rule_sees_only_name_and_generate_name() {
        let s = compile(json!({
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.metadata.name == 'a' && self.kind == 'W' && self.apiVersion == 'x/v1'", "message": "root"},
                {"rule": "has(self.metadata.namespace)", "message": "namespace visible"}
            ],
            "properties": {"spec": {"type": "object"}}
        }));
        let obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a", "namespace": "default"}, "spec": {}});
        assert_eq!(
            messages(&s.validate(&obj, None)),
            vec!["<nil>: Invalid value: \"object\": namespace visible"]
        );
    }

    #[test]
    fn compiled_schema_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledSchema>();
    }
}
