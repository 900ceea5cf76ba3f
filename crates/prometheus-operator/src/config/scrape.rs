//! Scrape jobs of ServiceMonitors, PodMonitors and ScrapeConfigs, validated while they are
//! built: a job either comes out complete and valid, or the object is rejected with the first
//! problem found.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::names::{is_dns_label, is_k8s_label_key, is_k8s_label_value, is_label_name, sanitize_label_name};
use super::relabel::{copy, filter, relabel_all, set};
use super::rules::string_map;
use super::secrets::Store;
use super::yaml::Node;
use super::{Problem, Reason, duration};
use crate::crd::common::{NamespaceSelector, ScrapeSettings};
use crate::crd::{PodMonitor, ScrapeConfig, ServiceMonitor};

/// What every job needs from the Prometheus being configured.
pub(crate) struct Ctx<'a> {
    pub store: &'a Store,
    pub enforced_label: Option<&'a str>,
    pub global_interval: Duration,
    /// The group of the objects being rendered; it marks their job names.
    pub group: super::Group,
    /// `spec.shards`; above 1 every job keeps only its shard's targets.
    pub shards: u32,
}

/// Name of the environment variable holding a pod's shard number, which the config-reloader
/// expands in the configuration.
pub const SHARD_ENV: &str = "SHARD";
/// What the config-reloader replaces with the pod's shard number.
pub const SHARD_PLACEHOLDER: &str = "$(SHARD)";
/// The temporary label holding a target's hash modulo the shard count (upstream's name).
const SHARD_HASH_LABEL: &str = "__tmp_hash";

/// With more than one shard, the relabelings that keep only this shard's targets: the hash of
/// `__address__` modulo the shard count must equal the shard number, which the reloader fills
/// in per StatefulSet. They come after the user's relabelings (which may change the address)
/// and before the enforced namespace label (always last).
pub(crate) fn shard(list: &mut Vec<Node>, ctx: &Ctx) {
    if ctx.shards <= 1 {
        return;
    }
    list.push(
        Node::map()
            .with("source_labels", Node::strs(["__address__"]))
            .with("target_label", SHARD_HASH_LABEL)
            .with("modulus", u64::from(ctx.shards))
            .with("action", "hashmod"),
    );
    list.push(filter("keep", vec![SHARD_HASH_LABEL.into()], SHARD_PLACEHOLDER));
}

/// Relabelings every ServiceMonitor or PodMonitor job has, built once and shared.
static TMP_JOB: LazyLock<Node> = LazyLock::new(|| copy("job", "__tmp_prometheus_job_name").shared());
static NAMESPACE: LazyLock<Node> =
    LazyLock::new(|| copy("__meta_kubernetes_namespace", "namespace").shared());
static SERVICE: LazyLock<Node> = LazyLock::new(|| copy("__meta_kubernetes_service_name", "service").shared());
static POD: LazyLock<Node> = LazyLock::new(|| copy("__meta_kubernetes_pod_name", "pod").shared());
static CONTAINER: LazyLock<Node> =
    LazyLock::new(|| copy("__meta_kubernetes_pod_container_name", "container").shared());
static RUNNING: LazyLock<Node> = LazyLock::new(|| {
    filter(
        "drop",
        vec!["__meta_kubernetes_pod_phase".into()],
        "(Failed|Succeeded)",
    )
    .shared()
});
static JOB_FROM_SERVICE: LazyLock<Node> = LazyLock::new(|| {
    Node::map()
        .with("source_labels", Node::strs(["__meta_kubernetes_service_name"]))
        .with("target_label", "job")
        .with("replacement", "${1}")
        .shared()
});
/// `node` and `pod` from the EndpointSlice address' target.
static ADDRESS_TARGETS: LazyLock<[Node; 2]> = LazyLock::new(|| {
    [("Node;(.*)", "node"), ("Pod;(.*)", "pod")].map(|(regex, target)| {
        Node::map()
            .with(
                "source_labels",
                Node::strs([
                    "__meta_kubernetes_endpointslice_address_target_kind",
                    "__meta_kubernetes_endpointslice_address_target_name",
                ]),
            )
            .with("separator", ";")
            .with("regex", regex)
            .with("replacement", "${1}")
            .with("target_label", target)
            .shared()
    })
});

