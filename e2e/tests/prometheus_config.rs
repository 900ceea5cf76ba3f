//! The Prometheus configuration generator against the real `promtool` of both supported
//! Prometheus lines (2.53 and 3.5): every golden case's `prometheus.yaml`, expanded as the
//! config-reloader does, passes `promtool check config` and every rule file `promtool check rules`; and for random monitors
//! and rules the generator never panics and whatever it accepts passes `promtool`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::bins::{self, Release};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use prometheus_operator::config::case::{Case, case_dirs};
use prometheus_operator::config::{Generated, Inputs, RULES_DIR, Store, generate};
use prometheus_operator::crd::common::{
    BasicAuth, NamespaceSelector, RelabelConfig, SafeAuthorization, ScrapeSettings,
};
use prometheus_operator::crd::{
    Endpoint, PodMetricsEndpoint, PodMonitor, PodMonitorSpec, Prometheus, PrometheusRule, PrometheusRuleSpec,
    Rule, RuleGroup, ServiceMonitor, ServiceMonitorSpec,
};
use prometheus_operator::reloader::{expand_env, lookup};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The `promtool`s to check with: the newest one (`bins::promtool()`, the 3.5 line) and the
/// one shipped with each supported Prometheus release when it is a different build.
fn promtools() -> Vec<(String, PathBuf)> {
    let newest = bins::promtool().unwrap_or_else(|e| panic!("{e:#}"));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    let mut out = vec![("newest".to_string(), newest.clone())];
    for release in [Release::Old, Release::Current] {
        let prometheus = bins::prometheus(release).unwrap_or_else(|e| panic!("{e:#}"));
        let promtool = prometheus.with_file_name("promtool");
        assert!(
            promtool.is_file(),
            "{} not found: run `make test-deps` first",
            promtool.display()
        );
        if release == Release::Old || size(&promtool) != size(&newest) {
            out.push((format!("{release:?}"), promtool));
        }
    }
    out
}

/// Writes the generated files into `dir` the way the pods see them: each rule ConfigMap in its
/// own directory under `<dir>/rules/`, and `prometheus.yaml` with the `/etc/prometheus/rules`
/// prefix of every `rule_files` glob moved to `<dir>/rules` (the globs themselves are checked
/// as generated). Returns the config path and the rule file paths.
fn write_out(generated: &Generated, dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&generated.prometheus_yaml).unwrap();
    let globs: Vec<&str> = doc["rule_files"]
        .as_sequence()
        .expect("rule_files")
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(
        globs.len(),
        generated.rule_configmaps.len(),
        "one rule_files glob per ConfigMap"
    );
    let rules_root = dir.join("rules");
    let mut rule_paths = Vec::new();
    for (glob, files) in globs.iter().zip(&generated.rule_configmaps) {
        let cm_dir = glob
            .strip_prefix(&format!("{RULES_DIR}/"))
            .and_then(|g| g.strip_suffix("/*.yaml"))
            .unwrap_or_else(|| panic!("unexpected rule_files glob {glob}"));
        let cm_dir = rules_root.join(cm_dir);
        std::fs::create_dir_all(&cm_dir).unwrap();
        for (name, content) in files {
            let path = cm_dir.join(name);
            std::fs::write(&path, content).unwrap();
            rule_paths.push(path);
        }
    }
    assert_eq!(
        rule_paths.len(),
        generated.rule_files.len(),
        "every rule file is in a ConfigMap"
    );
    // What a pod loads: `$(POD_NAME)` and `$(SHARD)` expanded as its config-reloader does.
    let env = |name: &str| match name {
        "POD_NAME" => Some("prometheus-main-shard-1-0".to_string()),
        "SHARD" => Some("1".to_string()),
        _ => None,
    };
    let expanded = expand_env(&generated.prometheus_yaml, |name| lookup(name, env));
    assert!(expanded.unknown.is_empty(), "{:?}", expanded.unknown);
    let config = expanded.text.replace(
        &format!("\"{RULES_DIR}/"),
        &format!("\"{}/", rules_root.display()),
    );
    let config_path = dir.join("prometheus.yaml");
    std::fs::write(&config_path, config).unwrap();
    (config_path, rule_paths)
}

