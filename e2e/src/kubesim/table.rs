//! Server-side printing (`application/json;as=Table`), the way `kubectl get` asks for it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::registry::ResourceType;

/// How long ago an RFC 3339 timestamp was, in kubectl's short form (`5m`, `3h20m`, `2d`).
pub fn age(timestamp: &str) -> String {
    let Ok(t) = timestamp.parse::<k8s_openapi::jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    human_duration(secs)
}

/// Kubernetes' HumanDuration.
pub fn human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn col(name: &str, type_: &str, priority: i64, description: &str) -> Value {
    json!({"name": name, "type": type_, "format": if name == "Name" { "name" } else { "" }, "description": description, "priority": priority})
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn created(obj: &Value) -> String {
    age(obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or_default())
}

fn int(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Column definitions and the function producing one row's cells.
type Printer = (Vec<Value>, fn(&Value) -> Vec<Value>);

fn builtin(rt: &ResourceType) -> Option<Printer> {
    let name_col = col("Name", "string", 0, "Name must be unique within a namespace.");
    let age_col = col(
        "Age",
        "string",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    let name = |o: &Value| {
        json!(
            o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )
    };
    let _ = name;
    Some(match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => (
            vec![
                name_col,
                col("Ready", "string", 0, ""),
                col("Status", "string", 0, ""),
                col("Restarts", "string", 0, ""),
                age_col,
                col("IP", "string", 1, ""),
                col("Node", "string", 1, ""),
            ],
            |o| {
                let statuses = o
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let total = o
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let ready = statuses.iter().filter(|c| c["ready"] == json!(true)).count();
                let restarts: i64 = statuses
                    .iter()
                    .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                    .sum();
                let waiting = statuses
                    .iter()
                    .find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str));
                let status = if o.pointer("/metadata/deletionTimestamp").is_some() {
                    "Terminating".to_string()
                } else if let Some(w) = waiting {
                    w.to_string()
                } else {
                    s(o.pointer("/status/phase").unwrap_or(&Value::Null))
                };
                vec![
                    o["metadata"]["name"].clone(),
                    json!(format!("{ready}/{total}")),
                    json!(status),
                    json!(restarts.to_string()),
                    json!(created(o)),
                    json!(s(o.pointer("/status/podIP").unwrap_or(&json!("<none>")))),
                    json!(s(o.pointer("/spec/nodeName").unwrap_or(&json!("<none>")))),
                ]
            },
        ),
        ("apps", "deployments") => (
            vec![
                name_col,
                col("Ready", "string", 0, ""),
                col("Up-to-date", "integer", 0, ""),
                col("Available", "integer", 0, ""),
                age_col,
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(format!(
                        "{}/{}",
                        int(o, "/status/readyReplicas"),
                        int(o, "/spec/replicas")
                    )),
                    json!(int(o, "/status/updatedReplicas")),
                    json!(int(o, "/status/availableReplicas")),
                    json!(created(o)),
                ]
            },
        ),
        ("apps", "statefulsets") => (vec![name_col, col("Ready", "string", 0, ""), age_col], |o| {
            vec![
                o["metadata"]["name"].clone(),
                json!(format!(
                    "{}/{}",
                    int(o, "/status/readyReplicas"),
                    int(o, "/spec/replicas")
                )),
                json!(created(o)),
            ]
        }),
        ("apps", "replicasets") => (
            vec![
                name_col,
                col("Desired", "integer", 0, ""),
                col("Current", "integer", 0, ""),
                col("Ready", "integer", 0, ""),
                age_col,
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(int(o, "/spec/replicas")),
                    json!(int(o, "/status/replicas")),
                    json!(int(o, "/status/readyReplicas")),
                    json!(created(o)),
                ]
            },
        ),
        ("", "services") => (
            vec![
                name_col,
                col("Type", "string", 0, ""),
                col("Cluster-IP", "string", 0, ""),
                col("External-IP", "string", 0, ""),
                col("Port(s)", "string", 0, ""),
                age_col,
            ],
            |o| {
                let ports: Vec<String> = o
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .map(|p| format!("{}/{}", s(&p["port"]), p["protocol"].as_str().unwrap_or("TCP")))
                            .collect()
                    })
                    .unwrap_or_default();
                vec![
                    o["metadata"]["name"].clone(),
                    o.pointer("/spec/type").cloned().unwrap_or(json!("ClusterIP")),
                    o.pointer("/spec/clusterIP").cloned().unwrap_or(json!("<none>")),
                    json!("<none>"),
                    json!(if ports.is_empty() {
                        "<none>".to_string()
                    } else {
                        ports.join(",")
                    }),
                    json!(created(o)),
                ]
            },
        ),
        ("", "namespaces") => (vec![name_col, col("Status", "string", 0, ""), age_col], |o| {
            vec![
                o["metadata"]["name"].clone(),
                o.pointer("/status/phase").cloned().unwrap_or(json!("")),
                json!(created(o)),
            ]
        }),
        ("", "nodes") => (
            vec![
                name_col,
                col("Status", "string", 0, ""),
                col("Roles", "string", 0, ""),
                age_col,
                col("Version", "string", 0, ""),
            ],
            |o| {
                let ready = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .is_some_and(|c| c["status"] == "True");
                vec![
                    o["metadata"]["name"].clone(),
                    json!(if ready { "Ready" } else { "NotReady" }),
                    json!("<none>"),
                    json!(created(o)),
                    o.pointer("/status/nodeInfo/kubeletVersion")
                        .cloned()
                        .unwrap_or(json!("")),
                ]
            },
        ),
        ("", "persistentvolumeclaims") => (
            vec![
                name_col,
                col("Status", "string", 0, ""),
                col("Volume", "string", 0, ""),
                col("Capacity", "string", 0, ""),
                col("Access Modes", "string", 0, ""),
                col("StorageClass", "string", 0, ""),
                age_col,
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    o.pointer("/status/phase").cloned().unwrap_or(json!("")),
                    o.pointer("/spec/volumeName").cloned().unwrap_or(json!("")),
                    o.pointer("/status/capacity/storage")
                        .cloned()
                        .unwrap_or(json!("")),
                    json!(
                        o.pointer("/spec/accessModes")
                            .and_then(Value::as_array)
                            .map(|a| a
                                .iter()
                                .map(|m| match m.as_str() {
                                    Some("ReadWriteOnce") => "RWO",
                                    Some("ReadOnlyMany") => "ROX",
                                    Some("ReadWriteMany") => "RWX",
                                    _ => "",
                                })
                                .collect::<Vec<_>>()
                                .join(","))
                            .unwrap_or_default()
                    ),
                    o.pointer("/spec/storageClassName")
                        .cloned()
                        .unwrap_or(json!("<unset>")),
                    json!(created(o)),
                ]
            },
        ),
        ("", "configmaps") => (vec![name_col, col("Data", "integer", 0, ""), age_col], |o| {
            vec![
                o["metadata"]["name"].clone(),
                json!(
                    o["data"].as_object().map_or(0, |m| m.len())
                        + o["binaryData"].as_object().map_or(0, |m| m.len())
                ),
                json!(created(o)),
            ]
        }),
        ("", "secrets") => (
            vec![
                name_col,
                col("Type", "string", 0, ""),
                col("Data", "integer", 0, ""),
                age_col,
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    o["type"].clone(),
                    json!(o["data"].as_object().map_or(0, |m| m.len())),
                    json!(created(o)),
                ]
            },
        ),
        ("batch", "jobs") => (
            vec![name_col, col("Completions", "string", 0, ""), age_col],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(format!(
                        "{}/{}",
                        int(o, "/status/succeeded"),
                        int(o, "/spec/completions")
                    )),
                    json!(created(o)),
                ]
            },
        ),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            (vec![name_col, col("Created At", "date", 0, "")], |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    o.pointer("/metadata/creationTimestamp")
                        .cloned()
                        .unwrap_or(Value::Null),
                ]
            })
        }
        ("", "events") | ("events.k8s.io", "events") => (
            vec![
                col("Last Seen", "string", 0, ""),
                col("Type", "string", 0, ""),
                col("Reason", "string", 0, ""),
                col("Object", "string", 0, ""),
                col("Message", "string", 0, ""),
            ],
            |o| {
                let obj = o
                    .get("involvedObject")
                    .or_else(|| o.get("regarding"))
                    .cloned()
                    .unwrap_or(json!({}));
                let when = o["lastTimestamp"]
                    .as_str()
                    .or_else(|| o["eventTime"].as_str())
                    .or_else(|| o.pointer("/metadata/creationTimestamp").and_then(Value::as_str))
                    .unwrap_or_default();
                vec![
                    json!(age(when)),
                    o["type"].clone(),
                    o["reason"].clone(),
                    json!(format!(
                        "{}/{}",
                        obj["kind"].as_str().unwrap_or_default().to_lowercase(),
                        obj["name"].as_str().unwrap_or_default()
                    )),
                    json!(
                        o["message"]
                            .as_str()
                            .or_else(|| o["note"].as_str())
                            .unwrap_or_default()
                    ),
                ]
            },
        ),
        _ => return None,
    })
}

