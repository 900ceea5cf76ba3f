//! CA rotation in `tls.mode: auto`, kubesim process mode: with a short `tls.caValidity` the
//! operator switches to the next CA and later drops the old one while a client keeps writing
//! and reading through the published client certificate. No connection may be refused, no
//! member may restart (etcd reads its trusted CA files only at start), the operator's own
//! client keeps working, no key is lost, and the old CA is gone from every bundle at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::bins::{self, Release};
use e2e::harness::{Env, wait_for};
use e2e::local_etcd::etcdctl_with_hosts;
use etcd_operator::tls::{CertInfo, inspect, inspect_bundle};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

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

struct Members {
    hosts: Vec<(String, String)>,
    endpoints: Vec<String>,
    /// (name, uid, restarts)
    pods: Vec<(String, String, i32)>,
}

async fn members(env: &Env) -> Members {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let list = pods
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/instance=rotate,app.kubernetes.io/component=member"),
        )
        .await
        .unwrap()
        .items;
    let mut m = Members {
        hosts: Vec::new(),
        endpoints: Vec::new(),
        pods: Vec::new(),
    };
    for p in list
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let name = p.metadata.name.clone().unwrap();
        let status = p.status.clone().unwrap_or_default();
        let Some(ip) = status.pod_ip.clone() else { continue };
        let restarts = status
            .container_statuses
            .unwrap_or_default()
            .iter()
            .map(|c| c.restart_count)
            .sum();
        let host = format!("{name}.rotate-peers.default.svc");
        m.endpoints.push(format!("https://{host}:2379"));
        m.hosts.push((ip, host));
        m.pods.push((name, p.metadata.uid.clone().unwrap(), restarts));
    }
    m.pods.sort();
    m.endpoints.sort();
    m
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

fn write_client_files(s: &BTreeMap<String, BTreeMap<String, String>>, dir: &std::path::Path) {
    let client = &s["rotate-client-tls"];
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        std::fs::write(dir.join(key), &client[key]).unwrap();
    }
}

fn etcdctl(m: &Members, dir: &std::path::Path, endpoint: &str, rest: &[&str]) -> (bool, String) {
    let mut args: Vec<String> = vec![
        "--endpoints".into(),
        endpoint.into(),
        "--dial-timeout=10s".into(),
        "--command-timeout=20s".into(),
        format!("--cacert={}", dir.join("ca.crt").display()),
        format!("--cert={}", dir.join("tls.crt").display()),
        format!("--key={}", dir.join("tls.key").display()),
    ];
    args.extend(rest.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    etcdctl_with_hosts(Release::Current, &m.hosts, &refs)
}

/// Whether the operator sees every member healthy: it asks them through its own client
/// certificate, so this also shows the operator's client works.
fn operator_sees_all_healthy(c: &DynamicObject) -> bool {
    let st = &c.data["status"];
    st["readyMembers"] == 3
        && st["members"].as_array().is_some_and(|m| {
            m.len() == 3 && m.iter().all(|m| m["isLearner"] == false && m["healthy"] == true)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotates_without_restarts_or_refused_connections() {
    let started = Instant::now();
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&format!(
        "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata: {{name: rotate, namespace: default}}\nspec:\n  size: 3\n  version: {version}\n  tls: {{mode: auto, certificateValidity: {LEAF_SECS}s, caValidity: {CA_SECS}s}}\n  storage: {{emptyDir: {{}}}}\n"
    ))
    .await
    .unwrap();
    let created = Instant::now();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("etcd.steward.dev", "v1alpha1", "EtcdCluster"),
        "etcdclusters",
    );
    let clusters: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "default", &ar);
    let ready = || async {
        clusters
            .get("rotate")
            .await
            .is_ok_and(|c| operator_sees_all_healthy(&c))
    };
    if let Err(e) = wait_for("3 ready TLS members", Duration::from_secs(240), ready).await {
        panic!(
            "{e}\n{}",
            env.diagnostics("default", "etcdclusters,secrets").await
        );
    }
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
    let m = members(&env).await;
    assert_eq!(m.pods.len(), 3);
    assert!(m.pods.iter().all(|p| p.2 == 0), "{:?}", m.pods);

    // A client writes and reads through every member, with the client Secret's files as
    // they are at each moment (as a pod's Secret volume would have them), until the old CA
    // is gone from the bundles and has expired.
    let dir = tempfile::tempdir().unwrap();
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
        write_client_files(&now, dir.path());
        let key = format!("key-{i:05}");
        let value = format!("v{i}");
        let writer = &m.endpoints[i % 3];
        let reader = &m.endpoints[(i + 1) % 3];
        let (ok, out) = etcdctl(&m, dir.path(), writer, &["put", &key, &value]);
        if ok {
            written += 1;
        } else {
            failures.push(format!("put {key} via {writer}: {out}"));
        }
        let (ok, out) = etcdctl(&m, dir.path(), reader, &["get", &key, "--print-value-only"]);
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
    let (ok, out) = etcdctl(
        &m,
        dir.path(),
        &m.endpoints[0],
        &["get", "key-", "--prefix", "--count-only", "-w", "fields"],
    );
    assert!(
        ok && out.contains(&format!("\"Count\" : {written}")),
        "{written} written: {out}"
    );
    let (ok, out) = etcdctl(&m, dir.path(), &m.endpoints.join(","), &["endpoint", "health"]);
    assert!(ok && out.matches("is healthy").count() == 3, "{out}");
    wait_for("status healthy after rotation", Duration::from_secs(60), ready)
        .await
        .unwrap();
    let after = members(&env).await;
    assert_eq!(after.pods, m.pods, "same member pods, no restarts");
    eprintln!(
        "ready after {ready_after:?}, switch seen at {switched_at:?}, old CA dropped at \
         {dropped_at:?}, {written} keys in {i} rounds, test took {:?}",
        started.elapsed()
    );
}
