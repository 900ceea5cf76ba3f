//! Pure parts of backups: object keys and names, which member to snapshot, the engine's
//! target, statuses, retry back-off, the scheduled EtcdBackup, schedule firings and the
//! `BackupReady` condition.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use steward_core::conditions::{self, NewCondition, Status};

use super::retention::Entry;
use crate::OPERATOR_NAME;
use crate::controller::MemberView;
use crate::crd::{
    BACKUP_CLUSTER_LABEL, BACKUP_TRIGGER_LABEL, BackupCompression, BackupDestination, BackupPhase,
    ClusterRef, EtcdBackup, EtcdBackupSpec, EtcdBackupStatus, EtcdCluster, TRIGGER_SCHEDULE,
};
use crate::snapshot::{Compression, Outcome, S3Credentials, S3Location, Target};

/// Condition type of an EtcdBackup: `True` stored, `False` failed for good, `Unknown` before.
pub const SUCCEEDED: &str = "Succeeded";
/// Condition type on an EtcdCluster with `spec.backup`.
pub const BACKUP_READY: &str = "BackupReady";
/// Attempts before a failure that may pass is final.
pub const MAX_ATTEMPTS: i32 = 5;
/// Wait before the second attempt; doubled for each further one.
pub const FIRST_RETRY: Duration = Duration::from_secs(10);
/// Longest wait between attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// `t` as RFC 3339 in UTC, to the second.
pub fn rfc3339(t: i64) -> String {
    Timestamp::from_second(t)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Seconds since the epoch of an RFC 3339 time.
pub fn unix(t: &str) -> Option<i64> {
    t.parse::<Timestamp>().ok().map(|t| t.as_second())
}

/// The object key of a snapshot: `<namespace>/<cluster>/<backup>-<yyyymmddThhmmssZ><ext>`
/// with the UTC time the attempt started.
pub fn object_key(namespace: &str, cluster: &str, backup: &str, at: i64, compression: Compression) -> String {
    let stamp = Timestamp::from_second(at)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default();
    format!(
        "{namespace}/{cluster}/{backup}-{stamp}{}",
        compression.extension()
    )
}

/// The engine's compression for the spec's.
pub fn compression(c: BackupCompression) -> Compression {
    match c {
        BackupCompression::None => Compression::None,
        BackupCompression::Gzip => Compression::Gzip,
        BackupCompression::Zstd => Compression::Zstd,
    }
}

/// The engine's target for a destination, or `None` when the destination names no kind
/// (the schema refuses that).
pub fn target(dest: &BackupDestination, credentials: Option<S3Credentials>) -> Option<Target> {
    let s3 = dest.s3.as_ref()?;
    Some(Target::S3 {
        location: S3Location {
            bucket: s3.bucket.clone(),
            prefix: s3.prefix.clone(),
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            force_path_style: s3.force_path_style,
        },
        credentials,
    })
}

/// The credentials in a Secret's data, or what is wrong with them.
pub fn credentials(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<S3Credentials, String> {
    let get = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let missing: Vec<&str> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .into_iter()
        .filter(|k| get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "credentials Secret {secret} lacks {}",
            missing.join(" and ")
        ));
    }
    Ok(S3Credentials {
        access_key_id: get("AWS_ACCESS_KEY_ID").unwrap_or_default(),
        secret_access_key: get("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
        session_token: get("AWS_SESSION_TOKEN"),
    })
}

/// The member to snapshot: a started, healthy voter with the highest raft index (the most
/// up-to-date data); ties go to the first by name.
pub fn choose_member(members: &[MemberView]) -> Option<&MemberView> {
    let mut candidates: Vec<&MemberView> = members
        .iter()
        .filter(|m| m.started && m.healthy && !m.is_learner)
        .collect();
    candidates.sort_by(|a, b| {
        b.raft_index
            .unwrap_or(0)
            .cmp(&a.raft_index.unwrap_or(0))
            .then_with(|| a.name.cmp(&b.name))
    });
    candidates.first().copied()
}

/// Wait after the `attempts`-th failed attempt: 10 s doubling, at most 5 min.
pub fn retry_after(attempts: i32) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 16) as u32;
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

