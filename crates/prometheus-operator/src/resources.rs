//! Pure builders of every child object of a Prometheus: the StatefulSet, its Services, the
//! config Secret, rule ConfigMaps, the ServiceAccount, and the bindings of the fixed discovery
//! ClusterRole its service discovery needs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, PodSpec,
    PodTemplateSpec, Secret, SecretVolumeSource, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::OPERATOR_NAME;
use crate::config::{Generated, RULES_DIR, rule_configmap_name};
use crate::crd::{Prometheus, PrometheusStorage, PrometheusVolumeClaimTemplate};
use crate::workload::{self, http_probe, mount, requests};

/// Port of the Prometheus web UI and API.
pub const WEB_PORT: i32 = 9090;
/// Port of the config-reloader's metrics.
pub const RELOADER_PORT: i32 = 8080;
/// Key of the gzipped configuration in the config Secret.
pub const CONFIG_KEY: &str = "prometheus.yaml.gz";
/// Name of the governing Service shared by every Prometheus in a namespace.
pub const GOVERNING_SERVICE: &str = "prometheus-operated";
/// Default image repository.
pub const DEFAULT_IMAGE: &str = "quay.io/prometheus/prometheus";
/// Retention when `spec.retention` is unset (upstream's default).
pub const DEFAULT_RETENTION: &str = "24h";

const CONFIG_DIR: &str = "/etc/prometheus/config";
const CONFIG_OUT_DIR: &str = "/etc/prometheus/config_out";
const CONFIG_OUT_FILE: &str = "/etc/prometheus/config_out/prometheus.env.yaml";
const DATA_DIR: &str = "/prometheus";

/// Name of the StatefulSet, the per-instance Service, the config Secret and the default
/// ServiceAccount: `prometheus-<name>`.
pub fn base_name(p: &Prometheus) -> String {
    format!("prometheus-{}", p.name_any())
}

/// Label on the pods (and, from shard 1 on, in the StatefulSet selector) naming their shard;
/// set only when there is more than one shard, so a single-shard Prometheus keeps its pods.
pub const SHARD_LABEL: &str = "monitoring.steward.dev/shard";

/// Name of shard `shard`'s StatefulSet: `prometheus-<name>` for shard 0 (the name from before
/// sharding, so its pods and PVCs stay), `prometheus-<name>-shard-<n>` after.
pub fn shard_name(p: &Prometheus, shard: i32) -> String {
    if shard == 0 {
        base_name(p)
    } else {
        format!("{}-shard-{shard}", base_name(p))
    }
}

/// The number of shards of `p` (at least 1).
pub fn shards(p: &Prometheus) -> i32 {
    p.spec.shards.max(1)
}

/// Every shard's StatefulSet (see [`statefulset`] and [`shard_statefulset`]).
pub fn statefulsets(
    p: &Prometheus,
    reloader_image: &str,
    rule_configmaps: usize,
    tuning: &Tuning,
) -> Vec<StatefulSet> {
    let base = statefulset(p, reloader_image, rule_configmaps, tuning);
    (0..shards(p)).map(|n| shard_statefulset(p, &base, n)).collect()
}

/// Shard `shard`'s StatefulSet made from `base` ([`statefulset`]): with one shard `base` as
/// is; otherwise named by [`shard_name`], its pods labelled with their shard, and the shard
/// number in the reloaders' `SHARD` variable, which the configuration's `$(SHARD)` takes.
/// Shard 0 keeps `base`'s selector (a StatefulSet's selector cannot change); the others add
/// the shard label to it.
pub fn shard_statefulset(p: &Prometheus, base: &StatefulSet, shard: i32) -> StatefulSet {
    let mut sts = base.clone();
    if shards(p) == 1 {
        return sts;
    }
    sts.metadata.name = Some(shard_name(p, shard));
    let value = shard.to_string();
    if shard > 0 {
        sts.spec
            .selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(SHARD_LABEL.into(), value.clone());
    }
    let spec = &mut sts.spec;
    spec.template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(SHARD_LABEL.into(), value.clone());
    if let Some(pod) = spec.template.spec.as_mut() {
        let reloaders = pod
            .containers
            .iter_mut()
            .chain(pod.init_containers.iter_mut().flatten())
            .filter(|c| c.name.ends_with("config-reloader"));
        for c in reloaders {
            c.env.get_or_insert_with(Vec::new).push(EnvVar {
                name: crate::config::SHARD_ENV.into(),
                value: Some(value.clone()),
                ..Default::default()
            });
        }
    }
    sts
}

