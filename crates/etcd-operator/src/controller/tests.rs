//! Tests of the controller's pure parts.

use super::execute::gone_or_deleted;
use super::*;
use crate::crd::{EtcdClusterSpec, EtcdClusterStatus, TlsMode};
use crate::crd::{EtcdStorage, EtcdTls, EtcdTlsSecrets};
use crate::plan::Step;
use crate::resources;
use crate::version::Version;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

fn spec(version: &str) -> EtcdClusterSpec {
    EtcdClusterSpec {
        size: 3,
        version: version.to_string(),
        repository: crate::crd::DEFAULT_REPOSITORY.to_string(),
        paused: false,
        storage: EtcdStorage::default(),
        pod_template: None,
        tls: EtcdTls::default(),
        options: None,
        member_failure_timeout: "2m".to_string(),
        maintenance: None,
        backup: None,
        bootstrap: None,
        recovery: None,
    }
}

#[test]
fn a_trimmed_member_pod_keeps_its_image() {
    let mut obj = crate::crd::EtcdCluster::new("c", spec("3.5.16"));
    obj.metadata.namespace = Some("ns".into());
    let pod = resources::member_pod(&obj, "c-abcde", &[], "new");
    let mut o: kube::api::DynamicObject =
        serde_json::from_value(serde_json::to_value(&pod).unwrap()).unwrap();
    pod_images_only(&mut o);
    let back: Pod = o.try_parse().unwrap();
    assert_eq!(back.metadata.name.as_deref(), Some("c-abcde"));
    let image = back.spec.unwrap().containers[0].image.clone().unwrap_or_default();
    assert!(image.ends_with(":v3.5.16"), "{image}");
    assert!(back.status.is_none());
}

#[test]
fn only_not_found_counts_as_deleted() {
    let api = |code: u16| -> Result<(), kube::Error> {
        Err(kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        })))
    };
    assert!(gone_or_deleted(Ok::<_, kube::Error>(())).is_ok());
    assert!(gone_or_deleted(api(404)).is_ok());
    for code in [403, 409, 422, 500] {
        assert!(gone_or_deleted(api(code)).is_err(), "{code}");
    }
}

#[test]
fn validation() {
    assert!(validate(&spec("3.5.16")).is_empty());
    assert_eq!(
        validate(&spec("3.3.9")),
        vec!["spec.version 3.3.9 is too old: etcd 3.4 or newer is required"]
    );
    let mut s = spec("3.5.16");
    s.tls = EtcdTls {
        mode: TlsMode::Secrets,
        secrets: None,
        certificate_validity: None,
        ca_validity: None,
    };
    assert_eq!(validate(&s).len(), 1);
    s.tls.secrets = Some(EtcdTlsSecrets {
        server: "a".into(),
        peer: String::new(),
        client: "c".into(),
        peer_allowed_cn: None,
    });
    assert_eq!(validate(&s), vec!["spec.tls.secrets.peer must name a Secret"]);
    let mut s = spec("3.5.16");
    s.tls.certificate_validity = Some("10s".into());
    assert_eq!(
        validate(&s),
        vec!["spec.tls.certificateValidity 10s is too short: at least 30s"]
    );
    s.tls.certificate_validity = Some("1h".into());
    assert!(validate(&s).is_empty());
    // Durations that pass the CRD pattern but are absurd are a problem, not a panic.
    s.member_failure_timeout = "9999999h".into();
    s.tls.certificate_validity = Some("9999999h".into());
    assert_eq!(
        validate(&s),
        vec![
            "spec.memberFailureTimeout: duration \"9999999h\" is longer than 100 years",
            "spec.tls.certificateValidity: duration \"9999999h\" is longer than 100 years"
        ]
    );
    s.member_failure_timeout = "2m".into();
    s.tls.certificate_validity = Some("1h".into());
    s.maintenance = Some(crate::crd::EtcdMaintenance {
        defrag: Some(crate::crd::DefragPolicy {
            schedule: Some("0 3 * * *".into()),
            db_size_threshold_percent: Some(20),
        }),
    });
    assert!(validate(&s).is_empty());
    // A bad schedule is not a blocking problem: it only switches defragmentation off.
    if let Some(d) = s.maintenance.as_mut().and_then(|m| m.defrag.as_mut()) {
        d.schedule = Some("0 0 3 * * *".into());
    }
    assert!(validate(&s).is_empty());
}

