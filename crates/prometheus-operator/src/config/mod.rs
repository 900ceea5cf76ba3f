//! Pure generation of a Prometheus' configuration: which monitors, scrape configs and rules it
//! uses ([`select`]), whether each is valid, and the `prometheus.yaml` and rule files built from
//! the valid ones ([`generate`]). Nothing here talks to the API or logs; the same inputs always
//! give byte-identical outputs, so the controller never churns.
//!
//! # Semantics
//!
//! The output follows upstream prometheus-operator:
//!
//! - a ServiceMonitor gives one job per endpoint, `serviceMonitor/<ns>/<name>/<i>`, with
//!   `endpointslice` discovery; a PodMonitor gives `podMonitor/<ns>/<name>/<i>` with `pod`
//!   discovery; a ScrapeConfig gives `scrapeConfig/<ns>/<name>`. Discovery is limited to the
//!   namespaces of the monitor's `namespaceSelector` (`any` → all, `matchNames` → those,
//!   neither → the monitor's own namespace);
//! - relabelings keep the targets matching the monitor's selector (`matchLabels` and every
//!   `matchExpressions` operator, on `__meta_kubernetes_{service,pod}_label_*` and
//!   `..._labelpresent_*`) and port, then set `namespace`, `service`, `pod`, `container`,
//!   `node`, `job` (the Service name, or `jobLabel`'s value; `<ns>/<name>` for PodMonitors) and
//!   `endpoint`, copy `targetLabels`/`podTargetLabels`, and only then apply the user's
//!   relabelings;
//! - with `enforcedNamespaceLabel`, a relabeling setting that label to the object's namespace
//!   is the last relabeling *and* the last metric relabeling of every job, every rule gets the
//!   label, and every selector in every rule expression is restricted to
//!   `label="<namespace>"` (replacing any matcher on that label), as upstream does with
//!   prom-label-proxy;
//! - objects of upstream prometheus-operator's group (`monitoring.coreos.com`, read into the
//!   same types, see [`Upstream`] and [`upstream`]) are selected the same way; their jobs are
//!   named `serviceMonitor.monitoring.coreos.com/<ns>/<name>/<i>` (likewise for the other kinds)
//!   and their rule files `monitoring.coreos.com_<ns>-<name>-<uid>.yaml`, so an object of each
//!   group with the same namespace and name are both kept and never collide;
//! - `global` has `scrape_interval` (default 30s), `scrape_timeout` (when set),
//!   `evaluation_interval` (default 30s) and `external_labels` with
//!   `prometheus: <ns>/<name>` and `prometheus_replica: $(POD_NAME)` (expanded by the reloader
//!   sidecar); user external labels with those two names are ignored, as upstream does;
//! - with `shards` above 1, every job ends (before the enforced namespace label) with a
//!   `hashmod` of `__address__` into `__tmp_hash` and a `keep` of `__tmp_hash` equal to
//!   `$(SHARD)`, and `external_labels` gets `shard: $(SHARD)`; the reloader sidecar expands
//!   `$(SHARD)` from the environment its StatefulSet gives it. With one shard nothing changes;
//! - `federation` adds one job per federated Prometheus, `federate/<ns>/<name>`, scraping
//!   `/federate` (with `honor_labels`) on replica 0 of each of its shards, found by pod
//!   discovery in its namespace (see [`federation`]);
//! - `rule_files` lists `/etc/prometheus/rules/prometheus-<name>-rulefiles-<i>/*.yaml` for each
//!   rule ConfigMap `i` (Prometheus allows a glob only in the last path element); the ConfigMaps
//!   ([`Generated::rule_configmaps`], named with [`rule_configmap_name`]) must be mounted at
//!   `/etc/prometheus/rules/<configmap name>/`.
//!
//! Where we differ from upstream: selector values are regex-quoted (upstream lets a `.` in a
//! label value match any character); rule expressions are written in the canonical form printed
//! from their syntax tree, so syntax only one Prometheus version accepts (like `[300]` for
//! `[5m]`) never reaches a rule file; Alertmanager ports given as numbers are matched on the
//! EndpointSlice port.
//!
//! # Credentials
//!
//! Secret values (basic auth, authorization credentials, TLS CA/cert/key, EC2 keys) are written
//! inline into `prometheus.yaml`, which the controller keeps in a Secret. TLS material is inline
//! too (`ca`, `cert`, `key`; supported by Prometheus 2.53 and 3.x), so no extra volume has to
//! be mounted and kept in sync. Secret values never appear in rule files, rejection messages or
//! `Debug` output.
//!
//! # Validation
//!
//! Every selected object is validated; an invalid one is left out and reported in
//! [`Generated::rejected`] with a machine-friendly [`Reason`] and a message, while every valid
//! one keeps working. An invalid Prometheus (its own selectors, global intervals, external
//! labels, remote write, alerting) fails the whole generation with a [`Problem`]. The aim is
//! that whatever is accepted loads in Prometheus 2.53 and 3.x (`promtool check config` passes).