fn shared(nodes: Vec<Node>) -> Vec<Node> {
    nodes.into_iter().map(Node::shared).collect()
}

fn problem(reason: Reason, msg: String) -> Problem {
    Problem::new(reason, msg)
}

/// Parses an optional duration field; `Some("")` counts as unset.
fn opt_duration<'s>(value: Option<&'s str>, field: &str) -> Result<Option<(&'s str, Duration)>, Problem> {
    match value.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => match duration::parse(v) {
            Some(d) => Ok(Some((v, d))),
            None => Err(problem(
                Reason::InvalidDuration,
                format!("{field}: {v:?} is not a valid duration"),
            )),
        },
    }
}

/// Writes `scrape_interval` and `scrape_timeout`, refusing a timeout longer than the interval
/// the job ends up with (its own, or the global one; Prometheus treats `0` as unset).
pub(crate) fn intervals(
    job: &mut Node,
    interval: Option<&str>,
    timeout: Option<&str>,
    field: &str,
    ctx: &Ctx,
) -> Result<(), Problem> {
    let interval = opt_duration(interval, &format!("{field}.interval"))?;
    let timeout = opt_duration(timeout, &format!("{field}.scrapeTimeout"))?;
    let effective = interval
        .map(|(_, d)| d)
        .filter(|d| !d.is_zero())
        .unwrap_or(ctx.global_interval);
    if let Some((t, d)) = timeout
        && d > effective
    {
        return Err(problem(
            Reason::InvalidScrapeTimeout,
            format!("{field}: scrapeTimeout {t:?} is longer than the scrape interval ({effective:?})"),
        ));
    }
    if let Some((i, _)) = interval {
        job.push("scrape_interval", i.to_string());
    }
    if let Some((t, _)) = timeout {
        job.push("scrape_timeout", t.to_string());
    }
    Ok(())
}

/// `kubernetes_sd_configs` for `role`, restricted to the namespaces the monitor asks for:
/// `any` → no restriction; `matchNames` → those; otherwise the monitor's own namespace.
fn kubernetes_sd(role: &'static str, sel: Option<&NamespaceSelector>, own_ns: &str) -> Node {
    let mut sd = Node::map().with("role", role);
    let names: Option<Vec<String>> = match sel {
        Some(s) if s.any => None,
        Some(s) if !s.match_names.is_empty() => Some(s.match_names.clone()),
        _ => Some(vec![own_ns.to_string()]),
    };
    if let Some(names) = names {
        sd.push("namespaces", Node::map().with("names", Node::strs(names)));
    }
    Node::Seq(vec![sd])
}

/// Relabelings keeping only targets whose Service or Pod labels match `sel`, as upstream does.
/// Values are regex-quoted (upstream puts them in the regex verbatim, so a `.` in a value
/// matched any character).
fn selector_relabelings(sel: &LabelSelector, object: &str, field: &str) -> Result<Vec<Node>, Problem> {
    let bad = |msg: String| problem(Reason::InvalidSelector, format!("{field}: {msg}"));
    let label = |k: &str| format!("__meta_kubernetes_{object}_label_{}", sanitize_label_name(k));
    let present = |k: &str| {
        format!(
            "__meta_kubernetes_{object}_labelpresent_{}",
            sanitize_label_name(k)
        )
    };
    let check_key = |k: &str| {
        if is_k8s_label_key(k) {
            Ok(())
        } else {
            Err(bad(format!("{k:?} is not a valid label key")))
        }
    };
    let quoted = |values: &[String]| -> Result<String, Problem> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            if !is_k8s_label_value(v) {
                return Err(bad(format!("{v:?} is not a valid label value")));
            }
            out.push(v.replace('.', "\\."));
        }
        Ok(format!("({});true", out.join("|")))
    };
    let mut out = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        check_key(k)?;
        out.push(filter(
            "keep",
            vec![label(k), present(k)],
            quoted(std::slice::from_ref(v))?,
        ));
    }
    for req in sel.match_expressions.iter().flatten() {
        check_key(&req.key)?;
        let values = req.values.as_deref().unwrap_or_default();
        let k = req.key.as_str();
        match (req.operator.as_str(), values.is_empty()) {
            ("In", false) => out.push(filter("keep", vec![label(k), present(k)], quoted(values)?)),
            ("NotIn", false) => out.push(filter("drop", vec![label(k), present(k)], quoted(values)?)),
            ("Exists", true) => out.push(filter("keep", vec![present(k)], "true")),
            ("DoesNotExist", true) => out.push(filter("drop", vec![present(k)], "true")),
            ("In" | "NotIn", true) => {
                return Err(bad(format!("operator {} on {k:?} needs values", req.operator)));
            }
            ("Exists" | "DoesNotExist", false) => {
                return Err(bad(format!("operator {} on {k:?} takes no values", req.operator)));
            }
            (op, _) => return Err(bad(format!("unknown operator {op:?} on {k:?}"))),
        }
    }
    Ok(out)
}

