//! `EtcdBackup`: one snapshot of an EtcdCluster, taken once and stored off the cluster; and
//! the types `EtcdCluster.spec.backup` shares with it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label naming the EtcdCluster a backup belongs to.
pub const BACKUP_CLUSTER_LABEL: &str = "etcd.steward.dev/cluster";
/// Label saying what created a backup: `schedule` for `EtcdCluster.spec.backup.schedule`.
pub const BACKUP_TRIGGER_LABEL: &str = "etcd.steward.dev/trigger";
/// Value of [`BACKUP_TRIGGER_LABEL`] on scheduled backups.
pub const TRIGGER_SCHEDULE: &str = "schedule";
/// Value of [`BACKUP_TRIGGER_LABEL`] on the backup taken before an upgrade.
pub const TRIGGER_BEFORE_UPGRADE: &str = "before-upgrade";
/// Value of [`BACKUP_TRIGGER_LABEL`] on the backup taken before a member is replaced.
pub const TRIGGER_BEFORE_MEMBER_REPLACEMENT: &str = "before-member-replacement";

/// A one-off snapshot of an EtcdCluster in the same namespace. The operator takes it once,
/// from the healthy voting member with the highest raft index, and records where it is
/// stored, its size, SHA-256 and etcd revision in status. A backup that succeeded or failed
/// is never run again; the spec cannot change after creation. Deleting an EtcdBackup does
/// not delete the stored snapshot (retention of scheduled backups does, see
/// `EtcdCluster.spec.backup.retention`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "etcd.steward.dev",
    version = "v1alpha1",
    kind = "EtcdBackup",
    plural = "etcdbackups",
    singular = "etcdbackup",
    namespaced,
    status = "EtcdBackupStatus",
    shortname = "etcdbackup",
    // Not in category "etcd": that name is also EtcdCluster's short name, and kubectl expands
    // a category first, so `kubectl patch etcd x` would name two kinds.
    category = "steward",
    doc = "A snapshot of an EtcdCluster taken once by Steward's etcd-operator and stored in S3.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef.name", description = "The EtcdCluster backed up"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Pending, Running, Succeeded or Failed"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".status.sizeBytes", description = "Stored bytes"),
    printcolumn(name = "Revision", type_ = "integer", json_path = ".status.revision", description = "etcd revision of the snapshot"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec == oldSelf.spec").message("spec is immutable: create a new EtcdBackup instead")
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupSpec {
    /// The EtcdCluster to back up, in the backup's namespace.
    pub cluster_ref: ClusterRef,
    /// Where the snapshot is stored.
    pub destination: BackupDestination,
    /// Compression of the stored snapshot: `none` (default, `.db`), `gzip` (`.db.gz`) or
    /// `zstd` (`.db.zst`).
    #[serde(default)]
    pub compression: BackupCompression,
}

/// A reference to an EtcdCluster in the same namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Name of the EtcdCluster.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where snapshots are stored. Exactly one kind must be set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.s3), has(self.pvc)].filter(x, x).size() == 1").message("set exactly one destination (s3 or pvc)"))]
pub struct BackupDestination {
    /// An S3 (or S3-compatible) bucket. The object key is
    /// `<prefix><namespace>/<cluster>/<backup>-<yyyymmddThhmmssZ><extension>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
    /// A PersistentVolumeClaim of the backup's namespace. The operator cannot mount it
    /// itself, so a short-lived pod of the operator's image takes the snapshot (and another
    /// deletes it when retention prunes it). The file is
    /// `<path>/<namespace>/<cluster>/<backup>-<yyyymmddThhmmssZ><extension>` on the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcDestination>,
}

/// A directory on a PersistentVolumeClaim.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PvcDestination {
    /// Name of the PersistentVolumeClaim, in the backup's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Directory inside the volume, relative, e.g. `etcd/backups` (the volume's root by
    /// default). No segment may start with a dot, so `..` cannot leave the volume.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(
        length(max = 512),
        regex(pattern = r"^([A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*)?$")
    )]
    pub path: String,
}

/// An S3 bucket and how to reach it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix put before every object key, e.g. `etcd/` (empty by default).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    pub prefix: String,
    /// Endpoint URL of an S3-compatible store, e.g. `https://minio.example:9000`; AWS S3
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,
    /// Region, e.g. `eu-west-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`), which most S3-compatible stores
    /// need.
    #[serde(default)]
    pub force_path_style: bool,
    /// Secret in the backup's namespace holding `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`. When unset the operator's
    /// own AWS credentials (environment, web identity) are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
}

/// Compression of a stored snapshot.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum BackupCompression {
    /// Stored as etcd sends it (`.db`).
    #[default]
    None,
    /// gzip (`.db.gz`).
    Gzip,
    /// zstd (`.db.zst`).
    Zstd,
}

/// Lifecycle phase of a backup.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackupPhase {
    /// Not started yet, or waiting to retry after a failure that may pass.
    #[default]
    Pending,
    /// A snapshot is being taken.
    Running,
    /// The snapshot is stored; never run again.
    Succeeded,
    /// The backup failed for good; never run again.
    Failed,
}

