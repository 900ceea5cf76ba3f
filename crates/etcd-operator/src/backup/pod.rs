//! Pods for the PersistentVolumeClaim destination (pure). The operator cannot mount a
//! volume of another namespace's claim, so a short-lived pod of its own image does the work
//! where the volume is: `backup-run` takes the snapshot into the claim, `backup-delete`
//! removes one when retention prunes it. Each writes its result as one JSON line to its
//! termination message, which the controller reads back.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, Pod, PodSpec, ResourceRequirements, SecretVolumeSource,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::crd::{EtcdBackup, PvcDestination};
use crate::snapshot::{Compression, Outcome};

/// Where the claim is mounted in the pods.
pub const PVC_MOUNT: &str = "/backup";
/// Where the cluster's client certificate Secret is mounted.
const CLIENT_TLS_MOUNT: &str = "/etc/etcd/client-tls";
/// The operator binary in its image.
const OPERATOR_BINARY: &str = "/usr/local/bin/etcd-operator";
/// Where the pods write their result (the Kubernetes default termination message path).
pub const RESULT_FILE: &str = "/dev/termination-log";
/// Longest a backup pod may run before Kubernetes stops it (the in-process limit too).
pub const ACTIVE_DEADLINE_SECONDS: i64 = 3600;
/// `app.kubernetes.io/name` of the pods.
const APP: &str = "etcd-backup";

/// What a finished pod reported.
#[derive(Debug, PartialEq)]
pub enum Report {
    /// `backup-run` stored the snapshot.
    Stored(Outcome),
    /// `backup-delete` removed it (or it was already gone).
    Deleted,
    /// The command failed: reason, message, and whether another attempt may succeed.
    Failed {
        /// Condition reason, e.g. `EtcdUnreachable`.
        reason: String,
        /// What went wrong.
        message: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
}

/// The directory of `pvc` inside the pods.
pub fn directory(pvc: &PvcDestination) -> String {
    if pvc.path.is_empty() {
        PVC_MOUNT.to_string()
    } else {
        format!("{PVC_MOUNT}/{}", pvc.path.trim_end_matches('/'))
    }
}

/// `pvc://<claim>/<path>/<key>`: where a backup lives, for status.
pub fn location(pvc: &PvcDestination, key: &str) -> String {
    let path = pvc.path.trim_end_matches('/');
    if path.is_empty() {
        format!("pvc://{}/{key}", pvc.claim_name)
    } else {
        format!("pvc://{}/{path}/{key}", pvc.claim_name)
    }
}

/// Name of the pod taking attempt `attempt` of `backup`.
pub fn backup_pod_name(backup: &str, attempt: i32) -> String {
    format!("{backup}-backup-{attempt}")
}

/// Name of the pod deleting the stored snapshot of `backup`.
pub fn delete_pod_name(backup: &str) -> String {
    format!("{backup}-delete")
}

/// What a backup pod needs besides the backup itself.
pub struct BackupRun<'a> {
    /// Client URL of the member to snapshot.
    pub endpoint: &'a str,
    /// The cluster's client certificate Secret (`tls.crt`, `tls.key`, `ca.crt`) when TLS is on.
    pub client_tls_secret: Option<&'a str>,
    /// Key of the snapshot below the directory.
    pub key: &'a str,
    /// Compression of the stored file.
    pub compression: Compression,
    /// The operator's image.
    pub image: &'a str,
    /// Which attempt this is (1-based), part of the pod's name.
    pub attempt: i32,
}

