//! Golden-file tests: `testdata/config/<case>/input.yaml` (see [`super::case`]) must produce
//! exactly `prometheus.yaml`, `rules/*.yaml` and `result.yaml` (accepted and rejected objects)
//! next to it, or `error.yaml` for an invalid Prometheus.
//! `UPDATE_GOLDEN=1 cargo test -p prometheus-operator golden` rewrites the expected files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::case::{Case, case_dirs};
use super::*;
use crate::testing::{assert_golden, updating_golden};

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

fn load(case_dir: &Path) -> Case {
    let text = std::fs::read_to_string(case_dir.join("input.yaml")).unwrap();
    Case::from_documents(serde_yaml_ng::Deserializer::from_str(&text)).unwrap()
}

/// Expected files of a case: relative path → content.
fn outputs(case_dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    match load(case_dir).generate() {
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

const OUTPUT_FILES: [&str; 3] = ["prometheus.yaml", "result.yaml", "error.yaml"];

/// The output files a case directory holds, relative to it.
fn existing(case_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = OUTPUT_FILES
        .iter()
        .map(PathBuf::from)
        .filter(|f| case_dir.join(f).is_file())
        .collect();
    if let Ok(entries) = std::fs::read_dir(case_dir.join("rules")) {
        for e in entries {
            out.push(Path::new("rules").join(e.unwrap().file_name()));
        }
    }
    out.sort();
    out
}

#[test]
fn golden_cases() {
    let dirs = case_dirs(&cases_dir()).unwrap();
    assert!(
        dirs.len() >= 10,
        "expected the golden cases under {}",
        cases_dir().display()
    );
    for dir in dirs {
        let want = outputs(&dir);
        if updating_golden() {
            let _ = std::fs::remove_dir_all(dir.join("rules"));
            for name in OUTPUT_FILES {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        for (rel, content) in &want {
            assert_golden(&dir.join(rel), content);
        }
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            existing(&dir),
            want.keys().cloned().collect::<Vec<_>>(),
            "{name}: output files differ; run with UPDATE_GOLDEN=1 to regenerate"
        );
    }
}

#[test]
fn output_is_deterministic_and_order_independent() {
    for dir in case_dirs(&cases_dir()).unwrap() {
        let mut case = load(&dir);
        let a = case.generate();
        case.service_monitors.reverse();
        case.pod_monitors.reverse();
        case.scrape_configs.reverse();
        case.rules.reverse();
        case.upstream.service_monitors.reverse();
        case.upstream.pod_monitors.reverse();
        case.upstream.scrape_configs.reverse();
        case.upstream.rules.reverse();
        case.namespaces.reverse();
        case.other_prometheuses.reverse();
        let b = case.generate();
        assert_eq!(a, b, "{}", dir.display());
    }
}

#[test]
fn a_case_configures_its_first_prometheus() {
    let two = "kind: Prometheus\nmetadata: {name: a}\nspec: {}\n---\nkind: Prometheus\nmetadata: {name: b}\nspec: {}\n";
    let case = Case::from_documents(serde_yaml_ng::Deserializer::from_str(two)).unwrap();
    assert_eq!(case.prometheus.name_any(), "a");
    assert_eq!(case.other_prometheuses.len(), 1);
    let none = "kind: Namespace\nmetadata: {name: a}\n";
    let err = Case::from_documents(serde_yaml_ng::Deserializer::from_str(none)).unwrap_err();
    assert!(err.contains("needs a Prometheus"), "{err}");
    let odd = "kind: Pod\nmetadata: {name: a}\n";
    let err = Case::from_documents(serde_yaml_ng::Deserializer::from_str(odd)).unwrap_err();
    assert!(err.contains("unexpected kind \"Pod\""), "{err}");
}

/// Our objects of `case` re-read as upstream objects (`monitoring.coreos.com`), through the
/// controller's `DynamicObject` path, and nothing left in our group.
fn as_upstream(case: &Case) -> Case {
    use super::upstream::{from_dynamic, to_dynamic};
    fn conv<K>(objs: &mut Vec<K>, kind: &str, version: &str) -> Vec<K>
    where
        K: serde::de::DeserializeOwned + kube::Resource + super::upstream::HasSpec,
    {
        std::mem::take(objs)
            .iter()
            .map(|o| {
                let read = from_dynamic::<K>(&to_dynamic(o, kind, version)).unwrap();
                assert!(read.unsupported.is_empty(), "{:?}", read.unsupported);
                read.object
            })
            .collect()
    }
    let mut moved = case.clone();
    moved.upstream.service_monitors = conv(&mut moved.service_monitors, "ServiceMonitor", "v1");
    moved.upstream.pod_monitors = conv(&mut moved.pod_monitors, "PodMonitor", "v1");
    moved.upstream.rules = conv(&mut moved.rules, "PrometheusRule", "v1");
    moved.upstream.scrape_configs = conv(&mut moved.scrape_configs, "ScrapeConfig", "v1alpha1");
    moved
}

/// The golden cases' monitors, rules and scrape configs expressed in `monitoring.coreos.com`
/// give the same configuration, apart from the group marker in job and rule file names.
#[test]
fn upstream_group_objects_give_the_same_configuration() {
    let mut compared = 0;
    for dir in case_dirs(&cases_dir()).unwrap() {
        let case = load(&dir);
        if !case.upstream.service_monitors.is_empty() {
            continue; // already mixes both groups
        }
        let (ours, theirs) = (case.generate(), as_upstream(&case).generate());
        let (ours, theirs) = match (ours, theirs) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                assert_eq!(a, b, "{}", dir.display());
                continue;
            }
        };
        let mut yaml = theirs.prometheus_yaml.clone();
        for kind in ["serviceMonitor", "podMonitor", "scrapeConfig"] {
            yaml = yaml.replace(&format!("{kind}.monitoring.coreos.com/"), &format!("{kind}/"));
        }
        assert_eq!(ours.prometheus_yaml, yaml, "{}", dir.display());
        let files: BTreeMap<String, String> = theirs
            .rule_files
            .iter()
            .map(|(k, v)| {
                let k = k.strip_prefix("monitoring.coreos.com_").unwrap();
                (k.to_string(), v.clone())
            })
            .collect();
        assert_eq!(ours.rule_files, files, "{}", dir.display());
        let steward = |objs: &[ObjectRef]| -> Vec<ObjectRef> {
            objs.iter()
                .map(|o| {
                    assert_eq!(o.group, Group::Upstream);
                    ObjectRef {
                        group: Group::Steward,
                        ..o.clone()
                    }
                })
                .collect()
        };
        assert_eq!(ours.accepted, steward(&theirs.accepted), "{}", dir.display());
        let rejected: Vec<ObjectRef> = theirs.rejected.iter().map(|r| r.object.clone()).collect();
        let ours_rejected: Vec<ObjectRef> = ours.rejected.iter().map(|r| r.object.clone()).collect();
        assert_eq!(ours_rejected, steward(&rejected), "{}", dir.display());
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} cases compared");
}
