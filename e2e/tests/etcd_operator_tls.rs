//! `tls.mode: auto` in kubesim process mode: the operator issues a CA and server, peer and
//! client certificates; members speak only mutual TLS; applications use the published
//! `<name>-client-tls` Secret; certificates with a short lifetime are renewed and the cluster
//! keeps working past the first certificates' expiry without any member restarting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::bins::{self, Release};
use e2e::etcd::{Etcdctl, cluster_yaml, clusters_api, pod_identities};
use e2e::harness::{Env, wait_for};
use e2e::local_etcd::etcdctl;
use etcd_operator::tls::{CertInfo, inspect};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

const VALIDITY_SECS: u64 = 45;

/// The certificate in a TLS Secret of the `secure` cluster.
async fn secret_cert(env: &Env, name: &str) -> Option<CertInfo> {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "default");
    let data = secrets.get(name).await.ok()?.data?;
    inspect(&String::from_utf8_lossy(&data.get("tls.crt")?.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tls_refuses_plain_clients_and_renews_without_downtime() {
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&cluster_yaml(
        "secure",
        3,
        &version,
        &format!(
            "  tls: {{mode: auto, certificateValidity: {VALIDITY_SECS}s}}\n  storage: {{emptyDir: {{}}}}\n"
        ),
    ))
    .await
    .unwrap();
    let clusters = clusters_api(&env.client, "default");
    let ready = || async {
        let Ok(c) = clusters.get("secure").await else {
            return false;
        };
        let st = &c.data["status"];
        e2e::etcd::healthy_voters(st, 3)
            && st["members"].as_array().is_some_and(|m| {
                m.iter()
                    .all(|m| m["clientUrl"].as_str().is_some_and(|u| u.starts_with("https://")))
            })
    };
    env.or_diagnose(
        wait_for("3 ready TLS members", Duration::from_secs(180), ready).await,
        "default",
        "etcdclusters,secrets",
    )
    .await;
    let first_server = secret_cert(&env, "secure-server-tls").await.unwrap();
    let first_peer = secret_cert(&env, "secure-peer-tls").await.unwrap();
    let first_client = secret_cert(&env, "secure-client-tls").await.unwrap();
    let issued_at = Instant::now();

    // The client files as published now; kept to show later that they expire.
    let old_client = Etcdctl::connect(&env, "secure").await.unwrap();
    let m = &old_client;
    let pods = pod_identities(&env.client, "secure").await.unwrap();
    assert_eq!(m.members.len(), 3);

    // Keys through the client Service name with the published client certificate.
    for i in 0..200 {
        let (ok, out) = m.run(&m.service, &["put", &format!("key-{i:04}"), "v"]);
        assert!(ok, "write with the client certificate: {out}");
    }

    // Plain HTTP is refused, and so is TLS without a client certificate.
    let (ok, out) = etcdctl(
        Release::Current,
        &[
            "--endpoints",
            &format!("http://{}:2379", m.ips[0]),
            "--command-timeout=3s",
            "--dial-timeout=3s",
            "get",
            "key-0000",
        ],
    );
    assert!(!ok, "plain HTTP must be refused: {out}");
    let ca = format!(
        "--cacert={}",
        m.tls.as_ref().unwrap().path().join("ca.crt").display()
    );
    let (ok, out) = m.run_with(
        None,
        &m.service,
        &[
            &ca,
            "--command-timeout=3s",
            "--dial-timeout=3s",
            "get",
            "key-0000",
        ],
    );
    assert!(!ok, "a client without a certificate must be refused: {out}");

    // Renewal: the operator replaces server, peer and client certificates after two thirds
    // of their lifetime.
    let renewed = |name: &'static str, first: &CertInfo| {
        let (env, first) = (&env, first.clone());
        async move { secret_cert(env, name).await.filter(|c| *c != first) }
    };
    wait_for(
        "renewed certificates",
        Duration::from_secs(VALIDITY_SECS * 2),
        || async {
            renewed("secure-server-tls", &first_server).await.is_some()
                && renewed("secure-peer-tls", &first_peer).await.is_some()
                && renewed("secure-client-tls", &first_client).await.is_some()
        },
    )
    .await
    .unwrap();
    // Before the first ones expired, as the certificates themselves say: when the test saw
    // the new Secrets depends on how busy the machine is, when they were issued does not.
    for (name, first) in [
        ("secure-server-tls", &first_server),
        ("secure-peer-tls", &first_peer),
        ("secure-client-tls", &first_client),
    ] {
        let new = renewed(name, first).await.unwrap();
        assert!(
            new.not_before < first.not_after,
            "{name} renewed (valid from {}) only after the first certificate ended at {}",
            new.not_before,
            first.not_after
        );
    }
    // Past the first certificates' end, every member still serves new connections (so it
    // reloaded its files), the cluster is whole and no member restarted. Waiting for a point
    // in time: nothing to poll for.
    let expiry = Duration::from_secs(VALIDITY_SECS + 5);
    if let Some(left) = expiry.checked_sub(issued_at.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let ctl = Etcdctl::connect(&env, "secure").await.unwrap();
    // A busy machine may time out one call: a few tries, with the last answer on failure.
    let last = std::sync::Mutex::new(String::new());
    let healthy = wait_for(
        "every member healthy past the first certificates' end",
        Duration::from_secs(30),
        || async {
            let (ok, out) = ctl.run(&ctl.members(), &["endpoint", "health", "--cluster"]);
            let whole = ok && out.matches("is healthy").count() == 3;
            *last.lock().unwrap() = out;
            whole
        },
    )
    .await;
    if let Err(e) = healthy {
        panic!("{e}: {}", last.lock().unwrap());
    }
    assert_eq!(ctl.count("key-"), Some(200));
    // The first client certificate has expired, so the renewed one above is what worked.
    let (ok, out) = old_client.run(&old_client.service, &["get", "key-0000"]);
    assert!(!ok, "an expired client certificate must be refused: {out}");
    wait_for("status healthy after renewal", Duration::from_secs(30), ready)
        .await
        .unwrap();
    let after = pod_identities(&env.client, "secure").await.unwrap();
    assert_eq!(after, pods, "same member pods, no restarts");
}
