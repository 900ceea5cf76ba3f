//! Golden-file tests: `testdata/config/<case>/input.yaml` (a multi-document YAML of the
//! Prometheus, Namespaces, monitors, rules, Secrets and ConfigMaps) must produce exactly
//! `prometheus.yaml`, `rules/*.yaml` and `result.yaml` (accepted and rejected objects) next to
//! it. `UPDATE_GOLDEN=1 cargo test -p prometheus-operator golden` rewrites the expected files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use serde::Serialize;

use super::*;

#[derive(Default)]
pub(crate) struct Case {
    pub prometheus: Vec<Prometheus>,
    pub namespaces: Vec<Namespace>,
    pub service_monitors: Vec<ServiceMonitor>,
    pub pod_monitors: Vec<PodMonitor>,
    pub scrape_configs: Vec<ScrapeConfig>,
    pub rules: Vec<PrometheusRule>,
    pub secrets: Vec<Secret>,
    pub config_maps: Vec<ConfigMap>,
}

pub(crate) fn load(text: &str) -> Case {
    use serde::Deserialize;
    let mut case = Case::default();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_yaml_ng::Value::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let v = value.clone();
        match kind.as_str() {
            "Prometheus" => case.prometheus.push(serde_yaml_ng::from_value(v).unwrap()),
            "Namespace" => case.namespaces.push(serde_yaml_ng::from_value(v).unwrap()),
            "ServiceMonitor" => case.service_monitors.push(serde_yaml_ng::from_value(v).unwrap()),
            "PodMonitor" => case.pod_monitors.push(serde_yaml_ng::from_value(v).unwrap()),
            "ScrapeConfig" => case.scrape_configs.push(serde_yaml_ng::from_value(v).unwrap()),
            "PrometheusRule" => case.rules.push(serde_yaml_ng::from_value(v).unwrap()),
            "Secret" => case.secrets.push(serde_yaml_ng::from_value(v).unwrap()),
            "ConfigMap" => case.config_maps.push(serde_yaml_ng::from_value(v).unwrap()),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    assert_eq!(case.prometheus.len(), 1, "a case needs exactly one Prometheus");
    case
}

pub(crate) fn run(case: &Case) -> Result<Generated, Problem> {
    let store = Store::from_objects(&case.secrets, &case.config_maps);
    generate(&Inputs {
        prometheus: &case.prometheus[0],
        namespaces: &case.namespaces,
        service_monitors: &case.service_monitors,
        pod_monitors: &case.pod_monitors,
        scrape_configs: &case.scrape_configs,
        rules: &case.rules,
        store: &store,
    })
}

#[derive(Serialize)]
struct Result_<'a> {
    accepted: &'a [ObjectRef],
    rejected: &'a [Rejection],
    rule_configmaps: Vec<Vec<&'a String>>,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join("config")
}

/// Expected files of a case: relative path → content.
fn outputs(case_dir: &Path) -> BTreeMap<PathBuf, String> {
    let case = load(&std::fs::read_to_string(case_dir.join("input.yaml")).unwrap());
    let mut out = BTreeMap::new();
    match run(&case) {
        Ok(g) => {
            out.insert(PathBuf::from("prometheus.yaml"), g.prometheus_yaml.clone());
            for (name, content) in &g.rule_files {
                out.insert(Path::new("rules").join(name), content.clone());
            }
            let result = Result_ {
                accepted: &g.accepted,
                rejected: &g.rejected,
                rule_configmaps: g.rule_configmaps.iter().map(|m| m.keys().collect()).collect(),
            };
            out.insert(
                PathBuf::from("result.yaml"),
                serde_yaml_ng::to_string(&result).unwrap(),
            );
        }
        Err(p) => {
            out.insert(PathBuf::from("error.yaml"), serde_yaml_ng::to_string(&p).unwrap());
        }
    }
    out
}

fn existing(case_dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for name in ["prometheus.yaml", "result.yaml", "error.yaml"] {
        if let Ok(text) = std::fs::read_to_string(case_dir.join(name)) {
            out.insert(PathBuf::from(name), text);
        }
    }
    if let Ok(entries) = std::fs::read_dir(case_dir.join("rules")) {
        for e in entries {
            let path = e.unwrap().path();
            let rel = Path::new("rules").join(path.file_name().unwrap());
            out.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

pub(crate) fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("input.yaml").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn golden_cases() {
    let dirs = case_dirs();
    assert!(
        dirs.len() >= 10,
        "expected the golden cases under {}",
        cases_dir().display()
    );
    for dir in dirs {
        let want = outputs(&dir);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let _ = std::fs::remove_dir_all(dir.join("rules"));
            for name in ["prometheus.yaml", "result.yaml", "error.yaml"] {
                let _ = std::fs::remove_file(dir.join(name));
            }
            for (rel, content) in &want {
                let path = dir.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
        }
        let have = existing(&dir);
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            have.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}: output files differ; run with UPDATE_GOLDEN=1 to regenerate"
        );
        for (rel, content) in &want {
            pretty_assertions::assert_eq!(&have[rel], content, "{name}/{}", rel.display());
        }
    }
}

#[test]
fn output_is_deterministic_and_order_independent() {
    for dir in case_dirs() {
        let mut case = load(&std::fs::read_to_string(dir.join("input.yaml")).unwrap());
        let a = run(&case);
        case.service_monitors.reverse();
        case.pod_monitors.reverse();
        case.scrape_configs.reverse();
        case.rules.reverse();
        case.namespaces.reverse();
        let b = run(&case);
        assert_eq!(a, b, "{}", dir.display());
    }
}