pub mod case;
mod duration;
pub mod federation;
mod names;
mod promql;
mod regex_compat;
mod relabel;
mod rules;
mod scrape;
mod secrets;
mod select;
mod template;
pub mod tuning;
pub mod upstream;
pub(crate) mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde::Serialize;

pub use rules::{rule_file_name, rule_file_name_in};
pub use scrape::{SHARD_ENV, SHARD_PLACEHOLDER};
pub use secrets::Store;
pub use select::{
    Selection, Selectors, select, selector_matches, selector_problems, selectors, selects, validate_selector,
};

use self::scrape::Ctx;
use self::yaml::Node;
use crate::crd::{
    AlertmanagerEndpoint, PodMonitor, Prometheus, PrometheusRule, RemoteWriteSpec, ScrapeConfig,
    SelectedResources, ServiceMonitor,
};

/// Where the rule ConfigMaps are mounted, one sub-directory per ConfigMap.
pub const RULES_DIR: &str = "/etc/prometheus/rules";
/// Most bytes (keys plus values) put into one rule ConfigMap; the API limit is 1 MiB.
pub const CONFIGMAP_BUDGET: usize = 512 * 1024;
/// Global scrape interval when the Prometheus does not set one (upstream's default).
pub const DEFAULT_SCRAPE_INTERVAL: &str = "30s";
/// Rule evaluation interval when the Prometheus does not set one (upstream's default).
pub const DEFAULT_EVALUATION_INTERVAL: &str = "30s";
/// Value of the `prometheus_replica` external label; the reloader replaces it with the pod
/// name.
pub const REPLICA_PLACEHOLDER: &str = "$(POD_NAME)";

/// Name of the `index`-th rule ConfigMap of the Prometheus `prometheus`.
pub fn rule_configmap_name(prometheus: &str, index: usize) -> String {
    format!("prometheus-{prometheus}-rulefiles-{index}")
}

/// The kind of a configuration object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    /// A ServiceMonitor.
    ServiceMonitor,
    /// A PodMonitor.
    PodMonitor,
    /// A ScrapeConfig.
    ScrapeConfig,
    /// A PrometheusRule.
    PrometheusRule,
}

impl Kind {
    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceMonitor => "ServiceMonitor",
            Kind::PodMonitor => "PodMonitor",
            Kind::ScrapeConfig => "ScrapeConfig",
            Kind::PrometheusRule => "PrometheusRule",
        }
    }
}

/// The API group a configuration object was read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Group {
    /// Ours, `monitoring.steward.dev`.
    #[default]
    Steward,
    /// Upstream prometheus-operator's, `monitoring.coreos.com`.
    Upstream,
}

impl Group {
    /// The API group name.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Steward => crate::crd::GROUP,
            Group::Upstream => crate::crd::UPSTREAM_GROUP,
        }
    }

    /// The first element of a job name: `serviceMonitor` for ours (upstream's own names, so
    /// dashboards keep working), `serviceMonitor.monitoring.coreos.com` for upstream's, which
    /// no object of ours can produce.
    pub(crate) fn job_kind(self, kind: &str) -> String {
        match self {
            Group::Steward => kind.to_string(),
            Group::Upstream => format!("{kind}.{}", self.as_str()),
        }
    }

    fn is_steward(&self) -> bool {
        *self == Group::Steward
    }
}

