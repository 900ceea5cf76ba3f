//! Federation (`spec.federation`): one job per federated Prometheus, scraping `/federate` of
//! replica 0 of each of its shards, found by pod discovery (never through a load-balanced
//! Service, which would hand each scrape to another replica and mix their series).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;

use super::relabel::filter;
use super::scrape::{Ctx, enforce, intervals, shard};
use super::yaml::Node;
use super::{Problem, Reason, promql, selector_matches};
use crate::OPERATOR_NAME;
use crate::crd::{FederationSpec, Prometheus};

/// Name of the Prometheus container port `/federate` is scraped on.
const WEB_PORT_NAME: &str = "web";

/// Whether `p` federates `other`, whose namespace has `namespace_labels` (`None`: unknown,
/// matched as no labels). A Prometheus never federates itself nor one being deleted; an
/// invalid selector selects nothing. The one rule: the generator and the operator's watch mapping both use it.
pub fn federates(
    p: &Prometheus,
    other: &Prometheus,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(fed) = &p.spec.federation else {
        return false;
    };
    let other_ns = other.namespace().unwrap_or_default();
    if other_ns == p.namespace().unwrap_or_default() && other.name_any() == p.name_any() {
        return false;
    }
    // One being deleted is about to lose its pods.
    if other.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let in_scope = match &fed.prometheus_namespace_selector {
        None => p.namespace().as_deref() == Some(other_ns.as_str()),
        Some(sel) => {
            let empty = BTreeMap::new();
            selector_matches(sel, namespace_labels.unwrap_or(&empty)).unwrap_or(false)
        }
    };
    in_scope && selector_matches(&fed.prometheus_selector, other.labels()).unwrap_or(false)
}

/// The Prometheus objects of `all` that `p` federates, sorted by namespace and name, each
/// once.
pub fn federated<'a>(p: &Prometheus, all: &'a [Prometheus], namespaces: &[Namespace]) -> Vec<&'a Prometheus> {
    let mut out: Vec<&Prometheus> = all
        .iter()
        .filter(|o| {
            let ns = o.namespace().unwrap_or_default();
            let labels = namespaces.iter().find(|n| n.name_any() == ns).map(|n| n.labels());
            federates(p, o, labels)
        })
        .collect();
    out.sort_by_key(|o| (o.namespace(), o.name_any()));
    out.dedup_by_key(|o| (o.namespace(), o.name_any()));
    out
}

/// The `match[]` selectors of `fed`, checked and in canonical form.
fn matches(fed: &FederationSpec) -> Result<Vec<String>, Problem> {
    if fed.match_.is_empty() {
        return Err(Problem::new(
            Reason::InvalidPromQL,
            "federation.match must hold at least one series selector".into(),
        ));
    }
    fed.match_
        .iter()
        .enumerate()
        .map(|(i, m)| {
            promql::series_selector(m)
                .map_err(|e| Problem::new(Reason::InvalidPromQL, format!("federation.match[{i}] {m:?}: {e}")))
        })
        .collect()
}