/// The pod taking one attempt of `backup` into `pvc`.
pub fn backup_pod(backup: &EtcdBackup, pvc: &PvcDestination, run: &BackupRun<'_>) -> Pod {
    let mut args = vec![
        "backup-run".to_string(),
        format!("--endpoint={}", run.endpoint),
        format!("--directory={}", directory(pvc)),
        format!("--key={}", run.key),
        format!("--compression={}", run.compression.name()),
        format!("--result-file={RESULT_FILE}"),
    ];
    let mut mounts = vec![claim_mount()];
    let mut volumes = vec![claim_volume(pvc)];
    if let Some(secret) = run.client_tls_secret {
        args.extend([
            format!("--cacert={CLIENT_TLS_MOUNT}/{}", crate::tls::CA_KEY),
            format!("--cert={CLIENT_TLS_MOUNT}/tls.crt"),
            format!("--client-key={CLIENT_TLS_MOUNT}/tls.key"),
        ]);
        mounts.push(VolumeMount {
            name: "client-tls".into(),
            mount_path: CLIENT_TLS_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "client-tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    pod(
        backup,
        backup_pod_name(&backup.name_any(), run.attempt),
        "backup",
        run.image,
        args,
        mounts,
        volumes,
    )
}

/// The pod deleting `key` of `backup` from `pvc`.
pub fn delete_pod(backup: &EtcdBackup, pvc: &PvcDestination, key: &str, image: &str) -> Pod {
    let args = vec![
        "backup-delete".to_string(),
        format!("--directory={}", directory(pvc)),
        format!("--key={key}"),
        format!("--result-file={RESULT_FILE}"),
    ];
    pod(
        backup,
        delete_pod_name(&backup.name_any()),
        "backup-delete",
        image,
        args,
        vec![claim_mount()],
        vec![claim_volume(pvc)],
    )
}

fn claim_mount() -> VolumeMount {
    VolumeMount {
        name: "backup".into(),
        mount_path: PVC_MOUNT.into(),
        ..Default::default()
    }
}

fn claim_volume(pvc: &PvcDestination) -> Volume {
    Volume {
        name: "backup".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: pvc.claim_name.clone(),
            read_only: Some(false),
        }),
        ..Default::default()
    }
}

/// Labels of the pods of `backup`.
pub fn labels(backup: &EtcdBackup, component: &str) -> BTreeMap<String, String> {
    steward_core::labels::standard(APP, &backup.name_any(), component, crate::OPERATOR_NAME)
}

