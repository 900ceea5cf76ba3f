//! The etcd planner: from what etcd and the API report *now*, the single next safe step.
//!
//! Pure: no I/O, no clock (the caller passes `now`). The controller executes one step per
//! reconcile and re-plans from fresh observations, so a crash between any two steps
//! converges: every intermediate state (member added but no pod, pod but no member, learner
//! not promoted, member removed but pod still there) has a rule that moves it forward.

use std::time::Duration;

use crate::version::Version;

/// How member data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// A PVC per member: data survives pod deletion.
    Persistent,
    /// emptyDir: data dies with the pod.
    Ephemeral,
}

/// A member pod as the API reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodObs {
    /// Pod (and member) name.
    pub name: String,
    /// The etcd version of the pod's image.
    pub version: Version,
    /// Being deleted.
    pub terminating: bool,
}

/// A member as etcd reports it, joined with its health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberObs {
    /// Member ID.
    pub id: u64,
    /// Member name, from etcd or (for a learner that never started) its peer URL.
    pub name: String,
    /// Whether it ever started (etcd knows its name).
    pub started: bool,
    /// Non-voting learner.
    pub is_learner: bool,
    /// Answered its health check now.
    pub healthy: bool,
    /// Seconds (caller's clock) since when it has been unhealthy, if it is.
    pub unhealthy_since: Option<i64>,
    /// Version the member itself reports, when reachable.
    pub version: Option<Version>,
    /// Backend size in bytes and the part of it in use, when reachable.
    pub db_size: Option<(i64, i64)>,
    /// Raft index the member reports, when reachable.
    pub raft_index: Option<u64>,
    /// Seconds (caller's clock) when the operator last defragmented it.
    pub last_defrag: Option<i64>,
}

/// `spec.maintenance.defrag`, as the planner needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefragObs {
    /// Standard 5-field cron schedule, UTC.
    pub schedule: String,
    /// Minimum unused share of a member's backend, in percent.
    pub threshold_percent: i64,
    /// When the cluster was created (seconds): windows that opened before are ignored.
    pub created: i64,
}

/// A Succeeded EtcdBackup of the cluster that a rebuild could restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupObs {
    /// Name of the EtcdBackup.
    pub name: String,
    /// Its completionTime (RFC 3339): writes made after it are not in it.
    pub completion_time: String,
}

/// Disaster recovery (`spec.recovery` and what status recorded), as the planner needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryObs {
    /// `spec.recovery.fromLatestBackup`: rebuild from the newest backup once data is lost.
    pub from_latest_backup: bool,
    /// `spec.recovery.after`: how long quorum must have been lost first.
    pub after: Duration,
    /// Since when quorum has been lost (seconds, `status.quorumLostSince`).
    pub quorum_lost_since: Option<i64>,
    /// The newest usable backup of the cluster; `None` when there is none (or quorum is not
    /// lost, so nobody looked).
    pub latest_backup: Option<BackupObs>,
    /// A rebuild whose seed has not answered yet (`status.recovery`, phase `Restoring`):
    /// the EtcdBackup and the seed member.
    pub restoring: Option<(BackupObs, String)>,
}

/// Everything the planner looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Desired voting members.
    pub size: usize,
    /// Desired version.
    pub version: Version,
    /// spec.paused.
    pub paused: bool,
    /// How data is stored.
    pub storage: StorageKind,
    /// How long a member may be unhealthy before it is replaced.
    pub member_failure_timeout: Duration,
    /// Now, in seconds on the same clock as `unhealthy_since`.
    pub now: i64,
    /// Member pods that exist.
    pub pods: Vec<PodObs>,
    /// Members whose data volume (PVC) exists.
    pub volumes: Vec<String>,
    /// Members the cluster is known to have had, without asking etcd: `status.members` and
    /// the member PVCs that carry the cluster's labels. Non-empty means the cluster existed,
    /// so it is never bootstrapped again.
    pub known: Vec<String>,
    /// The membership, or `None` when no member answered.
    pub members: Option<Vec<MemberObs>>,
    /// The leader's member ID, if known.
    pub leader: Option<u64>,
    /// A fresh member name to use if the step adds one.
    pub fresh_name: String,
    /// Scheduled defragmentation, if configured.
    pub defrag: Option<DefragObs>,
    /// Why etcd could not be asked for its membership (TLS, timeout, refused), when it could not.
    pub unreachable: Option<String>,
    /// Disaster recovery.
    pub recovery: RecoveryObs,
}

