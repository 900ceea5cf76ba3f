//! CA rotation in `tls.mode: auto`, kubesim process mode: with a short `tls.caValidity` the
//! operator switches to the next CA and later drops the old one while a client keeps writing
//! and reading through the published client certificate. No connection may be refused, no
//! member may restart (etcd reads its trusted CA files only at start), the operator's own
//! client keeps working, no key is lost, and the old CA is gone from every bundle at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::bins;
use e2e::etcd::{CLIENT_FILES, Etcdctl, cluster_yaml, clusters_api, healthy_voters, pod_identities};
use e2e::harness::{Env, wait_for};
use etcd_operator::tls::{CertInfo, inspect, inspect_bundle};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};

/// CA lifetime: the switch comes two thirds in (about 150 s after creation), which leaves the
/// cluster time to start on a loaded machine; the old CA ends at 240 s and the switch after
/// that (which members started now would not survive without a restart) at about 300 s.
const CA_SECS: u64 = 240;
const LEAF_SECS: u64 = 60;
const LEAVES: [&str; 3] = ["rotate-server-tls", "rotate-peer-tls", "rotate-client-tls"];

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn turnover(c: &CertInfo) -> i64 {
    c.not_before + (c.not_after - c.not_before) * 2 / 3
}

/// The Secrets' data by name.
async fn secrets(env: &Env) -> BTreeMap<String, BTreeMap<String, String>> {
    let api: Api<Secret> = Api::namespaced(env.client.clone(), "default");
    let mut out = BTreeMap::new();
    for name in ["rotate-ca"].into_iter().chain(LEAVES) {
        let Ok(s) = api.get(name).await else { continue };
        let data = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        out.insert(name.to_string(), data);
    }
    out
}

/// Subjects of the CAs in a bundle.
fn subjects(pem: &str) -> Vec<String> {
    inspect_bundle(pem).into_iter().map(|c| c.subject).collect()
}

/// Who signed each leaf, and what each leaf Secret's `ca.crt` trusts.
struct Observed {
    ca_bundle: Vec<String>,
    current: CertInfo,
    next: CertInfo,
    issuers: Vec<String>,
    leaf_bundles: Vec<Vec<String>>,
}