/// One configuration object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    /// Its API group; left out of serialized output for ours.
    #[serde(skip_serializing_if = "Group::is_steward")]
    pub group: Group,
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectRef {
    fn of<K: kube::Resource>(group: Group, kind: Kind, obj: &K) -> ObjectRef {
        ObjectRef {
            group,
            kind,
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.group {
            Group::Steward => write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name),
            Group::Upstream => write!(
                f,
                "{}.{} {}/{}",
                self.kind.as_str(),
                self.group.as_str(),
                self.namespace,
                self.name
            ),
        }
    }
}

/// Why an object (or the Prometheus) was refused; stable names for conditions and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    /// A label selector is malformed (operator, keys, values).
    InvalidSelector,
    /// A duration is not in Prometheus' syntax (`1h30m`, `15s`, `0`).
    InvalidDuration,
    /// A scrape timeout is longer than the scrape interval that applies.
    InvalidScrapeTimeout,
    /// A relabeling has an unknown action, a bad regex or a field its action forbids.
    InvalidRelabeling,
    /// A label, annotation or target-label name is not a valid Prometheus label name.
    InvalidLabelName,
    /// A rule expression does not parse, or uses PromQL not every supported version has.
    InvalidPromQL,
    /// A rule or rule group breaks Prometheus' rule-file rules.
    InvalidRule,
    /// An alert label or annotation is not a template Prometheus can parse.
    InvalidTemplate,
    /// A referenced Secret, ConfigMap or key does not exist.
    SecretNotFound,
    /// A referenced Secret value cannot be used (not UTF-8).
    InvalidSecret,
    /// TLS settings are incomplete or hold no valid PEM data.
    InvalidTLSConfig,
    /// Authentication settings conflict or are incomplete.
    InvalidAuth,
    /// Another field is out of range or malformed (scheme, path, URL, port, target).
    InvalidField,
    /// The object's rule file is larger than a rule ConfigMap may hold.
    RuleFileTooLarge,
    /// Another object of the same kind has the same namespace and name.
    Duplicate,
    /// The monitor discovers targets where this Prometheus may not read (see
    /// `crate::discovery`); set by the controller, not by [`generate`].
    DiscoveryNotAllowed,
    /// The monitor names a namespace that does not exist; set by the controller.
    NamespaceNotFound,
}

impl Reason {
    /// The name, e.g. `InvalidPromQL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidSelector => "InvalidSelector",
            Reason::InvalidDuration => "InvalidDuration",
            Reason::InvalidScrapeTimeout => "InvalidScrapeTimeout",
            Reason::InvalidRelabeling => "InvalidRelabeling",
            Reason::InvalidLabelName => "InvalidLabelName",
            Reason::InvalidPromQL => "InvalidPromQL",
            Reason::InvalidRule => "InvalidRule",
            Reason::InvalidTemplate => "InvalidTemplate",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::InvalidSecret => "InvalidSecret",
            Reason::InvalidTLSConfig => "InvalidTLSConfig",
            Reason::InvalidAuth => "InvalidAuth",
            Reason::InvalidField => "InvalidField",
            Reason::RuleFileTooLarge => "RuleFileTooLarge",
            Reason::Duplicate => "Duplicate",
            Reason::DiscoveryNotAllowed => "DiscoveryNotAllowed",
            Reason::NamespaceNotFound => "NamespaceNotFound",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validation failure: a reason and a human message (never holding secret values).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Problem {
    /// Machine-friendly reason.
    pub reason: Reason,
    /// What is wrong, naming the field.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(reason: Reason, message: String) -> Problem {
        Problem { reason, message }
    }
}

/// A selected object left out of the configuration, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The object.
    pub object: ObjectRef,
    /// Machine-friendly reason.
    pub reason: Reason,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Everything the generator reads. Objects may come in any order and from any namespace;
/// [`select`] decides which are used.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The Prometheus being configured.
    pub prometheus: &'a Prometheus,
    /// Every namespace, for the namespace selectors.
    pub namespaces: &'a [Namespace],
    /// Every ServiceMonitor.
    pub service_monitors: &'a [ServiceMonitor],
    /// Every PodMonitor.
    pub pod_monitors: &'a [PodMonitor],
    /// Every ScrapeConfig.
    pub scrape_configs: &'a [ScrapeConfig],
    /// Every PrometheusRule.
    pub rules: &'a [PrometheusRule],
    /// Every other Prometheus, for `spec.federation` (the selectors decide which are used).
    pub prometheuses: &'a [Prometheus],
    /// The Secret and ConfigMap values the objects may reference.
    pub store: &'a Store,
}