fn run(promtool: &Path, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new(promtool)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {:?} failed:\n{}{}",
            promtool.display(),
            args,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `promtool check config` (which loads the rule files too) and `promtool check rules`.
fn promtool_check(promtool: &Path, generated: &Generated, dir: &Path) -> Result<(), String> {
    let (config, rules) = write_out(generated, dir);
    run(
        promtool,
        &["check".as_ref(), "config".as_ref(), config.as_os_str()],
    )?;
    if !rules.is_empty() {
        let mut args: Vec<&std::ffi::OsStr> = vec!["check".as_ref(), "rules".as_ref()];
        args.extend(rules.iter().map(|p| p.as_os_str()));
        run(promtool, &args)?;
    }
    Ok(())
}

/// A golden case of the crate, read by the crate's own loader.
fn load(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    Case::from_documents(serde_yaml_ng::Deserializer::from_str(&text))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn golden_configs_pass_promtool() {
    let promtools = promtools();
    let root = bins::repo_root().join("crates/prometheus-operator/testdata/config");
    let dirs = case_dirs(&root).unwrap();
    assert!(dirs.len() >= 10, "golden cases missing under {}", root.display());
    let mut checked = 0;
    for dir in dirs {
        let result = load(&dir.join("input.yaml")).generate();
        let Ok(generated) = result else {
            // Cases of an invalid Prometheus generate nothing to check.
            assert!(dir.join("error.yaml").is_file(), "{}: {result:?}", dir.display());
            continue;
        };
        for (release, promtool) in &promtools {
            let tmp = tempfile::tempdir().unwrap();
            if let Err(e) = promtool_check(promtool, &generated, tmp.path()) {
                panic!("{} with promtool {release}: {e}", dir.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} checks ran");
}

// ---------------------------------------------------------------------------------------------
// Property test: random specs never panic the generator, and what it accepts passes promtool.

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &[T]) -> BoxedStrategy<T> {
    proptest::sample::select(items.to_vec()).boxed()
}

fn label_name() -> BoxedStrategy<String> {
    prop_oneof![
        12 => "[a-z_][a-z0-9_]{0,6}",
        1 => pick(&["app.kubernetes.io/name", "9lives", "a-b", "__name__", "", "x y", "é"]).prop_map(String::from),
        1 => "\\PC{0,5}",
    ]
    .boxed()
}

fn label_value() -> BoxedStrategy<String> {
    prop_oneof![
        10 => "[a-z0-9]([a-z0-9.-]{0,4}[a-z0-9])?",
        1 => "\\PC{0,8}",
        1 => pick(&["", "a|b", "x\ny", "\"quoted\"", "{{ $labels.x }}", "$1"]).prop_map(String::from),
    ]
    .boxed()
}

fn duration() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        3 => Just(None),
        3 => "[1-9][0-9]{0,2}(ms|s|m|h)".prop_map(Some),
        1 => pick(&["0", "1h30m", "1.5m", "10", "-1s", "", "5 m", "1m1h", "99999999999y"]).prop_map(|s| Some(s.to_string())),
    ]
    .boxed()
}

fn regex() -> BoxedStrategy<String> {
    prop_oneof![
        6 => pick(&["(.*)", "a|b", "foo_.*", "[a-z0-9]+", "(.+)"]).prop_map(String::from),
        3 => pick(&[
            "(.*)", "a|b", "foo_.*", "(?i)id", "\\p{Greek}+", "[a-z0-9]+", "x{3}", "(.+);true", "[", "a{1001}",
            "(?x)a b", "\\p{Alphabetic}", "[a--b]", "a**", "\\u0041", "(?U)a*", "\\pL", "(a{100}){20}", "\\<a",
            "(?P<n>a)", "\\Q.\\E", "\\123", "x{abc}", "\\z", "[[:alpha:]]", "[[a]]", "\\C",
        ])
        .prop_map(String::from),
        1 => "[ -~]{0,8}",
    ]
    .boxed()
}

fn relabel() -> BoxedStrategy<RelabelConfig> {
    (
        proptest::option::of(pick(&[
            "replace",
            "Replace",
            "keep",
            "drop",
            "hashmod",
            "labelmap",
            "labeldrop",
            "labelkeep",
            "lowercase",
            "uppercase",
            "keepequal",
            "dropequal",
            "explode",
        ])),
        proptest::collection::vec(label_name(), 0..3),
        proptest::option::of(regex()),
        proptest::option::of(prop_oneof![
            label_name(),
            Just("${1}_x".to_string()),
            Just("$bad-".to_string())
        ]),
        proptest::option::of(0u64..5),
        proptest::option::of(prop_oneof![Just("$1".to_string()), label_value()]),
        proptest::option::of(pick(&[";", "-", ""])),
        any::<bool>(),
    )
        .prop_map(
            |(action, source_labels, regex, target_label, modulus, replacement, separator, tidy)| {
                let mut rc = RelabelConfig {
                    action: action.map(String::from),
                    source_labels,
                    regex,
                    target_label,
                    modulus,
                    replacement,
                    separator: separator.map(String::from),
                };
                if tidy {
                    // Mostly well-formed: only the fields the action takes.
                    match rc.action.as_deref().map(str::to_ascii_lowercase).as_deref() {
                        Some("labeldrop" | "labelkeep") => {
                            rc.source_labels.clear();
                            (rc.target_label, rc.modulus, rc.replacement, rc.separator) =
                                (None, None, None, None);
                        }
                        Some("keepequal" | "dropequal" | "lowercase" | "uppercase") => {
                            (rc.regex, rc.modulus, rc.replacement, rc.separator) = (None, None, None, None);
                        }
                        Some("labelmap") => rc.replacement = None,
                        Some("hashmod") => rc.modulus = Some(rc.modulus.unwrap_or(0) + 1),
                        _ => {}
                    }
                }
                rc
            },
        )
        .boxed()
}

fn selector() -> BoxedStrategy<LabelSelector> {
    let req = (
        label_name(),
        pick(&[
            "In",
            "NotIn",
            "Exists",
            "DoesNotExist",
            "In",
            "NotIn",
            "Exists",
            "Like",
        ]),
        proptest::collection::vec(label_value(), 0..3),
        proptest::bool::weighted(0.8),
    )
        .prop_map(|(key, op, mut values, tidy)| {
            if tidy {
                // Mostly consistent: values exactly for the operators that take them.
                match op {
                    "Exists" | "DoesNotExist" => values.clear(),
                    _ if values.is_empty() => values.push("x".into()),
                    _ => {}
                }
            }
            LabelSelectorRequirement {
                key,
                operator: op.to_string(),
                values: (!values.is_empty()).then_some(values),
            }
        });
    (
        proptest::collection::btree_map(label_name(), label_value(), 0..3),
        proptest::collection::vec(req, 0..2),
    )
        .prop_map(|(labels, exprs)| LabelSelector {
            match_labels: (!labels.is_empty()).then_some(labels),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        })
        .boxed()
}

fn secret_ref() -> BoxedStrategy<k8s_openapi::api::core::v1::SecretKeySelector> {
    (
        pick(&["creds", "missing"]),
        pick(&["user", "password", "nokey"]),
        any::<bool>(),
    )
        .prop_map(
            |(name, key, optional)| k8s_openapi::api::core::v1::SecretKeySelector {
                name: name.into(),
                key: key.into(),
                optional: optional.then_some(true),
            },
        )
        .boxed()
}

fn scrape_settings() -> BoxedStrategy<ScrapeSettings> {
    (
        (
            proptest::option::of(pick(&["/metrics", "/a b", "metrics", "/x?y=1"])),
            proptest::option::of(pick(&["http", "https", "HTTPS", "ftp"])),
            duration(),
            duration(),
            proptest::option::of(any::<bool>()),
            proptest::collection::btree_map(
                "[a-z]{1,4}",
                proptest::collection::vec(label_value(), 0..2),
                0..2,
            ),
        ),
        (
            proptest::collection::vec(relabel(), 0..2),
            proptest::collection::vec(relabel(), 0..2),
            proptest::option::of(proptest::option::of(secret_ref())),
            proptest::option::of(proptest::option::of(pick(&[
                "Bearer",
                "Basic",
                "Token",
                "two words",
            ]))),
        ),
    )
        .prop_map(
            |((path, scheme, interval, timeout, honor, params), (rl, mrl, basic, authz))| ScrapeSettings {
                path: path.map(String::from),
                scheme: scheme.map(String::from),
                params,
                interval,
                scrape_timeout: timeout,
                honor_labels: honor,
                honor_timestamps: honor.map(|h| !h),
                relabelings: rl,
                metric_relabelings: mrl,
                tls_config: None,
                basic_auth: basic.map(|password| BasicAuth {
                    username: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                        name: "creds".into(),
                        key: "user".into(),
                        optional: None,
                    }),
                    password,
                }),
                authorization: authz.map(|t| SafeAuthorization {
                    type_: t.map(String::from),
                    credentials: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                        name: "creds".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                }),
            },
        )
        .boxed()
}