/// Why a member is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveReason {
    /// Scaling down.
    ScaleDown,
    /// Unhealthy for longer than memberFailureTimeout (or its data is gone): replaced by a
    /// fresh member afterwards.
    Replace,
}

/// The next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Everything matches.
    Nothing,
    /// spec.paused: observe only.
    Paused,
    /// Create the first member's pod with `--initial-cluster-state=new`.
    Bootstrap {
        /// Seed member name.
        member: String,
    },
    /// Every member's data is gone and quorum has been lost for `spec.recovery.after`:
    /// rebuild the cluster from a backup, starting with a seed restored from it (state `new`).
    Recover {
        /// Seed member name.
        member: String,
        /// The EtcdBackup restored.
        backup: BackupObs,
    },
    /// MemberAdd a learner (its pod comes next).
    AddMember {
        /// New member name.
        member: String,
    },
    /// Create the pod of a member etcd already knows (state `existing`).
    CreatePod {
        /// Member name.
        member: String,
    },
    /// Promote a caught-up learner.
    Promote {
        /// Member ID.
        id: u64,
        /// Member name.
        member: String,
    },
    /// MemberRemove (its pod goes next).
    RemoveMember {
        /// Member ID.
        id: u64,
        /// Member name.
        member: String,
        /// Why.
        reason: RemoveReason,
    },
    /// Delete the pod (and volume) of a member etcd no longer has.
    DeletePod {
        /// Pod name.
        member: String,
    },
    /// Restart a member's pod at the desired version, keeping its data.
    UpgradeMember {
        /// Member name.
        member: String,
        /// From which version.
        from: Version,
    },
    /// Hand leadership to another (already upgraded) member before restarting the leader.
    MoveLeader {
        /// Current leader.
        from: u64,
        /// New leader.
        to: u64,
    },
    /// Defragment one member (maintenance; only when nothing else is pending).
    Defrag {
        /// Member ID.
        id: u64,
        /// Member name.
        member: String,
    },
    /// Nothing safe to do now; try again soon.
    Wait {
        /// Why.
        reason: String,
    },
    /// Fewer healthy voters than a quorum: report, touch nothing.
    QuorumLost {
        /// Details.
        reason: String,
    },
    /// etcd could not be asked at all (TLS handshake, timeout, refused connection): report the
    /// failure as it is, touch nothing.
    Unreachable {
        /// What failed.
        reason: String,
    },
    /// The requested version change is not allowed.
    UpgradeBlocked {
        /// Why.
        reason: String,
    },
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Whether moving from `from` to `to` is an allowed upgrade: same major, up by at most one
/// minor version (any patch), never down.
pub fn upgrade_allowed(from: Version, to: Version) -> Result<(), String> {
    if to < from {
        return Err(format!("downgrade from {} to {} is not supported", from, to));
    }
    if to.major != from.major || to.minor > from.minor + 1 {
        return Err(format!(
            "upgrade from {} to {} skips a minor version; upgrade one minor version at a time",
            from, to
        ));
    }
    Ok(())
}

/// Parses a standard 5-field cron expression (minute hour day-of-month month day-of-week) or
/// a nickname such as `@daily`; seconds and years are refused.
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| format!("{schedule:?} is not a 5-field cron schedule: {e}"))
}

/// Whether `schedule` (UTC) fired after `since` and no later than `now` (both in seconds).
pub fn schedule_fired(schedule: &croner::Cron, since: i64, now: i64) -> bool {
    use k8s_openapi::jiff::{Timestamp, tz::TimeZone};
    let Ok(since) = Timestamp::from_second(since) else {
        return false;
    };
    schedule
        .find_next_occurrence(&since.to_zoned(TimeZone::UTC), false)
        .is_ok_and(|next| next.timestamp().as_second() <= now)
}