#[test]
fn maintenance_condition_reports_the_schedule() {
    let condition = |schedule: Option<&str>| {
        let mut s = spec("3.5.16");
        s.maintenance = schedule.map(|sch| crate::crd::EtcdMaintenance {
            defrag: Some(crate::crd::DefragPolicy {
                schedule: Some(sch.into()),
                db_size_threshold_percent: None,
            }),
        });
        let obj = EtcdCluster::new("main", s);
        let st = observed_status(&obj, &[], None, &Step::Nothing, conditions::now());
        assert!(
            st.conditions.iter().any(|c| c.type_ == "Available"),
            "the other conditions are still set"
        );
        st.conditions
            .into_iter()
            .find(|c| c.type_ == MAINTENANCE)
            .map(|c| (c.status, c.reason, c.message))
    };
    assert_eq!(condition(None), None);
    let ok = condition(Some("0 3 * * *")).unwrap();
    assert_eq!((ok.0.as_str(), ok.1.as_str()), ("True", "Scheduled"));
    let bad = condition(Some("61 * * * *")).unwrap();
    assert_eq!((bad.0.as_str(), bad.1.as_str()), ("False", "InvalidSchedule"));
    assert!(
        bad.2
            .starts_with("spec.maintenance.defrag.schedule: \"61 * * * *\" is not a 5-field cron schedule"),
        "{}",
        bad.2
    );
}

#[test]
fn defrag_status_keeps_per_member_times() {
    let obj = EtcdCluster::new("main", spec("3.5.16"));
    let view = |id: u64, name: &str, last: Option<&str>| MemberView {
        id,
        name: name.into(),
        started: true,
        is_learner: false,
        healthy: true,
        version: Version::parse("3.5.16"),
        client_url: format!("http://{name}:2379"),
        unhealthy_since: None,
        db_size: Some((1000, 500)),
        raft_index: None,
        last_defrag: last.map(String::from),
    };
    let members = [
        view(1, "a", None),
        view(2, "b", Some("2025-01-01T13:30:05Z")),
        view(3, "c", Some("2025-01-01T12:30:05Z")),
    ];
    let now = Time(Timestamp::from_second(1_735_738_220).unwrap());
    let step = Step::Defrag {
        id: 2,
        member: "b".into(),
    };
    let st = observed_status(&obj, &members, Some(1), &step, now);
    let times: Vec<Option<&str>> = st.members.iter().map(|m| m.last_defrag_time.as_deref()).collect();
    assert_eq!(
        times,
        [None, Some("2025-01-01T13:30:05Z"), Some("2025-01-01T12:30:05Z")]
    );
    assert_eq!(st.last_defrag_time.as_deref(), Some("2025-01-01T13:30:05Z"));
    let c = conditions::find(&st.conditions, "Progressing").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Defragmenting"));
    assert_eq!(st.phase.as_deref(), Some("Running"));
    // The cluster-wide time survives members that are gone.
    let mut obj = obj;
    obj.status = Some(EtcdClusterStatus {
        last_defrag_time: Some("2025-01-01T14:00:00Z".into()),
        ..Default::default()
    });
    let st = observed_status(
        &obj,
        &members,
        Some(1),
        &Step::Nothing,
        Time(Timestamp::from_second(1_735_738_220).unwrap()),
    );
    assert_eq!(st.last_defrag_time.as_deref(), Some("2025-01-01T14:00:00Z"));
}

#[test]
fn status_reports_generation_selector_and_problems() {
    let mut obj = EtcdCluster::new("main", spec("3.3.0"));
    obj.metadata.generation = Some(4);
    let now = Time(Timestamp::from_second(1_000).unwrap());
    let st = desired_status(&obj, &validate(&obj.spec), now.clone());
    assert_eq!(st.observed_generation, Some(4));
    assert_eq!(st.selector.as_deref(), Some(member_selector("main").as_str()));
    let c = conditions::find(&st.conditions, "Progressing").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "InvalidSpec"));
    obj.status = Some(st.clone());
    // Same input later: unchanged status, so no write happens.
    let later = Time(Timestamp::from_second(2_000).unwrap());
    assert_eq!(desired_status(&obj, &validate(&obj.spec), later), st);
}

