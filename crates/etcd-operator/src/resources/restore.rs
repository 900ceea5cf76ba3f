//! The init containers that restore a seed member from a snapshot (`spec.bootstrap.fromBackup`).
//!
//! Three steps, each safe to run again (a pod sandbox restart re-runs every init container):
//! 1. `restore-fetch` (operator image) clears the staging directory on the data volume,
//!    downloads the snapshot into it and verifies its SHA-256 and etcd's own digest;
//! 2. `restore` (etcd image, no shell) runs `etcdutl snapshot restore` (`etcdctl` on 3.4) into
//!    the staging directory with the member's name, initial cluster, peer URL and token;
//! 3. `restore-finish` (operator image) moves the staged data dir into place only when the
//!    data dir holds no member yet, and otherwise discards the staging directory.

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, SecretKeySelector, Volume,
    VolumeMount,
};

use super::{DATA_DIR, DATA_MOUNT, cluster_token, initial_cluster_arg, peer_url};
use crate::backup::pod as backup_pod;
use crate::crd::{EtcdCluster, PvcDestination, S3Destination};
use crate::version::Version;

/// Staging directory of a restore, on the data volume (so the final move is a rename).
pub const RESTORE_STAGING: &str = "/var/lib/etcd/restore";
/// Where `restore-fetch` writes the (decompressed) snapshot.
pub const RESTORE_SNAPSHOT: &str = "/var/lib/etcd/restore/snapshot.db";
/// Where the snapshot is restored before it is moved to [`DATA_DIR`].
pub const RESTORE_DATA: &str = "/var/lib/etcd/restore/data";
/// Name of the init container that downloads and verifies the snapshot.
pub const FETCH_CONTAINER: &str = "restore-fetch";
/// Name of the init container that runs etcd's restore.
pub const RESTORE_CONTAINER: &str = "restore";
/// Name of the init container that moves the restored data into place.
pub const FINISH_CONTAINER: &str = "restore-finish";
/// How far revisions jump on a restore (where etcd supports it): far above anything the
/// source cluster can have reached since the snapshot, so no revision is ever reused.
pub const BUMP_REVISION: u64 = 1_000_000_000;

/// The first etcd release whose `etcdutl snapshot restore` has `--bump-revision` and
/// `--mark-compacted`.
const BUMP_SINCE: Version = Version {
    major: 3,
    minor: 5,
    patch: 10,
};

/// Where the snapshot a seed is restored from is stored.
#[derive(Clone, Debug, PartialEq)]
pub enum RestoreStore {
    /// Bucket, prefix, endpoint and the credentials Secret.
    S3(S3Destination),
    /// A directory on a PersistentVolumeClaim of the cluster's namespace, mounted read-only
    /// into `restore-fetch`.
    Pvc(PvcDestination),
}

/// The stored snapshot a seed is restored from.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreSource {
    /// Where it is stored.
    pub store: RestoreStore,
    /// Key relative to the prefix (S3) or the directory (PVC).
    pub key: String,
    /// Expected hex SHA-256 of the stored object.
    pub sha256: Option<String>,
}

/// How a version restores a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreTool {
    /// Path of the binary in the etcd image: `etcdutl` from 3.5, `etcdctl` on 3.4.
    pub binary: &'static str,
    /// Whether `--bump-revision` and `--mark-compacted` exist.
    pub bump: bool,
}

/// The restore tool of etcd `version`.
pub fn restore_tool(version: Version) -> RestoreTool {
    let etcdutl = version
        >= Version {
            major: 3,
            minor: 5,
            patch: 0,
        };
    RestoreTool {
        binary: if etcdutl {
            "/usr/local/bin/etcdutl"
        } else {
            "/usr/local/bin/etcdctl"
        },
        bump: version >= BUMP_SINCE,
    }
}

fn data_mount() -> VolumeMount {
    VolumeMount {
        name: "data".into(),
        mount_path: DATA_MOUNT.into(),
        ..Default::default()
    }
}