/// Members with less than this to reclaim are never defragmented: a small backend keeps
/// unused pages that defragmentation cannot remove (a fresh etcd 3.5 has 8 KiB of its 20 KiB
/// unused, 40 %, before and after), so a percentage alone would defragment it in every window.
pub const MIN_DEFRAG_RECLAIM_BYTES: i64 = 1 << 20;

/// Whether member `m` is due for defragmentation: a window opened since its last
/// defragmentation (or since the cluster was created), its unused share of the backend
/// reaches the threshold and at least [`MIN_DEFRAG_RECLAIM_BYTES`] are unused.
fn defrag_due(d: &DefragObs, schedule: &croner::Cron, m: &MemberObs, now: i64) -> bool {
    let Some((size, in_use)) = m.db_size else {
        return false;
    };
    size > 0
        && size - in_use >= MIN_DEFRAG_RECLAIM_BYTES
        && (size - in_use).saturating_mul(100) >= d.threshold_percent.saturating_mul(size)
        && schedule_fired(schedule, m.last_defrag.unwrap_or(d.created).max(d.created), now)
}

/// The version rule, checked before any step that starts a pod: a pod never starts below the
/// newest version a member (or a member pod) runs, and never more than one minor version
/// above the oldest.
fn version_block(o: &Observed) -> Option<Step> {
    let versions: Vec<Version> = o
        .members
        .iter()
        .flatten()
        .filter_map(|m| m.version)
        .chain(o.pods.iter().filter(|p| !p.terminating).map(|p| p.version))
        .filter(|v| v.major > 0)
        .collect();
    let newest = versions.iter().max()?;
    let oldest = versions.iter().min()?;
    if o.version < *newest {
        return Some(Step::UpgradeBlocked {
            reason: format!("downgrade from {} to {} is not supported", newest, o.version),
        });
    }
    upgrade_allowed(*oldest, o.version)
        .err()
        .map(|reason| Step::UpgradeBlocked { reason })
}

/// `spec.paused`: nothing changes, except that a step already in flight completes. A member
/// whose pod was deleted (the first half of an upgrade or replacement) gets its pod back, so
/// a pause never strands it.
fn paused(o: &Observed) -> Step {
    let has_pod = |name: &str| o.pods.iter().any(|p| p.name == name);
    let data_kept = |name: &str| o.storage == StorageKind::Persistent && o.volumes.iter().any(|v| v == name);
    let stranded = match &o.members {
        Some(members) => members
            .iter()
            .find(|m| !has_pod(&m.name) && (!m.started || data_kept(&m.name)))
            .map(|m| m.name.clone()),
        None => o.known.iter().find(|n| !has_pod(n) && data_kept(n)).cloned(),
    };
    match stranded {
        Some(member) if version_block(o).is_none() => Step::CreatePod { member },
        _ => Step::Paused,
    }
}

/// A learner is promoted once its log is within this share of the leader's (etcd itself
/// refuses a promotion below 90 %), and at most this many entries behind.
const PROMOTE_MAX_LAG_ENTRIES: u64 = 1000;

/// Whether learner `m` has caught up with the leader's raft log.
fn caught_up(m: &MemberObs, leader: Option<&MemberObs>) -> Result<(), String> {
    let (Some(own), Some(lead)) = (m.raft_index, leader.and_then(|l| l.raft_index)) else {
        return Err(format!("learner {} is catching up (raft index unknown)", m.name));
    };
    let lag = lead.saturating_sub(own);
    if lag <= PROMOTE_MAX_LAG_ENTRIES.min(lead / 10).max(10) {
        Ok(())
    } else {
        Err(format!(
            "learner {} is catching up (raft index {own} of {lead})",
            m.name
        ))
    }
}

