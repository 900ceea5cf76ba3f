//! Every pod our operators create (etcd members, Prometheus, Alertmanager), and the operators' own Deployments, pass Pod Security
//! "restricted" as kubesim's admission (which follows upstream's checks) evaluates it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::bins;
use e2e::kubesim::pod_security::{Level, Policy, violations};
use serde_json::{Value, json};

fn restricted() -> Policy {
    Policy {
        level: Level::Restricted,
        version: "latest".into(),
    }
}

fn etcd(spec: Value) -> etcd_operator::crd::EtcdCluster {
    serde_json::from_value(json!({
        "apiVersion": "etcd.steward.dev/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "db", "namespace": "team", "uid": "u1"},
        "spec": spec,
    }))
    .unwrap()
}

fn member(spec: Value) -> Value {
    let c = etcd(spec);
    let pod = etcd_operator::resources::member_pod(
        &c,
        "db-abcde",
        &[("db-abcde".into(), "https://db-abcde.db-peer:2380".into())],
        "new",
    );
    serde_json::to_value(pod).unwrap()
}

#[test]
fn etcd_member_pods_pass_restricted() {
    for storage in [
        json!({"emptyDir": {}}),
        json!({"volumeClaimTemplate": {"size": "1Gi"}}),
    ] {
        for tls in ["auto", "disabled"] {
            let pod =
                member(json!({"size": 3, "version": "3.5.16", "tls": {"mode": tls}, "storage": storage}));
            assert_eq!(violations(&restricted(), &pod), None, "{pod:#}");
            assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
            assert!(pod["spec"]["securityContext"]["fsGroup"].is_number(), "{pod:#}");
        }
    }
    // A user's own securityContext replaces the default, and admission judges it.
    let pod = member(
        json!({"size": 1, "version": "3.5.16", "storage": {"emptyDir": {}},
        "podTemplate": {"containerSecurityContext": {"privileged": true}}}),
    );
    let v = violations(&restricted(), &pod).unwrap_or_default();
    assert!(v.contains("privileged (container \"etcd\""), "{v}");
}

/// A seed restored from a backup, with its three init containers (operator and etcd images).
#[test]
fn a_restoring_seed_passes_restricted() {
    for version in ["3.4.23", "3.5.16"] {
        let c = etcd(json!({"size": 3, "version": version, "storage": {"emptyDir": {}}}));
        let initial = [(
            "db-abcde".to_string(),
            "https://db-abcde.db-peer:2380".to_string(),
        )];
        let mut pod = etcd_operator::resources::member_pod(&c, "db-abcde", &initial, "new");
        let source = etcd_operator::resources::RestoreSource {
            store: etcd_operator::resources::RestoreStore::S3(
                serde_json::from_value(json!({"bucket": "b", "credentialsSecret": "s3"})).unwrap(),
            ),
            key: "team/src/b.db".into(),
            sha256: None,
        };
        let spec = pod.spec.as_mut().unwrap();
        spec.init_containers = Some(etcd_operator::resources::restore_init_containers(
            &c,
            "db-abcde",
            &initial,
            &source,
            "steward/etcd-operator:dev",
            steward_core::security::restricted_container(),
        ));
        let pod = serde_json::to_value(pod).unwrap();
        assert_eq!(pod["spec"]["initContainers"].as_array().map(Vec::len), Some(3));
        assert_eq!(violations(&restricted(), &pod), None, "{pod:#}");
    }
}

/// The pods of a backup to a PersistentVolumeClaim (taking it, with the client certificate
/// mounted, and deleting it).
#[test]
fn backup_pods_pass_restricted() {
    use etcd_operator::backup::pod;
    let backup: etcd_operator::crd::EtcdBackup = serde_json::from_value(json!({
        "apiVersion": "etcd.steward.dev/v1alpha1",
        "kind": "EtcdBackup",
        "metadata": {"name": "nightly", "namespace": "team", "uid": "u3"},
        "spec": {"clusterRef": {"name": "db"}, "destination": {"pvc": {"claimName": "backups"}}},
    }))
    .unwrap();
    let pvc = backup.spec.destination.pvc.clone().unwrap();
    let run = pod::BackupRun {
        endpoint: "https://db-abcde.db.team.svc:2379",
        client_tls_secret: Some("db-client-tls"),
        key: "team/db/nightly.db",
        compression: etcd_operator::snapshot::Compression::None,
        image: "steward/etcd-operator:dev",
        attempt: 1,
    };
    for p in [
        pod::backup_pod(&backup, &pvc, &run),
        pod::delete_pod(&backup, &pvc, "team/db/nightly.db", "steward/etcd-operator:dev"),
    ] {
        let p = serde_json::to_value(p).unwrap();
        assert_eq!(violations(&restricted(), &p), None, "{p:#}");
        assert_eq!(p["spec"]["automountServiceAccountToken"], false);
    }
}

#[test]
fn prometheus_pods_pass_restricted() {
    for storage in [json!(null), json!({"volumeClaimTemplate": {"size": "5Gi"}})] {
        let mut spec = json!({"replicas": 1});
        if !storage.is_null() {
            spec["storage"] = storage;
        }
        let p: prometheus_operator::crd::Prometheus = serde_json::from_value(json!({
            "apiVersion": "monitoring.steward.dev/v1alpha1",
            "kind": "Prometheus",
            "metadata": {"name": "team", "namespace": "team", "uid": "u2"},
            "spec": spec,
        }))
        .unwrap();
        let sts = prometheus_operator::resources::statefulset(
            &p,
            "steward/prometheus-operator:dev",
            1,
            &Default::default(),
        );
        let sts = serde_json::to_value(sts).unwrap();
        let template = &sts["spec"]["template"];
        assert_eq!(violations(&restricted(), template), None, "{template:#}");
    }
}

#[test]
fn alertmanager_pods_pass_restricted() {
    for (replicas, storage) in [
        (3, json!(null)),
        (1, json!({"volumeClaimTemplate": {"size": "1Gi"}})),
    ] {
        let mut spec = json!({"replicas": replicas});
        if !storage.is_null() {
            spec["storage"] = storage;
        }
        let am: prometheus_operator::crd::Alertmanager = serde_json::from_value(json!({
            "apiVersion": "monitoring.steward.dev/v1alpha1",
            "kind": "Alertmanager",
            "metadata": {"name": "team", "namespace": "team", "uid": "u3"},
            "spec": spec,
        }))
        .unwrap();
        let sts =
            prometheus_operator::alertmanager::build::statefulset(&am, "steward/prometheus-operator:dev");
        let sts = serde_json::to_value(sts).unwrap();
        let template = &sts["spec"]["template"];
        assert_eq!(violations(&restricted(), template), None, "{template:#}");
    }
}

#[test]
fn operator_deployments_pass_restricted() {
    for op in ["etcd-operator", "prometheus-operator"] {
        let path = bins::repo_root().join(format!("deploy/{op}/deployment.yaml"));
        let d: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            violations(&restricted(), &d["spec"]["template"]),
            None,
            "{}",
            path.display()
        );
    }
}