fn observe(s: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Observed> {
    let ca = s.get("rotate-ca")?;
    let mut issuers = Vec::new();
    let mut leaf_bundles = Vec::new();
    for leaf in LEAVES {
        let d = s.get(leaf)?;
        issuers.push(inspect(d.get("tls.crt")?)?.issuer);
        leaf_bundles.push(subjects(d.get("ca.crt")?));
    }
    Some(Observed {
        ca_bundle: subjects(ca.get("ca.crt")?),
        current: inspect(ca.get("tls.crt")?)?,
        next: inspect(ca.get("next.crt")?)?,
        issuers,
        leaf_bundles,
    })
}

/// Whether the operator sees every member healthy: it asks them through its own client
/// certificate, so this also shows the operator's client works.
fn operator_sees_all_healthy(c: &DynamicObject) -> bool {
    healthy_voters(&c.data["status"], 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotates_without_restarts_or_refused_connections() {
    let started = Instant::now();
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&cluster_yaml(
        "rotate",
        3,
        &version,
        &format!(
            "  tls: {{mode: auto, certificateValidity: {LEAF_SECS}s, caValidity: {CA_SECS}s}}\n  storage: {{emptyDir: {{}}}}\n"
        ),
    ))
    .await
    .unwrap();
    let created = Instant::now();
    let clusters = clusters_api(&env.client, "default");
    let ready = || async {
        clusters
            .get("rotate")
            .await
            .is_ok_and(|c| operator_sees_all_healthy(&c))
    };
    env.or_diagnose(
        wait_for("3 ready TLS members", Duration::from_secs(240), ready).await,
        "default",
        "etcdclusters,secrets",
    )
    .await;
    let ready_after = created.elapsed();

    // Phase 1: the members started with a bundle of the signing CA and the next one.
    let first = observe(&secrets(&env).await).expect("TLS Secrets");
    let ca1 = first.current.clone();
    let ca2 = first.next.clone();
    assert_eq!(first.ca_bundle, [ca1.subject.clone(), ca2.subject.clone()]);
    assert!(
        unix_now() < turnover(&ca1) - 5,
        "the cluster was ready only {ready_after:?} after creation, after the CA switch at \
         {}: raise CA_SECS",
        turnover(&ca1)
    );
    assert!(first.issuers.iter().all(|i| *i == ca1.subject));
    assert!(first.leaf_bundles.iter().all(|b| *b == first.ca_bundle));
    let m = Etcdctl::connect(&env, "rotate").await.unwrap();
    let pods = pod_identities(&env.client, "rotate").await.unwrap();
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p.2 == 0), "{pods:?}");

    // A client writes and reads through every member, with the client Secret's files as
    // they are at each moment (as a pod's Secret volume would have them), until the old CA
    // is gone from the bundles and has expired.
    let dir = m.tls.as_ref().unwrap().path();
    let deadline = Instant::now() + Duration::from_secs(3 * CA_SECS);
    let mut failures = Vec::new();
    let mut untrusted: Vec<String> = Vec::new();
    let mut written = 0usize;
    let mut switched_at = None;
    let mut dropped_at = None;
    // Operator status samples: the longest run of samples with a member not healthy.
    let (mut unhealthy_run, mut worst_run) = (0, 0);
    let mut i = 0usize;
    loop {
        let now = secrets(&env).await;
        let Some(o) = observe(&now) else {
            panic!("TLS Secrets incomplete: {:?}", now.keys().collect::<Vec<_>>());
        };
        // Every certificate in use is signed by a CA the members trusted when they started.
        for issuer in o.issuers.iter().filter(|x| !first.ca_bundle.contains(x)) {
            if !untrusted.contains(issuer) {
                untrusted.push(issuer.clone());
            }
        }
        if switched_at.is_none() && o.issuers.iter().all(|x| *x != ca1.subject) {
            switched_at = Some(created.elapsed());
            assert!(o.ca_bundle.contains(&ca1.subject), "old CA dropped at the switch");
        }
        if dropped_at.is_none() && !o.ca_bundle.contains(&ca1.subject) {
            dropped_at = Some(created.elapsed());
            assert!(switched_at.is_some(), "the old CA left before the switch");
            assert!(unix_now() >= ca1.not_after, "the old CA left before it expired");
        }
        for key in CLIENT_FILES {
            std::fs::write(dir.join(key), &now["rotate-client-tls"][key]).unwrap();
        }
        let key = format!("key-{i:05}");
        let value = format!("v{i}");
        let writer = &m.members[i % 3];
        let reader = &m.members[(i + 1) % 3];
        let (ok, out) = m.run(writer, &["put", &key, &value]);
        if ok {
            written += 1;
        } else {
            failures.push(format!("put {key} via {writer}: {out}"));
        }
        let (ok, out) = m.run(reader, &["get", &key, "--print-value-only"]);
        if !ok || out.trim() != value {
            failures.push(format!("get {key} via {reader}: {out}"));
        }
        match clusters.get("rotate").await {
            Ok(c) if operator_sees_all_healthy(&c) => unhealthy_run = 0,
            _ => {
                unhealthy_run += 1;
                worst_run = worst_run.max(unhealthy_run);
            }
        }
        i += 1;
        let done = dropped_at.is_some()
            && o.issuers.iter().all(|x| *x == o.current.subject)
            && unix_now() > ca1.not_after + 5;
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rotation within {:?}: switched {switched_at:?}, dropped {dropped_at:?}\n{}",
            deadline - created,
            env.diagnostics("default", "etcdclusters,secrets").await
        );
    }
    assert!(
        untrusted.is_empty(),
        "leaves signed by CAs the members did not start with: {untrusted:?}; {} failed requests",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // A member that stopped answering the operator's client for good would stay unhealthy;
    // a slow health check on a loaded machine clears by the next sample.
    assert!(
        worst_run < 5,
        "operator saw unhealthy members for {worst_run} samples in a row"
    );

    // The end state: the bundles hold the new CA and its successor, not the old one; the
    // leaves are signed by the new CA.
    let last = observe(&secrets(&env).await).unwrap();
    assert_eq!(last.current, ca2);
    assert_eq!(last.ca_bundle, [ca2.subject.clone(), last.next.subject.clone()]);
    assert!(last.issuers.iter().all(|x| *x == ca2.subject));
    assert!(last.leaf_bundles.iter().all(|b| *b == last.ca_bundle));
    assert!(!secrets(&env).await["rotate-ca"].contains_key("previous.crt"));
    // Members started with the previous bundle survive only this one switch.
    assert!(
        unix_now() < turnover(&ca2),
        "the test ran into the next switch; its end state is no longer what it checks"
    );

    // Every key is there, the members are whole and none restarted.
    assert_eq!(m.count("key-"), Some(written as u64), "{written} written");
    let (ok, out) = m.run(&m.members(), &["endpoint", "health"]);
    assert!(ok && out.matches("is healthy").count() == 3, "{out}");
    wait_for("status healthy after rotation", Duration::from_secs(60), ready)
        .await
        .unwrap();
    let after = pod_identities(&env.client, "rotate").await.unwrap();
    assert_eq!(after, pods, "same member pods, no restarts");
    eprintln!(
        "ready after {ready_after:?}, switch seen at {switched_at:?}, old CA dropped at \
         {dropped_at:?}, {written} keys in {i} rounds, test took {:?}",
        started.elapsed()
    );
}