/// A port given by name or number: validated and returned as text.
fn port_text(port: &IntOrString, field: &str) -> Result<String, Problem> {
    match port {
        IntOrString::Int(n) if (1..=65535).contains(n) => Ok(n.to_string()),
        IntOrString::String(s) if is_dns_label(s) => Ok(s.clone()),
        IntOrString::Int(n) => Err(problem(
            Reason::InvalidField,
            format!("{field}: port {n} is out of range"),
        )),
        IntOrString::String(s) => Err(problem(
            Reason::InvalidField,
            format!("{field}: {s:?} is not a valid port name"),
        )),
    }
}

fn port_name(port: Option<&str>, field: &str) -> Result<Option<String>, Problem> {
    match port.filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) if is_dns_label(p) => Ok(Some(p.to_string())),
        Some(p) => Err(problem(
            Reason::InvalidField,
            format!("{field}.port: {p:?} is not a valid port name"),
        )),
    }
}

/// The enforced-namespace relabeling, always last so nothing after it can undo it.
pub(crate) fn enforce(list: &mut Vec<Node>, ctx: &Ctx, ns: &str) {
    if let Some(label) = ctx.enforced_label {
        list.push(set(label.to_string(), ns.to_string()));
    }
}

/// The parts of an endpoint's job that differ between ServiceMonitors and PodMonitors.
struct EndpointJob<'a> {
    name: String,
    sd: Node,
    settings: &'a ScrapeSettings,
    /// Our own relabelings; the user's come after them.
    relabelings: Vec<Node>,
    sample_limit: Option<u64>,
}

/// Scrape settings shared by ServiceMonitor and PodMonitor endpoints, written in upstream's
/// order around the discovery block.
fn endpoint_job(parts: EndpointJob, ns: &str, field: &str, ctx: &Ctx) -> Result<Node, Problem> {
    let EndpointJob {
        name,
        sd,
        settings: s,
        mut relabelings,
        sample_limit,
    } = parts;
    let mut job = Node::map().with("job_name", name);
    job.push("honor_labels", s.honor_labels.unwrap_or(false));
    if let Some(h) = s.honor_timestamps {
        job.push("honor_timestamps", h);
    }
    job.push("kubernetes_sd_configs", sd);
    intervals(
        &mut job,
        s.interval.as_deref(),
        s.scrape_timeout.as_deref(),
        field,
        ctx,
    )?;
    if let Some(path) = s.path.as_deref().filter(|p| !p.is_empty()) {
        job.push("metrics_path", metrics_path(path, field)?);
    }
    if !s.params.is_empty() {
        let params = s
            .params
            .iter()
            .map(|(k, v)| (Cow::Owned(k.clone()), Node::strs(v.iter().cloned())))
            .collect();
        job.push("params", Node::Map(params));
    }
    if let Some(scheme) = s.scheme.as_deref().filter(|p| !p.is_empty()) {
        job.push("scheme", scheme_text(scheme, field)?);
    }
    if let Some(tls) = &s.tls_config {
        job.push(
            "tls_config",
            ctx.store.tls_config(ns, tls, &format!("{field}.tlsConfig"))?,
        );
    }
    if s.basic_auth.is_some() && s.authorization.is_some() {
        return Err(problem(
            Reason::InvalidAuth,
            format!("{field}: only one of basicAuth and authorization may be set"),
        ));
    }
    if let Some(auth) = &s.basic_auth {
        job.push(
            "basic_auth",
            ctx.store.basic_auth(ns, auth, &format!("{field}.basicAuth"))?,
        );
    }
    if let Some(auth) = &s.authorization {
        job.push(
            "authorization",
            ctx.store
                .authorization(ns, auth, &format!("{field}.authorization"))?,
        );
    }
    relabelings.extend(relabel_all(&s.relabelings, &format!("{field}.relabelings"))?);
    shard(&mut relabelings, ctx);
    enforce(&mut relabelings, ctx, ns);
    job.push("relabel_configs", relabelings);
    if let Some(limit) = sample_limit {
        job.push("sample_limit", limit);
    }
    let mut metric = relabel_all(&s.metric_relabelings, &format!("{field}.metricRelabelings"))?;
    enforce(&mut metric, ctx, ns);
    if !metric.is_empty() {
        job.push("metric_relabel_configs", metric);
    }
    Ok(job)
}