/// Objects of upstream prometheus-operator's group (`monitoring.coreos.com`), read into our
/// types (see [`upstream::from_dynamic`]). Selected with the same selectors as ours.
#[derive(Clone, Copy, Debug, Default)]
pub struct Upstream<'a> {
    /// Every upstream ServiceMonitor.
    pub service_monitors: &'a [ServiceMonitor],
    /// Every upstream PodMonitor.
    pub pod_monitors: &'a [PodMonitor],
    /// Every upstream ScrapeConfig.
    pub scrape_configs: &'a [ScrapeConfig],
    /// Every upstream PrometheusRule.
    pub rules: &'a [PrometheusRule],
}

/// The generated configuration.
#[derive(Clone, PartialEq)]
pub struct Generated {
    /// `prometheus.yaml`; holds credentials, so keep it in a Secret.
    pub prometheus_yaml: String,
    /// Rule files by file name (see [`rule_file_name`]).
    pub rule_files: BTreeMap<String, String>,
    /// The rule files split into ConfigMap data maps of at most [`CONFIGMAP_BUDGET`] bytes; the
    /// `i`-th is the ConfigMap [`rule_configmap_name`]`(name, i)`. Always at least one.
    pub rule_configmaps: Vec<BTreeMap<String, String>>,
    /// Selected objects that are in the configuration, in output order.
    pub accepted: Vec<ObjectRef>,
    /// Selected objects left out, in output order.
    pub rejected: Vec<Rejection>,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generated")
            .field(
                "prometheus_yaml",
                &format_args!("<{} bytes>", self.prometheus_yaml.len()),
            )
            .field("rule_files", &self.rule_files.keys().collect::<Vec<_>>())
            .field("rule_configmaps", &self.rule_configmaps.len())
            .field("accepted", &self.accepted)
            .field("rejected", &self.rejected)
            .finish()
    }
}

impl Generated {
    /// Accepted and rejected counts per kind, for the Prometheus status.
    pub fn selected_resources(&self) -> Vec<SelectedResources> {
        [
            Kind::ServiceMonitor,
            Kind::PodMonitor,
            Kind::PrometheusRule,
            Kind::ScrapeConfig,
        ]
        .into_iter()
        .map(|kind| SelectedResources {
            kind: kind.as_str().to_string(),
            accepted: count(self.accepted.iter().filter(|o| o.kind == kind).count()),
            rejected: count(self.rejected.iter().filter(|r| r.object.kind == kind).count()),
        })
        .collect()
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Keeps the first of several objects sharing a namespace and name (the list is sorted), and
/// rejects the others.
fn dedup<'a, K: kube::Resource>(
    group: Group,
    kind: Kind,
    objects: Vec<&'a K>,
    rejected: &mut Vec<Rejection>,
) -> Vec<&'a K> {
    let mut out: Vec<&'a K> = Vec::with_capacity(objects.len());
    for obj in objects {
        let same = out.last().is_some_and(|prev| {
            prev.meta().namespace == obj.meta().namespace && prev.meta().name == obj.meta().name
        });
        if same {
            rejected.push(Rejection {
                object: ObjectRef::of(group, kind, obj),
                reason: Reason::Duplicate,
                message: "another object has the same namespace and name".into(),
            });
        } else {
            out.push(obj);
        }
    }
    out
}

/// Selects, validates and renders the configuration of `inputs.prometheus`.
///
/// Never panics; an `Err` means the Prometheus itself is invalid (nothing is generated), while
/// invalid monitors, scrape configs and rules are reported in [`Generated::rejected`].
pub fn generate(inputs: &Inputs) -> Result<Generated, Problem> {
    generate_with(inputs, &Upstream::default())
}

