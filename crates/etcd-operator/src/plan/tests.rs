//! The planner's rule tables: an observed cluster and the one step it must lead to.

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
        recovery: RecoveryObs::default(),
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
                reason: "every member pod is gone and no member's data is left (no member PVC); the operator will not start an empty cluster in its place; this cluster has no Succeeded EtcdBackup, so nothing could be restored; restore a backup made elsewhere into a new EtcdCluster with spec.bootstrap.fromBackup".into(),
            },
        ),
        (
            "emptyDir cluster whose pods all died: refuse to start from empty",
            Box::new(|| Observed { members: None, pods: vec![], volumes: vec![], storage: StorageKind::Ephemeral, ..cluster(3, &["a", "b", "c"]) }),
            Step::QuorumLost {
                reason: "every member pod is gone and no member's data is left (emptyDir storage); the operator will not start an empty cluster in its place; this cluster has no Succeeded EtcdBackup, so nothing could be restored; restore a backup made elsewhere into a new EtcdCluster with spec.bootstrap.fromBackup".into(),
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
            Step::QuorumLost {
                reason: "no member answers; pods a, b, c may still hold the members' data, so the cluster is not rebuilt from a backup; this cluster has no Succeeded EtcdBackup".into(),
            },
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
            Step::QuorumLost {
                reason: "1 of 3 voting members are healthy; 2 are needed; pods a, b, c may still hold the members' data, so the cluster is not rebuilt from a backup; this cluster has no Succeeded EtcdBackup".into(),
            },
        ),
        (
            "a claim without a member or pod (stopped between the two deletions): delete it",
            Box::new(|| {
                let mut o = cluster(3, &["a", "b", "c"]);
                o.volumes.push("removed".into());
                o
            }),
            Step::DeletePod { member: "removed".into() },
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

/// An emptyDir cluster of three whose pods are all gone, quorum lost since t=1000, observed
/// at `now`, with `spec.recovery` as given and `backup` the newest usable one.
fn backup(name: &str) -> BackupObs {
    BackupObs {
        name: name.into(),
        completion_time: "2026-01-01T00:00:00Z".into(),
    }
}

fn wiped(now: i64, opted_in: bool, backup_name: Option<&str>) -> Observed {
    Observed {
        members: None,
        pods: vec![],
        volumes: vec![],
        storage: StorageKind::Ephemeral,
        now,
        recovery: RecoveryObs {
            from_latest_backup: opted_in,
            after: Duration::from_secs(300),
            quorum_lost_since: Some(1_000),
            latest_backup: backup_name.map(backup),
            restoring: None,
        },
        ..cluster(3, &["a", "b", "c"])
    }
}

fn quorum_lost(step: Step) -> String {
    match step {
        Step::QuorumLost { reason } => reason,
        other => panic!("expected QuorumLost, got {other:?}"),
    }
}

#[test]
fn disaster_recovery_rebuilds_from_the_newest_backup_only_when_opted_in_and_data_is_gone() {
    // Opted in, data gone, lost for longer than `after`: rebuild from the backup.
    assert_eq!(
        plan(&wiped(1_300, true, Some("nightly"))),
        Step::Recover {
            member: "fresh".into(),
            backup: backup("nightly")
        }
    );
    // Not for long enough yet: say when.
    let early = quorum_lost(plan(&wiped(1_100, true, Some("nightly"))));
    assert!(early.contains("rebuilt from EtcdBackup nightly"), "{early}");
    assert!(early.ends_with("at 1970-01-01T00:21:40Z"), "{early}");
    // The same message until then: the status does not change every reconcile.
    assert_eq!(quorum_lost(plan(&wiped(1_250, true, Some("nightly")))), early);
    // Quorum loss not recorded yet (this is the first look): it counts from now.
    let first = Observed {
        recovery: RecoveryObs {
            quorum_lost_since: None,
            ..wiped(1_300, true, Some("nightly")).recovery
        },
        ..wiped(1_300, true, Some("nightly"))
    };
    assert!(matches!(plan(&first), Step::QuorumLost { .. }));
    // Not opted in: name the backup and how to opt in, however long it has been.
    let manual = quorum_lost(plan(&wiped(100_000, false, Some("nightly"))));
    assert!(
        manual.contains("a restore would use EtcdBackup nightly (completed 2026-01-01T00:00:00Z)"),
        "{manual}"
    );
    assert!(manual.contains("spec.recovery.fromLatestBackup"), "{manual}");
    // Opted in without any backup: nothing destructive, and say so.
    let none = quorum_lost(plan(&wiped(100_000, true, None)));
    assert!(none.contains("no Succeeded EtcdBackup"), "{none}");
    assert!(none.contains("nothing to rebuild from"), "{none}");
    // PVC storage with every claim lost is data loss too.
    let pvcs_lost = Observed {
        storage: StorageKind::Persistent,
        ..wiped(1_300, true, Some("nightly"))
    };
    assert!(matches!(plan(&pvcs_lost), Step::Recover { .. }));
}

#[test]
fn disaster_recovery_never_rebuilds_while_data_may_exist() {
    // A member's PVC is left: it comes back from it, whatever spec.recovery says.
    let mut o = Observed {
        storage: StorageKind::Persistent,
        ..wiped(100_000, true, Some("nightly"))
    };
    o.volumes = vec!["b".into()];
    assert_eq!(plan(&o), Step::CreatePod { member: "b".into() });
    // Pods that do not answer may hold data: QuorumLost naming the backup, no rebuild.
    let o = Observed {
        pods: vec![pod("a"), pod("b")],
        ..wiped(100_000, true, Some("nightly"))
    };
    let reason = quorum_lost(plan(&o));
    assert!(reason.contains("pods a, b may still hold"), "{reason}");
    assert!(reason.contains("EtcdBackup nightly"), "{reason}");
    // Pods being deleted still hold their data until they are gone.
    let mut o = Observed {
        pods: vec![pod("a")],
        ..wiped(100_000, true, Some("nightly"))
    };
    o.pods[0].terminating = true;
    assert!(matches!(plan(&o), Step::QuorumLost { .. }));
    // One healthy survivor of three: its data is newer than any backup.
    let mut o = cluster(3, &["a", "b", "c"]);
    o.storage = StorageKind::Ephemeral;
    o.pods.retain(|p| p.name == "a");
    unhealthy(&mut o, "b", 0);
    unhealthy(&mut o, "c", 0);
    o.recovery = wiped(100_000, true, Some("nightly")).recovery;
    o.now = 100_000;
    // b and c have no pod and no data: they are not removed (quorum), nothing is rebuilt.
    let step = plan(&o);
    assert!(
        !matches!(step, Step::Recover { .. } | Step::Bootstrap { .. }),
        "{step:?}"
    );
    // Paused: nothing at all.
    let o = Observed {
        paused: true,
        ..wiped(100_000, true, Some("nightly"))
    };
    assert_eq!(plan(&o), Step::Paused);
}

#[test]
fn a_rebuild_in_progress_continues_with_its_seed_and_backup() {
    let restoring = |pods: Vec<PodObs>| {
        let mut o = Observed {
            pods,
            ..wiped(1_010, true, Some("newer"))
        };
        o.recovery.restoring = Some((backup("nightly"), "seed".into()));
        o
    };
    // The seed pod is restoring: wait for it, whatever the old members were.
    assert_eq!(
        plan(&restoring(vec![pod("seed")])),
        Step::Wait {
            reason: "restoring seed member seed from EtcdBackup nightly".into()
        }
    );
    // Its pod is gone (or was never created before a restart): the same seed, the same
    // backup, without waiting for `after` again or switching to a newer backup.
    assert_eq!(
        plan(&restoring(vec![])),
        Step::Recover {
            member: "seed".into(),
            backup: backup("nightly")
        }
    );
    // Once the seed answers, the cluster grows through the learner path.
    let mut o = cluster(3, &["seed"]);
    o.recovery.restoring = None;
    assert_eq!(
        plan(&o),
        Step::AddMember {
            member: "fresh".into()
        }
    );
}