#[test]
fn next_reconcile_comes_back_for_the_next_deadline() {
    let now = 1_000_000;
    let after = |step: &Step, unhealthy_for: Option<i64>| {
        let status = EtcdClusterStatus {
            members: vec![crate::crd::EtcdMemberStatus {
                name: "main-a".into(),
                unhealthy_since: unhealthy_for
                    .map(|s| rfc3339(&Time(Timestamp::from_second(now - s).unwrap()))),
                ..Default::default()
            }],
            ..Default::default()
        };
        status::next_reconcile(&spec("3.5.16"), step, &[], &status, now, None)
    };
    let secs = |s| Action::requeue(Duration::from_secs(s));
    assert_eq!(after(&Step::Nothing, None), secs(5));
    assert_eq!(after(&Step::Wait { reason: "x".into() }, None), secs(5));
    assert_eq!(
        after(
            &Step::AddMember {
                member: "main-b".into()
            },
            None
        ),
        secs(1)
    );
    // memberFailureTimeout is 2m: 118 s unhealthy leaves 2 s (plus one to be past it).
    assert_eq!(after(&Step::Nothing, Some(118)), secs(3));
    assert_eq!(after(&Step::Nothing, Some(60)), secs(5));
}

/// Cluster `main` in `db` whose status lists one member.
fn cluster_knowing(member: &str) -> EtcdCluster {
    let mut obj = EtcdCluster::new("main", spec("3.5.16"));
    obj.metadata.namespace = Some("db".into());
    obj.status = Some(EtcdClusterStatus {
        members: vec![crate::crd::EtcdMemberStatus {
            name: member.into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    obj
}

#[test]
fn planner_input_reads_pods_claims_and_status() {
    let obj = cluster_knowing("main-a");
    let seen = observe::Observation {
        pods: vec![resources::member_pod(&obj, "main-a", &[], "new")],
        pvcs: vec![
            resources::member_pvc(&obj, "main-a"),
            resources::member_pvc(&obj, "main-b"),
        ],
        members: None,
        leader: None,
        unreachable: Some("refused".into()),
    };
    let o = build::planner_input(&obj, &seen, 42, "main-fresh".into(), None);
    assert_eq!(o.size, 3);
    assert_eq!(o.version, Version::parse("3.5.16").unwrap());
    assert_eq!(o.storage, crate::plan::StorageKind::Persistent);
    assert_eq!(o.member_failure_timeout, Duration::from_secs(120));
    assert_eq!(o.pods.len(), 1);
    assert_eq!(
        (o.pods[0].name.as_str(), o.pods[0].version),
        ("main-a", o.version)
    );
    assert_eq!(o.volumes, ["main-a", "main-b"]);
    assert_eq!(
        o.known,
        ["main-a", "main-b"],
        "status first, then claims, no duplicates"
    );
    assert_eq!(o.members, None);
    assert_eq!(o.unreachable.as_deref(), Some("refused"));
    assert_eq!((o.now, o.fresh_name.as_str()), (42, "main-fresh"));
}

#[test]
fn a_joining_member_names_every_member_and_itself() {
    let obj = cluster_knowing("main-a");
    let names = |members: &[MemberView]| -> Vec<String> {
        build::joining_cluster(&obj, members, "main-c")
            .into_iter()
            .map(|(name, url)| {
                assert_eq!(url, resources::peer_url(&obj, &name));
                name
            })
            .collect()
    };
    // Nobody answered: the members the status knows.
    assert_eq!(names(&[]), ["main-a", "main-c"]);
    let view = MemberView {
        id: 2,
        name: "main-b".into(),
        started: true,
        is_learner: false,
        healthy: true,
        version: None,
        client_url: String::new(),
        unhealthy_since: None,
        db_size: None,
        raft_index: None,
        last_defrag: None,
    };
    assert_eq!(names(std::slice::from_ref(&view)), ["main-b", "main-c"]);
}

fn restoring(from: serde_json::Value) -> crate::crd::EtcdCluster {
    let mut s = spec("3.5.16");
    s.bootstrap = Some(serde_json::from_value(serde_json::json!({ "fromBackup": from })).unwrap());
    let mut obj = crate::crd::EtcdCluster::new("restored", s);
    obj.metadata.namespace = Some("ns".into());
    obj
}

fn backup(status: serde_json::Value) -> crate::crd::EtcdBackup {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "etcd.steward.dev/v1alpha1",
        "kind": "EtcdBackup",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": {
            "clusterRef": {"name": "src"},
            "destination": {"s3": {"bucket": "bkt", "prefix": "p/", "credentialsSecret": "creds"}}
        },
        "status": status,
    }))
    .unwrap()
}