fn port() -> BoxedStrategy<(Option<String>, Option<IntOrString>)> {
    prop_oneof![
        3 => Just((Some("web".to_string()), None)),
        1 => pick(&["Web Port", "", "metrics-2", "a.b"]).prop_map(|p| (Some(p.to_string()), None)),
        1 => pick(&[0, 8080, 70000]).prop_map(|n| (None, Some(IntOrString::Int(n)))),
        1 => pick(&["admin", "Bad Name"]).prop_map(|s| (None, Some(IntOrString::String(s.into())))),
        1 => Just((None, None)),
    ]
    .boxed()
}

fn meta(ns: &str, name: String) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name),
        uid: Some("00000000-0000-4000-8000-00000000000a".into()),
        ..Default::default()
    }
}

fn namespace_selector() -> BoxedStrategy<Option<NamespaceSelector>> {
    prop_oneof![
        Just(None),
        Just(Some(NamespaceSelector {
            any: true,
            match_names: vec![]
        })),
        proptest::collection::vec(pick(&["a", "b", "weird name"]), 1..3).prop_map(|n| Some(
            NamespaceSelector {
                any: false,
                match_names: n.into_iter().map(String::from).collect(),
            }
        )),
    ]
    .boxed()
}

fn service_monitor() -> BoxedStrategy<ServiceMonitorSpec> {
    (
        selector(),
        namespace_selector(),
        proptest::option::of(label_name()),
        proptest::collection::vec(label_name(), 0..2),
        proptest::collection::vec(label_name(), 0..2),
        proptest::option::of(0u64..100_000),
        proptest::collection::vec((port(), scrape_settings()), 1..3),
    )
        .prop_map(
            |(
                selector,
                namespace_selector,
                job_label,
                target_labels,
                pod_target_labels,
                sample_limit,
                eps,
            )| {
                ServiceMonitorSpec {
                    selector,
                    namespace_selector,
                    job_label,
                    target_labels,
                    pod_target_labels,
                    sample_limit,
                    endpoints: eps
                        .into_iter()
                        .map(|((port, target_port), scrape)| Endpoint {
                            port,
                            target_port,
                            scrape,
                        })
                        .collect(),
                }
            },
        )
        .boxed()
}

