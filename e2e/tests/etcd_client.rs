//! The etcd-operator's etcd client layer against real etcd processes: learners, promotion,
//! removal, leadership moves, versions, health and database size, with TLS off and on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::bins::{self, Release};
use e2e::harness::wait_until;
use e2e::local_etcd::{LocalEtcd, LocalTls};
use etcd_operator::etcd::{ClientTls, EtcdApi};

async fn eventually<F, Fut, T>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_until(what, Duration::from_secs(30), f).await.unwrap()
}

async fn membership_lifecycle(tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let local_tls = tls.then(|| LocalTls::new(dir.path().join("tls")).unwrap());
    let api = EtcdApi::new(
        local_tls.as_ref().map(|t| ClientTls {
            ca: t.ca.clone(),
            cert: t.client.cert_pem.clone(),
            key: t.client.key_pem.clone(),
        }),
        Duration::from_secs(5),
    );
    let version = bins::version("ETCD_CURRENT").unwrap();

    // Seed member.
    let mut a = LocalEtcd::plan("a", tls);
    a.start(
        Release::Current,
        dir.path(),
        &a.initial(),
        "new",
        local_tls.as_ref(),
    )
    .unwrap();
    let eps = vec![a.client_url.clone()];
    eventually("seed healthy", || async {
        api.healthy(&a.client_url).await.then_some(())
    })
    .await;

    // Grow one member at a time: MemberAdd as learner, start it as `existing`, promote.
    let mut members = vec![a];
    for name in ["b", "c"] {
        let mut m = LocalEtcd::plan(name, tls);
        // etcd refuses membership changes until recent members have been active a while
        // ("unhealthy cluster"); the operator retries on its next reconcile, so do we.
        let id = eventually("member add", || async {
            api.add_learner(&eps, &m.peer_url).await.ok()
        })
        .await;
        let listed = api.members(&eps).await.unwrap();
        let learner = listed.iter().find(|x| x.id == id).unwrap();
        assert!(learner.is_learner && learner.name.is_empty(), "{learner:?}");
        let cluster: Vec<String> = members
            .iter()
            .map(LocalEtcd::initial)
            .chain([m.initial()])
            .collect();
        m.start(
            Release::Current,
            dir.path(),
            &cluster.join(","),
            "existing",
            local_tls.as_ref(),
        )
        .unwrap();
        // Promotion fails until the learner has caught up; retry like the operator does.
        eventually("promotion", || async { api.promote(&eps, id).await.ok() }).await;
        members.push(m);
    }
    let listed = api.members(&eps).await.unwrap();
    let mut names: Vec<&str> = listed.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(listed.iter().all(|m| !m.is_learner));

    // Status: versions from etcd itself, one leader, db sizes.
    let mut statuses = Vec::new();
    for m in &members {
        let s = eventually("status", || async { api.status(&m.client_url).await.ok() }).await;
        assert_eq!(s.version, version);
        assert!(s.db_size > 0 && s.db_size_in_use > 0 && s.db_size_in_use <= s.db_size);
        statuses.push(s);
    }
    let leader = statuses[0].leader;
    assert!(
        statuses.iter().all(|s| s.leader == leader),
        "one leader: {statuses:?}"
    );

    // Move leadership away from the leader.
    let leader_idx = statuses.iter().position(|s| s.id == leader).unwrap();
    let target = statuses[(leader_idx + 1) % 3].id;
    api.move_leader(&members[leader_idx].client_url, target)
        .await
        .unwrap();
    eventually("new leader", || async {
        api.status(&members[0].client_url)
            .await
            .ok()
            .filter(|s| s.leader == target)
            .map(|_| ())
    })
    .await;

    // Remove a (non-leader) member; then its process is gone from the membership.
    let victim = statuses.iter().position(|s| s.id != target).unwrap();
    let via = [members[(victim + 1) % 3].client_url.clone()];
    eventually("member remove", || async {
        api.remove(&via, statuses[victim].id).await.ok()
    })
    .await;
    let eps: Vec<String> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, m)| m.client_url.clone())
        .collect();
    assert_eq!(api.members(&eps).await.unwrap().len(), 2);

    // Health: a killed member is unhealthy, the others are not.
    let survivor = (victim + 1) % 3;
    let killed = (victim + 2) % 3;
    members[killed].kill();
    assert!(!api.healthy(&members[killed].client_url).await);
    // Two voters with one down has no quorum: a linearizable read fails.
    assert!(
        !api.healthy(&members[survivor].client_url).await,
        "no quorum, no linearizable read"
    );
    assert!(
        api.status(&members[survivor].client_url).await.is_ok(),
        "status still answers"
    );
}