/// A backupRef takes destination, key and sha256 from a Succeeded EtcdBackup; a missing or
/// unfinished one makes the cluster wait (BackupNotReady) instead of starting empty; a
/// destination given by hand is used as it is; no fromBackup means no restore.
#[test]
fn restore_source_comes_from_a_succeeded_backup_only() {
    let obj = restoring(serde_json::json!({"backupRef": {"name": "b"}}));
    let ok = backup(serde_json::json!({"phase": "Succeeded", "key": "ns/src/b.db", "sha256": "ab"}));
    let source = build::restore_source(&obj, Some(&ok)).unwrap().unwrap();
    assert_eq!(source.key, "ns/src/b.db");
    assert_eq!(source.sha256.as_deref(), Some("ab"));
    let crate::resources::RestoreStore::S3(s3) = &source.store else {
        panic!("{source:?}")
    };
    assert_eq!(s3.bucket, "bkt");
    assert_eq!(s3.credentials_secret.as_deref(), Some("creds"));

    let (reason, message) = build::restore_source(&obj, None).unwrap_err();
    assert_eq!(reason, "BackupNotReady");
    assert!(message.contains("ns/b does not exist"), "{message}");
    for phase in ["Running", "Failed", "Pending"] {
        let b = backup(serde_json::json!({"phase": phase}));
        let (reason, message) = build::restore_source(&obj, Some(&b)).unwrap_err();
        assert_eq!(reason, "BackupNotReady");
        assert!(message.contains("has not succeeded"), "{message}");
        assert!(message.contains("not started empty"), "{message}");
    }

    let by_hand = restoring(serde_json::json!({
        "destination": {"s3": {"bucket": "other"}},
        "key": "k.db.gz",
        "sha256": "cd",
    }));
    let source = build::restore_source(&by_hand, None).unwrap().unwrap();
    let crate::resources::RestoreStore::S3(s3) = &source.store else {
        panic!("{source:?}")
    };
    assert_eq!((s3.bucket.as_str(), source.key.as_str()), ("other", "k.db.gz"));
    assert_eq!(source.sha256.as_deref(), Some("cd"));

    let mut plain = crate::crd::EtcdCluster::new("c", spec("3.5.16"));
    plain.metadata.namespace = Some("ns".into());
    assert_eq!(build::restore_source(&plain, None), Ok(None));
}

/// The seed pod gets the three restore init containers; a pod without a restore gets none.
#[test]
fn only_a_restored_seed_gets_init_containers() {
    let obj = restoring(serde_json::json!({"backupRef": {"name": "b"}}));
    let ok = backup(serde_json::json!({"phase": "Succeeded", "key": "k.db"}));
    let source = build::restore_source(&obj, Some(&ok)).unwrap().unwrap();
    let initial = vec![("restored-a".to_string(), resources::peer_url(&obj, "restored-a"))];
    let mut pod = resources::member_pod(&obj, "restored-a", &initial, "new");
    assert!(pod.spec.as_ref().unwrap().init_containers.is_none());
    build::add_restore(&mut pod, &obj, "restored-a", &initial, &source, "op:v1");
    let names: Vec<String> = pod
        .spec
        .unwrap()
        .init_containers
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["restore-fetch", "restore", "restore-finish"]);
}

/// A restore init container that exited non-zero (now, or before a restart) is a failure
/// with its termination message; running or succeeded ones are not.
#[test]
fn restore_failure_reads_the_termination_message() {
    let pod = |statuses: serde_json::Value| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "restored-a"},
            "status": {"initContainerStatuses": statuses}
        }))
        .unwrap()
    };
    let status = |name: &str, state: serde_json::Value, last: serde_json::Value| {
        serde_json::json!({"name": name, "image": "i", "imageID": "", "ready": false,
            "restartCount": 1, "state": state, "lastState": last})
    };
    let failed = serde_json::json!({"terminated": {"exitCode": 1,
        "message": "restore-fetch failed: ChecksumMismatch: sha256 differs\n"}});
    let ok = serde_json::json!({"terminated": {"exitCode": 0}});
    let waiting = serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}});

    let p = pod(serde_json::json!([status(
        "restore-fetch",
        waiting.clone(),
        failed.clone()
    )]));
    let msg = build::restore_failure(&p).unwrap();
    assert!(msg.contains("restore-fetch"), "{msg}");
    assert!(msg.contains("ChecksumMismatch: sha256 differs"), "{msg}");
    assert!(msg.contains("exit code 1"), "{msg}");

    let p = pod(serde_json::json!([status(
        "restore-fetch",
        failed.clone(),
        serde_json::json!({})
    )]));
    assert!(build::restore_failure(&p).is_some());

    // Succeeded now (a passing failure before): no failure.
    let p = pod(serde_json::json!([
        status("restore-fetch", ok.clone(), failed.clone()),
        status(
            "restore",
            serde_json::json!({"running": {}}),
            serde_json::json!({})
        ),
    ]));
    assert_eq!(build::restore_failure(&p), None);
    assert_eq!(build::restore_failure(&pod(serde_json::json!([]))), None);
}