fn pod(
    backup: &EtcdBackup,
    name: String,
    component: &str,
    image: &str,
    args: Vec<String>,
    mounts: Vec<VolumeMount>,
    volumes: Vec<Volume>,
) -> Pod {
    let quantity = |q: &str| Quantity(q.to_string());
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: backup.namespace(),
            labels: Some(labels(backup, component)),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(ACTIVE_DEADLINE_SECONDS),
            // The pods talk to etcd and their volume, never to the Kubernetes API.
            automount_service_account_token: Some(false),
            // The member's user, so files on a volume shared with members stay readable.
            security_context: Some(steward_core::security::restricted_pod(
                crate::resources::MEMBER_UID,
            )),
            containers: vec![Container {
                name: component.into(),
                image: Some(image.to_string()),
                command: Some(vec![OPERATOR_BINARY.to_string()]),
                args: Some(args),
                volume_mounts: Some(mounts),
                security_context: Some(steward_core::security::restricted_container()),
                termination_message_path: Some(RESULT_FILE.into()),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), quantity("50m")),
                        ("memory".to_string(), quantity("64Mi")),
                    ])),
                    limits: Some(BTreeMap::from([("memory".to_string(), quantity("256Mi"))])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What a pod reported, once it has finished: `None` while it runs (or when it is not
/// there). A finished pod whose message is not ours (killed before it wrote one, say) is a
/// retryable failure that says what Kubernetes saw.
pub fn report(pod: &Pod) -> Option<Report> {
    let status = pod.status.as_ref()?;
    let phase = status.phase.as_deref()?;
    if phase != "Succeeded" && phase != "Failed" {
        return None;
    }
    let terminated = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let message = terminated.and_then(|t| t.message.clone()).unwrap_or_default();
    if let Some(report) = parse(&message) {
        return Some(report);
    }
    let why = terminated
        .and_then(|t| t.reason.clone())
        .or_else(|| status.reason.clone())
        .unwrap_or_else(|| phase.to_string());
    let tail = message.trim();
    Some(Report::Failed {
        reason: "PodFailed".into(),
        message: if tail.is_empty() {
            format!("pod {} ended {why} without a result", pod.name_any())
        } else {
            format!("pod {} ended {why}: {tail}", pod.name_any())
        },
        retryable: true,
    })
}

/// How long the pod's container ran, from its terminated state.
pub fn run_seconds(pod: &Pod) -> Option<f64> {
    let t = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    let (start, end) = (t.started_at.as_ref()?.0, t.finished_at.as_ref()?.0);
    Some(end.duration_since(start).as_secs_f64().max(0.0))
}

/// Reads the JSON line a pod wrote (the last line that parses, so log lines before it do not
/// matter).
fn parse(message: &str) -> Option<Report> {
    message.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        if let Some(e) = v.get("error") {
            return Some(Report::Failed {
                reason: e.get("reason")?.as_str()?.to_string(),
                message: e.get("message")?.as_str()?.to_string(),
                retryable: e.get("retryable").and_then(|r| r.as_bool()).unwrap_or(true),
            });
        }
        if v.get("deleted").is_some() {
            return Some(Report::Deleted);
        }
        serde_json::from_value::<Outcome>(v).ok().map(Report::Stored)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn backup() -> EtcdBackup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "etcd.steward.dev/v1alpha1",
            "kind": "EtcdBackup",
            "metadata": {"name": "nightly", "namespace": "prod", "uid": "u1"},
            "spec": {
                "clusterRef": {"name": "main"},
                "destination": {"pvc": {"claimName": "backups", "path": "etcd/"}},
            },
        }))
        .unwrap()
    }

    fn pvc() -> PvcDestination {
        backup().spec.destination.pvc.unwrap()
    }

    fn finished(phase: &str, message: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "prod"},
            "status": {"phase": phase, "containerStatuses": [{
                "name": "backup", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": message}},
            }]},
        }))
        .unwrap()
    }

    #[test]
    fn backup_pod_mounts_the_claim_and_the_client_certificate() {
        let run = BackupRun {
            endpoint: "https://main-0.main.prod.svc:2379",
            client_tls_secret: Some("main-client-tls"),
            key: "prod/main/nightly-20260101T000000Z.db.zst",
            compression: Compression::Zstd,
            image: "steward/etcd-operator:dev",
            attempt: 2,
        };
        let pod = backup_pod(&backup(), &pvc(), &run);
        assert_eq!(pod.metadata.name.as_deref(), Some("nightly-backup-2"));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        let c = &spec.containers[0];
        assert_eq!(
            c.args.clone().unwrap(),
            vec![
                "backup-run",
                "--endpoint=https://main-0.main.prod.svc:2379",
                "--directory=/backup/etcd",
                "--key=prod/main/nightly-20260101T000000Z.db.zst",
                "--compression=zstd",
                "--result-file=/dev/termination-log",
                "--cacert=/etc/etcd/client-tls/ca.crt",
                "--cert=/etc/etcd/client-tls/tls.crt",
                "--client-key=/etc/etcd/client-tls/tls.key",
            ]
        );
        let volumes = spec.volumes.unwrap();
        assert_eq!(
            volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "backups"
        );
        assert_eq!(
            volumes[1].secret.as_ref().unwrap().secret_name.as_deref(),
            Some("main-client-tls")
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            location(&pvc(), run.key),
            "pvc://backups/etcd/prod/main/nightly-20260101T000000Z.db.zst"
        );
    }

    #[test]
    fn delete_pod_runs_backup_delete() {
        let pod = delete_pod(&backup(), &pvc(), "prod/main/x.db", "img");
        assert_eq!(pod.metadata.name.as_deref(), Some("nightly-delete"));
        let args = pod.spec.unwrap().containers[0].args.clone().unwrap();
        assert_eq!(
            args,
            vec![
                "backup-delete",
                "--directory=/backup/etcd",
                "--key=prod/main/x.db",
                "--result-file=/dev/termination-log"
            ]
        );
    }

    #[test]
    fn reports_come_from_the_termination_message() {
        let outcome = Outcome {
            location: "file:///backup/etcd/k.db".into(),
            key: "k.db".into(),
            size_bytes: 10,
            sha256: "ab".into(),
            revision: 7,
            etcd_version: "3.5.16".into(),
            snapshot_bytes: 10,
        };
        let ok = finished("Succeeded", &serde_json::to_string(&outcome).unwrap());
        assert_eq!(report(&ok), Some(Report::Stored(outcome)));
        let err = finished(
            "Failed",
            "log line\n{\"error\":{\"reason\":\"EtcdUnreachable\",\"message\":\"no\",\"retryable\":true}}\n",
        );
        assert_eq!(
            report(&err),
            Some(Report::Failed {
                reason: "EtcdUnreachable".into(),
                message: "no".into(),
                retryable: true
            })
        );
        assert_eq!(
            report(&finished("Succeeded", "{\"deleted\":\"k\"}")),
            Some(Report::Deleted)
        );
        let killed = finished("Failed", "");
        match report(&killed) {
            Some(Report::Failed {
                reason, retryable, ..
            }) => assert_eq!((reason.as_str(), retryable), ("PodFailed", true)),
            other => panic!("{other:?}"),
        }
        let mut running = finished("Running", "");
        assert_eq!(report(&running), None);
        running.status = None;
        assert_eq!(report(&running), None);
    }
}