/// The federation jobs of `p` over `targets` (see [`federated`]). `Err`: the federation spec
/// itself is invalid.
pub(crate) fn jobs(fed: &FederationSpec, targets: &[&Prometheus], ctx: &Ctx) -> Result<Vec<Node>, Problem> {
    let matches = matches(fed)?;
    let mut jobs = Vec::with_capacity(targets.len());
    for t in targets {
        let (ns, name) = (t.namespace().unwrap_or_default(), t.name_any());
        let mut job = Node::map()
            .with("job_name", format!("federate/{ns}/{name}"))
            .with("honor_labels", true)
            .with(
                "kubernetes_sd_configs",
                vec![
                    Node::map()
                        .with("role", "pod")
                        .with("namespaces", Node::map().with("names", Node::strs([ns.clone()]))),
                ],
            );
        intervals(&mut job, fed.interval.as_deref(), None, "federation", ctx)?;
        job.push("metrics_path", "/federate");
        job.push(
            "params",
            Node::map().with("match[]", Node::strs(matches.iter().cloned())),
        );
        let mut rl = Vec::with_capacity(10);
        // The pods of that Prometheus, by the labels the operator gives them.
        for (k, v) in steward_core::labels::owner_selector("prometheus", &name, OPERATOR_NAME) {
            let label = super::names::sanitize_label_name(&k);
            rl.push(filter(
                "keep",
                vec![
                    format!("__meta_kubernetes_pod_label_{label}"),
                    format!("__meta_kubernetes_pod_labelpresent_{label}"),
                ],
                format!("({});true", v.replace('.', "\\.")),
            ));
        }
        // Replica 0 of every shard: `prometheus-<name>-0`, `prometheus-<name>-shard-<n>-0`.
        rl.push(filter(
            "keep",
            vec!["__meta_kubernetes_pod_name".into()],
            format!("prometheus-{}(-shard-[0-9]+)?-0", name.replace('.', "\\.")),
        ));
        rl.push(filter(
            "keep",
            vec!["__meta_kubernetes_pod_container_port_name".into()],
            WEB_PORT_NAME,
        ));
        rl.push(filter(
            "drop",
            vec!["__meta_kubernetes_pod_phase".into()],
            "(Failed|Succeeded)",
        ));
        shard(&mut rl, ctx);
        enforce(&mut rl, ctx, &ns);
        job.push("relabel_configs", rl);
        if ctx.enforced_label.is_some() {
            let mut metric = Vec::new();
            enforce(&mut metric, ctx, &ns);
            job.push("metric_relabel_configs", metric);
        }
        jobs.push(job);
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Generated, Inputs, Store, generate};

    fn prom(ns: &str, name: &str, labels: &[(&str, &str)], spec: serde_json::Value) -> Prometheus {
        let mut p = Prometheus::new(name, serde_json::from_value(spec).unwrap());
        p.metadata.namespace = Some(ns.into());
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p
    }

    fn global(fed: serde_json::Value) -> Prometheus {
        prom(
            "mon",
            "global",
            &[("fed", "y")],
            serde_json::json!({ "federation": fed }),
        )
    }

    fn gen_with(p: &Prometheus, others: &[Prometheus]) -> Result<Generated, Problem> {
        let store = Store::new();
        generate(&Inputs {
            prometheus: p,
            namespaces: &[],
            service_monitors: &[],
            pod_monitors: &[],
            scrape_configs: &[],
            rules: &[],
            prometheuses: others,
            store: &store,
        })
    }

    #[test]
    fn never_itself_and_only_what_the_selectors_pick() {
        let g =
            global(serde_json::json!({"prometheusSelector": {"matchLabels": {"fed": "y"}}, "match": ["up"]}));
        let others = vec![
            g.clone(),
            prom("mon", "team", &[("fed", "y")], serde_json::json!({})),
            prom("mon", "quiet", &[], serde_json::json!({})),
            prom("other", "far", &[("fed", "y")], serde_json::json!({})),
        ];
        let picked: Vec<String> = federated(&g, &others, &[]).iter().map(|p| p.name_any()).collect();
        // Unset namespace selector: only the Prometheus' own namespace.
        assert_eq!(picked, vec!["team"]);
        let yaml = gen_with(&g, &others).unwrap().prometheus_yaml;
        assert!(yaml.contains("job_name: federate/mon/team"), "{yaml}");
        assert!(!yaml.contains("federate/mon/global"), "{yaml}");
        assert!(yaml.contains("honor_labels: true"));
        // `{}` namespaces: every namespace, still never itself.
        let all = global(serde_json::json!({
            "prometheusSelector": {}, "prometheusNamespaceSelector": {}, "match": ["up"]
        }));
        let picked: Vec<String> = federated(&all, &others, &[])
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(picked, vec!["quiet", "team", "far"]);
        // Nor one being deleted.
        let mut going = others[1].clone();
        going.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1).unwrap(),
        ));
        assert!(!federates(&g, &going, None));
        // Without federation nothing is federated.
        let plain = prom("mon", "plain", &[], serde_json::json!({}));
        assert!(!federates(&plain, &others[1], None));
    }

    #[test]
    fn match_selectors_must_be_series_selectors() {
        let others = vec![prom("mon", "team", &[("fed", "y")], serde_json::json!({}))];
        for bad in ["rate(up[5m])", "up[5m]", "up offset 5m", "{}", "up{", ""] {
            let g = global(serde_json::json!({"prometheusSelector": {}, "match": ["up", bad]}));
            let err = gen_with(&g, &others).unwrap_err();
            assert_eq!(err.reason, Reason::InvalidPromQL, "{bad}");
            assert!(
                err.message.contains("federation.match[1]"),
                "{bad}: {}",
                err.message
            );
        }
        let none = global(serde_json::json!({"prometheusSelector": {}, "match": []}));
        assert_eq!(
            gen_with(&none, &others).unwrap_err().reason,
            Reason::InvalidPromQL
        );
        let bad_interval =
            global(serde_json::json!({"prometheusSelector": {}, "match": ["up"], "interval": "1x"}));
        assert_eq!(
            gen_with(&bad_interval, &others).unwrap_err().reason,
            Reason::InvalidDuration
        );
    }

    #[test]
    fn a_sharded_federator_shards_its_federation_targets_too() {
        let mut g = global(serde_json::json!({"prometheusSelector": {}, "match": ["up"]}));
        g.spec.shards = 2;
        let others = vec![prom("mon", "team", &[], serde_json::json!({}))];
        let yaml = gen_with(&g, &others).unwrap().prometheus_yaml;
        assert!(yaml.contains("modulus: 2"), "{yaml}");
        assert!(yaml.contains("shard: \"$(SHARD)\""), "{yaml}");
    }
}