#[tokio::test]
async fn membership_without_tls() {
    membership_lifecycle(false).await;
}

#[tokio::test]
async fn membership_with_tls() {
    membership_lifecycle(true).await;
}

#[tokio::test]
async fn plain_clients_are_refused_by_tls_members() {
    let dir = tempfile::tempdir().unwrap();
    let tls = LocalTls::new(dir.path().join("tls")).unwrap();
    let mut a = LocalEtcd::plan("a", true);
    a.start(Release::Current, dir.path(), &a.initial(), "new", Some(&tls))
        .unwrap();
    let with = EtcdApi::new(
        Some(ClientTls {
            ca: tls.ca.clone(),
            cert: tls.client.cert_pem.clone(),
            key: tls.client.key_pem.clone(),
        }),
        Duration::from_secs(3),
    );
    eventually("tls member healthy", || async {
        with.healthy(&a.client_url).await.then_some(())
    })
    .await;
    let plain = EtcdApi::new(None, Duration::from_secs(3));
    assert!(!plain.healthy(&a.client_url.replace("https", "http")).await);
    assert!(
        plain
            .members(&[a.client_url.replace("https", "http")])
            .await
            .is_err()
    );
    // A client whose CA did not sign the server's certificate: the status names TLS.
    let other = LocalTls::new(dir.path().join("other-tls")).unwrap();
    let stranger = EtcdApi::new(
        Some(ClientTls {
            ca: other.ca.clone(),
            cert: other.client.cert_pem.clone(),
            key: other.client.key_pem.clone(),
        }),
        Duration::from_secs(3),
    );
    let err = stranger
        .members(std::slice::from_ref(&a.client_url))
        .await
        .unwrap_err();
    let said = err.describe();
    assert!(said.starts_with("cannot reach etcd (TLS failure)"), "{said}");
}

#[tokio::test]
async fn connection_failures_are_described_as_what_they_are() {
    // Nothing listens on a free port from below the ephemeral range: refused.
    let port = e2e::local_etcd::free_port();
    let api = EtcdApi::new(None, Duration::from_secs(3));
    let said = api
        .members(&[format!("http://127.0.0.1:{port}")])
        .await
        .unwrap_err()
        .describe();
    assert!(
        said.starts_with("cannot reach etcd (connection refused)"),
        "{said}"
    );
}

#[tokio::test]
async fn defragment_returns_freed_space() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = LocalEtcd::plan("a", false);
    a.start(Release::Current, dir.path(), &a.initial(), "new", None)
        .unwrap();
    let api = EtcdApi::new(None, Duration::from_secs(5));
    eventually("member healthy", || async {
        api.healthy(&a.client_url).await.then_some(())
    })
    .await;
    let ctl = |args: &[&str]| {
        let mut all = vec!["--endpoints", a.client_url.as_str()];
        all.extend_from_slice(args);
        let (ok, out) = e2e::local_etcd::etcdctl(Release::Current, &all);
        assert!(ok, "etcdctl {args:?}: {out}");
        out
    };
    // About 6 MB of values, then deleted and compacted: the space is free inside the file.
    let value = "x".repeat(100 * 1024);
    for i in 0..60 {
        ctl(&["put", &format!("big-{i:03}"), &value]);
    }
    let full = api.status(&a.client_url).await.unwrap();
    assert!(full.db_size > 6_000_000, "{full:?}");
    ctl(&["del", "big-", "--prefix"]);
    let out = ctl(&["endpoint", "status", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let revision = json[0]["Status"]["header"]["revision"].as_i64().unwrap();
    ctl(&["compaction", "--physical", &revision.to_string()]);
    let before = api.status(&a.client_url).await.unwrap();
    assert!(
        before.db_size >= full.db_size && before.db_size_in_use < before.db_size / 4,
        "compaction frees space inside the file only: {before:?}"
    );

    api.defragment(&a.client_url).await.unwrap();
    let after = api.status(&a.client_url).await.unwrap();
    assert!(
        after.db_size < before.db_size / 4,
        "the file shrank: {} -> {} bytes",
        before.db_size,
        after.db_size
    );
    assert!(after.db_size_in_use <= after.db_size);
    // Still serving, nothing lost but what was deleted.
    ctl(&["put", "after", "defrag"]);
    assert!(ctl(&["get", "after"]).contains("defrag"));
    assert!(api.healthy(&a.client_url).await);

    // A member that is down: an error, not a hang.
    a.kill();
    let quick = EtcdApi::new(None, Duration::from_secs(2));
    let started = Instant::now();
    assert!(quick.defragment(&a.client_url).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}