fn metrics_path(path: &str, field: &str) -> Result<String, Problem> {
    if path.starts_with('/') && !path.chars().any(char::is_control) {
        Ok(path.to_string())
    } else {
        Err(problem(
            Reason::InvalidField,
            format!("{field}: path {path:?} must start with / and contain no control characters"),
        ))
    }
}

fn scheme_text(scheme: &str, field: &str) -> Result<&'static str, Problem> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Ok("http"),
        "https" => Ok("https"),
        _ => Err(problem(
            Reason::InvalidField,
            format!("{field}: scheme must be http or https"),
        )),
    }
}

/// `http(s)://host[...]` without spaces or control characters.
pub(crate) fn url_ok(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// Copies of Service or Pod labels onto the target (`targetLabels`, `podTargetLabels`).
fn label_copies(labels: &[String], object: &str, field: &str) -> Result<Vec<Node>, Problem> {
    labels
        .iter()
        .map(|l| {
            let target = sanitize_label_name(l);
            if l.is_empty() || !is_label_name(&target) {
                return Err(problem(
                    Reason::InvalidLabelName,
                    format!("{field}: {l:?} does not make a valid label name"),
                ));
            }
            Ok(Node::map()
                .with(
                    "source_labels",
                    Node::strs([format!("__meta_kubernetes_{object}_label_{target}")]),
                )
                .with("target_label", target)
                .with("regex", "(.+)")
                .with("replacement", "${1}"))
        })
        .collect()
}

fn job_label(label: Option<&str>, object: &str) -> Option<Node> {
    label.filter(|l| !l.is_empty()).map(|l| {
        Node::map()
            .with(
                "source_labels",
                Node::strs([format!(
                    "__meta_kubernetes_{object}_label_{}",
                    sanitize_label_name(l)
                )]),
            )
            .with("target_label", "job")
            .with("regex", "(.+)")
            .with("replacement", "${1}")
    })
}

/// The port filter and the `endpoint` label value of an endpoint. `name_source` is the
/// discovery label holding port names for `port`.
fn port_relabeling(
    port: Option<&str>,
    target_port: Option<&IntOrString>,
    name_source: &str,
    field: &str,
) -> Result<(Option<Node>, Option<String>), Problem> {
    if let Some(p) = port_name(port, field)? {
        return Ok((
            Some(filter("keep", vec![name_source.to_string()], p.clone())),
            Some(p),
        ));
    }
    match target_port {
        None => Ok((None, None)),
        Some(tp) => {
            let text = port_text(tp, &format!("{field}.targetPort"))?;
            let source = match tp {
                IntOrString::Int(_) => "__meta_kubernetes_pod_container_port_number",
                IntOrString::String(_) => "__meta_kubernetes_pod_container_port_name",
            };
            Ok((
                Some(filter("keep", vec![source.to_string()], text.clone())),
                Some(text),
            ))
        }
    }
}

/// One job per endpoint of a ServiceMonitor, named `serviceMonitor/<ns>/<name>/<i>`, using
/// EndpointSlice discovery.
pub(crate) fn service_monitor(sm: &ServiceMonitor, ctx: &Ctx) -> Result<Vec<Node>, Problem> {
    let ns = sm.namespace().unwrap_or_default();
    let name = sm.name_any();
    let spec = &sm.spec;
    // Built once per monitor and shared by its endpoints' jobs.
    let selector = shared(selector_relabelings(&spec.selector, "service", "selector")?);
    let target_labels = shared(label_copies(&spec.target_labels, "service", "targetLabels")?);
    let pod_target_labels = shared(label_copies(&spec.pod_target_labels, "pod", "podTargetLabels")?);
    let job_label = job_label(spec.job_label.as_deref(), "service").map(Node::shared);
    if spec.endpoints.is_empty() {
        return Err(problem(
            Reason::InvalidField,
            "endpoints must not be empty".into(),
        ));
    }
    let mut jobs = Vec::with_capacity(spec.endpoints.len());
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let field = format!("endpoints[{i}]");
        let mut rl = Vec::with_capacity(24);
        rl.push(TMP_JOB.clone());
        rl.extend(selector.iter().cloned());
        let (port_filter, endpoint) = port_relabeling(
            ep.port.as_deref(),
            ep.target_port.as_ref(),
            "__meta_kubernetes_endpointslice_port_name",
            &field,
        )?;
        rl.extend(port_filter);
        rl.extend(ADDRESS_TARGETS.iter().cloned());
        rl.push(NAMESPACE.clone());
        rl.push(SERVICE.clone());
        rl.push(POD.clone());
        rl.push(CONTAINER.clone());
        rl.push(RUNNING.clone());
        rl.extend(target_labels.iter().cloned());
        rl.extend(pod_target_labels.iter().cloned());
        rl.push(JOB_FROM_SERVICE.clone());
        rl.extend(job_label.clone());
        if let Some(e) = endpoint {
            rl.push(set("endpoint", e));
        }
        let sd = kubernetes_sd("endpointslice", spec.namespace_selector.as_ref(), &ns);
        let parts = EndpointJob {
            name: format!("{}/{ns}/{name}/{i}", ctx.group.job_kind("serviceMonitor")),
            sd,
            settings: &ep.scrape,
            relabelings: rl,
            sample_limit: spec.sample_limit,
        };
        jobs.push(endpoint_job(parts, &ns, &field, ctx)?);
    }
    Ok(jobs)
}