/// The single next step.
pub fn plan(o: &Observed) -> Step {
    if o.paused {
        return paused(o);
    }
    // Members whose pod is gone but whose data volume is there come back first, with their
    // name, ID and data: also when no member answers or quorum is lost, because recreating
    // them is how quorum comes back.
    let restorable = |name: &str| {
        o.storage == StorageKind::Persistent
            && o.volumes.iter().any(|v| v == name)
            && !o.pods.iter().any(|p| p.name == name)
    };
    let Some(members) = &o.members else {
        if let Some(step) = restoring(o) {
            return step;
        }
        if let Some(name) = o.known.iter().find(|n| restorable(n)) {
            if let Some(blocked) = version_block(o) {
                return blocked;
            }
            return Step::CreatePod { member: name.clone() };
        }
        if o.pods.is_empty() && o.known.is_empty() {
            return Step::Bootstrap {
                member: o.fresh_name.clone(),
            };
        }
        if o.pods.is_empty() && o.volumes.is_empty() {
            return data_lost(
                o,
                format!(
                    "every member pod is gone and no member's data is left ({}); the operator will not start an empty cluster in its place",
                    if o.storage == StorageKind::Ephemeral {
                        "emptyDir storage"
                    } else {
                        "no member PVC"
                    }
                ),
            );
        }
        if o.pods.len() == 1 && o.known.len() <= 1 && o.pods.iter().all(|p| !p.terminating) {
            return Step::Wait {
                reason: "waiting for the seed member to answer".into(),
            };
        }
        if let Some(reason) = &o.unreachable {
            return Step::Unreachable {
                reason: reason.clone(),
            };
        }
        let pods: Vec<&str> = o.pods.iter().map(|p| p.name.as_str()).collect();
        return Step::QuorumLost {
            reason: format!("no member answers{}", data_may_exist(o, &pods)),
        };
    };
    let pod = |name: &str| o.pods.iter().find(|p| p.name == name);
    let voters: Vec<&MemberObs> = members.iter().filter(|m| !m.is_learner).collect();
    let healthy_voters = voters.iter().filter(|m| m.healthy).count();
    if healthy_voters < quorum(voters.len()) {
        if let Some(m) = voters.iter().find(|m| restorable(&m.name)) {
            return Step::CreatePod {
                member: m.name.clone(),
            };
        }
        let alive: Vec<&str> = o.pods.iter().map(|p| p.name.as_str()).collect();
        return Step::QuorumLost {
            reason: format!(
                "{healthy_voters} of {} voting members are healthy; {} are needed{}",
                voters.len(),
                quorum(voters.len()),
                data_may_exist(o, &alive)
            ),
        };
    }
    let expired = |m: &MemberObs| {
        !m.healthy
            && m.unhealthy_since
                .is_some_and(|t| o.now - t >= o.member_failure_timeout.as_secs() as i64)
    };

    // 1. Pods whose member is gone (removed, or a crashed add): delete them, and their claims.
    for p in &o.pods {
        if !p.terminating && !members.iter().any(|m| m.name == p.name) {
            return Step::DeletePod {
                member: p.name.clone(),
            };
        }
    }
    //    And a claim whose member and pod are both gone (the operator stopped between
    //    deleting a removed member's pod and its claim): that data must never come back.
    if let Some(v) = o
        .volumes
        .iter()
        .find(|v| !members.iter().any(|m| m.name == **v) && !o.pods.iter().any(|p| p.name == **v))
    {
        return Step::DeletePod { member: v.clone() };
    }
    // 2. Members without a pod: recreate it when the member's data still exists (or it never
    //    started); a member whose data is gone must never come back with its old ID.
    // A pod stuck in Terminating holds up only its own member: the others still heal.
    let terminating = o.pods.iter().find(|p| p.terminating);
    for m in members {
        match pod(&m.name) {
            Some(p) if p.terminating => {}
            Some(_) => {}
            None => {
                let data_kept = o.storage == StorageKind::Persistent && o.volumes.contains(&m.name);
                if !m.started || data_kept {
                    if let Some(blocked) = version_block(o) {
                        return blocked;
                    }
                    return Step::CreatePod {
                        member: m.name.clone(),
                    };
                }
                return remove_checked(members, m, RemoveReason::Replace);
            }
        }
    }
    // 3. Learners (one at a time): promote when caught up; replace when stuck past the timeout.
    if let Some(m) = members.iter().find(|m| m.is_learner) {
        if m.healthy {
            let leader = members.iter().find(|l| Some(l.id) == o.leader);
            return match caught_up(m, leader) {
                Ok(()) => Step::Promote {
                    id: m.id,
                    member: m.name.clone(),
                },
                Err(reason) if expired(m) => {
                    let _ = reason;
                    remove_checked(members, m, RemoveReason::Replace)
                }
                Err(reason) => Step::Wait { reason },
            };
        }
        if expired(m) {
            return remove_checked(members, m, RemoveReason::Replace);
        }
        return Step::Wait {
            reason: format!("learner {} is catching up", m.name),
        };
    }
    // 4. Members unhealthy for too long: replace them.
    if let Some(m) = voters.iter().find(|m| expired(m)) {
        return remove_checked(members, m, RemoveReason::Replace);
    }
    // Membership and version changes wait until no member pod is terminating.
    if let Some(p) = terminating {
        return Step::Wait {
            reason: format!("pod {} is terminating", p.name),
        };
    }
    // 5. Scale up, one member at a time, only when everything is healthy.
    if voters.len() < o.size {
        if voters.iter().any(|m| !m.healthy) {
            return Step::Wait {
                reason: "scaling up waits for every member to be healthy".into(),
            };
        }
        if let Some(blocked) = version_block(o) {
            return blocked;
        }
        return Step::AddMember {
            member: o.fresh_name.clone(),
        };
    }
    // 6. Scale down: unhealthy first, the leader last, never below quorum of healthy voters.
    if voters.len() > o.size {
        let victim = voters
            .iter()
            .filter(|m| !m.healthy)
            .chain(voters.iter().filter(|m| m.healthy && Some(m.id) != o.leader))
            .chain(voters.iter().filter(|m| Some(m.id) == o.leader))
            .next();
        if let Some(m) = victim {
            return remove_checked(members, m, RemoveReason::ScaleDown);
        }
    }
    // 7. Upgrades: every member healthy, followers first, leadership moved off before the leader.
    if let Some(blocked) = version_block(o) {
        return blocked;
    }
    let current = members.iter().filter_map(|m| m.version).min();
    if let Some(current) = current {
        let stale: Vec<&&MemberObs> = voters
            .iter()
            .filter(|m| m.version.is_some_and(|v| v < o.version))
            .collect();
        if !stale.is_empty() {
            if voters.iter().any(|m| !m.healthy) || voters.iter().any(|m| m.version.is_none()) {
                return Step::Wait {
                    reason: "upgrade waits for every member to be healthy".into(),
                };
            }
            if let Some(m) = stale.iter().find(|m| Some(m.id) != o.leader) {
                return Step::UpgradeMember {
                    member: m.name.clone(),
                    from: m.version.unwrap_or(current),
                };
            }
            // Only the leader is left: move leadership to an upgraded member first.
            if let (Some(leader), Some(to)) = (
                o.leader,
                voters
                    .iter()
                    .find(|m| Some(m.id) != o.leader && m.version == Some(o.version)),
            ) {
                return Step::MoveLeader {
                    from: leader,
                    to: to.id,
                };
            }
            if let Some(m) = stale.first() {
                // A single-member cluster has nobody to hand leadership to.
                return Step::UpgradeMember {
                    member: m.name.clone(),
                    from: m.version.unwrap_or(current),
                };
            }
        }
    }
    // Stable means every member runs spec.version.
    if let Some(m) = members.iter().find(|m| m.version != Some(o.version)) {
        return Step::Wait {
            reason: match m.version {
                Some(v) => format!("member {} runs {}, not {}", m.name, v, o.version),
                None => format!("member {} is unhealthy and does not report its version", m.name),
            },
        };
    }
    // 8. Maintenance, only in a whole, healthy, stable cluster: defragment one member per
    //    step, followers first, the leader last.
    if let Some(d) = &o.defrag
        && voters.len() == o.size
        && voters.len() == members.len()
        && members.iter().all(|m| m.healthy)
        && let Ok(schedule) = parse_schedule(&d.schedule)
    {
        let followers = members.iter().filter(|m| Some(m.id) != o.leader);
        let leader = members.iter().filter(|m| Some(m.id) == o.leader);
        if let Some(m) = followers
            .chain(leader)
            .find(|m| defrag_due(d, &schedule, m, o.now))
        {
            return Step::Defrag {
                id: m.id,
                member: m.name.clone(),
            };
        }
    }
    Step::Nothing
}