/// Evaluates a CRD printer column's JSONPath (`.status.conditions[?(@.type=="Ready")].status`).
pub fn json_path(obj: &Value, path: &str) -> Option<Value> {
    let expr = format!(
        "${}",
        if path.starts_with('.') || path.starts_with('[') {
            path.to_string()
        } else {
            format!(".{path}")
        }
    );
    let parsed = serde_json_path::JsonPath::parse(&expr).ok()?;
    parsed.query(obj).first().cloned()
}

fn custom_row(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let mut cells = vec![obj["metadata"]["name"].clone()];
    if rt.printer_columns.is_empty() {
        cells.push(json!(created(obj)));
        return cells;
    }
    for c in &rt.printer_columns {
        let v = json_path(obj, c["jsonPath"].as_str().unwrap_or_default());
        let cell = match (c["type"].as_str(), v) {
            (Some("date"), Some(Value::String(t))) => json!(age(&t)),
            (_, Some(v)) => v,
            (_, None) => Value::Null,
        };
        cells.push(cell);
    }
    cells
}

fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
}

type RowFn = Box<dyn Fn(&Value) -> Vec<Value>>;

/// A `meta.k8s.io/v1` Table of `items`.
pub fn table(
    rt: &ResourceType,
    items: &[Arc<Value>],
    rv: u64,
    include_object: &str,
    cont: Option<&str>,
) -> Value {
    let (columns, row_fn): (Vec<Value>, RowFn) = if rt.custom {
        let mut cols = vec![col(
            "Name",
            "string",
            0,
            "Name must be unique within a namespace.",
        )];
        if rt.printer_columns.is_empty() {
            cols.push(col("Age", "date", 0, ""));
        }
        for c in &rt.printer_columns {
            cols.push(json!({
                "name": c["name"], "type": c["type"], "format": c.get("format").cloned().unwrap_or(json!("")),
                "description": c.get("description").cloned().unwrap_or(json!("")), "priority": c.get("priority").cloned().unwrap_or(json!(0)),
            }));
        }
        let rt2 = rt.clone();
        (cols, Box::new(move |o| custom_row(&rt2, o)))
    } else {
        match builtin(rt) {
            Some((cols, f)) => (cols, Box::new(f)),
            None => (
                vec![
                    col("Name", "string", 0, "Name must be unique within a namespace."),
                    col("Age", "string", 0, ""),
                ],
                Box::new(|o: &Value| vec![o["metadata"]["name"].clone(), json!(created(o))]),
            ),
        }
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let object = match include_object {
                "None" => Value::Null,
                "Object" => (**o).clone(),
                _ => partial_metadata(o),
            };
            json!({"cells": row_fn(o), "object": object})
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86_400 + 3600), "3d1h");
        assert_eq!(human_duration(100 * 86_400), "100d");
    }

    #[test]
    fn printer_column_paths() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Available", "status": "True"}], "readyMembers": 3}});
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Available\")].status"),
            Some(json!("True"))
        );
        assert_eq!(json_path(&o, ".status.readyMembers"), Some(json!(3)));
        assert_eq!(json_path(&o, ".status.missing"), None);
    }
}