/// One job per endpoint of a PodMonitor, named `podMonitor/<ns>/<name>/<i>`, using Pod
/// discovery.
pub(crate) fn pod_monitor(pm: &PodMonitor, ctx: &Ctx) -> Result<Vec<Node>, Problem> {
    let ns = pm.namespace().unwrap_or_default();
    let name = pm.name_any();
    let spec = &pm.spec;
    let selector = shared(selector_relabelings(&spec.selector, "pod", "selector")?);
    let pod_target_labels = shared(label_copies(&spec.pod_target_labels, "pod", "podTargetLabels")?);
    let job_label = job_label(spec.job_label.as_deref(), "pod").map(Node::shared);
    if spec.pod_metrics_endpoints.is_empty() {
        return Err(problem(
            Reason::InvalidField,
            "podMetricsEndpoints must not be empty".into(),
        ));
    }
    let mut jobs = Vec::with_capacity(spec.pod_metrics_endpoints.len());
    for (i, ep) in spec.pod_metrics_endpoints.iter().enumerate() {
        let field = format!("podMetricsEndpoints[{i}]");
        let mut rl = Vec::with_capacity(20);
        rl.push(TMP_JOB.clone());
        rl.push(RUNNING.clone());
        rl.extend(selector.iter().cloned());
        let (port_filter, endpoint) = port_relabeling(
            ep.port.as_deref(),
            ep.target_port.as_ref(),
            "__meta_kubernetes_pod_container_port_name",
            &field,
        )?;
        rl.extend(port_filter);
        rl.push(NAMESPACE.clone());
        rl.push(CONTAINER.clone());
        rl.push(POD.clone());
        rl.extend(pod_target_labels.iter().cloned());
        rl.push(set("job", format!("{ns}/{name}")));
        rl.extend(job_label.clone());
        if let Some(e) = endpoint {
            rl.push(set("endpoint", e));
        }
        let sd = kubernetes_sd("pod", spec.namespace_selector.as_ref(), &ns);
        let parts = EndpointJob {
            name: format!("{}/{ns}/{name}/{i}", ctx.group.job_kind("podMonitor")),
            sd,
            settings: &ep.scrape,
            relabelings: rl,
            sample_limit: spec.sample_limit,
        };
        jobs.push(endpoint_job(parts, &ns, &field, ctx)?);
    }
    Ok(jobs)
}

