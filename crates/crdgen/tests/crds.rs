//! Conventions every Steward CRD keeps, checked on crdgen's real output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

fn crdgen(args: &[&str]) -> String {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).unwrap().join("crdgen");
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn parse_stream(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Every property in a schema has a description (our doc comments).
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let p = format!("{path}.{name}");
            // metadata and apiVersion/kind are the API server's, not ours.
            if path.is_empty() && ["metadata", "apiVersion", "kind"].contains(&name.as_str()) {
                continue;
            }
            if prop
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                out.push(p.clone());
            }
            undocumented(prop, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        undocumented(extra, &format!("{path}{{}}"), out);
    }
}

#[test]
fn stream_holds_every_crd_once() {
    let docs = parse_stream(&crdgen(&[]));
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "etcdclusters.etcd.steward.dev",
            "etcdbackups.etcd.steward.dev",
            "prometheuses.monitoring.steward.dev",
            "alertmanagers.monitoring.steward.dev",
            "alertmanagerconfigs.monitoring.steward.dev",
            "servicemonitors.monitoring.steward.dev",
            "podmonitors.monitoring.steward.dev",
            "prometheusrules.monitoring.steward.dev",
            "scrapeconfigs.monitoring.steward.dev",
        ]
    );
    let etcd = parse_stream(&crdgen(&["--operator", "etcd"]));
    assert_eq!(etcd.len(), 2);
    let prom = parse_stream(&crdgen(&["--operator", "prometheus"]));
    assert_eq!(prom.len(), 7);
}

#[test]
fn conventions() {
    for crd in parse_stream(&crdgen(&[])) {
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        let names = &crd["spec"]["names"];
        assert!(
            names["shortNames"].as_array().is_some_and(|s| !s.is_empty()),
            "{name}: short names"
        );
        let categories = names["categories"].as_array().unwrap();
        assert!(
            categories.iter().any(|c| c == "steward"),
            "{name}: category steward"
        );
        for version in crd["spec"]["versions"].as_array().unwrap() {
            assert_eq!(version["name"], "v1alpha1", "{name}");
            assert!(
                version["subresources"]["status"].is_object(),
                "{name}: status subresource"
            );
            let columns = version["additionalPrinterColumns"].as_array().unwrap();
            assert!(columns.iter().any(|c| c["name"] == "Age"), "{name}: Age column");
            let schema = &version["schema"]["openAPIV3Schema"];
            let mut missing = Vec::new();
            undocumented(schema, "", &mut missing);
            assert!(
                missing.is_empty(),
                "{name}: fields without a doc comment: {missing:?}"
            );
            // Conditions carry observedGeneration and lastTransitionTime.
            let status = &schema["properties"]["status"]["properties"];
            let cond = &status["conditions"]["items"]["properties"];
            assert!(
                cond["observedGeneration"].is_object() && cond["lastTransitionTime"].is_object(),
                "{name}"
            );
        }
    }
}

#[test]
fn scale_subresources() {
    let docs = parse_stream(&crdgen(&[]));
    let scale = |n: &str| {
        let crd = docs.iter().find(|d| d["metadata"]["name"] == n).unwrap();
        crd["spec"]["versions"][0]["subresources"]["scale"].clone()
    };
    let etcd = scale("etcdclusters.etcd.steward.dev");
    assert_eq!(etcd["specReplicasPath"], ".spec.size");
    assert_eq!(etcd["statusReplicasPath"], ".status.size");
    assert_eq!(etcd["labelSelectorPath"], ".status.selector");
    assert_eq!(
        scale("prometheuses.monitoring.steward.dev")["specReplicasPath"],
        ".spec.replicas"
    );
}

#[test]
fn etcd_admission_rules_are_in_the_schema() {
    let docs = parse_stream(&crdgen(&["--operator", "etcd"]));
    let spec = &docs[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["size"]["minimum"], 1.0);
    assert_eq!(spec["properties"]["size"]["maximum"], 9.0);
    assert!(spec["properties"]["version"]["pattern"].is_string());
    let rules = |field: &str| -> Vec<String> {
        spec["properties"][field]["x-kubernetes-validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        rules("storage").iter().any(|r| r.contains("oldSelf")),
        "storage kind immutable"
    );
    assert!(
        rules("tls")
            .iter()
            .any(|r| r.contains("oldSelf.mode == 'disabled'")),
        "no disabled→auto"
    );
}

#[test]
fn out_dir_writes_one_file_per_crd() {
    let dir = tempfile::tempdir().unwrap();
    crdgen(&[
        "--out-dir",
        dir.path().to_str().unwrap(),
        "--operator",
        "prometheus",
    ]);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "alertmanagerconfigs.monitoring.steward.dev.yaml",
            "alertmanagers.monitoring.steward.dev.yaml",
            "podmonitors.monitoring.steward.dev.yaml",
            "prometheuses.monitoring.steward.dev.yaml",
            "prometheusrules.monitoring.steward.dev.yaml",
            "scrapeconfigs.monitoring.steward.dev.yaml",
            "servicemonitors.monitoring.steward.dev.yaml",
        ]
    );
    let text = std::fs::read_to_string(dir.path().join("prometheuses.monitoring.steward.dev.yaml")).unwrap();
    let docs = parse_stream(&text);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["spec"]["names"]["shortNames"][0], "prom");
}

/// `--compat` gives upstream's group, versions and names over exactly our schemas.
#[test]
fn compat_crds_are_ours_under_upstream_names() {
    let compat = parse_stream(&crdgen(&["--compat"]));
    let ours = parse_stream(&crdgen(&["--operator", "prometheus"]));
    let expected = [
        ("servicemonitors", "ServiceMonitor", "smon", "v1"),
        ("podmonitors", "PodMonitor", "pmon", "v1"),
        ("prometheusrules", "PrometheusRule", "promrule", "v1"),
        ("scrapeconfigs", "ScrapeConfig", "scfg", "v1alpha1"),
    ];
    assert_eq!(compat.len(), expected.len());
    for (crd, (plural, kind, short, version)) in compat.iter().zip(expected) {
        assert_eq!(crd["metadata"]["name"], format!("{plural}.monitoring.coreos.com"));
        assert_eq!(crd["spec"]["group"], "monitoring.coreos.com");
        assert_eq!(crd["spec"]["names"]["kind"], kind);
        assert_eq!(crd["spec"]["names"]["plural"], plural);
        assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!([short]));
        assert_eq!(
            crd["spec"]["names"]["categories"],
            serde_json::json!(["prometheus-operator"])
        );
        let ours = ours
            .iter()
            .find(|d| d["metadata"]["name"] == format!("{plural}.monitoring.steward.dev"))
            .unwrap();
        let (a, b) = (&ours["spec"]["versions"][0], &crd["spec"]["versions"][0]);
        assert_eq!(b["name"], version);
        assert_eq!(b["served"], true);
        assert_eq!(b["storage"], true);
        assert_eq!(a["schema"], b["schema"], "{kind}: schema");
        assert_eq!(a["subresources"], b["subresources"], "{kind}: subresources");
    }
}