/// [`generate`], also using the upstream-group objects in `upstream`: selected by the same
/// selectors, rendered after ours, and named apart from them (see [`Group::job_kind`]).
pub fn generate_with(inputs: &Inputs, upstream: &Upstream) -> Result<Generated, Problem> {
    let prom = inputs.prometheus;
    let spec = &prom.spec;
    let prom_ns = prom.namespace().unwrap_or_default();
    let prom_name = prom.name_any();

    let enforced_label = spec.enforced_namespace_label.as_deref().filter(|l| !l.is_empty());
    if let Some(label) = enforced_label
        && !names::is_label_name(label)
    {
        return Err(Problem::new(
            Reason::InvalidLabelName,
            format!("enforcedNamespaceLabel {label:?} is not a valid label name"),
        ));
    }
    let global = global(prom, &prom_ns, &prom_name)?;
    // The same selection code over the upstream lists: same selectors, same semantics.
    let upstream_inputs = Inputs {
        service_monitors: upstream.service_monitors,
        pod_monitors: upstream.pod_monitors,
        scrape_configs: upstream.scrape_configs,
        rules: upstream.rules,
        ..*inputs
    };
    let selections = [
        (Group::Steward, select(inputs)?),
        (Group::Upstream, select(&upstream_inputs)?),
    ];

    // Validated by the CRD schema; the clamp keeps a hand-made object within reason too.
    let shards = u32::try_from(spec.shards.clamp(1, 1000)).unwrap_or(1);
    let mut out = Rendered::default();
    for (group, selection) in selections {
        let ctx = Ctx {
            store: inputs.store,
            enforced_label,
            global_interval: global.interval,
            group,
            shards,
        };
        out.add(selection, &ctx);
    }
    if let Some(fed) = &spec.federation {
        let ctx = Ctx {
            store: inputs.store,
            enforced_label,
            global_interval: global.interval,
            group: Group::Steward,
            shards,
        };
        let targets = federation::federated(prom, inputs.prometheuses, inputs.namespaces);
        out.jobs.extend(federation::jobs(fed, &targets, &ctx)?);
    }
    let Rendered {
        jobs,
        rule_files,
        accepted,
        rejected,
    } = out;

    let rule_configmaps = rules::split_into_configmaps(&rule_files, CONFIGMAP_BUDGET);
    let mut root = Node::map().with("global", global.node);
    // One pattern per ConfigMap: Prometheus allows a glob only in the last path element.
    root.push(
        "rule_files",
        Node::strs(
            (0..rule_configmaps.len().max(1))
                .map(|i| format!("{RULES_DIR}/{}/*.yaml", rule_configmap_name(&prom_name, i))),
        ),
    );
    root.push("scrape_configs", jobs);
    if let Some(alerting) = &spec.alerting
        && !alerting.alertmanagers.is_empty()
    {
        root.push("alerting", alerting_node(&alerting.alertmanagers, &prom_ns)?);
    }
    if !spec.remote_write.is_empty() {
        let list = spec
            .remote_write
            .iter()
            .enumerate()
            .map(|(i, rw)| remote_write(rw, &prom_ns, &format!("remoteWrite[{i}]"), inputs.store))
            .collect::<Result<Vec<_>, _>>()?;
        root.push("remote_write", list);
    }

    Ok(Generated {
        prometheus_yaml: root.to_yaml(),
        rule_files,
        rule_configmaps,
        accepted,
        rejected,
    })
}

/// What the selected objects of every group add up to.
#[derive(Default)]
struct Rendered {
    jobs: Vec<Node>,
    rule_files: BTreeMap<String, String>,
    accepted: Vec<ObjectRef>,
    rejected: Vec<Rejection>,
}