/// The job of a ScrapeConfig, named `scrapeConfig/<ns>/<name>`; `jobName` sets the `job` label.
pub(crate) fn scrape_config(sc: &ScrapeConfig, ctx: &Ctx) -> Result<Node, Problem> {
    let ns = sc.namespace().unwrap_or_default();
    let spec = &sc.spec;
    let kind = ctx.group.job_kind("scrapeConfig");
    let mut job = Node::map().with("job_name", format!("{kind}/{ns}/{}", sc.name_any()));
    if let Some(path) = spec.metrics_path.as_deref().filter(|p| !p.is_empty()) {
        job.push("metrics_path", metrics_path(path, "metricsPath")?);
    }
    intervals(
        &mut job,
        spec.scrape_interval.as_deref(),
        spec.scrape_timeout.as_deref(),
        "scrapeConfig",
        ctx,
    )?;
    if let Some(scheme) = spec.scheme.as_deref().filter(|p| !p.is_empty()) {
        job.push("scheme", scheme_text(scheme, "scheme")?);
    }
    if !spec.static_configs.is_empty() {
        let mut list = Vec::with_capacity(spec.static_configs.len());
        for (i, st) in spec.static_configs.iter().enumerate() {
            let field = format!("staticConfigs[{i}]");
            if let Some(t) = st.targets.iter().find(|t| !target_ok(t)) {
                return Err(problem(
                    Reason::InvalidField,
                    format!("{field}: target {t:?} is not host:port"),
                ));
            }
            if let Some(l) = st.labels.keys().find(|l| !is_label_name(l)) {
                return Err(problem(
                    Reason::InvalidLabelName,
                    format!("{field}.labels: {l:?} is not a valid label name"),
                ));
            }
            let mut node = Node::map().with("targets", Node::strs(st.targets.iter().cloned()));
            if !st.labels.is_empty() {
                node.push("labels", string_map(st.labels.clone()));
            }
            list.push(node);
        }
        job.push("static_configs", list);
    }
    if !spec.file_sd_configs.is_empty() {
        let mut list = Vec::with_capacity(spec.file_sd_configs.len());
        for (i, f) in spec.file_sd_configs.iter().enumerate() {
            let field = format!("fileSDConfigs[{i}]");
            if f.files.is_empty() {
                return Err(problem(
                    Reason::InvalidField,
                    format!("{field}.files must not be empty"),
                ));
            }
            if let Some(bad) = f.files.iter().find(|p| !file_sd_path_ok(p)) {
                return Err(problem(
                    Reason::InvalidField,
                    format!(
                        "{field}: {bad:?} must end in .json, .yml or .yaml, with * only in the file name"
                    ),
                ));
            }
            let mut node = Node::map().with("files", Node::strs(f.files.iter().cloned()));
            refresh(&mut node, f.refresh_interval.as_deref(), &field)?;
            list.push(node);
        }
        job.push("file_sd_configs", list);
    }
    if !spec.http_sd_configs.is_empty() {
        let mut list = Vec::with_capacity(spec.http_sd_configs.len());
        for (i, h) in spec.http_sd_configs.iter().enumerate() {
            let field = format!("httpSDConfigs[{i}]");
            if !url_ok(&h.url) {
                return Err(problem(
                    Reason::InvalidField,
                    format!("{field}.url must be an http(s) URL"),
                ));
            }
            let mut node = Node::map().with("url", h.url.clone());
            refresh(&mut node, h.refresh_interval.as_deref(), &field)?;
            list.push(node);
        }
        job.push("http_sd_configs", list);
    }
    if !spec.ec2_sd_configs.is_empty() {
        let mut list = Vec::with_capacity(spec.ec2_sd_configs.len());
        for (i, e) in spec.ec2_sd_configs.iter().enumerate() {
            let field = format!("ec2SDConfigs[{i}]");
            // Without a region Prometheus asks the EC2 metadata service at load time, which fails
            // outside EC2 and makes the check depend on where it runs.
            let region = e
                .region
                .as_deref()
                .filter(|r| !r.is_empty())
                .ok_or_else(|| problem(Reason::InvalidField, format!("{field}.region must be set")))?;
            let mut node = Node::map().with("region", region.to_string());
            match (&e.access_key, &e.secret_key) {
                (Some(ak), Some(sk)) => {
                    node.push(
                        "access_key",
                        ctx.store.secret(&ns, ak, &format!("{field}.accessKey"))?,
                    );
                    node.push(
                        "secret_key",
                        ctx.store.secret(&ns, sk, &format!("{field}.secretKey"))?,
                    );
                }
                (None, None) => {}
                _ => {
                    return Err(problem(
                        Reason::InvalidAuth,
                        format!("{field}: accessKey and secretKey must be set together"),
                    ));
                }
            }
            refresh(&mut node, e.refresh_interval.as_deref(), &field)?;
            if let Some(port) = e.port {
                if !(1..=65535).contains(&port) {
                    return Err(problem(
                        Reason::InvalidField,
                        format!("{field}.port {port} is out of range"),
                    ));
                }
                node.push("port", i64::from(port));
            }
            if !e.filters.is_empty() {
                let mut filters = Vec::with_capacity(e.filters.len());
                for f in &e.filters {
                    if f.name.is_empty() || f.values.is_empty() {
                        return Err(problem(
                            Reason::InvalidField,
                            format!("{field}.filters: every filter needs a name and values"),
                        ));
                    }
                    filters.push(
                        Node::map()
                            .with("name", f.name.clone())
                            .with("values", Node::strs(f.values.iter().cloned())),
                    );
                }
                node.push("filters", filters);
            }
            list.push(node);
        }
        job.push("ec2_sd_configs", list);
    }
    let mut rl = vec![TMP_JOB.clone()];
    if let Some(job_name) = spec.job_name.as_deref().filter(|j| !j.is_empty()) {
        rl.push(
            Node::map()
                .with("target_label", "job")
                .with("action", "replace")
                .with("replacement", job_name.to_string()),
        );
    }
    rl.extend(relabel_all(&spec.relabelings, "relabelings")?);
    shard(&mut rl, ctx);
    enforce(&mut rl, ctx, &ns);
    job.push("relabel_configs", rl);
    let mut metric = relabel_all(&spec.metric_relabelings, "metricRelabelings")?;
    enforce(&mut metric, ctx, &ns);
    if !metric.is_empty() {
        job.push("metric_relabel_configs", metric);
    }
    Ok(job)
}

