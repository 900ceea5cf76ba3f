//! Disaster recovery end to end (`spec.recovery`): two 3-member emptyDir clusters, each with
//! keys written and an EtcdBackup in a real S3 server (s3s-fs on kubesim's host address),
//! lose every member pod at once: on kubesim, as on a real cluster, an emptyDir dies with its
//! pod, so every member's data is gone. The one with `fromLatestBackup: true` is rebuilt once
//! quorum has been lost for `after` (10s): a new seed restored from the backup, then learners,
//! back to 3 healthy members with the backup's keys (and not the write made after it), with
//! the `Recovering` condition and Events naming the backup. The one without the opt-in only
//! reports `QuorumLost`, naming its backup and how to opt in, and starts no pod.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/backups.rs"]
mod support;

use std::time::Duration;

use e2e::bins;
use e2e::etcd::{Etcdctl, cluster_yaml, clusters_api, condition, member_pods, status};
use e2e::harness::{Env, settle, wait_for, wait_until};
use e2e::s3::S3Server;
use etcd_operator::crd::BackupPhase;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

const BUCKET: &str = "backups";
const CREDENTIALS: &str = "s3-credentials";
const KEYS: usize = 50;

async fn diagnostics(env: &Env) -> String {
    env.diagnostics("default", "etcdclusters,etcdbackups,pods,events")
        .await
}

