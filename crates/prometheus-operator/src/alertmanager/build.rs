//! Pure builders of every child of an Alertmanager: the StatefulSet (Alertmanager and the
//! config-reloader), the Service `alertmanager-<name>`, the shared headless
//! `alertmanager-operated`, the gzipped config Secret and the PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, PodSpec, PodTemplateSpec, Secret, SecretVolumeSource,
    Service, ServicePort, ServiceSpec, Volume,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::OPERATOR_NAME;
use crate::crd::Alertmanager;
use crate::workload::{self, field_env, http_probe, mount, requests};

/// Port of the web UI and API.
pub const WEB_PORT: i32 = 9093;
/// Port of the gossip mesh (TCP and UDP).
pub const MESH_PORT: i32 = 9094;
/// Port of the config-reloader's metrics.
pub const RELOADER_PORT: i32 = 8080;
/// Key of the gzipped configuration in the config Secret.
pub const CONFIG_KEY: &str = "alertmanager.yaml.gz";
/// The headless Service shared by every Alertmanager of a namespace.
pub const GOVERNING_SERVICE: &str = "alertmanager-operated";
/// Default image repository.
pub const DEFAULT_IMAGE: &str = "quay.io/prometheus/alertmanager";
/// The user and group Alertmanager runs as: its image's `nobody`.
pub const ALERTMANAGER_UID: i64 = 65534;
/// How long a departed peer is tried again before it is forgotten. Upstream's operator uses
/// 5m: a pod that is gone longer is a new pod, and Alertmanager's 6h default keeps gossiping
/// to dead IPs.
pub const RECONNECT_TIMEOUT: &str = "5m";
/// `app.kubernetes.io/name` of every child.
pub const APP: &str = "alertmanager";

const CONFIG_DIR: &str = "/etc/alertmanager/config";
const CONFIG_OUT_DIR: &str = "/etc/alertmanager/config_out";
const CONFIG_OUT_FILE: &str = "/etc/alertmanager/config_out/alertmanager.env.yaml";
const DATA_DIR: &str = "/alertmanager";

/// `alertmanager-<name>`: the StatefulSet, the Service and the config Secret.
pub fn base_name(am: &Alertmanager) -> String {
    format!("alertmanager-{}", am.name_any())
}

/// Labels on every child.
pub fn labels(am: &Alertmanager, component: &str) -> BTreeMap<String, String> {
    steward_core::labels::standard(APP, &am.name_any(), component, OPERATOR_NAME)
}

/// Labels selecting an Alertmanager's pods (and every child, for pruning).
pub fn pod_selector(am: &Alertmanager) -> BTreeMap<String, String> {
    steward_core::labels::owner_selector(APP, &am.name_any(), OPERATOR_NAME)
}

fn meta(am: &Alertmanager, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: am.namespace(),
        labels: Some(labels(am, component)),
        ..Default::default()
    }
}

/// The image of the Alertmanager container.
pub fn image(am: &Alertmanager) -> String {
    match &am.spec.image {
        Some(i) if !i.is_empty() => i.clone(),
        _ => format!("{DEFAULT_IMAGE}:v{}", am.spec.version.trim_start_matches('v')),
    }
}