/// Labels on every child.
pub fn labels(p: &Prometheus, component: &str) -> BTreeMap<String, String> {
    steward_core::labels::standard("prometheus", &p.name_any(), component, OPERATOR_NAME)
}

/// Labels selecting a Prometheus' pods.
pub fn pod_selector(p: &Prometheus) -> BTreeMap<String, String> {
    steward_core::labels::owner_selector("prometheus", &p.name_any(), OPERATOR_NAME)
}

fn meta(p: &Prometheus, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: p.namespace(),
        labels: Some(labels(p, component)),
        ..Default::default()
    }
}

/// The ServiceAccount Prometheus runs as: `spec.serviceAccountName` or `prometheus-<name>`.
pub fn service_account_name(p: &Prometheus) -> String {
    p.spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| base_name(p))
}

/// Settings the operator works out for the pod (see `config::tuning`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// `--storage.tsdb.retention.size`, if any.
    pub retention_size: Option<String>,
    /// `GOMEMLIMIT`, if any.
    pub gomemlimit: Option<String>,
}

/// The image of the Prometheus container.
pub fn image(p: &Prometheus) -> String {
    let version = p.spec.version.trim_start_matches('v');
    match &p.spec.image {
        Some(i) if !i.is_empty() => i.clone(),
        _ => format!("{DEFAULT_IMAGE}:v{version}"),
    }
}

