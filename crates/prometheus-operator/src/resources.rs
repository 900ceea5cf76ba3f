//! Pure builders of every child object of a Prometheus: the StatefulSet, its Services, the
//! config Secret, rule ConfigMaps, and the ServiceAccount with the RBAC its service discovery
//! needs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretVolumeSource, Service, ServiceAccount,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::OPERATOR_NAME;
use crate::config::{Generated, RULES_DIR, rule_configmap_name};
use crate::crd::Prometheus;

/// Port of the Prometheus web UI and API.
pub const WEB_PORT: i32 = 9090;
/// Port of the config-reloader's metrics.
pub const RELOADER_PORT: i32 = 8080;
/// Key of the gzipped configuration in the config Secret.
pub const CONFIG_KEY: &str = "prometheus.yaml.gz";
/// Name of the governing Service shared by every Prometheus in a namespace.
pub const GOVERNING_SERVICE: &str = "prometheus-operated";
/// Label on RBAC objects outside the Prometheus' namespace: `<namespace>.<name>` of the
/// Prometheus they serve (owner references cannot cross namespaces).
pub const RBAC_OWNER_LABEL: &str = "monitoring.steward.dev/prometheus";
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

fn pod_name_env() -> EnvVar {
    EnvVar {
        name: "POD_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

fn http_probe(path: &str, port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
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
        "--web.enable-lifecycle".to_string(),
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
    reloader_args.push(format!("--listen-address=0.0.0.0:{RELOADER_PORT}"));
    let storage = p.spec.storage.clone().unwrap_or_default();
    let claim = storage
        .volume_claim_template
        .as_ref()
        .map(|t| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                labels: Some(labels(p, "server")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: t.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(t.size.clone().unwrap_or_else(|| "10Gi".into())),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    if claim.is_none() {
        let e = storage.empty_dir.unwrap_or_default();
        volumes.push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: e.medium,
                size_limit: e.size_limit.map(Quantity),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
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
        env: Some(vec![pod_name_env()]),
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

/// The user and group Prometheus runs as: its image's `nobody`.
pub const PROMETHEUS_UID: i64 = 65534;

/// Resource requests only (no limits): what the scheduler reserves for a container.
fn requests(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        ..Default::default()
    }
}

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

/// Where the service discovery of a Prometheus looks for targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryScope {
    /// Every namespace (some monitor has `namespaceSelector.any`).
    All,
    /// These namespaces.
    Namespaces(BTreeSet<String>),
}

/// Read access for Kubernetes service discovery (endpointslice and pod roles).
fn discovery_rules() -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["services".into(), "endpoints".into(), "pods".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        },
        PolicyRule {
            api_groups: Some(vec!["discovery.k8s.io".into()]),
            resources: Some(vec!["endpointslices".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        },
    ]
}

fn rbac_name(p: &Prometheus) -> String {
    format!(
        "steward-prometheus-{}-{}",
        p.namespace().unwrap_or_default(),
        p.name_any()
    )
}

/// Label value naming the Prometheus on RBAC objects it cannot own.
pub fn rbac_owner(p: &Prometheus) -> String {
    format!("{}.{}", p.namespace().unwrap_or_default(), p.name_any())
}

fn subject(p: &Prometheus) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: service_account_name(p),
        namespace: p.namespace(),
        api_group: None,
    }
}

fn rbac_meta(p: &Prometheus, name: String, namespace: Option<String>) -> ObjectMeta {
    let mut labels = labels(p, "rbac");
    labels.insert(RBAC_OWNER_LABEL.into(), rbac_owner(p));
    ObjectMeta {
        name: Some(name),
        namespace,
        labels: Some(labels),
        ..Default::default()
    }
}

/// Least-privilege discovery RBAC: a Role and RoleBinding in exactly the namespaces the
/// monitors look in, or a ClusterRole and ClusterRoleBinding when one of them looks
/// everywhere.
pub fn discovery_rbac(
    p: &Prometheus,
    scope: &DiscoveryScope,
) -> (
    Vec<Role>,
    Vec<RoleBinding>,
    Option<(ClusterRole, ClusterRoleBinding)>,
) {
    let name = rbac_name(p);
    match scope {
        DiscoveryScope::All => {
            let role = ClusterRole {
                metadata: rbac_meta(p, name.clone(), None),
                rules: Some(discovery_rules()),
                ..Default::default()
            };
            let binding = ClusterRoleBinding {
                metadata: rbac_meta(p, name.clone(), None),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name,
                },
                subjects: Some(vec![subject(p)]),
            };
            (Vec::new(), Vec::new(), Some((role, binding)))
        }
        DiscoveryScope::Namespaces(namespaces) => {
            let roles = namespaces
                .iter()
                .map(|ns| Role {
                    metadata: rbac_meta(p, name.clone(), Some(ns.clone())),
                    rules: Some(discovery_rules()),
                })
                .collect();
            let bindings = namespaces
                .iter()
                .map(|ns| RoleBinding {
                    metadata: rbac_meta(p, name.clone(), Some(ns.clone())),
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "Role".into(),
                        name: name.clone(),
                    },
                    subjects: Some(vec![subject(p)]),
                })
                .collect();
            (roles, bindings, None)
        }
    }
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
        let text = serde_yaml_ng::to_string(actual).unwrap();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
        pretty_assertions::assert_eq!(want, text, "{name}");
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
        golden("service.yaml", &service(&p));
        golden("governing-service.yaml", &governing_service("mon"));
        golden("config-secret.yaml", &config_secret(&p, b"gz".to_vec()));
        golden("serviceaccount.yaml", &service_account(&p));
        let scope = DiscoveryScope::Namespaces(["mon".to_string(), "apps".to_string()].into());
        golden("rbac-namespaces.yaml", &discovery_rbac(&p, &scope));
        golden("rbac-all.yaml", &discovery_rbac(&p, &DiscoveryScope::All));
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