fn succeeded_condition(
    status: &mut EtcdBackupStatus,
    generation: Option<i64>,
    s: Status,
    reason: &str,
    msg: String,
    now: i64,
) {
    conditions::set(
        &mut status.conditions,
        NewCondition {
            type_: SUCCEEDED,
            status: s,
            reason,
            message: msg,
            observed_generation: generation,
        },
        time(now),
    );
    status.observed_generation = generation;
}

fn time(t: i64) -> Time {
    Time(Timestamp::from_second(t).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Status once an attempt on `member` starts at `now`.
pub fn running(obj: &EtcdBackup, member: &str, now: i64) -> EtcdBackupStatus {
    let mut s = obj.status.clone().unwrap_or_default();
    s.phase = Some(BackupPhase::Running);
    s.start_time.get_or_insert_with(|| rfc3339(now));
    s.member = Some(member.to_string());
    s.attempts += 1;
    s.next_attempt_time = None;
    let msg = format!(
        "attempt {} of {MAX_ATTEMPTS}: snapshot of member {member}",
        s.attempts
    );
    succeeded_condition(
        &mut s,
        obj.metadata.generation,
        Status::Unknown,
        "Running",
        msg,
        now,
    );
    s
}

/// Status once the snapshot is stored.
pub fn succeeded(obj: &EtcdBackup, outcome: &Outcome, now: i64) -> EtcdBackupStatus {
    let mut s = obj.status.clone().unwrap_or_default();
    s.phase = Some(BackupPhase::Succeeded);
    s.start_time.get_or_insert_with(|| rfc3339(now));
    s.completion_time = Some(rfc3339(now));
    s.revision = Some(outcome.revision);
    s.size_bytes = Some(outcome.size_bytes.min(i64::MAX as u64) as i64);
    s.sha256 = Some(outcome.sha256.clone());
    s.location = Some(outcome.location.clone());
    s.key = Some(outcome.key.clone());
    s.etcd_version = Some(outcome.etcd_version.clone());
    s.next_attempt_time = None;
    let msg = format!(
        "stored {} bytes at revision {} in {}",
        outcome.size_bytes, outcome.revision, outcome.location
    );
    succeeded_condition(&mut s, obj.metadata.generation, Status::True, "Stored", msg, now);
    s
}

/// Status once the backup failed for good.
pub fn failed(obj: &EtcdBackup, reason: &str, message: &str, now: i64) -> EtcdBackupStatus {
    let mut s = obj.status.clone().unwrap_or_default();
    s.phase = Some(BackupPhase::Failed);
    s.completion_time = Some(rfc3339(now));
    s.next_attempt_time = None;
    succeeded_condition(
        &mut s,
        obj.metadata.generation,
        Status::False,
        reason,
        message.to_string(),
        now,
    );
    s
}

/// Status after a failed attempt that may pass: pending again until `retry_after`.
pub fn retrying(obj: &EtcdBackup, reason: &str, message: &str, now: i64) -> EtcdBackupStatus {
    let mut s = obj.status.clone().unwrap_or_default();
    s.phase = Some(BackupPhase::Pending);
    let wait = retry_after(s.attempts);
    let next = now + wait.as_secs() as i64;
    s.next_attempt_time = Some(rfc3339(next));
    let msg = format!(
        "attempt {} of {MAX_ATTEMPTS} failed ({reason}): {message}; next attempt at {}",
        s.attempts,
        rfc3339(next)
    );
    succeeded_condition(
        &mut s,
        obj.metadata.generation,
        Status::Unknown,
        "Retrying",
        msg,
        now,
    );
    s
}

/// Status of a new backup: pending.
pub fn pending(obj: &EtcdBackup, now: i64) -> EtcdBackupStatus {
    let mut s = obj.status.clone().unwrap_or_default();
    s.phase = Some(BackupPhase::Pending);
    succeeded_condition(
        &mut s,
        obj.metadata.generation,
        Status::Unknown,
        "Pending",
        "waiting for the first attempt".into(),
        now,
    );
    s
}

/// Name of the backup the schedule creates for the firing at `at`: `<cluster>-<yyyymmddhhmm>`.
pub fn scheduled_name(cluster: &str, at: i64) -> String {
    let stamp = Timestamp::from_second(at)
        .map(|t| t.strftime("%Y%m%d%H%M").to_string())
        .unwrap_or_default();
    format!("{cluster}-{stamp}")
}

/// The EtcdBackup the schedule of `cluster` creates for the firing at `at`. It has no
/// ownerReference to the EtcdCluster on purpose: backups must survive the cluster's deletion,
/// since they are how it is restored. The labels tie it to its cluster and trigger instead.
pub fn scheduled_backup(cluster: &EtcdCluster, at: i64) -> Option<EtcdBackup> {
    use kube::ResourceExt;
    cluster_backup(
        cluster,
        &scheduled_name(&cluster.name_any(), at),
        TRIGGER_SCHEDULE,
    )
}

/// An EtcdBackup `name` of `cluster` to `spec.backup`'s destination, labelled with the
/// cluster and `trigger`; `None` without `spec.backup`. No ownerReference to the cluster
/// (see [`scheduled_backup`]).
pub fn cluster_backup(cluster: &EtcdCluster, name: &str, trigger: &str) -> Option<EtcdBackup> {
    use kube::ResourceExt;
    let schedule = cluster.spec.backup.as_ref()?;
    let cluster_name = cluster.name_any();
    let labels = BTreeMap::from([
        (BACKUP_CLUSTER_LABEL.to_string(), cluster_name.clone()),
        (BACKUP_TRIGGER_LABEL.to_string(), trigger.to_string()),
        ("app.kubernetes.io/name".to_string(), "etcd".to_string()),
        ("app.kubernetes.io/instance".to_string(), cluster_name.clone()),
        ("app.kubernetes.io/component".to_string(), "backup".to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            OPERATOR_NAME.to_string(),
        ),
    ]);
    Some(EtcdBackup {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cluster.namespace(),
            labels: Some(labels),
            ..Default::default()
        },
        spec: EtcdBackupSpec {
            cluster_ref: ClusterRef { name: cluster_name },
            destination: schedule.destination.clone(),
            compression: schedule.compression,
        },
        status: None,
    })
}

fn zoned(t: i64) -> Option<k8s_openapi::jiff::Zoned> {
    Timestamp::from_second(t).ok().map(|t| t.to_zoned(TimeZone::UTC))
}

/// The latest firing of `schedule` at or before `now`.
pub fn latest_firing(schedule: &croner::Cron, now: i64) -> Option<i64> {
    schedule
        .find_previous_occurrence(&zoned(now)?, true)
        .ok()
        .map(|z| z.timestamp().as_second())
}

/// The first firing of `schedule` after `now`.
pub fn next_firing(schedule: &croner::Cron, now: i64) -> Option<i64> {
    schedule
        .find_next_occurrence(&zoned(now)?, false)
        .ok()
        .map(|z| z.timestamp().as_second())
}

/// The firing a scheduled backup is due for: the latest one at or before `now`, when it is
/// after the cluster's creation (firings from before the cluster existed do not count).
pub fn due_firing(schedule: &croner::Cron, created: i64, now: i64) -> Option<i64> {
    latest_firing(schedule, now).filter(|&at| at > created)
}

/// The schedule's interval around `now`: the time between its two latest firings.
pub fn interval(schedule: &croner::Cron, now: i64) -> Option<i64> {
    let last = latest_firing(schedule, now)?;
    let before = schedule
        .find_previous_occurrence(&zoned(last)?, false)
        .ok()?
        .timestamp()
        .as_second();
    Some(last - before)
}

/// A duration in seconds as `1d2h3m4s` (leading zero units left out).
pub fn human(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (v, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if v > 0 || !out.is_empty() {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    out.push_str(&format!("{s}s"));
    out
}

/// An age for a condition message, coarse enough that the message (and so the status)
/// changes at most once a minute, once an hour past two hours, once a day past two days:
/// `59s`, `12m`, `5h`, `3d`.
pub fn coarse_age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// One backup of a cluster as `BackupReady` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Phase and time, as retention sees them.
    pub entry: Entry,
    /// The failure's reason and message, for a failed one.
    pub failure: Option<String>,
}

/// `BackupReady` of a cluster with a backup schedule, from its backups (scheduled or not):
/// `True` when the last successful one is no older than two schedule intervals; otherwise
/// `False` with `BackupFailed` (the newest finished backup failed), `BackupOutdated` (with
/// its age) or `NoBackupYet`.
pub fn backup_ready(interval: i64, backups: &[Seen], now: i64) -> (bool, &'static str, String) {
    let newest = |phase: BackupPhase| {
        backups.iter().filter(|b| b.entry.phase == phase).max_by(|a, b| {
            a.entry
                .time
                .cmp(&b.entry.time)
                .then_with(|| a.entry.name.cmp(&b.entry.name))
        })
    };
    let success = newest(BackupPhase::Succeeded);
    let failure = newest(BackupPhase::Failed);
    let limit = 2 * interval;
    if let Some(ok) = success
        && now - ok.entry.time <= limit
    {
        return (
            true,
            "BackupCurrent",
            // No age here: the message would change, and the status be written, every reconcile.
            format!(
                "last successful backup {} completed at {}, within two schedule intervals ({})",
                ok.entry.name,
                rfc3339(ok.entry.time),
                human(limit)
            ),
        );
    }
    let last_success = match success {
        Some(ok) => format!(
            "the last successful backup, {}, is {} old, more than two schedule intervals ({})",
            ok.entry.name,
            coarse_age(now - ok.entry.time),
            human(limit)
        ),
        None => "there is no successful backup yet".to_string(),
    };
    match failure {
        Some(f) if success.is_none_or(|ok| f.entry.time >= ok.entry.time) => (
            false,
            "BackupFailed",
            format!(
                "backup {} failed: {}; {last_success}",
                f.entry.name,
                f.failure.clone().unwrap_or_default()
            ),
        ),
        _ if success.is_some() => (false, "BackupOutdated", last_success),
        _ => (false, "NoBackupYet", last_success),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crd::{EtcdBackupSchedule, EtcdClusterSpec, S3Destination};
    use crate::version::Version;

    /// 2026-01-05T03:04:05Z.
    const T: i64 = 1_767_582_245;

    fn member(name: &str, healthy: bool, learner: bool, index: Option<u64>) -> MemberView {
        MemberView {
            id: 1,
            name: name.into(),
            started: true,
            is_learner: learner,
            healthy,
            version: Version::parse("3.5.16"),
            client_url: format!("https://{name}:2379"),
            unhealthy_since: None,
            db_size: None,
            raft_index: index,
            last_defrag: None,
        }
    }

    fn cluster() -> EtcdCluster {
        let spec: EtcdClusterSpec = serde_json::from_value(serde_json::json!({
            "size": 1, "version": "3.5.16",
            "backup": {"schedule": "*/5 * * * *", "compression": "gzip",
                       "destination": {"s3": {"bucket": "b", "prefix": "etcd/", "credentialsSecret": "s3"}}}
        }))
        .unwrap();
        let mut c = EtcdCluster::new("main", spec);
        c.metadata.namespace = Some("prod".into());
        c
    }

    #[test]
    fn keys_name_namespace_cluster_backup_time_and_extension() {
        assert_eq!(
            object_key("prod", "main", "nightly", T, Compression::Gzip),
            "prod/main/nightly-20260105T030405Z.db.gz"
        );
        assert_eq!(
            object_key("ns", "c", "b", 0, Compression::None),
            "ns/c/b-19700101T000000Z.db"
        );
        assert!(object_key("ns", "c", "b", T, Compression::Zstd).ends_with("Z.db.zst"));
    }

    #[test]
    fn the_healthy_voter_with_the_highest_raft_index_is_chosen() {
        let members = vec![
            member("a", true, false, Some(10)),
            member("b", false, false, Some(99)),
            member("c", true, true, Some(98)),
            member("d", true, false, Some(12)),
            member("e", true, false, None),
        ];
        assert_eq!(choose_member(&members).unwrap().name, "d");
        let mut not_started = member("f", true, false, Some(1000));
        not_started.started = false;
        assert_eq!(choose_member(&[not_started]), None);
        assert_eq!(choose_member(&[member("x", false, false, Some(1))]), None);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_limit() {
        let waits: Vec<u64> = (1..=7).map(|a| retry_after(a).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(retry_after(0).as_secs(), 10);
        assert_eq!(retry_after(i32::MAX), MAX_RETRY);
    }

    #[test]
    fn credentials_need_both_keys() {
        let data = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect::<BTreeMap<_, _>>()
        };
        let c = credentials(
            "s3",
            &data(&[("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "secret\n")]),
        )
        .unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("id", "secret")
        );
        assert_eq!(c.session_token, None);
        let e = credentials("s3", &data(&[("AWS_ACCESS_KEY_ID", "id")])).unwrap_err();
        assert_eq!(e, "credentials Secret s3 lacks AWS_SECRET_ACCESS_KEY");
        let e = credentials("s3", &data(&[])).unwrap_err();
        assert!(e.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{e}");
    }

    #[test]
    fn targets() {
        let dest = BackupDestination {
            s3: Some(S3Destination {
                bucket: "b".into(),
                prefix: "etcd/".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: None,
                force_path_style: true,
                credentials_secret: None,
            }),
            pvc: None,
        };
        match target(&dest, None).unwrap() {
            Target::S3 {
                location,
                credentials,
            } => {
                assert_eq!(location.bucket, "b");
                assert_eq!(location.prefix, "etcd/");
                assert!(location.force_path_style);
                assert_eq!(credentials, None);
            }
            t => panic!("{t:?}"),
        }
        assert_eq!(target(&BackupDestination::default(), None), None);
    }

    #[test]
    fn scheduled_backups_are_labelled_and_not_owned_by_the_cluster() {
        let b = scheduled_backup(&cluster(), T).unwrap();
        assert_eq!(b.metadata.name.as_deref(), Some("main-202601050304"));
        assert_eq!(b.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(b.metadata.owner_references, None);
        let labels = b.metadata.labels.unwrap();
        assert_eq!(labels[BACKUP_CLUSTER_LABEL], "main");
        assert_eq!(labels[BACKUP_TRIGGER_LABEL], "schedule");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "etcd-operator");
        assert_eq!(b.spec.cluster_ref.name, "main");
        assert_eq!(b.spec.compression, BackupCompression::Gzip);
        assert_eq!(
            b.spec.destination.s3.unwrap().credentials_secret.as_deref(),
            Some("s3")
        );
        let mut no_schedule = cluster();
        no_schedule.spec.backup = None::<EtcdBackupSchedule>;
        assert!(scheduled_backup(&no_schedule, T).is_none());
    }

    #[test]
    fn schedule_firings() {
        let every5 = crate::plan::parse_schedule("*/5 * * * *").unwrap();
        // 03:04:05 → the latest firing is 03:00:00, the next 03:05:00.
        let three = T - 4 * 60 - 5;
        assert_eq!(latest_firing(&every5, T), Some(three));
        assert_eq!(latest_firing(&every5, three), Some(three));
        assert_eq!(next_firing(&every5, T), Some(three + 300));
        assert_eq!(interval(&every5, T), Some(300));
        // Due once the cluster existed before the firing, not for firings before it.
        assert_eq!(due_firing(&every5, three - 1, T), Some(three));
        assert_eq!(due_firing(&every5, three, T), None);
        assert_eq!(due_firing(&every5, T - 10, T), None);
        let daily = crate::plan::parse_schedule("@daily").unwrap();
        assert_eq!(interval(&daily, T), Some(86_400));
    }

    fn seen(name: &str, phase: BackupPhase, time: i64) -> Seen {
        Seen {
            entry: Entry {
                name: name.into(),
                phase,
                time,
            },
            failure: (phase == BackupPhase::Failed).then(|| "StorageFailed: disk full".to_string()),
        }
    }

    #[test]
    fn backup_ready_by_age_of_the_last_success() {
        let (ok, reason, msg) = backup_ready(3600, &[seen("a", BackupPhase::Succeeded, T - 7000)], T);
        assert!(ok, "{msg}");
        assert_eq!(reason, "BackupCurrent");
        assert_eq!(
            msg,
            "last successful backup a completed at 2026-01-05T01:07:25Z, within two schedule intervals (2h0m0s)"
        );
        let (ok, reason, msg) = backup_ready(3600, &[seen("a", BackupPhase::Succeeded, T - 7300)], T);
        assert!(!ok);
        assert_eq!(reason, "BackupOutdated");
        assert!(msg.contains("is 2h old"), "{msg}");
        assert!(msg.contains("(2h0m0s)"), "{msg}");
        let (ok, reason, _) = backup_ready(3600, &[seen("p", BackupPhase::Pending, T)], T);
        assert!(!ok);
        assert_eq!(reason, "NoBackupYet");
        let (ok, reason, msg) = backup_ready(
            3600,
            &[
                seen("a", BackupPhase::Succeeded, T - 9000),
                seen("f", BackupPhase::Failed, T - 100),
            ],
            T,
        );
        assert!(!ok);
        assert_eq!(reason, "BackupFailed");
        assert!(
            msg.starts_with(
                "backup f failed: StorageFailed: disk full; the last successful backup, a, is 2h old"
            ),
            "{msg}"
        );
        // A failure is fine while the last success is recent.
        let (ok, _, _) = backup_ready(
            3600,
            &[
                seen("a", BackupPhase::Succeeded, T - 100),
                seen("f", BackupPhase::Failed, T - 10),
            ],
            T,
        );
        assert!(ok);
    }

    fn backup() -> EtcdBackup {
        let mut b = scheduled_backup(&cluster(), T).unwrap();
        b.metadata.generation = Some(1);
        b
    }

    #[test]
    fn statuses_through_retries_to_failure() {
        let mut b = backup();
        b.status = Some(pending(&b, T));
        assert_eq!(b.status.as_ref().unwrap().phase, Some(BackupPhase::Pending));
        b.status = Some(running(&b, "main-abcde", T));
        let s = b.status.clone().unwrap();
        assert_eq!((s.phase, s.attempts), (Some(BackupPhase::Running), 1));
        assert_eq!(s.start_time.as_deref(), Some("2026-01-05T03:04:05Z"));
        assert_eq!(s.member.as_deref(), Some("main-abcde"));
        b.status = Some(retrying(&b, "EtcdUnreachable", "connection refused", T + 5));
        let s = b.status.clone().unwrap();
        assert_eq!(s.phase, Some(BackupPhase::Pending));
        assert_eq!(s.next_attempt_time.as_deref(), Some("2026-01-05T03:04:20Z"));
        let c = &s.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            (SUCCEEDED, "Unknown", "Retrying")
        );
        assert_eq!(
            c.message,
            "attempt 1 of 5 failed (EtcdUnreachable): connection refused; next attempt at 2026-01-05T03:04:20Z"
        );
        b.status = Some(running(&b, "main-abcde", T + 20));
        let s = b.status.clone().unwrap();
        assert_eq!(s.attempts, 2);
        assert_eq!(
            s.start_time.as_deref(),
            Some("2026-01-05T03:04:05Z"),
            "the first attempt's start stays"
        );
        assert_eq!(s.next_attempt_time, None);
        b.status = Some(failed(&b, "BucketNotFound", "no bucket b", T + 30));
        let s = b.status.unwrap();
        assert_eq!(s.phase, Some(BackupPhase::Failed));
        assert_eq!(s.completion_time.as_deref(), Some("2026-01-05T03:04:35Z"));
        assert_eq!(s.observed_generation, Some(1));
        let c = &s.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", "BucketNotFound", "no bucket b")
        );
        assert_eq!(c.last_transition_time.0.as_second(), T + 30);
    }

    #[test]
    fn a_stored_snapshot_fills_every_status_field() {
        let mut b = backup();
        b.status = Some(running(&b, "main-abcde", T));
        let outcome = Outcome {
            location: "s3://b/etcd/prod/main/x.db.gz".into(),
            key: "prod/main/x.db.gz".into(),
            size_bytes: 4096,
            snapshot_bytes: 20480,
            sha256: "ab".repeat(32),
            revision: 42,
            etcd_version: "3.5.16".into(),
        };
        let s = succeeded(&b, &outcome, T + 3);
        assert_eq!(s.phase, Some(BackupPhase::Succeeded));
        assert_eq!(s.completion_time.as_deref(), Some("2026-01-05T03:04:08Z"));
        assert_eq!(s.revision, Some(42));
        assert_eq!(s.size_bytes, Some(4096));
        assert_eq!(s.sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(s.location.as_deref(), Some("s3://b/etcd/prod/main/x.db.gz"));
        assert_eq!(s.key.as_deref(), Some("prod/main/x.db.gz"));
        assert_eq!(s.etcd_version.as_deref(), Some("3.5.16"));
        assert_eq!(s.member.as_deref(), Some("main-abcde"));
        assert_eq!(s.attempts, 1);
        let c = &s.conditions[0];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Stored"));
    }

    #[test]
    fn durations_read_like_go() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(61), "1m1s");
        assert_eq!(human(3600), "1h0m0s");
        assert_eq!(human(90_061), "1d1h1m1s");
        assert_eq!(coarse_age(59), "59s");
        assert_eq!(coarse_age(7199), "119m");
        assert_eq!(coarse_age(7200), "2h");
        assert_eq!(coarse_age(3 * 86_400 + 5), "3d");
    }
}