fn secret_env(secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: key.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Name of the volume of a PVC restore source in the seed pod.
pub const BACKUP_VOLUME: &str = "backup";

/// The volume the seed pod needs for `source`: its claim, read-only (none for S3).
pub fn restore_volume(source: &RestoreSource) -> Option<Volume> {
    let RestoreStore::Pvc(pvc) = &source.store else {
        return None;
    };
    Some(Volume {
        name: BACKUP_VOLUME.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: pvc.claim_name.clone(),
            read_only: Some(true),
        }),
        ..Default::default()
    })
}

/// `restore-fetch`'s arguments for `source`.
fn fetch_args(source: &RestoreSource) -> Vec<String> {
    let mut args = vec!["restore-fetch".to_string()];
    match &source.store {
        RestoreStore::S3(s3) => {
            args.push(format!("--s3-bucket={}", s3.bucket));
            if !s3.prefix.is_empty() {
                args.push(format!("--s3-prefix={}", s3.prefix));
            }
            if let Some(e) = &s3.endpoint {
                args.push(format!("--s3-endpoint={e}"));
            }
            if let Some(r) = &s3.region {
                args.push(format!("--s3-region={r}"));
            }
            if s3.force_path_style {
                args.push("--s3-force-path-style".into());
            }
        }
        RestoreStore::Pvc(pvc) => args.push(format!("--directory={}", backup_pod::directory(pvc))),
    }
    args.push(format!("--key={}", source.key));
    if let Some(sum) = &source.sha256 {
        args.push(format!("--sha256={sum}"));
    }
    args.push(format!("--clear={RESTORE_STAGING}"));
    args.push(format!("--out={RESTORE_SNAPSHOT}"));
    args
}

/// The arguments of the etcd restore of `member` of `cluster` at `version`, matching what
/// the etcd container is started with (`--name`, `--initial-cluster`,
/// `--initial-advertise-peer-urls`, `--initial-cluster-token`).
pub fn restore_args(
    cluster: &EtcdCluster,
    member: &str,
    initial_cluster: &[(String, String)],
    version: Version,
) -> Vec<String> {
    let mut args = vec![
        "snapshot".to_string(),
        "restore".to_string(),
        RESTORE_SNAPSHOT.to_string(),
        format!("--data-dir={RESTORE_DATA}"),
        format!("--name={member}"),
        format!("--initial-cluster={}", initial_cluster_arg(initial_cluster)),
        format!("--initial-advertise-peer-urls={}", peer_url(cluster, member)),
        format!("--initial-cluster-token={}", cluster_token(cluster)),
    ];
    if restore_tool(version).bump {
        args.push(format!("--bump-revision={BUMP_REVISION}"));
        args.push("--mark-compacted".into());
    }
    args
}