/// A rebuild whose seed has not answered yet: the seed is restored again when its pod is
/// gone (the restore is idempotent), and waited for while it is the only pod.
fn restoring(o: &Observed) -> Option<Step> {
    let (backup, seed) = o.recovery.restoring.as_ref()?;
    if o.pods.is_empty() {
        return Some(Step::Recover {
            member: seed.clone(),
            backup: backup.clone(),
        });
    }
    o.pods
        .iter()
        .all(|p| p.name == *seed && !p.terminating)
        .then(|| Step::Wait {
            reason: format!("restoring seed member {seed} from EtcdBackup {}", backup.name),
        })
}

/// What a restore would use, for a message: the newest backup or that there is none.
fn backup_hint(o: &Observed) -> String {
    match &o.recovery.latest_backup {
        Some(b) => format!(
            "EtcdBackup {} (completed {}) is the newest backup",
            b.name, b.completion_time
        ),
        None => "this cluster has no Succeeded EtcdBackup".to_string(),
    }
}

/// The tail of a quorum-lost message while member pods (and so maybe their data) exist:
/// nothing is rebuilt from a backup then, whatever `spec.recovery` says.
fn data_may_exist(o: &Observed, pods: &[&str]) -> String {
    if pods.is_empty() {
        return String::new();
    }
    format!(
        "; pods {} may still hold the members' data, so the cluster is not rebuilt from a backup; {}",
        pods.join(", "),
        backup_hint(o)
    )
}

