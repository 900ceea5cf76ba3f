//! How long `config::generate` takes for 100, 1,000 and 5,000 ServiceMonitors with three
//! endpoints each, spread over 100 namespaces (target: under 50 ms for 1,000 in release).
//!
//! `cargo bench -p prometheus-operator --bench config_gen`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use prometheus_operator::config::{Inputs, Store, generate};
use prometheus_operator::crd::common::{RelabelConfig, ScrapeSettings};
use prometheus_operator::crd::{Endpoint, Prometheus, ServiceMonitor, ServiceMonitorSpec};

const NAMESPACES: usize = 100;

fn namespaces() -> Vec<Namespace> {
    (0..NAMESPACES)
        .map(|i| Namespace {
            metadata: ObjectMeta {
                name: Some(format!("team-{i}")),
                labels: Some(BTreeMap::from([(
                    "monitoring".to_string(),
                    "enabled".to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect()
}

fn service_monitor(i: usize) -> ServiceMonitor {
    let scrape = |interval: Option<&str>| ScrapeSettings {
        interval: interval.map(String::from),
        ..Default::default()
    };
    let mut relabeled = scrape(Some("30s"));
    relabeled.relabelings = vec![RelabelConfig {
        source_labels: vec!["__meta_kubernetes_pod_node_name".into()],
        target_label: Some("node_name".into()),
        ..Default::default()
    }];
    relabeled.metric_relabelings = vec![RelabelConfig {
        source_labels: vec!["__name__".into()],
        regex: Some("go_gc_.*".into()),
        action: Some("drop".into()),
        ..Default::default()
    }];
    ServiceMonitor {
        metadata: ObjectMeta {
            name: Some(format!("app-{i}")),
            namespace: Some(format!("team-{}", i % NAMESPACES)),
            labels: Some(BTreeMap::from([("release".to_string(), "prod".to_string())])),
            ..Default::default()
        },
        spec: ServiceMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".to_string(),
                    format!("app-{i}"),
                )])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["web".into(), "api".into()]),
                }]),
            },
            namespace_selector: None,
            job_label: Some("app.kubernetes.io/component".into()),
            target_labels: vec!["team".into()],
            pod_target_labels: vec![],
            sample_limit: Some(10_000),
            endpoints: vec![
                Endpoint {
                    port: Some("web".into()),
                    target_port: None,
                    scrape: scrape(None),
                },
                Endpoint {
                    port: Some("metrics".into()),
                    target_port: None,
                    scrape: relabeled,
                },
                Endpoint {
                    port: None,
                    target_port: Some(IntOrString::Int(9100)),
                    scrape: scrape(Some("1m")),
                },
            ],
        },
        status: None,
    }
}

fn prometheus() -> Prometheus {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "main", "namespace": "monitoring"},
        "spec": {
            "serviceMonitorSelector": {"matchLabels": {"release": "prod"}},
            "serviceMonitorNamespaceSelector": {"matchLabels": {"monitoring": "enabled"}},
            "enforcedNamespaceLabel": "namespace",
        },
    }))
    .unwrap()
}

fn main() {
    let namespaces = namespaces();
    let prom = prometheus();
    let store = Store::new();
    println!("config_gen: ServiceMonitors x 3 endpoints over {NAMESPACES} namespaces");
    for (count, rounds) in [(100usize, 50usize), (1_000, 20), (5_000, 5)] {
        let monitors: Vec<ServiceMonitor> = (0..count).map(service_monitor).collect();
        let inputs = Inputs {
            prometheus: &prom,
            namespaces: &namespaces,
            service_monitors: &monitors,
            pod_monitors: &[],
            scrape_configs: &[],
            rules: &[],
            prometheuses: &[],
            store: &store,
        };
        // Warm up allocator and caches.
        let first = generate(&inputs).unwrap();
        assert_eq!(first.accepted.len(), count, "{:?}", first.rejected.first());
        let mut times: Vec<Duration> = (0..rounds)
            .map(|_| {
                let t = Instant::now();
                let g = generate(&inputs).unwrap();
                let elapsed = t.elapsed();
                std::hint::black_box(g);
                elapsed
            })
            .collect();
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{count:>6} ServiceMonitors: median {:8.2} ms  min {:8.2} ms  max {:8.2} ms  ({} jobs, {:.1} MiB of YAML)",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1]),
            count * 3,
            first.prometheus_yaml.len() as f64 / (1024.0 * 1024.0),
        );
    }
}