/// The three init containers restoring `member` (the seed) of `cluster` from `source`:
/// `restore-fetch` and `restore-finish` in `operator_image`, `restore` in the etcd image.
/// `container_security` is the etcd container's securityContext.
pub fn restore_init_containers(
    cluster: &EtcdCluster,
    member: &str,
    initial_cluster: &[(String, String)],
    source: &RestoreSource,
    operator_image: &str,
    container_security: k8s_openapi::api::core::v1::SecurityContext,
) -> Vec<Container> {
    let version = Version::parse(&cluster.spec.version).unwrap_or(BUMP_SINCE);
    let credentials = match &source.store {
        RestoreStore::S3(s3) => s3.credentials_secret.as_deref(),
        RestoreStore::Pvc(_) => None,
    };
    let env = credentials.map(|secret| {
        vec![
            secret_env(secret, "AWS_ACCESS_KEY_ID", false),
            secret_env(secret, "AWS_SECRET_ACCESS_KEY", false),
            secret_env(secret, "AWS_SESSION_TOKEN", true),
        ]
    });
    let container = |name: &str, image: String, command: Vec<String>, args: Vec<String>| Container {
        name: name.into(),
        image: Some(image),
        command: Some(command),
        args: Some(args),
        volume_mounts: Some(vec![data_mount()]),
        security_context: Some(container_security.clone()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let operator = vec!["/usr/local/bin/etcd-operator".to_string()];
    let mut fetch = container(
        FETCH_CONTAINER,
        operator_image.to_string(),
        operator.clone(),
        fetch_args(source),
    );
    fetch.env = env;
    if restore_volume(source).is_some() {
        fetch
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: BACKUP_VOLUME.into(),
                mount_path: backup_pod::PVC_MOUNT.into(),
                read_only: Some(true),
                ..Default::default()
            });
    }
    let restore = container(
        RESTORE_CONTAINER,
        format!("{}:v{}", cluster.spec.repository, cluster.spec.version),
        vec![restore_tool(version).binary.to_string()],
        restore_args(cluster, member, initial_cluster, version),
    );
    let finish = container(
        FINISH_CONTAINER,
        operator_image.to_string(),
        operator,
        vec![
            "restore-finish".to_string(),
            format!("--staging={RESTORE_STAGING}"),
            format!("--restored={RESTORE_DATA}"),
            format!("--data-dir={DATA_DIR}"),
        ],
    );
    vec![fetch, restore, finish]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::crd::EtcdClusterSpec;

    fn cluster(version: &str) -> EtcdCluster {
        let mut c = EtcdCluster::new(
            "restored",
            EtcdClusterSpec {
                version: version.into(),
                ..serde_json::from_value(serde_json::json!({"size": 3, "version": version})).unwrap()
            },
        );
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    fn source() -> RestoreSource {
        RestoreSource {
            store: RestoreStore::S3(S3Destination {
                bucket: "b".into(),
                prefix: "p/".into(),
                endpoint: Some("http://s3:9000".into()),
                region: Some("r".into()),
                force_path_style: true,
                credentials_secret: Some("creds".into()),
            }),
            key: "ns/src/one.db.zst".into(),
            sha256: Some("ab".repeat(32)),
        }
    }

    fn containers(version: &str) -> (EtcdCluster, Vec<Container>) {
        let c = cluster(version);
        let initial = vec![("restored-a".to_string(), peer_url(&c, "restored-a"))];
        let cs = restore_init_containers(
            &c,
            "restored-a",
            &initial,
            &source(),
            "steward/etcd-operator:v1",
            steward_core::security::restricted_container(),
        );
        (c, cs)
    }

    /// The flags of the etcd container a restore must repeat, as `--flag=value` strings.
    fn etcd_flags(c: &EtcdCluster) -> Vec<String> {
        let initial = vec![("restored-a".to_string(), peer_url(c, "restored-a"))];
        let pod = super::super::member_pod(c, "restored-a", &initial, "new");
        let args = pod.spec.unwrap().containers[0].args.clone().unwrap();
        args.into_iter()
            .filter(|a| {
                [
                    "--name=",
                    "--initial-cluster=",
                    "--initial-advertise-peer-urls=",
                    "--initial-cluster-token=",
                ]
                .iter()
                .any(|f| a.starts_with(f))
            })
            .collect()
    }

    #[test]
    fn etcd_3_5_16_restores_with_etcdutl_and_bumps_revisions() {
        let (c, cs) = containers("3.5.16");
        let names: Vec<&str> = cs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [FETCH_CONTAINER, RESTORE_CONTAINER, FINISH_CONTAINER]);
        let restore = &cs[1];
        assert_eq!(
            restore.image.as_deref(),
            Some("gcr.io/etcd-development/etcd:v3.5.16")
        );
        assert_eq!(restore.command.as_deref().unwrap(), ["/usr/local/bin/etcdutl"]);
        let args = restore.args.clone().unwrap();
        assert_eq!(
            &args[..4],
            [
                "snapshot",
                "restore",
                RESTORE_SNAPSHOT,
                "--data-dir=/var/lib/etcd/restore/data"
            ]
        );
        assert!(
            args.contains(&"--bump-revision=1000000000".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"--mark-compacted".to_string()), "{args:?}");
        // Exactly the etcd container's identity flags.
        let flags = etcd_flags(&c);
        assert_eq!(flags.len(), 4);
        for f in &flags {
            assert!(args.contains(f), "{f} missing from {args:?}");
        }
        assert!(args.contains(&"--initial-cluster-token=uid-1".to_string()));
    }

    #[test]
    fn etcd_3_4_restores_with_etcdctl_without_bump_flags() {
        let (c, cs) = containers("3.4.23");
        let restore = &cs[1];
        assert_eq!(restore.command.as_deref().unwrap(), ["/usr/local/bin/etcdctl"]);
        let args = restore.args.clone().unwrap();
        assert!(
            !args.iter().any(|a| a.contains("bump") || a.contains("compacted")),
            "{args:?}"
        );
        for f in etcd_flags(&c) {
            assert!(args.contains(&f), "{f} missing from {args:?}");
        }
    }

    #[test]
    fn etcd_before_3_5_10_uses_etcdutl_without_bump_flags() {
        let tool = restore_tool(Version::parse("3.5.9").unwrap());
        assert_eq!(tool.binary, "/usr/local/bin/etcdutl");
        assert!(!tool.bump);
        assert!(restore_tool(Version::parse("3.5.30").unwrap()).bump);
        assert!(restore_tool(Version::parse("3.6.0").unwrap()).bump);
    }

    #[test]
    fn fetch_verifies_the_sum_with_credentials_from_the_secret() {
        let (_, cs) = containers("3.5.16");
        let fetch = &cs[0];
        assert_eq!(fetch.image.as_deref(), Some("steward/etcd-operator:v1"));
        assert_eq!(
            fetch.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        let args = fetch.args.clone().unwrap();
        assert_eq!(args[0], "restore-fetch");
        for a in [
            "--s3-bucket=b",
            "--s3-prefix=p/",
            "--s3-endpoint=http://s3:9000",
            "--s3-region=r",
            "--s3-force-path-style",
            "--key=ns/src/one.db.zst",
            "--clear=/var/lib/etcd/restore",
            "--out=/var/lib/etcd/restore/snapshot.db",
        ] {
            assert!(args.contains(&a.to_string()), "{a} missing from {args:?}");
        }
        assert!(args.contains(&format!("--sha256={}", "ab".repeat(32))));
        let env = fetch.env.clone().unwrap();
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
        );
        let r = env[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str()), ("creds", "AWS_ACCESS_KEY_ID"));
        // Secrets never appear in arguments.
        assert!(!args.iter().any(|a| a.contains("AWS")));
        let finish = &cs[2];
        assert_eq!(finish.args.clone().unwrap()[0], "restore-finish");
        for c in &cs {
            assert_eq!(
                c.security_context,
                Some(steward_core::security::restricted_container())
            );
            assert_eq!(c.volume_mounts.clone().unwrap()[0].mount_path, DATA_MOUNT);
        }
    }

    #[test]
    fn fetch_reads_a_claim_read_only() {
        let c = cluster("3.5.16");
        let source = RestoreSource {
            store: RestoreStore::Pvc(PvcDestination {
                claim_name: "backups".into(),
                path: "etcd".into(),
            }),
            key: "ns/src/one.db".into(),
            sha256: None,
        };
        let initial = vec![("restored-a".to_string(), peer_url(&c, "restored-a"))];
        let cs = restore_init_containers(
            &c,
            "restored-a",
            &initial,
            &source,
            "img",
            steward_core::security::restricted_container(),
        );
        let fetch = &cs[0];
        let args = fetch.args.clone().unwrap();
        assert!(args.contains(&"--directory=/backup/etcd".to_string()), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--s3")), "{args:?}");
        assert!(fetch.env.is_none());
        let mount = &fetch.volume_mounts.clone().unwrap()[1];
        assert_eq!(
            (mount.name.as_str(), mount.read_only),
            (BACKUP_VOLUME, Some(true))
        );
        let volume = restore_volume(&source).unwrap();
        let claim = volume.persistent_volume_claim.unwrap();
        assert_eq!(
            (claim.claim_name.as_str(), claim.read_only),
            ("backups", Some(true))
        );
        // The other containers never see the claim.
        assert!(
            cs[1..]
                .iter()
                .all(|c| c.volume_mounts.clone().unwrap().len() == 1)
        );
    }
}
