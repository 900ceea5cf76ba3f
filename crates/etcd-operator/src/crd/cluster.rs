//! `EtcdCluster`: one etcd cluster run by the operator.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default image repository for etcd.
pub const DEFAULT_REPOSITORY: &str = "gcr.io/etcd-development/etcd";

fn default_repository() -> String {
    DEFAULT_REPOSITORY.to_string()
}

fn default_member_failure_timeout() -> String {
    "2m".to_string()
}

fn default_recovery_after() -> String {
    "5m".to_string()
}

/// Desired state of an etcd cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "etcd.steward.dev",
    version = "v1alpha1",
    kind = "EtcdCluster",
    plural = "etcdclusters",
    singular = "etcdcluster",
    namespaced,
    status = "EtcdClusterStatus",
    shortname = "etcd",
    category = "steward",
    category = "etcd",
    doc = "An etcd cluster whose members, upgrades, TLS and healing are managed by Steward's etcd-operator.",
    scale(
        spec_replicas_path = ".spec.size",
        status_replicas_path = ".status.size",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.size", description = "Desired members"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyMembers", description = "Healthy members"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.currentVersion", description = "Running etcd version"),
    printcolumn(name = "Available", type_ = "string", json_path = ".status.conditions[?(@.type==\"Available\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name must be at most 40 characters: member pods and services derive their names from it"),
    validation = Rule::new(BOOTSTRAP_IMMUTABLE_RULE).message("spec.bootstrap is immutable: it says how the cluster was created; create a new EtcdCluster to restore another backup")
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClusterSpec {
    /// Number of voting members, 1 to 9. Odd sizes give the best failure tolerance per member.
    #[schemars(range(min = 1, max = 9))]
    pub size: i32,

    /// etcd version to run, `MAJOR.MINOR.PATCH` without a leading `v`, e.g. `3.5.16`.
    /// Changing it starts a rolling upgrade (upwards, one minor version at a time).
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$"))]
    pub version: String,

    /// Image repository; the image is `<repository>:v<version>`.
    #[serde(default = "default_repository")]
    pub repository: String,

    /// Stops every change to the cluster while true; status is still reported.
    #[serde(default)]
    pub paused: bool,

    /// Where members keep their data.
    #[serde(default)]
    pub storage: EtcdStorage,

    /// Scheduling and metadata applied to every member pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<EtcdPodTemplate>,

    /// Transport security for clients and peers.
    #[serde(default)]
    pub tls: EtcdTls,

    /// etcd server tuning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<EtcdOptions>,

    /// How long a member may be unreachable before it is removed and replaced by a fresh
    /// member, as a duration such as `90s` or `2m` (at most 100 years).
    #[serde(default = "default_member_failure_timeout")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,7}(\.[0-9]{1,9})?(ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub member_failure_timeout: String,

    /// Scheduled maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<EtcdMaintenance>,

    /// Scheduled backups (EtcdBackups created on a cron schedule) and their retention.
    /// Scheduled backups carry no ownerReference to this EtcdCluster: they survive its
    /// deletion, since they are how it is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<super::EtcdBackupSchedule>,

    /// How the cluster is created. Without it the first member starts empty; with
    /// `fromBackup` it is restored from a snapshot. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<EtcdBootstrap>,

    /// Disaster recovery: what the operator does once quorum is lost and every member's data
    /// is gone (emptyDir pods deleted, or every member PVC lost). Without it, or with
    /// `fromLatestBackup: false`, the operator only reports `QuorumLost`, naming the backup a
    /// restore would use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<EtcdRecovery>,
}

/// Disaster recovery after total data loss.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdRecovery {
    /// How long quorum must have been lost, with every member's data gone, before the
    /// cluster is rebuilt, as a duration such as `90s` or `5m` (the default).
    #[serde(default = "default_recovery_after")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,7}(\.[0-9]{1,9})?(ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub after: String,
    /// Rebuild the cluster from the newest Succeeded EtcdBackup of this cluster (by
    /// completionTime): a seed member is restored from it and the cluster grows to `size`
    /// through learners. Writes made after that backup are lost. Off by default: the
    /// operator then only says which backup a restore would use. Never done while any
    /// member's data may still exist.
    #[serde(default)]
    pub from_latest_backup: bool,
}

impl Default for EtcdRecovery {
    fn default() -> Self {
        EtcdRecovery {
            after: default_recovery_after(),
            from_latest_backup: false,
        }
    }
}

/// CEL on the object: `spec.bootstrap` can be neither set, changed nor removed after creation.
pub const BOOTSTRAP_IMMUTABLE_RULE: &str = "has(self.spec.bootstrap) == has(oldSelf.spec.bootstrap) && (!has(self.spec.bootstrap) || self.spec.bootstrap == oldSelf.spec.bootstrap)";