impl Rendered {
    /// Validates and renders the objects of one group's selection.
    fn add(&mut self, selection: Selection, ctx: &Ctx) {
        let group = ctx.group;
        let rejected = &mut self.rejected;
        let reject = |rejected: &mut Vec<Rejection>, object: ObjectRef, p: Problem| {
            rejected.push(Rejection {
                object,
                reason: p.reason,
                message: p.message,
            });
        };
        for sm in dedup(group, Kind::ServiceMonitor, selection.service_monitors, rejected) {
            let obj = ObjectRef::of(group, Kind::ServiceMonitor, sm);
            match scrape::service_monitor(sm, ctx) {
                Ok(j) => {
                    self.jobs.extend(j);
                    self.accepted.push(obj);
                }
                Err(p) => reject(rejected, obj, p),
            }
        }
        for pm in dedup(group, Kind::PodMonitor, selection.pod_monitors, rejected) {
            let obj = ObjectRef::of(group, Kind::PodMonitor, pm);
            match scrape::pod_monitor(pm, ctx) {
                Ok(j) => {
                    self.jobs.extend(j);
                    self.accepted.push(obj);
                }
                Err(p) => reject(rejected, obj, p),
            }
        }
        for sc in dedup(group, Kind::ScrapeConfig, selection.scrape_configs, rejected) {
            let obj = ObjectRef::of(group, Kind::ScrapeConfig, sc);
            match scrape::scrape_config(sc, ctx) {
                Ok(j) => {
                    self.jobs.push(j);
                    self.accepted.push(obj);
                }
                Err(p) => reject(rejected, obj, p),
            }
        }
        for rule in dedup(group, Kind::PrometheusRule, selection.rules, rejected) {
            let obj = ObjectRef::of(group, Kind::PrometheusRule, rule);
            let name = rule_file_name_in(group, rule);
            match rules::rule_file(rule, ctx.enforced_label) {
                Ok(content) if rules::fits(&name, &content) => {
                    self.rule_files.insert(name, content);
                    self.accepted.push(obj);
                }
                Ok(content) => reject(
                    rejected,
                    obj,
                    Problem::new(
                        Reason::RuleFileTooLarge,
                        format!(
                            "the rule file is {} bytes; at most {CONFIGMAP_BUDGET} fit in a ConfigMap",
                            content.len()
                        ),
                    ),
                ),
                Err(p) => reject(rejected, obj, p),
            }
        }
    }
}

struct Global {
    node: Node,
    interval: Duration,
}

fn global(prom: &Prometheus, ns: &str, name: &str) -> Result<Global, Problem> {
    let spec = &prom.spec;
    let parse =
        |value: Option<&str>, default: &'static str, field: &str| -> Result<(String, Duration), Problem> {
            let v = value.filter(|s| !s.is_empty()).unwrap_or(default);
            duration::parse(v).map(|d| (v.to_string(), d)).ok_or_else(|| {
                Problem::new(
                    Reason::InvalidDuration,
                    format!("{field}: {v:?} is not a valid duration"),
                )
            })
        };
    let (interval, mut interval_d) = parse(
        spec.scrape_interval.as_deref(),
        DEFAULT_SCRAPE_INTERVAL,
        "scrapeInterval",
    )?;
    if interval_d.is_zero() {
        // Prometheus reads 0 as "use its default" (1m).
        interval_d = Duration::from_secs(60);
    }
    let mut node = Node::map().with("scrape_interval", interval);
    if let Some(t) = spec.scrape_timeout.as_deref().filter(|s| !s.is_empty()) {
        let (t, d) = parse(Some(t), "", "scrapeTimeout")?;
        if d > interval_d {
            return Err(Problem::new(
                Reason::InvalidScrapeTimeout,
                format!("scrapeTimeout {t:?} is longer than scrapeInterval"),
            ));
        }
        node.push("scrape_timeout", t);
    }
    let (eval, _) = parse(
        spec.evaluation_interval.as_deref(),
        DEFAULT_EVALUATION_INTERVAL,
        "evaluationInterval",
    )?;
    node.push("evaluation_interval", eval);

    let mut labels = BTreeMap::new();
    for (k, v) in &spec.external_labels {
        if !names::is_label_name(k) {
            return Err(Problem::new(
                Reason::InvalidLabelName,
                format!("externalLabels: {k:?} is not a valid label name"),
            ));
        }
        labels.insert(k.clone(), v.clone());
    }
    // Reserved names win over the user's, as upstream.
    labels.insert("prometheus".into(), format!("{ns}/{name}"));
    labels.insert("prometheus_replica".into(), REPLICA_PLACEHOLDER.into());
    // Each shard's series tell which shard scraped them (kept apart when federated).
    if spec.shards > 1 {
        labels.insert("shard".into(), scrape::SHARD_PLACEHOLDER.into());
    }
    node.push("external_labels", rules::string_map(labels));
    Ok(Global {
        node,
        interval: interval_d,
    })
}