fn pod_monitor() -> BoxedStrategy<PodMonitorSpec> {
    (
        selector(),
        namespace_selector(),
        proptest::option::of(label_name()),
        proptest::collection::vec(label_name(), 0..2),
        proptest::collection::vec((port(), scrape_settings()), 1..3),
    )
        .prop_map(
            |(selector, namespace_selector, job_label, pod_target_labels, eps)| PodMonitorSpec {
                selector,
                namespace_selector,
                job_label,
                pod_target_labels,
                sample_limit: None,
                pod_metrics_endpoints: eps
                    .into_iter()
                    .map(|((port, target_port), scrape)| PodMetricsEndpoint {
                        port,
                        target_port,
                        scrape,
                    })
                    .collect(),
            },
        )
        .boxed()
}

fn promql() -> BoxedStrategy<String> {
    let metric = prop_oneof![
        3 => "[a-z_][a-z0-9_:]{0,6}",
        1 => pick(&["up", "http_requests_total", "a-b", "1x", "sum", "offset", "by"]).prop_map(String::from),
    ];
    let leaf = prop_oneof![
        6 => metric.clone(),
        2 => (metric.clone(), label_name(), pick(&["=", "!=", "=~", "!~"]), prop_oneof![label_value(), regex()])
            .prop_map(|(m, l, op, v)| format!("{m}{{{l}{op}{}}}", serde_json::to_string(&v).unwrap())),
        1 => pick(&["1", "0.5", "-2", "1e3", "0x1F", "Inf", "NaN", "1_000", "time()", "vector(1)", "pi()"])
            .prop_map(String::from),
        1 => "[ -~]{0,8}",
    ];
    let range = pick(&["5m", "1h30m", "300", "1.5m", "0s", "5m:1m", "1d:", "5m+1m"]);
    leaf.prop_recursive(3, 12, 3, move |inner| {
        prop_oneof![
            (
                pick(&[
                    "abs",
                    "ceil",
                    "sort",
                    "histogram_avg",
                    "limitk",
                    "sgn",
                    "nosuch",
                    "info"
                ]),
                inner.clone()
            )
                .prop_map(|(f, e)| format!("{f}({e})")),
            (
                pick(&[
                    "rate",
                    "increase",
                    "avg_over_time",
                    "mad_over_time",
                    "holt_winters",
                    "first_over_time"
                ]),
                inner.clone(),
                range.clone()
            )
                .prop_map(|(f, e, r)| format!("{f}({e}[{r}])")),
            (
                pick(&["sum", "max", "count", "limitk", "group"]),
                pick(&["by", "without"]),
                label_name(),
                inner.clone()
            )
                .prop_map(|(a, m, l, e)| format!("{a} {m} ({l}) ({e})")),
            (
                inner.clone(),
                pick(&[
                    "+",
                    "/",
                    ">",
                    "== bool",
                    "and",
                    "or on()",
                    "unless",
                    "atan2",
                    "+ on(a) group_left(b)",
                    "^"
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|e| format!("({e})")),
            (
                inner.clone(),
                pick(&["offset 5m", "@ 100", "@ start()", "offset -1m"])
            )
                .prop_map(|(e, m)| format!("{e} {m}")),
            (
                pick(&["label_replace", "label_join"]),
                inner.clone(),
                label_name(),
                regex()
            )
                .prop_map(|(f, e, l, r)| {
                    format!(
                        "{f}({e}, {}, \"$1\", \"src\", {})",
                        serde_json::to_string(&l).unwrap(),
                        serde_json::to_string(&r).unwrap()
                    )
                }),
        ]
    })
    .boxed()
}

fn template_text() -> BoxedStrategy<String> {
    proptest::collection::vec(
        prop_oneof![
            3 => "[ -z|~]{0,6}",
            1 => pick(&[
                "{{ $labels.instance }}", "{{ $value | humanize }}", "{{ printf \"%.2f\" $value }}", "{{",
                "}}", "{{ }}", "{{ nosuch }}", "{{ if true }}", "{{ end }}", "{{ else }}", "{{ $x := 1 }}{{ $x }}",
                "{{/* c */}}", "{{- . -}}", "{{ 'c' }}", "{{ \"unterminated }}", "{{ range . }}x{{ end }}",
                "{{ $undefined }}", "{{ (index $labels \"a\") }}", "{{ 1 | 2 }}", "{{ template \"x\" }}",
            ])
            .prop_map(String::from),
        ],
        0..4,
    )
    .prop_map(|parts| parts.concat())
    .boxed()
}

fn rule() -> BoxedStrategy<Rule> {
    (
        prop_oneof![
            Just((Some("job:up:sum".to_string()), None)),
            Just((None, Some("InstanceDown".to_string()))),
            label_name().prop_map(|n| (Some(n), None)),
            label_value().prop_map(|n| (None, Some(n))),
            Just((Some("r".to_string()), Some("A".to_string()))),
            Just((None, None)),
        ],
        promql(),
        duration(),
        duration(),
        proptest::collection::btree_map(label_name(), prop_oneof![label_value(), template_text()], 0..3),
        proptest::collection::btree_map(label_name(), template_text(), 0..3),
    )
        .prop_map(
            |((record, alert), expr, for_, keep_firing_for, labels, annotations)| Rule {
                record,
                alert,
                expr,
                for_,
                keep_firing_for,
                labels,
                annotations,
            },
        )
        .boxed()
}

fn prometheus_rule() -> BoxedStrategy<PrometheusRuleSpec> {
    proptest::collection::vec(
        (
            pick(&["a", "b", "a", ""]),
            duration(),
            proptest::collection::vec(rule(), 0..3),
        )
            .prop_map(|(name, interval, rules)| RuleGroup {
                name: name.into(),
                interval,
                rules,
            }),
        0..2,
    )
    .prop_map(|groups| PrometheusRuleSpec { groups })
    .boxed()
}

#[derive(Debug, Clone)]
struct World {
    prometheus: Prometheus,
    service_monitors: Vec<ServiceMonitor>,
    pod_monitors: Vec<PodMonitor>,
    rules: Vec<PrometheusRule>,
}

fn world() -> BoxedStrategy<World> {
    (
        proptest::option::of(pick(&["namespace", "tenant", "bad-label"])),
        duration(),
        proptest::collection::vec(service_monitor(), 0..4),
        proptest::collection::vec(pod_monitor(), 0..3),
        proptest::collection::vec(prometheus_rule(), 0..3),
    )
        .prop_map(|(enforced, interval, sms, pms, rules)| {
            let prometheus: Prometheus = serde_json::from_value(serde_json::json!({
                "apiVersion": "monitoring.steward.dev/v1alpha1",
                "kind": "Prometheus",
                "metadata": {"name": "main", "namespace": "a"},
                "spec": {
                    "serviceMonitorSelector": {},
                    "serviceMonitorNamespaceSelector": {},
                    "podMonitorSelector": {},
                    "podMonitorNamespaceSelector": {},
                    "ruleSelector": {},
                    "ruleNamespaceSelector": {},
                    "enforcedNamespaceLabel": enforced,
                    "scrapeInterval": interval,
                },
            }))
            .unwrap();
            let ns = |i: usize| if i.is_multiple_of(2) { "a" } else { "b" };
            World {
                prometheus,
                service_monitors: sms
                    .into_iter()
                    .enumerate()
                    .map(|(i, spec)| ServiceMonitor {
                        metadata: meta(ns(i), format!("sm{i}")),
                        spec,
                        status: None,
                    })
                    .collect(),
                pod_monitors: pms
                    .into_iter()
                    .enumerate()
                    .map(|(i, spec)| PodMonitor {
                        metadata: meta(ns(i), format!("pm{i}")),
                        spec,
                        status: None,
                    })
                    .collect(),
                rules: rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, spec)| PrometheusRule {
                        metadata: meta(ns(i), format!("r{i}")),
                        spec,
                        status: None,
                    })
                    .collect(),
            }
        })
        .boxed()
}