/// The StatefulSet `prometheus-<name>`: Prometheus, the config-reloader sidecar (same image
/// as the operator, `reloader_image`) and an init container that renders the first config.
/// `rule_configmaps` is how many rule ConfigMaps exist (each is mounted).
pub fn statefulset(
    p: &Prometheus,
    reloader_image: &str,
    rule_configmaps: usize,
    tuning: &Tuning,
) -> StatefulSet {
    let rule_dirs: Vec<(String, String)> = (0..rule_configmaps.max(1))
        .map(|i| {
            let cm = rule_configmap_name(&p.name_any(), i);
            (format!("rules-{i}"), format!("{RULES_DIR}/{cm}"))
        })
        .collect();
    let mut args = vec![
        format!("--config.file={CONFIG_OUT_FILE}"),
        format!("--storage.tsdb.path={DATA_DIR}"),
        format!(
            "--storage.tsdb.retention.time={}",
            p.spec.retention.as_deref().unwrap_or(DEFAULT_RETENTION)
        ),
        // No --web.enable-lifecycle: it would also open /-/quit to every pod that reaches the
        // port. The config-reloader reloads by SIGHUP over the pod's shared process namespace.
        format!("--web.listen-address=0.0.0.0:{WEB_PORT}"),
    ];
    if let Some(size) = &tuning.retention_size {
        args.push(format!("--storage.tsdb.retention.size={size}"));
    }
    let mut env = Vec::new();
    if let Some(limit) = &tuning.gomemlimit {
        env.push(EnvVar {
            name: "GOMEMLIMIT".into(),
            value: Some(limit.clone()),
            ..Default::default()
        });
    }
    let mut prom_mounts = vec![
        mount("config-out", CONFIG_OUT_DIR, true),
        mount("data", DATA_DIR, false),
    ];
    let mut reloader_mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("config-out", CONFIG_OUT_DIR, false),
    ];
    let mut reloader_args = vec![
        "config-reloader".to_string(),
        format!("--config-file={CONFIG_DIR}/{CONFIG_KEY}"),
        format!("--config-envsubst-file={CONFIG_OUT_FILE}"),
    ];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(base_name(p)),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "config-out".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    for (i, (volume, dir)) in rule_dirs.iter().enumerate() {
        prom_mounts.push(mount(volume, dir, true));
        reloader_mounts.push(mount(volume, dir, true));
        reloader_args.push(format!("--watched-dir={dir}"));
        volumes.push(Volume {
            name: volume.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: rule_configmap_name(&p.name_any(), i),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let init_args = {
        let mut a = reloader_args[..3].to_vec();
        a.push("--once".into());
        a
    };
    reloader_args.push(format!("--reload-url=http://127.0.0.1:{WEB_PORT}/-/reload"));
    reloader_args.push("--reload-method=signal".into());
    reloader_args.push(format!("--listen-address=0.0.0.0:{RELOADER_PORT}"));
    let (claim, data) = workload::data_storage(p.spec.storage.as_ref(), labels(p, "server"), "10Gi");
    volumes.extend(data);
    let container_sc = p
        .spec
        .container_security_context
        .clone()
        .unwrap_or_else(steward_core::security::restricted_container);
    let reloader = Container {
        name: "config-reloader".into(),
        security_context: Some(container_sc.clone()),
        resources: Some(requests("10m", "32Mi")),
        image: Some(reloader_image.to_string()),
        args: Some(reloader_args),
        env: Some(vec![workload::field_env("POD_NAME", "metadata.name")]),
        ports: Some(vec![ContainerPort {
            name: Some("reloader-web".into()),
            container_port: RELOADER_PORT,
            ..Default::default()
        }]),
        volume_mounts: Some(reloader_mounts.clone()),
        ..Default::default()
    };
    let init = Container {
        name: "init-config-reloader".into(),
        args: Some(init_args),
        ports: None,
        volume_mounts: Some(reloader_mounts[..2].to_vec()),
        ..reloader.clone()
    };
    let prometheus = Container {
        name: "prometheus".into(),
        image: Some(image(p)),
        args: Some(args),
        env: Some(env).filter(|e| !e.is_empty()),
        ports: Some(vec![ContainerPort {
            name: Some("web".into()),
            container_port: WEB_PORT,
            ..Default::default()
        }]),
        readiness_probe: Some(http_probe("/-/ready", WEB_PORT, 5, 3)),
        liveness_probe: Some(http_probe("/-/healthy", WEB_PORT, 10, 6)),
        resources: Some(
            p.spec
                .resources
                .clone()
                .unwrap_or_else(|| requests("100m", "256Mi")),
        ),
        volume_mounts: Some(prom_mounts),
        security_context: Some(container_sc),
        ..Default::default()
    };
    let mut pod_labels = labels(p, "server");
    pod_labels.extend(pod_selector(p));
    StatefulSet {
        metadata: meta(p, base_name(p), "server"),
        spec: StatefulSetSpec {
            replicas: Some(p.spec.replicas),
            service_name: Some(GOVERNING_SERVICE.into()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(pod_selector(p)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    // The config-reloader sends Prometheus SIGHUP (both run as the same user).
                    share_process_namespace: Some(true),
                    service_account_name: Some(service_account_name(p)),
                    init_containers: Some(vec![init]),
                    containers: vec![prometheus, reloader],
                    volumes: Some(volumes),
                    node_selector: Some(p.spec.node_selector.clone()).filter(|n| !n.is_empty()),
                    tolerations: Some(p.spec.tolerations.clone()).filter(|t| !t.is_empty()),
                    affinity: p.spec.affinity.clone(),
                    termination_grace_period_seconds: Some(600),
                    security_context: Some(
                        p.spec
                            .security_context
                            .clone()
                            .unwrap_or_else(|| steward_core::security::restricted_pod(PROMETHEUS_UID)),
                    ),
                    ..Default::default()
                }),
            },
            volume_claim_templates: claim.map(|c| vec![c]),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The storage to build `p`'s StatefulSet with, and a note when it is not `spec.storage`.
/// Claim templates of a running StatefulSet cannot change (the API answers 422), and the CRD
/// refuses such edits; a Prometheus stored before that rule may still ask for a change, and
/// then the running templates are kept, so that every other change still applies.
pub fn storage_in_effect(
    p: &Prometheus,
    live: Option<&StatefulSet>,
) -> (Option<PrometheusStorage>, Option<String>) {
    let wanted = p.spec.storage.clone();
    let Some(live) = live else { return (wanted, None) };
    let claim = |s: &StatefulSet| {
        s.spec
            .volume_claim_templates
            .as_ref()
            .and_then(|v| v.first())
            .map(|c| {
                let spec = c.spec.clone().unwrap_or_default();
                let size = spec
                    .resources
                    .and_then(|r| r.requests)
                    .and_then(|r| r.get("storage").map(|q| q.0.clone()));
                (size, spec.storage_class_name)
            })
    };
    let running = claim(live);
    if running == claim(&statefulset(p, "", 0, &Tuning::default())) {
        return (wanted, None);
    }
    let kept = match &running {
        Some((size, class)) => PrometheusStorage {
            volume_claim_template: Some(PrometheusVolumeClaimTemplate {
                size: size.clone(),
                storage_class_name: class.clone(),
            }),
            empty_dir: None,
        },
        None => PrometheusStorage {
            volume_claim_template: None,
            empty_dir: wanted.as_ref().and_then(|s| s.empty_dir.clone()),
        },
    };
    let note = format!(
        "spec.storage differs from the volume claim templates of StatefulSet {}, which cannot change; \
         the running ones are kept (delete and recreate the Prometheus to apply it)",
        base_name(p)
    );
    (Some(kept), Some(note))
}

/// The user and group Prometheus runs as: its image's `nobody`.
pub const PROMETHEUS_UID: i64 = 65534;

fn web_port() -> ServicePort {
    ServicePort {
        name: Some("web".into()),
        port: WEB_PORT,
        target_port: Some(IntOrString::String("web".into())),
        ..Default::default()
    }
}

/// The Service `prometheus-<name>` in front of this Prometheus' replicas.
pub fn service(p: &Prometheus) -> Service {
    Service {
        metadata: meta(p, base_name(p), "server"),
        spec: Some(ServiceSpec {
            selector: Some(pod_selector(p)),
            ports: Some(vec![web_port()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The headless governing Service `prometheus-operated`, shared by every Prometheus of the
/// namespace as upstream does; each of them is a (non-controller) owner.
pub fn governing_service(namespace: &str) -> Service {
    let mut selector = BTreeMap::new();
    selector.insert(steward_core::labels::NAME.to_string(), "prometheus".to_string());
    selector.insert(
        steward_core::labels::MANAGED_BY.to_string(),
        OPERATOR_NAME.to_string(),
    );
    let mut labels = selector.clone();
    labels.insert(steward_core::labels::PART_OF.to_string(), "steward".to_string());
    Service {
        metadata: ObjectMeta {
            name: Some(GOVERNING_SERVICE.into()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector),
            ports: Some(vec![web_port()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Secret `prometheus-<name>` holding the gzipped configuration (it carries
/// credentials, so never a ConfigMap).
pub fn config_secret(p: &Prometheus, gzipped: Vec<u8>) -> Secret {
    Secret {
        metadata: meta(p, base_name(p), "config"),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), ByteString(gzipped))])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The rule ConfigMaps `prometheus-<name>-rulefiles-<i>`.
pub fn rule_configmaps(p: &Prometheus, generated: &Generated) -> Vec<ConfigMap> {
    generated
        .rule_configmaps
        .iter()
        .enumerate()
        .map(|(i, data)| ConfigMap {
            metadata: meta(p, rule_configmap_name(&p.name_any(), i), "rules"),
            data: Some(data.clone()),
            ..Default::default()
        })
        .collect()
}

/// The ServiceAccount `prometheus-<name>`, unless the spec names its own.
pub fn service_account(p: &Prometheus) -> Option<ServiceAccount> {
    p.spec.service_account_name.is_none().then(|| ServiceAccount {
        metadata: meta(p, base_name(p), "server"),
        ..Default::default()
    })
}

/// The ClusterRole (shipped in deploy/prometheus-operator) with what service discovery reads:
/// get, list and watch of Services, Endpoints, EndpointSlices and Pods. The operator only
/// binds it; it never creates or changes roles.
pub const DISCOVERY_CLUSTER_ROLE: &str = "steward-prometheus-discovery";
/// Label on discovery bindings naming the namespace of the Prometheus they serve (the
/// standard `app.kubernetes.io/instance` label names the Prometheus).
pub const PROMETHEUS_NAMESPACE_LABEL: &str = "monitoring.steward.dev/prometheus-namespace";
/// Component label of discovery bindings.
pub const DISCOVERY_COMPONENT: &str = "discovery";
/// Prefix of every discovery binding's name.
const BINDING_PREFIX: &str = "prometheus-discovery.";
/// Longest object name the API accepts.
const MAX_NAME: usize = 253;

/// Name of the discovery RoleBindings (and ClusterRoleBinding) of `p`:
/// `prometheus-discovery.<namespace>.<name>`. Namespace names never hold a dot, so the name
/// tells apart `a-b`/`c` from `a`/`b-c` (and any other pair): no two Prometheus objects share
/// a binding.
pub fn discovery_binding_name(p: &Prometheus) -> String {
    format!(
        "{BINDING_PREFIX}{}.{}",
        p.namespace().unwrap_or_default(),
        p.name_any()
    )
}

/// Why `p`'s binding name cannot exist (a Prometheus name close to the 253-character limit).
pub fn binding_name_problem(p: &Prometheus) -> Option<String> {
    let n = discovery_binding_name(p).len();
    (n > MAX_NAME).then(|| {
        format!(
            "metadata.name is too long: the discovery RoleBinding name would have {n} characters (at most {MAX_NAME})"
        )
    })
}

/// Labels of `p`'s discovery bindings.
pub fn discovery_labels(p: &Prometheus) -> BTreeMap<String, String> {
    let mut l = labels(p, DISCOVERY_COMPONENT);
    l.insert(
        PROMETHEUS_NAMESPACE_LABEL.into(),
        p.namespace().unwrap_or_default(),
    );
    l
}

fn discovery_subject(p: &Prometheus) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: service_account_name(p),
        namespace: p.namespace(),
        api_group: None,
    }
}

fn discovery_role_ref() -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "ClusterRole".into(),
        name: DISCOVERY_CLUSTER_ROLE.into(),
    }
}

/// A RoleBinding of the discovery ClusterRole to `p`'s ServiceAccount in each of
/// `namespaces`.
pub fn discovery_role_bindings(p: &Prometheus, namespaces: &BTreeSet<String>) -> Vec<RoleBinding> {
    namespaces
        .iter()
        .map(|ns| RoleBinding {
            metadata: ObjectMeta {
                name: Some(discovery_binding_name(p)),
                namespace: Some(ns.clone()),
                labels: Some(discovery_labels(p)),
                ..Default::default()
            },
            role_ref: discovery_role_ref(),
            subjects: Some(vec![discovery_subject(p)]),
        })
        .collect()
}

/// The ClusterRoleBinding of the discovery ClusterRole to `p`'s ServiceAccount, for
/// `namespaceSelector.any` when the operator allows cluster-wide discovery.
pub fn discovery_cluster_role_binding(p: &Prometheus) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(discovery_binding_name(p)),
            labels: Some(discovery_labels(p)),
            ..Default::default()
        },
        role_ref: discovery_role_ref(),
        subjects: Some(vec![discovery_subject(p)]),
    }
}

/// Label on the per-Prometheus Roles and RoleBindings of earlier versions (`<namespace>.<name>`);
/// their RoleBindings are removed when found.
pub const LEGACY_RBAC_OWNER_LABEL: &str = "monitoring.steward.dev/prometheus";

/// Whether `binding` (one of this operator's, from the watch cache) is a discovery binding of
/// `p`, current or from an earlier version.
pub fn is_discovery_binding_of(p: &Prometheus, binding: &ObjectMeta) -> bool {
    let labels = binding.labels.clone().unwrap_or_default();
    let ns = p.namespace().unwrap_or_default();
    let current = binding.name.as_deref() == Some(discovery_binding_name(p).as_str())
        && labels.get(PROMETHEUS_NAMESPACE_LABEL) == Some(&ns);
    let legacy = labels.get(LEGACY_RBAC_OWNER_LABEL).map(String::as_str)
        == Some(format!("{ns}.{}", p.name_any()).as_str());
    current || legacy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PrometheusSpec;

    fn prom() -> Prometheus {
        let spec: PrometheusSpec = serde_json::from_value(serde_json::json!({
            "replicas": 2,
            "retention": "7d",
            "storage": {"volumeClaimTemplate": {"size": "10Gi"}},
            "resources": {"limits": {"memory": "2Gi"}},
        }))
        .unwrap();
        let mut p = Prometheus::new("team-a", spec);
        p.metadata.namespace = Some("mon".into());
        p.metadata.uid = Some("uid-1".into());
        p
    }

    fn golden(name: &str, actual: &impl serde::Serialize) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/resources")
            .join(name);
        crate::testing::assert_golden(&path, &serde_yaml_ng::to_string(actual).unwrap());
    }

    #[test]
    fn golden_children() {
        let p = prom();
        let tuning = Tuning {
            retention_size: crate::config::tuning::retention_size_for(&p.spec),
            gomemlimit: crate::config::tuning::gomemlimit_for(&p.spec),
        };
        assert!(tuning.retention_size.is_some() && tuning.gomemlimit.is_some());
        golden(
            "statefulset.yaml",
            &statefulset(&p, "steward/prometheus-operator:dev", 2, &tuning),
        );
        let mut sharded = p.clone();
        sharded.spec.shards = 2;
        let sets = statefulsets(&sharded, "steward/prometheus-operator:dev", 2, &tuning);
        golden("statefulset-shard-1.yaml", &sets[1]);
        golden("service.yaml", &service(&p));
        golden("governing-service.yaml", &governing_service("mon"));
        golden("config-secret.yaml", &config_secret(&p, b"gz".to_vec()));
        golden("serviceaccount.yaml", &service_account(&p));
        let nss = ["mon".to_string(), "apps".to_string()].into();
        golden("rbac-namespaces.yaml", &discovery_role_bindings(&p, &nss));
        golden("rbac-all.yaml", &discovery_cluster_role_binding(&p));
    }

    #[test]
    fn binding_names_never_collide_between_tenants() {
        let named = |ns: &str, name: &str| {
            let mut p = prom();
            p.metadata.namespace = Some(ns.into());
            p.metadata.name = Some(name.into());
            p
        };
        let (x, y) = (named("a-b", "c"), named("a", "b-c"));
        assert_ne!(discovery_binding_name(&x), discovery_binding_name(&y));
        assert_eq!(discovery_binding_name(&x), "prometheus-discovery.a-b.c");
        // A dotted Prometheus name cannot pose as another namespace: namespaces hold no dot,
        // so the namespace is everything up to the first one.
        let dotted = discovery_binding_name(&named("a", "b.c"));
        assert_eq!(
            dotted
                .strip_prefix(BINDING_PREFIX)
                .and_then(|r| r.split_once('.')),
            Some(("a", "b.c"))
        );
        let bx = &discovery_role_bindings(&x, &["apps".to_string()].into())[0].metadata;
        assert!(is_discovery_binding_of(&x, bx));
        assert!(!is_discovery_binding_of(&y, bx));
        // Bindings of earlier versions are recognised by their owner label.
        let legacy = ObjectMeta {
            name: Some("steward-prometheus-a-b-c".into()),
            labels: Some(BTreeMap::from([(
                LEGACY_RBAC_OWNER_LABEL.to_string(),
                "a.b-c".to_string(),
            )])),
            ..Default::default()
        };
        assert!(is_discovery_binding_of(&y, &legacy));
        assert!(!is_discovery_binding_of(&x, &legacy));
        assert!(binding_name_problem(&x).is_none());
        assert!(binding_name_problem(&named("a", &"n".repeat(240))).is_some());
    }

    #[test]
    fn a_running_statefulsets_claim_templates_are_kept() {
        let p = prom();
        let live = statefulset(&p, "r", 1, &Tuning::default());
        assert_eq!(storage_in_effect(&p, Some(&live)), (p.spec.storage.clone(), None));
        assert_eq!(storage_in_effect(&p, None), (p.spec.storage.clone(), None));
        // The size changed behind the CEL rule's back: the running 10Gi stays.
        let mut bigger = prom();
        bigger.spec.storage =
            serde_json::from_value(serde_json::json!({"volumeClaimTemplate": {"size": "20Gi"}})).unwrap();
        let (kept, note) = storage_in_effect(&bigger, Some(&live));
        let kept = kept.unwrap().volume_claim_template.unwrap();
        assert_eq!(kept.size.as_deref(), Some("10Gi"));
        assert!(note.unwrap().contains("cannot change"));
        // emptyDir asked for where a claim template runs, and the other way round.
        let mut ephemeral = prom();
        ephemeral.spec.storage = None;
        let (kept, note) = storage_in_effect(&ephemeral, Some(&live));
        assert!(kept.unwrap().volume_claim_template.is_some() && note.is_some());
        let live_ephemeral = statefulset(&ephemeral, "r", 1, &Tuning::default());
        let (kept, note) = storage_in_effect(&p, Some(&live_ephemeral));
        assert!(kept.unwrap().volume_claim_template.is_none() && note.is_some());
    }

    #[test]
    fn one_statefulset_per_shard_and_shard_zero_keeps_its_name_and_selector() {
        let p = prom();
        let one = statefulsets(&p, "r", 1, &Tuning::default());
        assert_eq!(one, vec![statefulset(&p, "r", 1, &Tuning::default())]);
        let mut sharded = prom();
        sharded.spec.shards = 3;
        let sets = statefulsets(&sharded, "r", 1, &Tuning::default());
        let names: Vec<String> = sets.iter().map(|s| s.name_any()).collect();
        assert_eq!(
            names,
            [
                "prometheus-team-a",
                "prometheus-team-a-shard-1",
                "prometheus-team-a-shard-2"
            ]
        );
        // A StatefulSet's selector cannot change: shard 0 keeps the one from before sharding.
        assert_eq!(sets[0].spec.selector, one[0].spec.selector);
        for (n, sts) in sets.iter().enumerate() {
            let shard = n.to_string();
            if n > 0 {
                let sel = sts.spec.selector.match_labels.clone().unwrap();
                assert_eq!(sel.get(SHARD_LABEL), Some(&shard));
            }
            let tpl = &sts.spec.template;
            let labels = tpl.metadata.as_ref().unwrap().labels.clone().unwrap();
            assert_eq!(labels.get(SHARD_LABEL), Some(&shard));
            let pod = tpl.spec.as_ref().unwrap();
            for c in pod.containers.iter().chain(pod.init_containers.iter().flatten()) {
                let env = c.env.clone().unwrap_or_default();
                let shard_env = env
                    .iter()
                    .find(|e| e.name == "SHARD")
                    .and_then(|e| e.value.clone());
                if c.name.ends_with("config-reloader") {
                    assert_eq!(shard_env, Some(shard.clone()), "{}", c.name);
                } else {
                    assert_eq!(shard_env, None, "{}", c.name);
                }
            }
            // Each shard has its own claims: data-prometheus-team-a-shard-1-0, ...
            assert!(sts.spec.volume_claim_templates.is_some());
        }
    }

    #[test]
    fn explicit_image_and_user_service_account_win() {
        let mut p = prom();
        p.spec.image = Some("registry.example/prom:custom".into());
        p.spec.service_account_name = Some("mine".into());
        assert_eq!(image(&p), "registry.example/prom:custom");
        assert!(service_account(&p).is_none());
        let sts = statefulset(&p, "r", 1, &Tuning::default());
        let pod = sts.spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("mine"));
        let args = pod.containers[0].args.clone().unwrap();
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--storage.tsdb.retention.size"))
        );
        assert!(pod.containers[0].env.is_none(), "no GOMEMLIMIT without a limit");
    }
}