/// A backup of `cluster` named `name`, in `phase`, completed at `completed`.
fn cluster_backup(cluster: &str, name: &str, phase: &str, completed: &str) -> crate::crd::EtcdBackup {
    let mut b = backup(serde_json::json!({
        "phase": phase, "key": format!("ns/{cluster}/{name}.db"), "completionTime": completed
    }));
    b.metadata.name = Some(name.into());
    b.spec.cluster_ref.name = cluster.into();
    b
}

/// The newest Succeeded backup of this cluster by completionTime, never one of another
/// cluster, a failed one, or one completed before this cluster was created.
#[test]
fn a_rebuild_uses_the_newest_succeeded_backup_of_this_cluster() {
    let mut obj = crate::crd::EtcdCluster::new("src", spec("3.5.16"));
    obj.metadata.namespace = Some("ns".into());
    obj.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap()));
    let backups = vec![
        cluster_backup("src", "older", "Succeeded", "2026-01-02T00:00:00Z"),
        cluster_backup("src", "newest", "Succeeded", "2026-01-03T00:00:00Z"),
        cluster_backup("src", "failed", "Failed", "2026-01-04T00:00:00Z"),
        cluster_backup("other", "elsewhere", "Succeeded", "2026-01-05T00:00:00Z"),
        cluster_backup("src", "namesake", "Succeeded", "2025-12-31T00:00:00Z"),
    ];
    let latest = build::latest_backup(&obj, &backups).unwrap();
    assert_eq!(
        (latest.name.as_str(), latest.completion_time.as_str()),
        ("newest", "2026-01-03T00:00:00Z")
    );
    assert_eq!(build::latest_backup(&obj, &backups[2..]), None);

    // The rebuild's source is that backup's object; a vanished backup makes it wait.
    let source = build::recovery_source(&obj, "newest", Some(&backups[1])).unwrap();
    assert_eq!(source.key, "ns/src/newest.db");
    let (reason, message) = build::recovery_source(&obj, "gone", None).unwrap_err();
    assert_eq!(reason, "BackupNotReady");
    assert!(message.contains("ns/gone does not exist"), "{message}");
}