/// How many keys under `prefix` the member at `endpoint` serves from its own data.
fn count_on(ctl: &Etcdctl, endpoint: &str, prefix: &str) -> u64 {
    let (ok, out) = ctl.run(
        endpoint,
        &[
            "get",
            prefix,
            "--prefix",
            "--count-only",
            "--consistency=s",
            "-w",
            "fields",
        ],
    );
    assert!(ok, "count on {endpoint}: {out}");
    out.lines()
        .find_map(|l| l.strip_prefix("\"Count\" : "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"))
}

/// Whether an Event with `reason` (and `type_`) regarding cluster `name` mentions `text`.
async fn has_event(env: &Env, name: &str, reason: &str, type_: &str, text: &str) -> bool {
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    events.list(&ListParams::default()).await.is_ok_and(|l| {
        l.items.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some(type_)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.note.as_deref().is_some_and(|n| n.contains(text))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_whose_data_is_gone_is_rebuilt_from_its_latest_backup_only_when_opted_in() {
    let started = std::time::Instant::now();
    let env = Env::start().await.unwrap();
    let Some(sim) = env.require_kubesim("pods reach the test's S3 server on kubesim's host address") else {
        return;
    };
    env.deploy_operators(&["etcd-operator"]).await.unwrap();
    let server = S3Server::for_pods(sim, &env, BUCKET, CREDENTIALS).await.unwrap();

    // `rebuilt` opts in; `manual` has the same short `after` but no opt-in.
    let current = bins::version("ETCD_CURRENT").unwrap();
    for (name, opt_in) in [("rebuilt", true), ("manual", false)] {
        env.apply(&cluster_yaml(
            name,
            3,
            &current,
            &format!(
                "  tls: {{mode: disabled}}\n  storage: {{emptyDir: {{}}}}\n  recovery: {{after: 10s, fromLatestBackup: {opt_in}}}\n"
            ),
        ))
        .await
        .unwrap();
    }
    for name in ["rebuilt", "manual"] {
        support::wait_available(&env, name, 3, Duration::from_secs(240)).await;
    }
    eprintln!("clusters available after {:?}", started.elapsed());

    let destination = format!(
        "    s3: {{bucket: {BUCKET}, endpoint: \"{}\", region: {}, forcePathStyle: true, credentialsSecret: {CREDENTIALS}}}\n",
        server.endpoint,
        S3Server::REGION
    );
    let mut old_pods = Vec::new();
    for name in ["rebuilt", "manual"] {
        let ctl = Etcdctl::connect(&env, name).await.unwrap();
        for i in 0..KEYS {
            let (ok, out) = ctl.run(&ctl.members(), &["put", &format!("key-{i:03}"), &format!("v{i}")]);
            assert!(ok, "put into {name}: {out}");
        }
        // An older backup first: the rebuild must take the newest one.
        for backup in [format!("{name}-older"), format!("{name}-newest")] {
            env.apply(&format!(
                "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdBackup\nmetadata:\n  name: {backup}\n  namespace: default\nspec:\n  clusterRef: {{name: {name}}}\n  destination:\n{destination}"
            ))
            .await
            .unwrap();
            let st = support::backup_finished(&env, &backup).await;
            assert_eq!(st.phase, Some(BackupPhase::Succeeded), "{backup}: {st:?}");
            // completionTime has a one-second resolution: the next backup completes later.
            let done: Timestamp = st.completion_time.as_deref().unwrap_or_default().parse().unwrap();
            wait_for(
                "the clock to pass the backup's second",
                Duration::from_secs(5),
                || async { Timestamp::now().as_second() > done.as_second() },
            )
            .await
            .unwrap();
        }
        // Written after the backup: lost with the data.
        let (ok, out) = ctl.run(&ctl.members(), &["put", "after-backup", "lost"]);
        assert!(ok, "{out}");
        old_pods.extend(
            member_pods(&env.client, name)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|p| p.metadata.name),
        );
    }
    eprintln!("keys and backups written after {:?}", started.elapsed());

    // Every member pod of both clusters deleted at once: every emptyDir, so all data, goes.
    for name in ["rebuilt", "manual"] {
        env.kubectl(&[
            "delete",
            "pod",
            "-n",
            "default",
            "-l",
            &format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=member"),
            "--wait=false",
        ])
        .await
        .unwrap();
    }
    let clusters = clusters_api(&env.client, "default");

    // Without the opt-in: QuorumLost naming the newest backup and how to opt in.
    let lost = wait_until(
        "manual: QuorumLost naming its backup",
        Duration::from_secs(90),
        || async {
            let st = status(&clusters, "manual").await;
            let c = condition(&st, "Available")?.clone();
            (c["reason"] == "QuorumLost"
                && c["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("no member's data is left")))
            .then_some(c)
        },
    )
    .await;
    let lost = match lost {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{}", diagnostics(&env).await),
    };
    let message = lost["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("a restore would use EtcdBackup manual-newest")
            && message.contains("set spec.recovery.fromLatestBackup to true"),
        "{message}"
    );

    // With the opt-in: the rebuild starts from the newest backup, recorded in status.
    let recovering = wait_until(
        "rebuilt: Recovering from rebuilt-newest",
        Duration::from_secs(120),
        || async {
            let st = status(&clusters, "rebuilt").await;
            let c = condition(&st, "Recovering")?.clone();
            (st["recovery"]["backup"] == "rebuilt-newest").then_some((c, st))
        },
    )
    .await;
    let (_, st) = match recovering {
        Ok(found) => found,
        Err(e) => panic!("{e}\n{}", diagnostics(&env).await),
    };
    let seed = st["recovery"]["seed"].as_str().unwrap().to_string();
    assert!(
        !old_pods.contains(&seed),
        "a fresh seed, not an old member: {seed}"
    );
    let lost_since = st["quorumLostSince"].as_str().unwrap_or_default().to_string();
    let rebuild_started = st["recovery"]["startTime"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!lost_since.is_empty(), "{st}");
    let (since, begun) = (
        lost_since.parse::<Timestamp>().unwrap(),
        rebuild_started.parse::<Timestamp>().unwrap(),
    );
    assert!(
        begun.as_second() - since.as_second() >= 10,
        "the rebuild waits for spec.recovery.after: quorum lost at {lost_since}, rebuild at {rebuild_started}"
    );

    support::wait_available(&env, "rebuilt", 3, Duration::from_secs(240)).await;
    let done = wait_until(
        "rebuilt: RecoveredFromBackup",
        Duration::from_secs(60),
        || async {
            let st = status(&clusters, "rebuilt").await;
            let c = condition(&st, "Recovering")?.clone();
            (c["reason"] == "RecoveredFromBackup").then_some((c, st))
        },
    )
    .await;
    let (c, st) = match done {
        Ok(found) => found,
        Err(e) => panic!("{e}\n{}", diagnostics(&env).await),
    };
    eprintln!("rebuilt cluster recovered after {:?}", started.elapsed());
    assert_eq!(c["status"], "False", "{c}");
    assert!(
        c["message"]
            .as_str()
            .is_some_and(|m| m.contains("EtcdBackup rebuilt-newest")),
        "{c}"
    );
    assert_eq!(st["recovery"]["phase"], "Succeeded", "{st}");
    assert!(st["quorumLostSince"].is_null(), "{st}");

    // Three new members, only the seed restored; every one serves the backup's keys, and the
    // write made after the backup is gone.
    let pods = member_pods(&env.client, "rebuilt").await.unwrap();
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        assert!(!old_pods.contains(&name), "{name} is an old member");
        let restores = p
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|i| !i.is_empty());
        assert_eq!(
            restores,
            name == seed,
            "only the seed {seed} restores, not {name}"
        );
    }
    let ctl = Etcdctl::connect(&env, "rebuilt").await.unwrap();
    assert_eq!(ctl.members.len(), 3);
    for endpoint in &ctl.members {
        assert_eq!(
            count_on(&ctl, endpoint, "key-"),
            KEYS as u64,
            "keys on {endpoint}"
        );
        assert_eq!(count_on(&ctl, endpoint, "after-backup"), 0, "on {endpoint}");
    }
    let (ok, out) = ctl.run(&ctl.members(), &["put", "after-recovery", "ok"]);
    assert!(ok, "the rebuilt cluster takes writes: {out}");

    // An Event at each step, naming the backup.
    for (reason, type_) in [
        ("Recovering", "Warning"),
        ("SeedRestored", "Normal"),
        ("RecoveredFromBackup", "Normal"),
    ] {
        wait_for(
            &format!("a {reason} Event naming rebuilt-newest"),
            Duration::from_secs(30),
            || has_event(&env, "rebuilt", reason, type_, "rebuilt-newest"),
        )
        .await
        .unwrap();
    }

    // Without the opt-in nothing was, or is, rebuilt: long past `after`, still QuorumLost and
    // no pod, and this holds over a further 20 seconds of polling.
    let observed = settle(
        "manual: QuorumLost and no member pod",
        Duration::from_secs(20),
        Duration::from_secs(60),
        || async {
            let st = status(&clusters, "manual").await;
            let reason = condition(&st, "Available")
                .map(|c| c["reason"].clone())
                .unwrap_or_default();
            let pods = member_pods(&env.client, "manual")
                .await
                .map(|p| p.len())
                .unwrap_or(99);
            (reason, pods, st["recovery"].is_null())
        },
    )
    .await
    .unwrap();
    assert_eq!(
        observed,
        (serde_json::Value::from("QuorumLost"), 0, true),
        "{}",
        diagnostics(&env).await
    );
    assert!(
        !has_event(&env, "manual", "Recovering", "Warning", "").await,
        "no rebuild of manual"
    );
    eprintln!("done after {:?}", started.elapsed());
}