/// How a new cluster is created.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBootstrap {
    /// Restore the first member (the seed) from an etcd snapshot; the cluster then grows to
    /// `size` one learner at a time, every new member copying the restored data from the
    /// seed. Revisions are bumped (etcd 3.5.10 and newer) so watchers re-list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<FromBackup>,
}

/// The snapshot a cluster is restored from: an EtcdBackup, or a stored object given by hand.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.backupRef) != has(self.destination)").message("set exactly one of fromBackup.backupRef and fromBackup.destination"))]
#[x_kube(validation = Rule::new("!has(self.destination) || has(self.key)").message("fromBackup.key is required with fromBackup.destination"))]
#[x_kube(validation = Rule::new("!has(self.backupRef) || (!has(self.key) && !has(self.sha256))").message("fromBackup.key and fromBackup.sha256 come from the EtcdBackup's status with fromBackup.backupRef"))]
pub struct FromBackup {
    /// An EtcdBackup in this namespace; it must have succeeded. Its destination, key and
    /// sha256 are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_ref: Option<BackupRef>,
    /// Where the snapshot is stored, as an EtcdBackup's destination (the credentials Secret
    /// is read in this namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<super::BackupDestination>,
    /// Object key of the snapshot, relative to the destination's prefix (as an EtcdBackup's
    /// `status.key`); `.gz` and `.zst` keys are decompressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub key: Option<String>,
    /// Expected hex SHA-256 of the stored object; the restore fails when it differs. etcd's
    /// own digest at the end of the snapshot is checked either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// A reference to an EtcdBackup in the same namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRef {
    /// Name of the EtcdBackup.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Storage of member data: a PersistentVolumeClaim per member, or an emptyDir.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.volumeClaimTemplate) && has(self.emptyDir))").message("set at most one of volumeClaimTemplate and emptyDir"))]
#[x_kube(validation = Rule::new("has(self.volumeClaimTemplate) == has(oldSelf.volumeClaimTemplate) && has(self.emptyDir) == has(oldSelf.emptyDir)").message("the storage kind (volumeClaimTemplate or emptyDir) cannot change after creation"))]
pub struct EtcdStorage {
    /// A PersistentVolumeClaim per member; data survives pod deletion. Used when neither
    /// field is set, with 1Gi and the default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<EtcdVolumeClaimTemplate>,

    /// Member data in an emptyDir: lost with the pod. For tests and caches only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EtcdEmptyDir>,

    /// What happens to the PVCs when the EtcdCluster is deleted: `Retain` (default) keeps
    /// them, `Delete` removes them.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

/// The PVC each member gets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdVolumeClaimTemplate {
    /// Requested size as a Kubernetes quantity, e.g. `8Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// StorageClass to use; the cluster default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// emptyDir options.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdEmptyDir {
    /// `Memory` for tmpfs; node disk when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// Size limit as a Kubernetes quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// Fate of member volumes when the cluster is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReclaimPolicy {
    /// Keep the PVCs.
    #[default]
    Retain,
    /// Delete the PVCs with the cluster.
    Delete,
}

/// Pod-level settings for members.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdPodTemplate {
    /// Extra labels on member pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on member pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// CPU and memory for the etcd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels a member's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Affinity rules; by default members prefer different hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of member pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// PriorityClass of member pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Pod securityContext of members. By default they run as user and group 65532 with
    /// fsGroup 65532 (so the data volume is writable) and the RuntimeDefault seccomp profile,
    /// which passes Pod Security "restricted". When set, it replaces that default entirely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// securityContext of the etcd container. By default: no privilege escalation, every
    /// capability dropped, read-only root filesystem. When set, it replaces that default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
}

/// How TLS certificates are provided.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    /// The operator issues and renews a CA and server, peer and client certificates.
    #[default]
    Auto,
    /// Certificates come from user-provided Secrets.
    Secrets,
    /// Plain HTTP between clients, peers and members. Not for production.
    Disabled,
}

/// Transport security.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'secrets' || has(self.secrets)").message("tls.secrets is required when tls.mode is secrets"))]
#[x_kube(validation = Rule::new("!(oldSelf.mode == 'disabled' && self.mode != 'disabled')").message("TLS cannot be turned on for a running cluster; create a new cluster and copy the data into it (etcdctl snapshot save, etcdutl snapshot restore)"))]
#[x_kube(validation = Rule::new("self.mode == oldSelf.mode").message("tls.mode cannot change after creation; create a new cluster and copy the data into it (etcdctl snapshot save, etcdutl snapshot restore)"))]
pub struct EtcdTls {
    /// `auto` (default), `secrets` or `disabled`.
    #[serde(default)]
    pub mode: TlsMode,
    /// Secret names for mode `secrets`; each holds `tls.crt`, `tls.key` and `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<EtcdTlsSecrets>,
    /// Lifetime of the server, peer and client certificates issued in mode `auto`, as a
    /// duration such as `2160h` (90 days, the default). Each is renewed once two thirds of
    /// its lifetime have passed; members pick the new files up without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,7}(\.[0-9]{1,9})?(ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub certificate_validity: Option<String>,
    /// Lifetime of each CA the operator issues in mode `auto`, as a duration such as
    /// `87600h` (10 years, the default; at least `60s`). The CA that takes over next is in
    /// every `ca.crt` from the start; two thirds into the current CA's life it starts
    /// signing and every certificate is reissued under it, without restarting members. The
    /// old CA leaves `ca.crt` when it expires. A change applies to CAs issued afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,7}(\.[0-9]{1,9})?(ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub ca_validity: Option<String>,
}