/// The rebuild record: started by Recover (kept when the same seed is restored again),
/// Growing once the seed answers, Succeeded once the cluster is stable; status says which
/// backup at each step and keeps the quorum-loss clock until a quorum is healthy.
#[test]
fn a_rebuild_is_recorded_in_status_step_by_step() {
    use crate::crd::RecoveryPhase;
    let backup = crate::plan::BackupObs {
        name: "nightly".into(),
        completion_time: "2026-01-03T00:00:00Z".into(),
    };
    let recover = Step::Recover {
        member: "main-seed".into(),
        backup: backup.clone(),
    };
    let started = status::recovery_after(None, &recover, false, "T1").unwrap();
    assert_eq!(started.phase, RecoveryPhase::Restoring);
    assert_eq!(
        (started.backup.as_str(), started.seed.as_str()),
        ("nightly", "main-seed")
    );
    assert_eq!(started.start_time.as_deref(), Some("T1"));
    // Restored again after a restart: the same record.
    assert_eq!(
        status::recovery_after(Some(started.clone()), &recover, false, "T2"),
        Some(started.clone())
    );
    let waiting = Step::Wait {
        reason: "restoring".into(),
    };
    assert_eq!(
        status::recovery_after(Some(started.clone()), &waiting, false, "T2")
            .unwrap()
            .phase,
        RecoveryPhase::Restoring
    );
    let growing =
        status::recovery_after(Some(started), &Step::AddMember { member: "x".into() }, true, "T3").unwrap();
    assert_eq!(growing.phase, RecoveryPhase::Growing);
    let done = status::recovery_after(Some(growing.clone()), &Step::Nothing, true, "T4").unwrap();
    assert_eq!(done.phase, RecoveryPhase::Succeeded);
    assert_eq!(done.completion_time.as_deref(), Some("T4"));
    assert_eq!(
        status::recovery_after(Some(done.clone()), &Step::Nothing, true, "T5"),
        Some(done.clone())
    );

    // Conditions and the quorum-loss clock.
    let mut obj = cluster_knowing("main-a");
    let now = Time("2026-01-04T00:00:00Z".parse::<Timestamp>().unwrap());
    let lost = Step::QuorumLost {
        reason: "gone".into(),
    };
    let st = observed_status(&obj, &[], None, &lost, now.clone());
    assert_eq!(st.quorum_lost_since.as_deref(), Some("2026-01-04T00:00:00Z"));
    obj.status = Some(st);
    let later = Time("2026-01-04T00:05:00Z".parse::<Timestamp>().unwrap());
    let st = observed_status(&obj, &[], None, &recover, later.clone());
    assert_eq!(st.quorum_lost_since.as_deref(), Some("2026-01-04T00:00:00Z"));
    assert_eq!(st.phase.as_deref(), Some("Recovering"));
    let c = st.conditions.iter().find(|c| c.type_ == "Recovering").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Recovering"));
    assert!(
        c.message
            .contains("EtcdBackup nightly (completed 2026-01-03T00:00:00Z)"),
        "{}",
        c.message
    );
    obj.status = Some(st);
    let seed = MemberView {
        id: 9,
        name: "main-seed".into(),
        started: true,
        is_learner: false,
        healthy: true,
        version: Version::parse("3.5.16"),
        client_url: String::new(),
        unhealthy_since: None,
        db_size: None,
        raft_index: None,
        last_defrag: None,
    };
    let st = observed_status(
        &obj,
        std::slice::from_ref(&seed),
        Some(9),
        &Step::AddMember { member: "x".into() },
        later.clone(),
    );
    assert_eq!(st.quorum_lost_since, None, "a healthy quorum stops the clock");
    assert_eq!(st.recovery.as_ref().unwrap().phase, RecoveryPhase::Growing);
    assert_eq!(st.phase.as_deref(), Some("Recovering"));
    obj.status = Some(st);
    let st = observed_status(&obj, std::slice::from_ref(&seed), Some(9), &Step::Nothing, later);
    let c = st.conditions.iter().find(|c| c.type_ == "Recovering").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RecoveredFromBackup")
    );
    assert!(c.message.contains("EtcdBackup nightly"), "{}", c.message);
}

/// A member brought back or replaced counts as a member recovery, except the member an
/// upgrade restarts itself (its pod coming back, or its replacement with emptyDir) and a
/// learner's first pod.
#[test]
fn member_recoveries_are_told_apart_from_upgrade_restarts() {
    let view = |name: &str, started: bool| MemberView {
        id: 1,
        name: name.into(),
        started,
        is_learner: !started,
        healthy: false,
        version: None,
        client_url: String::new(),
        unhealthy_since: None,
        db_size: None,
        raft_index: None,
        last_defrag: None,
    };
    let members = [view("a", true), view("b", true), view("new", false)];
    let mut st = EtcdClusterStatus::default();
    let upgrade = Step::UpgradeMember {
        member: "a".into(),
        from: Version::parse("3.4.35").unwrap(),
    };
    status::note_member_recovery(&mut st, &upgrade, &members, "T1");
    assert_eq!(st.upgrade_restarted.as_deref(), Some("a"));
    let create = |m: &str| Step::CreatePod { member: m.into() };
    let replace = |m: &str| Step::RemoveMember {
        id: 1,
        member: m.into(),
        reason: crate::plan::RemoveReason::Replace,
    };
    for own in [create("a"), replace("a"), create("new")] {
        status::note_member_recovery(&mut st, &own, &members, "T2");
        assert_eq!(st.last_member_recovery_time, None, "{own:?}");
    }
    status::note_member_recovery(&mut st, &create("b"), &members, "T3");
    assert_eq!(st.last_member_recovery_time.as_deref(), Some("T3"));
    status::note_member_recovery(&mut st, &replace("b"), &members, "T4");
    assert_eq!(st.last_member_recovery_time.as_deref(), Some("T4"));
    // A stable cluster ends the upgrade: a restart of `a` is then a recovery.
    status::note_member_recovery(&mut st, &Step::Nothing, &members, "T5");
    assert_eq!(st.upgrade_restarted, None);
    status::note_member_recovery(&mut st, &create("a"), &members, "T6");
    assert_eq!(st.last_member_recovery_time.as_deref(), Some("T6"));
}
