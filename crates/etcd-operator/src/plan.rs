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
        if o.pods.is_empty() {
            return Step::QuorumLost {
                reason: format!(
                    "every member pod is gone and no member's data is left ({}); the operator will not start an empty cluster in its place",
                    if o.storage == StorageKind::Ephemeral {
                        "emptyDir storage"
                    } else {
                        "no member PVC"
                    }
                ),
            };
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
        return Step::QuorumLost {
            reason: "no member answers".into(),
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
        return Step::QuorumLost {
            reason: format!(
                "{healthy_voters} of {} voting members are healthy; {} are needed",
                voters.len(),
                quorum(voters.len())
            ),
        };
    }
    let expired = |m: &MemberObs| {
        !m.healthy
            && m.unhealthy_since
                .is_some_and(|t| o.now - t >= o.member_failure_timeout.as_secs() as i64)
    };

    // 1. Pods whose member is gone (removed, or a crashed add): delete them.
    for p in &o.pods {
        if !p.terminating && !members.iter().any(|m| m.name == p.name) {
            return Step::DeletePod {
                member: p.name.clone(),
            };
        }
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
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn m(id: u64, name: &str) -> MemberObs {
        MemberObs {
            id,
            name: name.into(),
            started: true,
            is_learner: false,
            healthy: true,
            unhealthy_since: None,
            version: Some(v("3.5.16")),
            db_size: Some((1000, 950)),
            raft_index: Some(5000),
            last_defrag: None,
        }
    }

    fn pod(name: &str) -> PodObs {
        PodObs {
            name: name.into(),
            version: v("3.5.16"),
            terminating: false,
        }
    }

    /// A healthy cluster of `names` (first is the leader) at 3.5.16 with pods and volumes.
    fn cluster(size: usize, names: &[&str]) -> Observed {
        Observed {
            size,
            version: v("3.5.16"),
            paused: false,
            storage: StorageKind::Persistent,
            member_failure_timeout: Duration::from_secs(120),
            now: 1_000,
            pods: names.iter().map(|n| pod(n)).collect(),
            volumes: names.iter().map(|n| n.to_string()).collect(),
            known: names.iter().map(|n| n.to_string()).collect(),
            members: Some(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| m(i as u64 + 1, n))
                    .collect(),
            ),
            leader: Some(1),
            fresh_name: "fresh".into(),
            defrag: None,
            unreachable: None,
        }
    }

    /// 13:30:20 UTC on 2025-01-01, and the same day's 13:00:00.
    const T1330: i64 = 1_735_738_220;
    const T1300: i64 = 1_735_736_400;

    /// Backend sizes in MiB.
    fn mib(size: i64, in_use: i64) -> Option<(i64, i64)> {
        Some((size << 20, in_use << 20))
    }

    /// `cluster` with an hourly defrag at minute 30 and a 10 % threshold, created at 13:00,
    /// observed at 13:30:20; every member 20 % (20 MiB) unused.
    fn defrag_cluster(names: &[&str]) -> Observed {
        let mut o = Observed {
            now: T1330,
            defrag: Some(DefragObs {
                schedule: "30 * * * *".into(),
                threshold_percent: 10,
                created: T1300,
            }),
            ..cluster(names.len(), names)
        };
        for x in o.members.as_mut().unwrap() {
            x.db_size = mib(100, 80);
        }
        o
    }

    fn member<'a>(o: &'a mut Observed, name: &str) -> &'a mut MemberObs {
        o.members
            .as_mut()
            .unwrap()
            .iter_mut()
            .find(|m| m.name == name)
            .unwrap()
    }

    fn unhealthy(o: &mut Observed, name: &str, since: i64) {
        let m = member(o, name);
        m.healthy = false;
        m.unhealthy_since = Some(since);
        m.version = None;
    }

    #[test]
    fn planner_table() {
        type Case = (&'static str, Box<dyn Fn() -> Observed>, Step);
        let remove = |id: u64, name: &str, reason| Step::RemoveMember {
            id,
            member: name.into(),
            reason,
        };
        let cases: Vec<Case> = vec![
            ("paused: observe only", Box::new(|| Observed { paused: true, ..cluster(5, &["a", "b", "c"]) }), Step::Paused),
            ("in sync: nothing", Box::new(|| cluster(3, &["a", "b", "c"])), Step::Nothing),
            (
                "no cluster at all: bootstrap one seed",
                Box::new(|| Observed { members: None, pods: vec![], volumes: vec![], ..cluster(3, &[]) }),
                Step::Bootstrap { member: "fresh".into() },
            ),
            (
                "every pod deleted, PVCs kept: recreate the members, never bootstrap",
                Box::new(|| Observed { members: None, pods: vec![], ..cluster(3, &["a", "b", "c"]) }),
                Step::CreatePod { member: "a".into() },
            ),
            (
                "every pod deleted, recreating: the next member with data comes back",
                Box::new(|| {
                    let mut o = Observed { members: None, ..cluster(3, &["a", "b", "c"]) };
                    o.pods.retain(|p| p.name == "a");
                    o
                }),
                Step::CreatePod { member: "b".into() },
            ),
            (
                "the only pod of a size-1 cluster deleted: it comes back from its PVC",
                Box::new(|| Observed { members: None, pods: vec![], ..cluster(1, &["a"]) }),
                Step::CreatePod { member: "a".into() },
            ),
            (
                "status knows members but their PVCs are gone: refuse to start from empty",
                Box::new(|| Observed { members: None, pods: vec![], volumes: vec![], ..cluster(3, &["a", "b", "c"]) }),
                Step::QuorumLost {
                    reason: "every member pod is gone and no member's data is left (no member PVC); the operator will not start an empty cluster in its place".into(),
                },
            ),
            (
                "emptyDir cluster whose pods all died: refuse to start from empty",
                Box::new(|| Observed { members: None, pods: vec![], volumes: vec![], storage: StorageKind::Ephemeral, ..cluster(3, &["a", "b", "c"]) }),
                Step::QuorumLost {
                    reason: "every member pod is gone and no member's data is left (emptyDir storage); the operator will not start an empty cluster in its place".into(),
                },
            ),
            (
                "two of three pods deleted: quorum is lost, so recreate them from their PVCs",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    o.pods.retain(|p| p.name == "a");
                    unhealthy(&mut o, "b", 990);
                    unhealthy(&mut o, "c", 990);
                    o
                }),
                Step::CreatePod { member: "b".into() },
            ),
            (
                "seed pod starting: wait",
                Box::new(|| Observed { members: None, ..cluster(3, &["a"]) }),
                Step::Wait { reason: "waiting for the seed member to answer".into() },
            ),
            (
                "pods but no member answers: quorum lost, nothing destructive",
                Box::new(|| Observed { members: None, ..cluster(3, &["a", "b", "c"]) }),
                Step::QuorumLost { reason: "no member answers".into() },
            ),
            (
                "pods but etcd refuses the connection: reported as itself, nothing destructive",
                Box::new(|| Observed {
                    members: None,
                    unreachable: Some("connection refused: cannot connect to etcd".into()),
                    ..cluster(3, &["a", "b", "c"])
                }),
                Step::Unreachable { reason: "connection refused: cannot connect to etcd".into() },
            ),
            (
                "one of three voters healthy: quorum lost",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    unhealthy(&mut o, "b", 0);
                    unhealthy(&mut o, "c", 0);
                    o
                }),
                Step::QuorumLost { reason: "1 of 3 voting members are healthy; 2 are needed".into() },
            ),
            (
                "a pod without a member (removed, or a crashed add): delete it",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    o.pods.push(pod("stray"));
                    o
                }),
                Step::DeletePod { member: "stray".into() },
            ),
            (
                "member after MemberAdd, before its pod: create the pod",
                Box::new(|| {
                    let mut o = cluster(4, &["a", "b", "c"]);
                    o.members.as_mut().unwrap().push(MemberObs { started: false, is_learner: true, healthy: false, version: None, ..m(9, "d") });
                    o
                }),
                Step::CreatePod { member: "d".into() },
            ),
            (
                "pod deleted, PVC kept: the member comes back with its identity",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    o.pods.retain(|p| p.name != "b");
                    unhealthy(&mut o, "b", 990);
                    o
                }),
                Step::CreatePod { member: "b".into() },
            ),
            (
                "pod and data gone: never restart with the old ID, remove it",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    o.pods.retain(|p| p.name != "b");
                    o.volumes.retain(|n| n != "b");
                    unhealthy(&mut o, "b", 990);
                    o
                }),
                remove(2, "b", RemoveReason::Replace),
            ),
            (
                "emptyDir storage: a lost pod means lost data",
                Box::new(|| {
                    let mut o = Observed { storage: StorageKind::Ephemeral, ..cluster(3, &["a", "b", "c"]) };
                    o.pods.retain(|p| p.name != "c");
                    unhealthy(&mut o, "c", 990);
                    o
                }),
                remove(3, "c", RemoveReason::Replace),
            ),
            (
                "paused between the two halves of an upgrade: the member gets its pod back",
                Box::new(|| {
                    let mut o = Observed { paused: true, ..cluster(3, &["a", "b", "c"]) };
                    o.pods.retain(|p| p.name != "b");
                    unhealthy(&mut o, "b", 990);
                    o
                }),
                Step::CreatePod { member: "b".into() },
            ),
            (
                "paused size-1 cluster whose only pod was deleted: it comes back",
                Box::new(|| Observed { paused: true, members: None, pods: vec![], ..cluster(1, &["a"]) }),
                Step::CreatePod { member: "a".into() },
            ),
            (
                "a pod stuck terminating does not block healing another member",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    o.pods[0].terminating = true;
                    o.pods.retain(|p| p.name != "c");
                    unhealthy(&mut o, "c", 990);
                    o
                }),
                Step::CreatePod { member: "c".into() },
            ),
            (
                "a healthy learner far behind the leader is not promoted yet",
                Box::new(|| {
                    let mut o = cluster(4, &["a", "b", "c"]);
                    o.members.as_mut().unwrap().push(MemberObs { is_learner: true, raft_index: Some(100), ..m(9, "d") });
                    o.pods.push(pod("d"));
                    o.volumes.push("d".into());
                    o
                }),
                Step::Wait { reason: "learner d is catching up (raft index 100 of 5000)".into() },
            ),
            (
                "a learner within reach of the leader's log is promoted",
                Box::new(|| {
                    let mut o = cluster(4, &["a", "b", "c"]);
                    o.members.as_mut().unwrap().push(MemberObs { is_learner: true, raft_index: Some(4995), ..m(9, "d") });
                    o.pods.push(pod("d"));
                    o.volumes.push("d".into());
                    o
                }),
                Step::Promote { id: 9, member: "d".into() },
            ),
            (
                "member pod terminating: wait for it",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    o.pods[1].terminating = true;
                    o
                }),
                Step::Wait { reason: "pod b is terminating".into() },
            ),
            (
                "caught-up learner: promote",
                Box::new(|| {
                    let mut o = cluster(4, &["a", "b", "c", "d"]);
                    member(&mut o, "d").is_learner = true;
                    o
                }),
                Step::Promote { id: 4, member: "d".into() },
            ),
            (
                "learner still catching up: wait",
                Box::new(|| {
                    let mut o = cluster(4, &["a", "b", "c", "d"]);
                    member(&mut o, "d").is_learner = true;
                    unhealthy(&mut o, "d", 990);
                    o
                }),
                Step::Wait { reason: "learner d is catching up".into() },
            ),
            (
                "learner stuck past the failure timeout: replace it",
                Box::new(|| {
                    let mut o = cluster(4, &["a", "b", "c", "d"]);
                    member(&mut o, "d").is_learner = true;
                    unhealthy(&mut o, "d", 800);
                    o
                }),
                remove(4, "d", RemoveReason::Replace),
            ),
            (
                "voter unreachable longer than memberFailureTimeout: replace it",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    unhealthy(&mut o, "c", 800);
                    o
                }),
                remove(3, "c", RemoveReason::Replace),
            ),
            (
                "voter unhealthy but within the timeout: no replacement, no scale-up",
                Box::new(|| {
                    let mut o = cluster(5, &["a", "b", "c"]);
                    unhealthy(&mut o, "c", 990);
                    o
                }),
                Step::Wait { reason: "scaling up waits for every member to be healthy".into() },
            ),
            ("scale up: one MemberAdd at a time", Box::new(|| cluster(3, &["a"])), Step::AddMember { member: "fresh".into() }),
            ("scale down: a follower, not the leader", Box::new(|| cluster(3, &["a", "b", "c", "d", "e"])), remove(2, "b", RemoveReason::ScaleDown)),
            (
                "scale down: an unhealthy member first",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c", "d", "e"]);
                    unhealthy(&mut o, "d", 990);
                    o
                }),
                remove(4, "d", RemoveReason::ScaleDown),
            ),
            (
                "scale down to one: the leader only when it is the last choice",
                Box::new(|| Observed { leader: Some(2), ..cluster(1, &["a", "b"]) }),
                remove(1, "a", RemoveReason::ScaleDown),
            ),
            (
                "upgrade 3.4 -> 3.5: followers first",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    for x in o.members.as_mut().unwrap() {
                        x.version = Some(v("3.4.23"));
                    }
                    o
                }),
                Step::UpgradeMember { member: "b".into(), from: v("3.4.23") },
            ),
            (
                "upgrade: only the leader left: move leadership first",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    member(&mut o, "a").version = Some(v("3.4.23"));
                    o
                }),
                Step::MoveLeader { from: 1, to: 2 },
            ),
            (
                "upgrade: the old leader, now a follower",
                Box::new(|| {
                    let mut o = Observed { leader: Some(2), ..cluster(3, &["a", "b", "c"]) };
                    member(&mut o, "a").version = Some(v("3.4.23"));
                    o
                }),
                Step::UpgradeMember { member: "a".into(), from: v("3.4.23") },
            ),
            (
                "upgrade waits for a healthy cluster",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    member(&mut o, "a").version = Some(v("3.4.23"));
                    unhealthy(&mut o, "c", 990);
                    o
                }),
                Step::Wait { reason: "upgrade waits for every member to be healthy".into() },
            ),
            (
                "patch upgrade 3.5.16 -> 3.5.30",
                Box::new(|| Observed { version: v("3.5.30"), leader: Some(3), ..cluster(3, &["a", "b", "c"]) }),
                Step::UpgradeMember { member: "a".into(), from: v("3.5.16") },
            ),
            (
                "single member upgrade: nobody to hand leadership to",
                Box::new(|| Observed { version: v("3.5.30"), ..cluster(1, &["a"]) }),
                Step::UpgradeMember { member: "a".into(), from: v("3.5.16") },
            ),
            (
                "downgrade: blocked",
                Box::new(|| Observed { version: v("3.4.23"), ..cluster(3, &["a", "b", "c"]) }),
                Step::UpgradeBlocked { reason: "downgrade from 3.5.16 to 3.4.23 is not supported".into() },
            ),
            (
                "skipping a minor version: blocked",
                Box::new(|| {
                    let mut o = Observed { version: v("3.6.0"), ..cluster(3, &["a", "b", "c"]) };
                    for x in o.members.as_mut().unwrap() {
                        x.version = Some(v("3.4.23"));
                    }
                    o
                }),
                Step::UpgradeBlocked { reason: "upgrade from 3.4.23 to 3.6.0 skips a minor version; upgrade one minor version at a time".into() },
            ),
            (
                "defrag window open: a follower first",
                Box::new(|| defrag_cluster(&["a", "b", "c"])),
                Step::Defrag { id: 2, member: "b".into() },
            ),
            (
                "defrag: followers done in this window, the leader last",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    member(&mut o, "b").last_defrag = Some(T1330 - 10);
                    member(&mut o, "c").last_defrag = Some(T1330 - 5);
                    o
                }),
                Step::Defrag { id: 1, member: "a".into() },
            ),
            (
                "defrag: every member done in this window: nothing",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    for x in o.members.as_mut().unwrap() {
                        x.last_defrag = Some(T1330 - 10);
                    }
                    o
                }),
                Step::Nothing,
            ),
            (
                "defrag: a new window after the previous run: again",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    for x in o.members.as_mut().unwrap() {
                        x.last_defrag = Some(T1300 - 29 * 60);
                    }
                    o
                }),
                Step::Defrag { id: 2, member: "b".into() },
            ),
            (
                "defrag: a member below the threshold is skipped",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    member(&mut o, "b").db_size = mib(1000, 901);
                    o
                }),
                Step::Defrag { id: 3, member: "c".into() },
            ),
            (
                "defrag: exactly at the threshold counts",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    member(&mut o, "b").db_size = mib(1000, 900);
                    o
                }),
                Step::Defrag { id: 2, member: "b".into() },
            ),
            (
                "defrag: threshold 0 takes any member with 1 MiB to reclaim",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    o.defrag.as_mut().unwrap().threshold_percent = 0;
                    member(&mut o, "b").db_size = mib(1000, 999);
                    o
                }),
                Step::Defrag { id: 2, member: "b".into() },
            ),
            (
                "defrag: small databases are never worth it, whatever their unused share",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    for x in o.members.as_mut().unwrap() {
                        x.db_size = Some((20_480, 12_288));
                    }
                    o
                }),
                Step::Nothing,
            ),
            (
                "defrag: no window since the cluster was created: nothing",
                Box::new(|| Observed { now: T1300 + 29 * 60, ..defrag_cluster(&["a", "b", "c"]) }),
                Step::Nothing,
            ),
            (
                "defrag: a window before the cluster existed does not count",
                Box::new(|| {
                    let mut o = Observed { now: T1330 + 10 * 60, ..defrag_cluster(&["a", "b", "c"]) };
                    o.defrag.as_mut().unwrap().created = T1330 + 60;
                    o
                }),
                Step::Nothing,
            ),
            (
                "defrag: an unparsable schedule never fires",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    o.defrag.as_mut().unwrap().schedule = "every day".into();
                    o
                }),
                Step::Nothing,
            ),
            (
                "defrag: db size unknown: skipped",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    member(&mut o, "b").db_size = None;
                    o
                }),
                Step::Defrag { id: 3, member: "c".into() },
            ),
            (
                "defrag waits for every member to be healthy",
                Box::new(|| {
                    let mut o = defrag_cluster(&["a", "b", "c"]);
                    unhealthy(&mut o, "c", T1330 - 10);
                    o
                }),
                Step::Wait { reason: "member c is unhealthy and does not report its version".into() },
            ),
            (
                "a replacement never joins below a running member (spec went back mid-upgrade)",
                Box::new(|| Observed { size: 5, version: v("3.4.23"), storage: StorageKind::Ephemeral, ..cluster(5, &["a", "b", "c", "d"]) }),
                Step::UpgradeBlocked { reason: "downgrade from 3.5.16 to 3.4.23 is not supported".into() },
            ),
            (
                "a member newer than spec.version is never Stable",
                Box::new(|| {
                    let mut o = cluster(3, &["a", "b", "c"]);
                    member(&mut o, "b").version = Some(v("3.5.17"));
                    o
                }),
                Step::UpgradeBlocked { reason: "downgrade from 3.5.17 to 3.5.16 is not supported".into() },
            ),
            (
                "a pod restarting at a version below its data is blocked",
                Box::new(|| {
                    let mut o = Observed { members: None, version: v("3.4.23"), ..cluster(3, &["a", "b", "c"]) };
                    o.pods.retain(|p| p.name != "c");
                    o
                }),
                Step::UpgradeBlocked { reason: "downgrade from 3.5.16 to 3.4.23 is not supported".into() },
            ),
            (
                "defrag never preempts scaling",
                Box::new(|| Observed { size: 5, ..defrag_cluster(&["a", "b", "c"]) }),
                Step::AddMember { member: "fresh".into() },
            ),
            (
                "defrag never preempts a learner's promotion",
                Box::new(|| {
                    let mut o = Observed { size: 3, ..defrag_cluster(&["a", "b", "c", "d"]) };
                    member(&mut o, "d").is_learner = true;
                    o
                }),
                Step::Promote { id: 4, member: "d".into() },
            ),
            (
                "defrag never preempts an upgrade",
                Box::new(|| Observed { version: v("3.5.30"), ..defrag_cluster(&["a", "b", "c"]) }),
                Step::UpgradeMember { member: "b".into(), from: v("3.5.16") },
            ),
            (
                "defrag: paused clusters are left alone",
                Box::new(|| Observed { paused: true, ..defrag_cluster(&["a", "b", "c"]) }),
                Step::Paused,
            ),
            (
                "defrag: a single member is its own leader",
                Box::new(|| defrag_cluster(&["a"])),
                Step::Defrag { id: 1, member: "a".into() },
            ),
        ];
        for (name, observed, expected) in cases {
            assert_eq!(plan(&observed()), expected, "{name}");
        }
    }

    #[test]
    fn schedules() {
        for ok in [
            "* * * * *",
            "0 3 * * *",
            "*/15 2-4 * * MON-FRI",
            "@daily",
            "30 1 1 JAN *",
        ] {
            assert!(parse_schedule(ok).is_ok(), "{ok}");
        }
        for bad in ["", "* * * *", "0 * * * * *", "61 * * * *", "every day"] {
            assert!(parse_schedule(bad).is_err(), "{bad:?}");
        }
        let hourly_30 = parse_schedule("30 * * * *").unwrap();
        assert!(schedule_fired(&hourly_30, T1300, T1330));
        assert!(
            schedule_fired(&hourly_30, T1300, T1300 + 30 * 60),
            "the firing second itself"
        );
        assert!(!schedule_fired(&hourly_30, T1300, T1300 + 30 * 60 - 1));
        assert!(
            !schedule_fired(&hourly_30, T1300 + 30 * 60, T1330),
            "fired at the start, not after"
        );
        let daily_3 = parse_schedule("0 3 * * *").unwrap();
        assert!(
            !schedule_fired(&daily_3, T1300, T1300 + 13 * 3600),
            "next at 03:00 tomorrow"
        );
        assert!(schedule_fired(&daily_3, T1300, T1300 + 14 * 3600));
    }

    #[test]
    fn removal_never_breaks_quorum() {
        let mut o = cluster(3, &["a", "b", "c", "d", "e"]);
        unhealthy(&mut o, "d", 990);
        unhealthy(&mut o, "e", 990);
        let members = o.members.clone().unwrap();
        // Removing a healthy voter would leave 2 healthy of 4: refused.
        let step = remove_checked(&members, &members[1], RemoveReason::ScaleDown);
        assert_eq!(
            step,
            Step::Wait {
                reason: "removing b would leave 2 healthy of 4 voters".into()
            }
        );
        // Removing an unhealthy one is fine.
        assert!(matches!(
            remove_checked(&members, &members[3], RemoveReason::ScaleDown),
            Step::RemoveMember { id: 4, .. }
        ));
    }

    #[test]
    fn upgrade_rules() {
        assert!(upgrade_allowed(v("3.4.23"), v("3.5.16")).is_ok());
        assert!(upgrade_allowed(v("3.5.16"), v("3.5.30")).is_ok());
        assert!(upgrade_allowed(v("3.5.16"), v("3.5.16")).is_ok());
        assert!(upgrade_allowed(v("3.4.23"), v("3.6.0")).is_err());
        assert!(upgrade_allowed(v("3.5.30"), v("3.5.16")).is_err());
        assert!(upgrade_allowed(v("3.5.0"), v("4.0.0")).is_err());
    }
}