/// User-provided certificate Secrets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdTlsSecrets {
    /// Serving certificate for client connections.
    pub server: String,
    /// Certificate for member-to-member traffic.
    pub peer: String,
    /// Client certificate the operator uses to talk to etcd.
    pub client: String,
    /// Common name every member's peer certificate carries. When set, members accept a
    /// peer whose certificate has this CN without checking its SANs against the peer's
    /// address (pod IPs change); when unset, peer certificates are verified in full, so
    /// their SANs must cover the members' addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub peer_allowed_cn: Option<String>,
}

/// CEL: every extraArgs item is a single flag (one or two dashes, Go's flag syntax).
pub const EXTRA_ARGS_SHAPE_RULE: &str = "self.all(a, a.matches('^--?[a-z0-9][-a-z0-9.]*(=.*)?$'))";
/// CEL: no extraArgs item sets a flag the operator manages or an unsafe one.
pub const EXTRA_ARGS_MANAGED_RULE: &str = "self.all(a, !a.matches('^--?(name|data-dir|wal-dir|listen-client-urls|advertise-client-urls|listen-peer-urls|initial-advertise-peer-urls|initial-cluster|initial-cluster-state|initial-cluster-token|listen-metrics-urls|cert-file|key-file|trusted-ca-file|client-cert-auth|auto-tls|peer-cert-file|peer-key-file|peer-trusted-ca-file|peer-client-cert-auth|peer-auto-tls|peer-cert-allowed-cn|peer-cert-allowed-hostname|experimental-peer-skip-client-san-verification|force-new-cluster|unsafe-no-fsync|config-file|discovery|discovery-srv|discovery-srv-name)(=.*)?$'))";

/// etcd server flags the operator manages.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.heartbeatIntervalMs) || !has(self.electionTimeoutMs) || self.electionTimeoutMs >= 5 * self.heartbeatIntervalMs").message("electionTimeoutMs must be at least 5 times heartbeatIntervalMs"))]
pub struct EtcdOptions {
    /// Backend size quota in bytes (`--quota-backend-bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub quota_backend_bytes: Option<i64>,
    /// Automatic compaction of old revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_compaction: Option<AutoCompaction>,
    /// Committed transactions between snapshots to disk (`--snapshot-count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub snapshot_count: Option<i64>,
    /// Heartbeat interval in milliseconds (`--heartbeat-interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub heartbeat_interval_ms: Option<i64>,
    /// Election timeout in milliseconds (`--election-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub election_timeout_ms: Option<i64>,
    /// Additional etcd flags, one `--flag=value` (or `--flag`) per item, e.g.
    /// `--log-level=debug`. Flags the operator manages (names, URLs, data dir, cluster
    /// membership, TLS) and flags that endanger data or security (`--force-new-cluster`,
    /// `--unsafe-no-fsync`) are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(EXTRA_ARGS_SHAPE_RULE).message("each extraArgs item must be one --flag or --flag=value"))]
    #[x_kube(validation = Rule::new(EXTRA_ARGS_MANAGED_RULE).message("extraArgs must not set flags the operator manages or unsafe flags (names, URLs, data dir, initial cluster, TLS, --force-new-cluster, --unsafe-no-fsync)"))]
    pub extra_args: Vec<String>,
}

/// How revisions are compacted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AutoCompactionMode {
    /// Keep a time window of history.
    Periodic,
    /// Keep a number of revisions.
    Revision,
}

/// `--auto-compaction-mode` and `--auto-compaction-retention`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AutoCompaction {
    /// `periodic` or `revision`.
    pub mode: AutoCompactionMode,
    /// A duration such as `1h` for periodic, a revision count such as `1000` for revision.
    pub retention: String,
}

/// Maintenance tasks.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMaintenance {
    /// Scheduled defragmentation. Each time the schedule fires a window opens: once the
    /// cluster is healthy and has nothing else to do, every member whose unused space reaches
    /// the threshold (and is at least 1 MiB) is defragmented, one member at a time, followers
    /// first and the leader last, each at most once per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defrag: Option<DefragPolicy>,
}

