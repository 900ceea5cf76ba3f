//! Pure builders of every child object of an EtcdCluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Probe,
    ResourceRequirements, SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::OPERATOR_NAME;

mod restore;
pub use restore::*;

/// The user and group members run as: the `nonroot` user of etcd's distroless images.
pub const MEMBER_UID: i64 = 65532;
use crate::crd::{EtcdCluster, TlsMode};

/// Label naming the member a pod or PVC belongs to.
pub const MEMBER_LABEL: &str = "etcd.steward.dev/member";

/// Client port.
pub const CLIENT_PORT: i32 = 2379;
/// Peer port.
pub const PEER_PORT: i32 = 2380;
/// Plain-HTTP metrics and health port.
pub const METRICS_PORT: i32 = 2381;

/// Labels shared by every child of `cluster` for one component.
pub fn labels(cluster: &EtcdCluster, component: &str) -> BTreeMap<String, String> {
    steward_core::labels::standard("etcd", &cluster.name_any(), component, OPERATOR_NAME)
}

/// Labels selecting the member pods of `cluster`.
pub fn member_selector(cluster: &EtcdCluster) -> BTreeMap<String, String> {
    let mut l = steward_core::labels::owner_selector("etcd", &cluster.name_any(), OPERATOR_NAME);
    l.insert(steward_core::labels::COMPONENT.into(), "member".into());
    l
}

fn scheme(cluster: &EtcdCluster) -> &'static str {
    if cluster.spec.tls.mode == TlsMode::Disabled {
        "http"
    } else {
        "https"
    }
}

/// Name of the headless peer Service.
pub fn peer_service_name(cluster: &EtcdCluster) -> String {
    format!("{}-peers", cluster.name_any())
}

/// A member's stable DNS name.
pub fn member_host(cluster: &EtcdCluster, member: &str) -> String {
    format!(
        "{member}.{}.{}.svc",
        peer_service_name(cluster),
        cluster.namespace().unwrap_or_default()
    )
}

/// A member's peer URL.
pub fn peer_url(cluster: &EtcdCluster, member: &str) -> String {
    format!(
        "{}://{}:{PEER_PORT}",
        scheme(cluster),
        member_host(cluster, member)
    )
}

/// A member's client URL.
pub fn client_url(cluster: &EtcdCluster, member: &str) -> String {
    format!(
        "{}://{}:{CLIENT_PORT}",
        scheme(cluster),
        member_host(cluster, member)
    )
}

/// The member name in a peer URL (`https://<member>.<cluster>-peers...`).
pub fn member_of_peer_url(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split([':', '/']).next()?;
    host.split('.').next().map(String::from)
}

fn meta(cluster: &EtcdCluster, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cluster.namespace(),
        labels: Some(labels(cluster, component)),
        ..Default::default()
    }
}

