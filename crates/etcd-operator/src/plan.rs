//! The etcd planner: from what etcd and the API report *now*, the single next safe step.
//!
//! Pure: no I/O, no clock (the caller passes `now`). The controller executes one step per
//! reconcile and re-plans from fresh observations, so a crash between any two steps
//! converges: every intermediate state (member added but no pod, pod but no member, learner
//! not promoted, member removed but pod still there) has a rule that moves it forward.

use std::time::Duration;

use crate::controller::Version;

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
    /// The membership, or `None` when no member answered.
    pub members: Option<Vec<MemberObs>>,
    /// The leader's member ID, if known.
    pub leader: Option<u64>,
    /// A fresh member name to use if the step adds one.
    pub fresh_name: String,
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
        return Err(format!(
            "downgrade from {} to {} is not supported",
            fmt(from),
            fmt(to)
        ));
    }
    if to.major != from.major || to.minor > from.minor + 1 {
        return Err(format!(
            "upgrade from {} to {} skips a minor version; upgrade one minor version at a time",
            fmt(from),
            fmt(to)
        ));
    }
    Ok(())
}

fn fmt(v: Version) -> String {
    format!("{}.{}.{}", v.major, v.minor, v.patch)
}

/// The single next step.
pub fn plan(o: &Observed) -> Step {
    if o.paused {
        return Step::Paused;
    }
    let Some(members) = &o.members else {
        if o.pods.is_empty() {
            return Step::Bootstrap {
                member: o.fresh_name.clone(),
            };
        }
        if o.pods.len() == 1 && o.pods.iter().all(|p| !p.terminating) {
            return Step::Wait {
                reason: "waiting for the seed member to answer".into(),
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
    for m in members {
        match pod(&m.name) {
            Some(p) if p.terminating => {
                return Step::Wait {
                    reason: format!("pod {} is terminating", p.name),
                };
            }
            Some(_) => {}
            None => {
                let data_kept = o.storage == StorageKind::Persistent && o.volumes.contains(&m.name);
                if !m.started || data_kept {
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
            return Step::Promote {
                id: m.id,
                member: m.name.clone(),
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
    // 5. Scale up, one member at a time, only when everything is healthy.
    if voters.len() < o.size {
        if voters.iter().any(|m| !m.healthy) {
            return Step::Wait {
                reason: "scaling up waits for every member to be healthy".into(),
            };
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
    let current = members.iter().filter_map(|m| m.version).min();
    if let Some(current) = current {
        if let Err(reason) = upgrade_allowed(current, o.version) {
            return Step::UpgradeBlocked { reason };
        }
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
            members: Some(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| m(i as u64 + 1, n))
                    .collect(),
            ),
            leader: Some(1),
            fresh_name: "fresh".into(),
        }
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
        ];
        for (name, observed, expected) in cases {
            assert_eq!(plan(&observed()), expected, "{name}");
        }
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