/// When to defragment. Each time the schedule fires a defragmentation window opens: once
/// the cluster is healthy and has nothing else to do, the operator defragments every member
/// whose unused space reaches the threshold (and is at least 1 MiB), one member per step,
/// followers first and the leader last. A member is defragmented at most once per window (see
/// `status.members[].lastDefragTime`); a window that opens while the cluster is busy
/// (scaling, upgrading, unhealthy) is honoured once it is stable again.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DefragPolicy {
    /// Standard 5-field cron schedule (minute hour day-of-month month day-of-week) in UTC,
    /// e.g. `0 3 * * *`, or a nickname such as `@daily`. Without a schedule nothing is
    /// defragmented. A schedule that does not parse switches defragmentation off and is
    /// reported by the `MaintenanceScheduled` condition; everything else keeps working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(@[a-zA-Z]+|\S+\s+\S+\s+\S+\s+\S+\s+\S+)$"))]
    pub schedule: Option<String>,
    /// Defragment a member only when its unused space, `(dbSize - dbSizeInUse) / dbSize`,
    /// is at least this percentage. When unset (0), any member with at least 1 MiB unused is
    /// defragmented in each window; below 1 MiB there is nothing worth reclaiming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub db_size_threshold_percent: Option<i32>,
}

/// Observed state of an etcd cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClusterStatus {
    /// Coarse lifecycle phase: `Creating`, `Running`, `Scaling`, `Upgrading`, `Degraded`,
    /// `Recovering` (rebuilding from a backup) or `Paused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Available`, `Progressing` and `Degraded`, with reasons such as `QuorumLost`; with a
    /// defrag schedule also `MaintenanceScheduled` (`Scheduled` or `InvalidSchedule`); with
    /// `spec.backup` also `BackupReady` (`BackupCurrent`, or `False` with `NoBackupYet`,
    /// `BackupOutdated`, `BackupFailed` or `InvalidSchedule`); after a rebuild from a backup
    /// also `Recovering` (`True` while it runs, then `False` with `RecoveredFromBackup`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Voting members currently in the cluster (the scale subresource reads this).
    #[serde(default)]
    pub size: i32,
    /// Label selector of member pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Members that answer health checks.
    #[serde(default)]
    pub ready_members: i32,
    /// Every member etcd reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<EtcdMemberStatus>,
    /// Lowest version any member runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Version the cluster is moving to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// Name of the leading member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the operator last defragmented any member (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_defrag_time: Option<String>,
    /// Since when quorum has been lost (RFC 3339); unset while a quorum of voting members is
    /// healthy. `spec.recovery.after` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_lost_since: Option<String>,
    /// When the operator last brought back a lost member or replaced a failed one (RFC 3339),
    /// not counting the members an upgrade restarts itself. A pre-upgrade backup taken before
    /// this is stale: the upgrade takes a fresh one before it goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_member_recovery_time: Option<String>,
    /// The member an upgrade restarted last, while the upgrade runs: its pod coming back (or,
    /// with emptyDir, its replacement) is the upgrade's own step, not a member recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_restarted: Option<String>,
    /// The last rebuild from a backup (`spec.recovery.fromLatestBackup`), in progress or
    /// done. A restarted operator continues the one in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<EtcdRecoveryStatus>,
}

/// Where a rebuild from a backup stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryPhase {
    /// The seed member is being restored from the backup.
    #[default]
    Restoring,
    /// The seed answers; the cluster grows to `spec.size` through learners.
    Growing,
    /// Every member is back and healthy.
    Succeeded,
}

/// A rebuild of the cluster from a backup after its data was lost.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdRecoveryStatus {
    /// `Restoring`, `Growing` or `Succeeded`.
    #[serde(default)]
    pub phase: RecoveryPhase,
    /// The EtcdBackup the cluster is rebuilt from.
    pub backup: String,
    /// When that backup completed (RFC 3339): writes made after it are lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_completion_time: Option<String>,
    /// The member restored from the backup, which the others join.
    pub seed: String,
    /// When the rebuild started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When every member was back and healthy (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
}

/// One member as etcd and the operator see it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMemberStatus {
    /// Member (and pod) name.
    pub name: String,
    /// Member ID in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Server version the member reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the member leads the raft group.
    #[serde(default)]
    pub is_leader: bool,
    /// Whether the member is a non-voting learner.
    #[serde(default)]
    pub is_learner: bool,
    /// Whether the member answered its last health check.
    #[serde(default)]
    pub healthy: bool,
    /// The member's client URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
    /// Since when the member has failed its health checks (RFC 3339); it is replaced once
    /// this is older than memberFailureTimeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_since: Option<String>,
    /// When the operator last defragmented this member (RFC 3339); a member is defragmented
    /// at most once per window of `spec.maintenance.defrag.schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_defrag_time: Option<String>,
}