/// The client Service `<name>`.
pub fn client_service(cluster: &EtcdCluster) -> Service {
    Service {
        metadata: meta(cluster, cluster.name_any(), "client"),
        spec: Some(ServiceSpec {
            selector: Some(member_selector(cluster)),
            // Metrics on plain HTTP beside the client port, for a ServiceMonitor; the member
            // pods name the same port `metrics`.
            ports: Some(vec![
                ServicePort {
                    name: Some("client".into()),
                    port: CLIENT_PORT,
                    target_port: Some(IntOrString::Int(CLIENT_PORT)),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("metrics".into()),
                    port: METRICS_PORT,
                    target_port: Some(IntOrString::String("metrics".into())),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The headless peer Service `<name>-peers`, publishing not-ready members so peers resolve
/// while they join.
pub fn peer_service(cluster: &EtcdCluster) -> Service {
    Service {
        metadata: meta(cluster, peer_service_name(cluster), "peers"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(member_selector(cluster)),
            ports: Some(vec![
                ServicePort {
                    name: Some("client".into()),
                    port: CLIENT_PORT,
                    ..Default::default()
                },
                ServicePort {
                    name: Some("peer".into()),
                    port: PEER_PORT,
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Voluntary disruptions (drains, evictions) may take down only the members a cluster of
/// `spec.size` can lose and keep quorum: `size - quorum(size)`, so none for sizes 1 and 2.
pub fn pod_disruption_budget(cluster: &EtcdCluster) -> PodDisruptionBudget {
    let size = cluster.spec.size.max(1);
    let quorum = size / 2 + 1;
    PodDisruptionBudget {
        metadata: meta(cluster, cluster.name_any(), "member"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(size - quorum)),
            selector: Some(LabelSelector {
                match_labels: Some(member_selector(cluster)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Name of a member's PVC.
pub fn pvc_name(member: &str) -> String {
    format!("{member}-data")
}

/// A member's data PVC.
pub fn member_pvc(cluster: &EtcdCluster, member: &str) -> PersistentVolumeClaim {
    let tpl = cluster
        .spec
        .storage
        .volume_claim_template
        .clone()
        .unwrap_or_default();
    let mut m = meta(cluster, pvc_name(member), "member");
    if let Some(l) = m.labels.as_mut() {
        l.insert(MEMBER_LABEL.into(), member.into());
    }
    PersistentVolumeClaim {
        metadata: m,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: tpl.storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(tpl.size.unwrap_or_else(|| "1Gi".into())),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// etcd flags from spec.options.
fn option_args(cluster: &EtcdCluster) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(o) = &cluster.spec.options {
        if let Some(q) = o.quota_backend_bytes {
            args.push(format!("--quota-backend-bytes={q}"));
        }
        if let Some(a) = &o.auto_compaction {
            let mode = match a.mode {
                crate::crd::AutoCompactionMode::Periodic => "periodic",
                crate::crd::AutoCompactionMode::Revision => "revision",
            };
            args.push(format!("--auto-compaction-mode={mode}"));
            args.push(format!("--auto-compaction-retention={}", a.retention));
        }
        if let Some(n) = o.snapshot_count {
            args.push(format!("--snapshot-count={n}"));
        }
        if let Some(h) = o.heartbeat_interval_ms {
            args.push(format!("--heartbeat-interval={h}"));
        }
        if let Some(e) = o.election_timeout_ms {
            args.push(format!("--election-timeout={e}"));
        }
        // Admission refuses the rest; objects stored before that rule existed still never
        // override what the operator manages.
        for extra in &o.extra_args {
            if extra_arg_problem(extra).is_none() {
                args.push(extra.clone());
            }
        }
    }
    args
}

/// Flags the operator sets itself, and flags that endanger data or security; the same list as
/// the CRD's `EXTRA_ARGS_MANAGED_RULE`.
const REFUSED_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "listen-metrics-urls",
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "client-cert-auth",
    "auto-tls",
    "peer-cert-file",
    "peer-key-file",
    "peer-trusted-ca-file",
    "peer-client-cert-auth",
    "peer-auto-tls",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "experimental-peer-skip-client-san-verification",
    "force-new-cluster",
    "unsafe-no-fsync",
    "config-file",
    "discovery",
    "discovery-srv",
    "discovery-srv-name",
];

/// Why an `extraArgs` item cannot be passed to etcd, if it cannot. Go's flag parser takes
/// `-flag` and `--flag`, with `=value` or the value as the next argument; only the
/// single-item `--flag[=value]` form is allowed, so a value can never be read as a flag.
pub fn extra_arg_problem(arg: &str) -> Option<String> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
    let Some(body) = body else {
        return Some(format!("{arg:?} is not a flag: use --flag=value in one item"));
    };
    let name = body.split('=').next().unwrap_or_default();
    let shape_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !shape_ok {
        return Some(format!("{arg:?} is not a flag: use --flag=value in one item"));
    }
    REFUSED_FLAGS
        .contains(&name)
        .then(|| format!("--{name} is managed by the operator or unsafe and cannot be set in extraArgs"))
}

/// Where the server and peer Secrets are mounted in member pods.
const SERVER_TLS_DIR: &str = "/etc/etcd/tls/server";
const PEER_TLS_DIR: &str = "/etc/etcd/tls/peer";

/// The Secrets member pods mount, `(server, peer)`; `None` without TLS.
pub fn member_tls_secrets(cluster: &EtcdCluster) -> Option<(String, String)> {
    match cluster.spec.tls.mode {
        TlsMode::Disabled => None,
        TlsMode::Auto => Some((
            crate::tls::secret_name(cluster, crate::tls::Role::Server),
            crate::tls::secret_name(cluster, crate::tls::Role::Peer),
        )),
        TlsMode::Secrets => cluster
            .spec
            .tls
            .secrets
            .as_ref()
            .map(|s| (s.server.clone(), s.peer.clone())),
    }
}

/// etcd flags for TLS: mutual TLS on both ports. See `crate::tls` for why peers skip the
/// client SAN check.
fn tls_args(cluster: &EtcdCluster) -> Vec<String> {
    if member_tls_secrets(cluster).is_none() {
        return Vec::new();
    }
    let mut args = vec![
        format!("--cert-file={SERVER_TLS_DIR}/tls.crt"),
        format!("--key-file={SERVER_TLS_DIR}/tls.key"),
        format!("--trusted-ca-file={SERVER_TLS_DIR}/ca.crt"),
        "--client-cert-auth=true".to_string(),
        format!("--peer-cert-file={PEER_TLS_DIR}/tls.crt"),
        format!("--peer-key-file={PEER_TLS_DIR}/tls.key"),
        format!("--peer-trusted-ca-file={PEER_TLS_DIR}/ca.crt"),
        "--peer-client-cert-auth=true".to_string(),
    ];
    // Pod IPs change, so peer SANs cannot list them: the SAN check is skipped only where a
    // CN pin takes its place (always in mode auto; in mode secrets when the user names one).
    let pin = match cluster.spec.tls.mode {
        TlsMode::Auto => Some(crate::tls::common_name(cluster, crate::tls::Role::Peer)),
        _ => cluster
            .spec
            .tls
            .secrets
            .as_ref()
            .and_then(|s| s.peer_allowed_cn.clone()),
    };
    if let Some(cn) = pin {
        args.push("--experimental-peer-skip-client-san-verification=true".to_string());
        args.push(format!("--peer-cert-allowed-cn={cn}"));
    }
    args
}

/// Where the data volume is mounted in member pods.
pub const DATA_MOUNT: &str = "/var/lib/etcd";
/// etcd's `--data-dir`, on the data volume.
pub const DATA_DIR: &str = "/var/lib/etcd/data";

/// `--initial-cluster`'s value: `name=peerURL` pairs joined by commas.
pub fn initial_cluster_arg(initial_cluster: &[(String, String)]) -> String {
    initial_cluster
        .iter()
        .map(|(n, u)| format!("{n}={u}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `--initial-cluster-token`: the EtcdCluster's UID (its name for an object without one).
pub fn cluster_token(cluster: &EtcdCluster) -> String {
    cluster.uid().unwrap_or_else(|| cluster.name_any())
}

/// A member pod. `initial_cluster` lists `name=peerURL` of every member including this one;
/// `state` is `new` for the seed and `existing` afterwards.
pub fn member_pod(
    cluster: &EtcdCluster,
    member: &str,
    initial_cluster: &[(String, String)],
    state: &str,
) -> Pod {
    let mut m = meta(cluster, member.to_string(), "member");
    if let Some(l) = m.labels.as_mut() {
        l.insert(MEMBER_LABEL.into(), member.into());
        if let Some(t) = &cluster.spec.pod_template {
            for (k, v) in &t.labels {
                l.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    m.annotations = cluster
        .spec
        .pod_template
        .as_ref()
        .map(|t| t.annotations.clone())
        .filter(|a| !a.is_empty());
    let s = scheme(cluster);
    let initial = initial_cluster_arg(initial_cluster);
    let mut args = vec![
        format!("--name={member}"),
        format!("--data-dir={DATA_DIR}"),
        format!("--listen-client-urls={s}://0.0.0.0:{CLIENT_PORT}"),
        format!("--advertise-client-urls={}", client_url(cluster, member)),
        format!("--listen-peer-urls={s}://0.0.0.0:{PEER_PORT}"),
        format!("--initial-advertise-peer-urls={}", peer_url(cluster, member)),
        format!("--initial-cluster={initial}"),
        format!("--initial-cluster-state={state}"),
        format!("--initial-cluster-token={}", cluster_token(cluster)),
        format!("--listen-metrics-urls=http://0.0.0.0:{METRICS_PORT}"),
    ];
    args.extend(tls_args(cluster));
    args.extend(option_args(cluster));
    let volume = match &cluster.spec.storage.empty_dir {
        Some(e) => Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: e.medium.clone(),
                size_limit: e.size_limit.clone().map(Quantity),
                ..Default::default()
            }),
            ..Default::default()
        },
        None => Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc_name(member),
                read_only: None,
            }),
            ..Default::default()
        },
    };
    let mut volumes = vec![volume];
    let mut mounts = vec![VolumeMount {
        name: "data".into(),
        mount_path: DATA_MOUNT.into(),
        ..Default::default()
    }];
    if let Some((server, peer)) = member_tls_secrets(cluster) {
        for (name, secret, dir) in [
            ("server-tls", server, SERVER_TLS_DIR),
            ("peer-tls", peer, PEER_TLS_DIR),
        ] {
            volumes.push(Volume {
                name: name.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret),
                    default_mode: Some(0o400),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: name.into(),
                mount_path: dir.into(),
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
    let template = cluster.spec.pod_template.clone().unwrap_or_default();
    // Requests so that a member is never the first to go under memory pressure.
    let resources = template
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".into())),
                ("memory".to_string(), Quantity("128Mi".into())),
            ])),
            ..Default::default()
        });
    Pod {
        metadata: m,
        spec: Some(PodSpec {
            hostname: Some(member.to_string()),
            subdomain: Some(peer_service_name(cluster)),
            // Members are replaced by the operator, never restarted elsewhere by a controller.
            restart_policy: Some("Always".into()),
            containers: vec![Container {
                name: "etcd".into(),
                image: Some(format!("{}:v{}", cluster.spec.repository, cluster.spec.version)),
                command: Some(vec!["/usr/local/bin/etcd".into()]),
                args: Some(args),
                env: Some(vec![EnvVar {
                    name: "POD_IP".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "status.podIP".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![
                    ContainerPort {
                        name: Some("client".into()),
                        container_port: CLIENT_PORT,
                        ..Default::default()
                    },
                    ContainerPort {
                        name: Some("peer".into()),
                        container_port: PEER_PORT,
                        ..Default::default()
                    },
                    ContainerPort {
                        name: Some("metrics".into()),
                        container_port: METRICS_PORT,
                        ..Default::default()
                    },
                ]),
                readiness_probe: Some(Probe {
                    http_get: Some(HTTPGetAction {
                        path: Some("/health".into()),
                        port: IntOrString::Int(METRICS_PORT),
                        ..Default::default()
                    }),
                    period_seconds: Some(2),
                    failure_threshold: Some(3),
                    ..Default::default()
                }),
                resources: Some(resources),
                volume_mounts: Some(mounts),
                security_context: Some(
                    template
                        .container_security_context
                        .clone()
                        .unwrap_or_else(steward_core::security::restricted_container),
                ),
                ..Default::default()
            }],
            // Members never talk to the Kubernetes API.
            automount_service_account_token: Some(false),
            security_context: Some(
                template
                    .security_context
                    .clone()
                    .unwrap_or_else(|| steward_core::security::restricted_pod(MEMBER_UID)),
            ),
            volumes: Some(volumes),
            node_selector: Some(template.node_selector.clone()).filter(|n| !n.is_empty()),
            tolerations: Some(template.tolerations.clone()).filter(|t| !t.is_empty()),
            priority_class_name: template.priority_class_name.clone(),
            affinity: Some(
                template
                    .affinity
                    .clone()
                    .unwrap_or_else(|| default_affinity(cluster)),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Members prefer different hosts.
fn default_affinity(cluster: &EtcdCluster) -> k8s_openapi::api::core::v1::Affinity {
    use k8s_openapi::api::core::v1::{Affinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm};
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    topology_key: "kubernetes.io/hostname".into(),
                    label_selector: Some(LabelSelector {
                        match_labels: Some(member_selector(cluster)),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::EtcdClusterSpec;

    fn cluster() -> EtcdCluster {
        let spec: EtcdClusterSpec = serde_json::from_value(serde_json::json!({
            "size": 3, "version": "3.5.16",
            "tls": {"mode": "disabled"},
            "storage": {"volumeClaimTemplate": {"size": "2Gi"}},
            "options": {"quotaBackendBytes": 2147483648i64, "autoCompaction": {"mode": "periodic", "retention": "1h"}, "extraArgs": ["--log-level=debug", "--name=evil"]},
        }))
        .unwrap();
        let mut c = EtcdCluster::new("main", spec);
        c.metadata.namespace = Some("db".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    fn golden(name: &str, actual: &impl serde::Serialize) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
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
        let c = cluster();
        golden("client-service.yaml", &client_service(&c));
        golden("peer-service.yaml", &peer_service(&c));
        golden("pdb.yaml", &pod_disruption_budget(&c));
        golden("member-pvc.yaml", &member_pvc(&c, "main-abcde"));
        let initial = vec![
            ("main-abcde".to_string(), peer_url(&c, "main-abcde")),
            ("main-fghij".to_string(), peer_url(&c, "main-fghij")),
        ];
        golden(
            "member-pod.yaml",
            &member_pod(&c, "main-fghij", &initial, "existing"),
        );
        let mut tls = c.clone();
        tls.spec.tls.mode = TlsMode::Auto;
        golden(
            "member-pod-tls.yaml",
            &member_pod(&tls, "main-fghij", &initial, "existing"),
        );
    }

    #[test]
    fn secrets_mode_mounts_the_users_secrets() {
        let mut c = cluster();
        c.spec.tls.mode = TlsMode::Secrets;
        c.spec.tls.secrets = Some(crate::crd::EtcdTlsSecrets {
            server: "my-server".into(),
            peer: "my-peer".into(),
            client: "my-client".into(),
            peer_allowed_cn: None,
        });
        assert_eq!(
            member_tls_secrets(&c),
            Some(("my-server".to_string(), "my-peer".to_string()))
        );
        let pod = member_pod(&c, "main-x", &[], "new");
        let spec = pod.spec.unwrap();
        let secrets: Vec<String> = spec
            .volumes
            .unwrap()
            .iter()
            .filter_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()))
            .collect();
        assert_eq!(secrets, ["my-server", "my-peer"]);
        let args = spec.containers[0].args.clone().unwrap();
        assert!(args.contains(&"--client-cert-auth=true".to_string()));
        assert!(
            args.iter()
                .any(|a| a == "--listen-client-urls=https://0.0.0.0:2379")
        );
        // The peer CN is only pinned for certificates the operator issues.
        assert!(!args.iter().any(|a| a.starts_with("--peer-cert-allowed-cn")));
    }

    #[test]
    fn extra_args_cannot_override_managed_or_unsafe_flags() {
        for bad in [
            "--name=x",
            "-name=x",
            "--data-dir=/tmp",
            "-initial-cluster-state=new",
            "--force-new-cluster",
            "-force-new-cluster=true",
            "--client-cert-auth=false",
            "--unsafe-no-fsync",
            "new",
            "--Name=x",
            "---name=x",
        ] {
            assert!(extra_arg_problem(bad).is_some(), "{bad} must be refused");
        }
        for good in [
            "--log-level=debug",
            "-log-level=info",
            "--enable-v2=false",
            "--max-txn-ops=256",
        ] {
            assert_eq!(extra_arg_problem(good), None, "{good}");
        }
        let mut c = cluster();
        c.spec.options = Some(crate::crd::EtcdOptions {
            extra_args: vec![
                "-name=evil".into(),
                "--log-level=debug".into(),
                "--force-new-cluster".into(),
            ],
            ..Default::default()
        });
        let args = option_args(&c);
        assert_eq!(args, vec!["--log-level=debug".to_string()]);
    }

    #[test]
    fn secrets_mode_skips_peer_san_checks_only_with_a_cn_pin() {
        let mut c = cluster();
        c.spec.tls.mode = TlsMode::Secrets;
        c.spec.tls.secrets = Some(crate::crd::EtcdTlsSecrets {
            server: "s".into(),
            peer: "p".into(),
            client: "c".into(),
            peer_allowed_cn: None,
        });
        let args = tls_args(&c);
        assert!(args.contains(&"--peer-client-cert-auth=true".to_string()));
        assert!(!args.iter().any(|a| a.contains("skip-client-san")), "{args:?}");
        if let Some(s) = c.spec.tls.secrets.as_mut() {
            s.peer_allowed_cn = Some("etcd-peer".into());
        }
        let args = tls_args(&c);
        assert!(args.contains(&"--experimental-peer-skip-client-san-verification=true".to_string()));
        assert!(args.contains(&"--peer-cert-allowed-cn=etcd-peer".to_string()));
    }

    #[test]
    fn disruption_budget_keeps_quorum() {
        let mut c = cluster();
        for (size, allowed) in [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (7, 3), (9, 4)] {
            c.spec.size = size;
            let pdb = pod_disruption_budget(&c);
            let max = pdb.spec.and_then(|s| s.max_unavailable);
            assert_eq!(max, Some(IntOrString::Int(allowed)), "size {size}");
        }
    }

    #[test]
    fn urls_and_names() {
        let c = cluster();
        assert_eq!(peer_url(&c, "main-x"), "http://main-x.main-peers.db.svc:2380");
        assert_eq!(
            member_of_peer_url("https://main-x.main-peers.db.svc:2380").as_deref(),
            Some("main-x")
        );
        assert_eq!(member_of_peer_url("http://10.0.0.1:2380").as_deref(), Some("10"));
    }
}