/// Observed state of a backup.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupStatus {
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// When the first attempt started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the backup succeeded or failed for good (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// etcd revision the snapshot contains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Size of the stored object in bytes (after compression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// SHA-256 of the stored object, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where the snapshot is stored, e.g. `s3://bucket/prefix/ns/cluster/name-20260101T000000Z.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Object key of the snapshot within the destination (what retention deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Version of the etcd member the snapshot came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_version: Option<String>,
    /// Name of the member the snapshot came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Attempts made so far; failures that may pass are retried with exponential back-off
    /// (10 s doubling) up to 5 attempts.
    #[serde(default)]
    pub attempts: i32,
    /// When the next attempt is due after a failure that may pass (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<String>,
    /// `Succeeded`: `True` once stored, `False` with the failure's reason (e.g.
    /// `ClusterNotFound`, `CredentialsSecretMissing`, `EtcdUnreachable`, `StorageFailed`)
    /// and message once failed for good, `Unknown` while pending or running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Scheduled backups of an EtcdCluster. Each time the schedule fires the operator creates an
/// EtcdBackup `<cluster>-<yyyymmddhhmm>` (UTC time of the firing) labelled
/// `etcd.steward.dev/cluster=<cluster>` and `etcd.steward.dev/trigger=schedule`. Those
/// backups have no ownerReference to the EtcdCluster on purpose: they must survive the
/// cluster's deletion, since they are how it is restored.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupSchedule {
    /// Standard 5-field cron schedule (minute hour day-of-month month day-of-week) in UTC,
    /// e.g. `0 */6 * * *`, or a nickname such as `@daily`. A schedule that does not parse
    /// creates no backups and is reported by `BackupReady=False` reason `InvalidSchedule`.
    #[schemars(regex(pattern = r"^(@[a-zA-Z]+|\S+\s+\S+\s+\S+\s+\S+\s+\S+)$"))]
    pub schedule: String,
    /// Where the scheduled backups are stored.
    pub destination: BackupDestination,
    /// Compression of the scheduled backups (`none` by default).
    #[serde(default)]
    pub compression: BackupCompression,
    /// Which scheduled backups to keep; without it every one is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<BackupRetention>,
    /// Backups taken before risky changes, to the same destination. They are labelled with
    /// their trigger (`before-upgrade`, `before-member-replacement`) and never pruned.
    #[serde(default)]
    pub spot: SpotBackups,
}

fn default_true() -> bool {
    true
}

/// Backups taken before risky changes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpotBackups {
    /// Before the first member is upgraded to a new `spec.version`, take the EtcdBackup
    /// `<cluster>-pre-upgrade-<version>` and wait for it. The upgrade starts once it
    /// succeeded; if it failed the upgrade is blocked (`UpgradeBlocked`) until the backup is
    /// deleted (a new one is then taken) or this is set to false. A member recovered after
    /// that backup was created (an upgrade interrupted by a recovery) makes the upgrade take
    /// a fresh one, `<cluster>-pre-upgrade-<version>-<recovery time>`, first. Default true.
    #[serde(default = "default_true")]
    pub before_upgrade: bool,
    /// Before a failed member is removed and replaced, take the EtcdBackup
    /// `<cluster>-pre-replace-<member>` from the healthy members and wait until it finished.
    /// Healing goes on whether it succeeded or failed: a backup never holds up a repair for
    /// longer than its attempts take. Default false.
    #[serde(default)]
    pub before_member_replacement: bool,
}

impl Default for SpotBackups {
    fn default() -> Self {
        SpotBackups {
            before_upgrade: true,
            before_member_replacement: false,
        }
    }
}

/// Which scheduled backups to keep (restic-style). Every rule names successful backups to
/// keep and a backup is kept when any rule keeps it; the others are pruned: the stored
/// snapshot is deleted first, then the EtcdBackup. The newest successful backup is always
/// kept, as are pending and running ones and the three newest failed ones (older failed
/// backups are pruned). Only backups labelled `etcd.steward.dev/trigger=schedule` for this
/// cluster are ever pruned; backups created by hand are left alone. With no rule set
/// nothing is pruned.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRetention {
    /// Keep the newest this many successful backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_backups: Option<i32>,
    /// Keep every successful backup younger than this duration, e.g. `72h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,7}(\.[0-9]{1,9})?(ms|s|m|h))+$"),
        length(max = 32)
    )]
    pub max_age: Option<String>,
    /// For each of the last this many hours (UTC) that have a successful backup, keep the
    /// newest backup of that hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_hourly: Option<i32>,
    /// For each of the last this many days (UTC) that have a successful backup, keep the
    /// newest backup of that day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_daily: Option<i32>,
    /// For each of the last this many ISO weeks (UTC) that have a successful backup, keep
    /// the newest backup of that week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_weekly: Option<i32>,
}