#[test]
fn random_specs_never_panic_and_accepted_output_passes_promtool() {
    let promtools = promtools();
    let mut store = Store::new();
    store.insert_secret("a", "creds", "user", "u");
    store.insert_secret("a", "creds", "password", "p@ss: #word");
    store.insert_secret("b", "creds", "user", vec![0xff, 0xfe]);
    // STEWARD_PROPTEST_CASES=5000 explores further; CI keeps the default short.
    let cases = std::env::var("STEWARD_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let accepted_total = std::cell::Cell::new(0usize);
    let rejected_total = std::cell::Cell::new(0usize);
    let reasons = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
    let result = runner.run(&world(), |w| {
        let generated = generate(&Inputs {
            prometheus: &w.prometheus,
            namespaces: &[],
            service_monitors: &w.service_monitors,
            pod_monitors: &w.pod_monitors,
            scrape_configs: &[],
            rules: &w.rules,
            prometheuses: &[],
            store: &store,
        });
        let Ok(generated) = generated else {
            return Ok(());
        };
        accepted_total.set(accepted_total.get() + generated.accepted.len());
        rejected_total.set(rejected_total.get() + generated.rejected.len());
        for r in &generated.rejected {
            *reasons
                .borrow_mut()
                .entry(r.reason.as_str().to_string())
                .or_default() += 1;
        }
        for (release, promtool) in &promtools {
            let tmp = tempfile::tempdir().unwrap();
            promtool_check(promtool, &generated, tmp.path()).map_err(|e| {
                TestCaseError::fail(format!("promtool {release} refused accepted output: {e}"))
            })?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (accepted, rejected) = (accepted_total.get(), rejected_total.get());
    eprintln!(
        "{cases} random cases: {accepted} objects accepted, {rejected} rejected, in {:?}; reasons: {:?}",
        started.elapsed(),
        reasons.borrow()
    );
    assert!(
        accepted > 0 && rejected > 0,
        "the generator should see both valid and invalid objects"
    );
}

#[test]
fn secrets_do_not_leak_into_rules_or_messages() {
    let case = load(
        &bins::repo_root()
            .join("crates/prometheus-operator/testdata/config/remote-write-alerting/input.yaml"),
    );
    let store = Store::from_objects(&case.secrets, &case.config_maps);
    let g = generate(&Inputs {
        prometheus: &case.prometheus,
        namespaces: &[],
        service_monitors: &[],
        pod_monitors: &[],
        scrape_configs: &[],
        rules: &[],
        prometheuses: &[],
        store: &store,
    })
    .unwrap();
    assert!(g.prometheus_yaml.contains("hunter2"));
    let debug = format!("{g:?} {store:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}