/// `(major, minor)` of the spec's version; `None` when it does not parse.
fn minor_version(am: &Alertmanager) -> Option<(u32, u32)> {
    let mut parts = am.spec.version.trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether this version has `--cluster.peer-name`: 0.33 has it, 0.28 has not (both checked
/// against their `--help`); the releases in between are not tested, so they go without.
fn has_peer_name(am: &Alertmanager) -> bool {
    minor_version(am).is_some_and(|v| v >= (0, 33))
}

/// The stable DNS name of replica `i`, through the governing Service.
pub fn peer_address(am: &Alertmanager, i: i32) -> String {
    format!(
        "{}-{i}.{GOVERNING_SERVICE}.{}.svc:{MESH_PORT}",
        base_name(am),
        am.namespace().unwrap_or_default()
    )
}

/// Alertmanager's flags. With two or more replicas: listen on the pod IP, one
/// `--cluster.peer` per replica, a cluster label `<namespace>/<name>` so that two clusters
/// never merge, and a pod-sized reconnect timeout. With one: clustering off.
pub fn args(am: &Alertmanager) -> Vec<String> {
    let mut args = vec![
        format!("--config.file={CONFIG_OUT_FILE}"),
        format!("--storage.path={DATA_DIR}"),
        format!("--data.retention={}", am.spec.retention),
        format!("--web.listen-address=:{WEB_PORT}"),
    ];
    if let Some(url) = am.spec.external_url.as_deref().filter(|u| !u.is_empty()) {
        args.push(format!("--web.external-url={url}"));
    }
    if am.spec.replicas >= 2 {
        args.push(format!("--cluster.listen-address=[$(POD_IP)]:{MESH_PORT}"));
        args.push(format!(
            "--cluster.label={}/{}",
            am.namespace().unwrap_or_default(),
            am.name_any()
        ));
        for i in 0..am.spec.replicas {
            args.push(format!("--cluster.peer={}", peer_address(am, i)));
        }
        args.push(format!("--cluster.reconnect-timeout={RECONNECT_TIMEOUT}"));
        if has_peer_name(am) {
            args.push("--cluster.peer-name=$(POD_NAME)".into());
        }
    } else {
        args.push("--cluster.listen-address=".into());
    }
    args
}

fn port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

/// The StatefulSet `alertmanager-<name>`: Alertmanager, the config-reloader sidecar (the
/// operator's own image, `reloader_image`, POSTing `/-/reload`) and an init container that
/// renders the first config.
pub fn statefulset(am: &Alertmanager, reloader_image: &str) -> StatefulSet {
    let container_sc = am
        .spec
        .container_security_context
        .clone()
        .unwrap_or_else(steward_core::security::restricted_container);
    let reloader_mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("config-out", CONFIG_OUT_DIR, false),
    ];
    let render_args = vec![
        "config-reloader".to_string(),
        format!("--config-file={CONFIG_DIR}/{CONFIG_KEY}"),
        format!("--config-envsubst-file={CONFIG_OUT_FILE}"),
    ];
    let mut reloader_args = render_args.clone();
    reloader_args.extend([
        format!("--reload-url=http://127.0.0.1:{WEB_PORT}/-/reload"),
        "--reload-method=http".into(),
        format!("--listen-address=0.0.0.0:{RELOADER_PORT}"),
    ]);
    let mut init_args = render_args;
    init_args.push("--once".into());
    let reloader = Container {
        name: "config-reloader".into(),
        image: Some(reloader_image.to_string()),
        args: Some(reloader_args),
        env: Some(vec![field_env("POD_NAME", "metadata.name")]),
        ports: Some(vec![port("reloader-web", RELOADER_PORT, "TCP")]),
        resources: Some(requests("10m", "32Mi")),
        volume_mounts: Some(reloader_mounts.clone()),
        security_context: Some(container_sc.clone()),
        ..Default::default()
    };
    let init = Container {
        name: "init-config-reloader".into(),
        args: Some(init_args),
        ports: None,
        ..reloader.clone()
    };
    let alertmanager = Container {
        name: "alertmanager".into(),
        image: Some(image(am)),
        args: Some(args(am)),
        env: Some(vec![
            field_env("POD_IP", "status.podIP"),
            field_env("POD_NAME", "metadata.name"),
        ]),
        ports: Some(vec![
            port("web", WEB_PORT, "TCP"),
            port("mesh-tcp", MESH_PORT, "TCP"),
            port("mesh-udp", MESH_PORT, "UDP"),
        ]),
        readiness_probe: Some(http_probe("/-/ready", WEB_PORT, 5, 3)),
        liveness_probe: Some(http_probe("/-/healthy", WEB_PORT, 10, 6)),
        resources: Some(
            am.spec
                .resources
                .clone()
                .unwrap_or_else(|| requests("10m", "64Mi")),
        ),
        volume_mounts: Some(vec![
            mount("config-out", CONFIG_OUT_DIR, true),
            mount("data", DATA_DIR, false),
        ]),
        security_context: Some(container_sc),
        ..Default::default()
    };
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(base_name(am)),
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
    let (claim, data) = workload::data_storage(am.spec.storage.as_ref(), labels(am, "server"), "1Gi");
    volumes.extend(data);
    let mut pod_labels = labels(am, "server");
    pod_labels.extend(pod_selector(am));
    StatefulSet {
        metadata: meta(am, base_name(am), "server"),
        spec: StatefulSetSpec {
            replicas: Some(am.spec.replicas),
            service_name: Some(GOVERNING_SERVICE.into()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(pod_selector(am)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    init_containers: Some(vec![init]),
                    containers: vec![alertmanager, reloader],
                    volumes: Some(volumes),
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(120),
                    security_context: Some(
                        am.spec
                            .security_context
                            .clone()
                            .unwrap_or_else(|| steward_core::security::restricted_pod(ALERTMANAGER_UID)),
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

fn service_port(name: &str, port: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

/// The Service `alertmanager-<name>` in front of the replicas (web only).
pub fn service(am: &Alertmanager) -> Service {
    Service {
        metadata: meta(am, base_name(am), "server"),
        spec: Some(ServiceSpec {
            selector: Some(pod_selector(am)),
            ports: Some(vec![service_port("web", WEB_PORT, "TCP")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The headless `alertmanager-operated`, shared by every Alertmanager of the namespace: web,
/// and the mesh over TCP and UDP; not-ready pods are published too, so replicas find each
/// other while they start.
pub fn governing_service(namespace: &str) -> Service {
    let selector = BTreeMap::from([
        (steward_core::labels::NAME.to_string(), APP.to_string()),
        (
            steward_core::labels::MANAGED_BY.to_string(),
            OPERATOR_NAME.to_string(),
        ),
    ]);
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
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                service_port("web", WEB_PORT, "TCP"),
                service_port("tcp-mesh", MESH_PORT, "TCP"),
                service_port("udp-mesh", MESH_PORT, "UDP"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Secret `alertmanager-<name>` holding the gzipped alertmanager.yaml.
pub fn config_secret(am: &Alertmanager, gzipped: Vec<u8>) -> Secret {
    Secret {
        metadata: meta(am, base_name(am), "config"),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), ByteString(gzipped))])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// At most one replica down by choice (a drain, an eviction), for two or more replicas.
pub fn pdb(am: &Alertmanager) -> Option<PodDisruptionBudget> {
    (am.spec.replicas >= 2).then(|| PodDisruptionBudget {
        metadata: meta(am, base_name(am), "server"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(pod_selector(am)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AlertmanagerSpec;

    fn am(replicas: i32, version: &str) -> Alertmanager {
        let spec: AlertmanagerSpec =
            serde_json::from_value(serde_json::json!({"replicas": replicas, "version": version})).unwrap();
        let mut a = Alertmanager::new("main", spec);
        a.metadata.namespace = Some("mon".into());
        a
    }

    fn golden(name: &str, actual: &impl serde::Serialize) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/alertmanager/resources")
            .join(name);
        crate::testing::assert_golden(&path, &serde_yaml_ng::to_string(actual).unwrap());
    }

    #[test]
    fn golden_children() {
        let a = am(3, "0.28.1");
        golden(
            "statefulset.yaml",
            &statefulset(&a, "steward/prometheus-operator:dev"),
        );
        golden("service.yaml", &service(&a));
        golden("governing-service.yaml", &governing_service("mon"));
        golden("config-secret.yaml", &config_secret(&a, b"gz".to_vec()));
        golden("pdb.yaml", &pdb(&a));
    }

    #[test]
    fn clustering_flags_follow_replicas_and_version() {
        let three = args(&am(3, "0.28.1"));
        let peers: Vec<_> = three
            .iter()
            .filter(|a| a.starts_with("--cluster.peer="))
            .collect();
        assert_eq!(
            peers,
            [
                "--cluster.peer=alertmanager-main-0.alertmanager-operated.mon.svc:9094",
                "--cluster.peer=alertmanager-main-1.alertmanager-operated.mon.svc:9094",
                "--cluster.peer=alertmanager-main-2.alertmanager-operated.mon.svc:9094",
            ]
        );
        assert!(three.contains(&"--cluster.label=mon/main".to_string()));
        assert!(three.contains(&"--cluster.listen-address=[$(POD_IP)]:9094".to_string()));
        assert!(three.contains(&"--cluster.reconnect-timeout=5m".to_string()));
        // 0.28 has no --cluster.peer-name; 0.33 has.
        assert!(!three.iter().any(|a| a.starts_with("--cluster.peer-name")));
        assert!(args(&am(2, "0.33.1")).contains(&"--cluster.peer-name=$(POD_NAME)".to_string()));
        let one = args(&am(1, "0.33.1"));
        assert!(one.contains(&"--cluster.listen-address=".to_string()));
        assert!(
            !one.iter()
                .any(|a| a.starts_with("--cluster.peer") || a.starts_with("--cluster.label"))
        );
        assert!(pdb(&am(1, "0.28.1")).is_none());
    }
}