fn alerting_node(alertmanagers: &[AlertmanagerEndpoint], prom_ns: &str) -> Result<Node, Problem> {
    let mut list = Vec::with_capacity(alertmanagers.len());
    for (i, am) in alertmanagers.iter().enumerate() {
        let field = format!("alerting.alertmanagers[{i}]");
        let bad = |msg: String| Problem::new(Reason::InvalidField, format!("{field}: {msg}"));
        let ns = am
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(prom_ns);
        // An Alertmanager object is reached through the Service this operator creates for it
        // (`build::base_name`), on its web port unless told otherwise.
        let (service, port) = match &am.alertmanager {
            Some(name) if !names::is_dns_label(name) => {
                return Err(bad(format!("{name:?} is not a valid Alertmanager name")));
            }
            Some(name) => (
                format!("alertmanager-{name}"),
                am.port
                    .clone()
                    .unwrap_or_else(|| IntOrString::String("web".into())),
            ),
            None if !names::is_dns_label(&am.name) => {
                return Err(bad(format!("{:?} is not a valid Service name", am.name)));
            }
            None => (
                am.name.clone(),
                am.port
                    .clone()
                    .ok_or_else(|| bad("port is required with name (a Service)".into()))?,
            ),
        };
        let scheme = match am.scheme.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("http") => "http",
            Some("https") => "https",
            Some(_) => return Err(bad("scheme must be http or https".into())),
        };
        let mut node = Node::map().with("path_prefix", "/").with("scheme", scheme).with(
            "kubernetes_sd_configs",
            vec![Node::map().with("role", "endpointslice").with(
                "namespaces",
                Node::map().with("names", Node::strs([ns.to_string()])),
            )],
        );
        match am.api_version.as_deref() {
            None | Some("") => {}
            Some("v2") => node.push("api_version", "v2"),
            Some(v) => return Err(bad(format!("apiVersion {v:?} is not supported; use v2"))),
        }
        let port = match &port {
            IntOrString::String(p) if names::is_dns_label(p) => relabel::filter(
                "keep",
                vec!["__meta_kubernetes_endpointslice_port_name".into()],
                p.clone(),
            ),
            IntOrString::Int(n) if (1..=65535).contains(n) => relabel::filter(
                "keep",
                vec!["__meta_kubernetes_endpointslice_port".into()],
                n.to_string(),
            ),
            _ => return Err(bad("port must be a port name or a number from 1 to 65535".into())),
        };
        node.push(
            "relabel_configs",
            vec![
                relabel::filter("keep", vec!["__meta_kubernetes_service_name".into()], service),
                port,
            ],
        );
        list.push(node);
    }
    Ok(Node::map()
        .with(
            "alert_relabel_configs",
            vec![
                Node::map()
                    .with("action", "labeldrop")
                    .with("regex", "prometheus_replica"),
            ],
        )
        .with("alertmanagers", list))
}

fn remote_write(rw: &RemoteWriteSpec, ns: &str, field: &str, store: &Store) -> Result<Node, Problem> {
    if !scrape::url_ok(&rw.url) {
        return Err(Problem::new(
            Reason::InvalidField,
            format!("{field}.url must be an http(s) URL"),
        ));
    }
    let mut node = Node::map().with("url", rw.url.clone());
    let auths = [
        rw.basic_auth.is_some(),
        rw.authorization.is_some(),
        rw.bearer_token_secret.is_some(),
    ];
    if auths.iter().filter(|a| **a).count() > 1 {
        return Err(Problem::new(
            Reason::InvalidAuth,
            format!("{field}: only one of basicAuth, authorization and bearerTokenSecret may be set"),
        ));
    }
    if let Some(auth) = &rw.basic_auth {
        node.push(
            "basic_auth",
            store.basic_auth(ns, auth, &format!("{field}.basicAuth"))?,
        );
    }
    if let Some(auth) = &rw.authorization {
        node.push(
            "authorization",
            store.authorization(ns, auth, &format!("{field}.authorization"))?,
        );
    }
    if let Some(token) = &rw.bearer_token_secret {
        // Written as the equivalent `authorization` block; `bearer_token` is deprecated.
        node.push(
            "authorization",
            Node::map().with("type", "Bearer").with(
                "credentials",
                store.secret(ns, token, &format!("{field}.bearerTokenSecret"))?,
            ),
        );
    }
    if !rw.write_relabel_configs.is_empty() {
        node.push(
            "write_relabel_configs",
            relabel::relabel_all(&rw.write_relabel_configs, &format!("{field}.writeRelabelConfigs"))?,
        );
    }
    Ok(node)
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;