fn refresh(node: &mut Node, value: Option<&str>, field: &str) -> Result<(), Problem> {
    if let Some((v, _)) = opt_duration(value, &format!("{field}.refreshInterval"))? {
        node.push("refresh_interval", v.to_string());
    }
    Ok(())
}

/// `host:port` (or a bare host) without spaces, slashes or control characters.
fn target_ok(t: &str) -> bool {
    !t.is_empty() && !t.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/')
}

/// Prometheus' rule for file discovery paths: `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`.
fn file_sd_path_ok(p: &str) -> bool {
    let Some((stem, ext)) = p.rsplit_once('.') else {
        return false;
    };
    if !matches!(ext, "json" | "yml" | "yaml" | "JSON" | "YML" | "YAML") {
        return false;
    }
    match stem.split_once('*') {
        None => true,
        Some((_, after)) => !after.contains('*') && !after.contains('/'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sd_paths() {
        assert!(file_sd_path_ok("/etc/sd/targets.json"));
        assert!(file_sd_path_ok("/etc/sd/*.yaml"));
        assert!(!file_sd_path_ok("/etc/*/targets.json"));
        assert!(!file_sd_path_ok("/etc/sd/targets.txt"));
        assert!(!file_sd_path_ok("/etc/sd/**.yml"));
    }

    #[test]
    fn urls() {
        assert!(url_ok("http://sd.example.com/targets"));
        assert!(url_ok("https://a:8443"));
        assert!(!url_ok("ftp://a"));
        assert!(!url_ok("http://"));
        assert!(!url_ok("http://a b"));
    }
}