/// Quorum is lost and no member's data is left (`lost` says how we know): rebuild from the
/// newest backup once `spec.recovery` allows it, otherwise say which backup a restore would
/// use and how to opt in. Without a backup nothing is done.
fn data_lost(o: &Observed, lost: String) -> Step {
    let r = &o.recovery;
    let Some(backup) = &r.latest_backup else {
        let what = if r.from_latest_backup {
            "spec.recovery.fromLatestBackup is set, but there is nothing to rebuild from"
        } else {
            "nothing could be restored"
        };
        return Step::QuorumLost {
            reason: format!(
                "{lost}; this cluster has no Succeeded EtcdBackup, so {what}; restore a backup made elsewhere into a new EtcdCluster with spec.bootstrap.fromBackup"
            ),
        };
    };
    if !r.from_latest_backup {
        return Step::QuorumLost {
            reason: format!(
                "{lost}; a restore would use EtcdBackup {} (completed {}): set spec.recovery.fromLatestBackup to true to rebuild this cluster from it, or restore it into a new EtcdCluster with spec.bootstrap.fromBackup",
                backup.name, backup.completion_time
            ),
        };
    }
    // A deadline, not a countdown: the message (and so the status) stays the same meanwhile.
    let due = r
        .quorum_lost_since
        .unwrap_or(o.now)
        .saturating_add(r.after.as_secs() as i64);
    if o.now < due {
        let at = k8s_openapi::jiff::Timestamp::from_second(due)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|_| format!("{due} (Unix seconds)"));
        return Step::QuorumLost {
            reason: format!(
                "{lost}; the cluster is rebuilt from EtcdBackup {} (completed {}) once quorum has been lost for {}s (spec.recovery.after), at {at}",
                backup.name,
                backup.completion_time,
                r.after.as_secs()
            ),
        };
    }
    Step::Recover {
        member: o.fresh_name.clone(),
        backup: backup.clone(),
    }
}

/// Removes `m` unless that would leave fewer healthy voters than a quorum of the rest.
fn remove_checked(members: &[MemberObs], m: &MemberObs, reason: RemoveReason) -> Step {
    let voters_after: Vec<&MemberObs> = members.iter().filter(|x| !x.is_learner && x.id != m.id).collect();
    let healthy_after = voters_after.iter().filter(|x| x.healthy).count();
    if !m.is_learner && healthy_after < quorum(voters_after.len()) {
        return Step::Wait {
            reason: format!(
                "removing {} would leave {healthy_after} healthy of {} voters",
                m.name,
                voters_after.len()
            ),
        };
    }
    Step::RemoveMember {
        id: m.id,
        member: m.name.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests;
