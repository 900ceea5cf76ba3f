//! `tls.mode: auto` in kubesim process mode: the operator issues a CA and server, peer and
//! client certificates; members speak only mutual TLS; applications use the published
//! `<name>-client-tls` Secret; certificates with a short lifetime are renewed and the cluster
//! keeps working past the first certificates' expiry without any member restarting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::bins::{self, Release};
use e2e::harness::{Env, wait_for};
use e2e::local_etcd::{etcdctl, etcdctl_with_hosts};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

const VALIDITY_SECS: u64 = 45;

struct Members {
    /// (ip, name) pairs for a private /etc/hosts.
    hosts: Vec<(String, String)>,
    ips: Vec<String>,
    pods: Vec<(String, String, i32)>,
}

async fn members(env: &Env) -> Members {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let list = pods
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/instance=secure,app.kubernetes.io/component=member"),
        )
        .await
        .unwrap()
        .items;
    let mut m = Members {
        hosts: Vec::new(),
        ips: Vec::new(),
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
        if m.ips.is_empty() {
            // The client Service name, as a pod would resolve it.
            m.hosts.push((ip.clone(), "secure.default.svc".into()));
        }
        m.hosts
            .push((ip.clone(), format!("{name}.secure-peers.default.svc")));
        m.ips.push(ip);
        m.pods.push((name, p.metadata.uid.clone().unwrap(), restarts));
    }
    m.pods.sort();
    m
}

/// Writes the client Secret's files into `dir`; returns the certificate PEM.
async fn client_files(env: &Env, dir: &std::path::Path) -> String {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "default");
    let s = secrets.get("secure-client-tls").await.unwrap();
    let data = s.data.unwrap();
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        std::fs::write(dir.join(key), &data[key].0).unwrap();
    }
    String::from_utf8(data["tls.crt"].0.clone()).unwrap()
}

fn tls_args(dir: &std::path::Path) -> Vec<String> {
    vec![
        format!("--cacert={}", dir.join("ca.crt").display()),
        format!("--cert={}", dir.join("tls.crt").display()),
        format!("--key={}", dir.join("tls.key").display()),
    ]
}

fn run(m: &Members, dir: &std::path::Path, endpoints: &str, rest: &[&str]) -> (bool, String) {
    let mut args: Vec<String> = vec![
        "--endpoints".into(),
        endpoints.into(),
        "--command-timeout=5s".into(),
    ];
    args.extend(tls_args(dir));
    args.extend(rest.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    etcdctl_with_hosts(Release::Current, &m.hosts, &refs)
}

fn member_endpoints(m: &Members) -> String {
    m.hosts
        .iter()
        .skip(1)
        .map(|(_, n)| format!("https://{n}:2379"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn secret_cert(env: &Env, name: &str) -> Vec<u8> {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "default");
    secrets
        .get(name)
        .await
        .ok()
        .and_then(|s| s.data)
        .and_then(|d| d.get("tls.crt").map(|b| b.0.clone()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tls_refuses_plain_clients_and_renews_without_downtime() {
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&format!(
        "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata: {{name: secure, namespace: default}}\nspec:\n  size: 3\n  version: {version}\n  tls: {{mode: auto, certificateValidity: {VALIDITY_SECS}s}}\n  storage: {{emptyDir: {{}}}}\n"
    ))
    .await
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("etcd.steward.dev", "v1alpha1", "EtcdCluster"),
        "etcdclusters",
    );
    let clusters: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "default", &ar);
    let ready = || async {
        let Ok(c) = clusters.get("secure").await else {
            return false;
        };
        let st = &c.data["status"];
        st["readyMembers"] == 3
            && st["members"].as_array().is_some_and(|m| {
                m.len() == 3
                    && m.iter().all(|m| {
                        m["isLearner"] == false
                            && m["healthy"] == true
                            && m["clientUrl"].as_str().is_some_and(|u| u.starts_with("https://"))
                    })
            })
    };
    if let Err(e) = wait_for("3 ready TLS members", Duration::from_secs(180), ready).await {
        panic!(
            "{e}\n{}",
            env.diagnostics("default", "etcdclusters,secrets").await
        );
    }
    let first_server_cert = secret_cert(&env, "secure-server-tls").await;
    let first_peer_cert = secret_cert(&env, "secure-peer-tls").await;
    let issued_at = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let old_client = tempfile::tempdir().unwrap();
    client_files(&env, dir.path()).await;
    client_files(&env, old_client.path()).await;
    let m = members(&env).await;
    assert_eq!(m.ips.len(), 3);

    // Keys through the client Service name with the published client certificate.
    for i in 0..200 {
        let (ok, out) = run(
            &m,
            dir.path(),
            "https://secure.default.svc:2379",
            &["put", &format!("key-{i:04}"), "v"],
        );
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
    let ca = format!("--cacert={}", dir.path().join("ca.crt").display());
    let (ok, out) = etcdctl_with_hosts(
        Release::Current,
        &m.hosts,
        &[
            "--endpoints",
            "https://secure.default.svc:2379",
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
    wait_for(
        "renewed certificates",
        Duration::from_secs(VALIDITY_SECS * 2),
        || async {
            let server = secret_cert(&env, "secure-server-tls").await;
            let peer = secret_cert(&env, "secure-peer-tls").await;
            !server.is_empty() && server != first_server_cert && !peer.is_empty() && peer != first_peer_cert
        },
    )
    .await
    .unwrap();
    let renewed_after = issued_at.elapsed();
    assert!(
        renewed_after < Duration::from_secs(VALIDITY_SECS),
        "renewed after {renewed_after:?}, not before expiry"
    );
    // Past the first certificates' end, every member still serves new connections (so it
    // reloaded its files), the cluster is whole and no member restarted.
    let expiry = Duration::from_secs(VALIDITY_SECS + 5);
    if let Some(left) = expiry.checked_sub(issued_at.elapsed()) {
        tokio::time::sleep(left).await;
    }
    client_files(&env, dir.path()).await;
    let (ok, out) = run(
        &m,
        dir.path(),
        &member_endpoints(&m),
        &["endpoint", "health", "--cluster"],
    );
    assert!(ok && out.matches("is healthy").count() == 3, "{out}");
    let (ok, out) = run(
        &m,
        dir.path(),
        "https://secure.default.svc:2379",
        &["get", "key-", "--prefix", "--count-only", "-w", "fields"],
    );
    assert!(ok && out.contains("\"Count\" : 200"), "{out}");
    // The first client certificate has expired, so the renewed one above is what worked.
    let (ok, out) = run(
        &m,
        old_client.path(),
        "https://secure.default.svc:2379",
        &["get", "key-0000"],
    );
    assert!(!ok, "an expired client certificate must be refused: {out}");
    wait_for("status healthy after renewal", Duration::from_secs(30), ready)
        .await
        .unwrap();
    let after = members(&env).await;
    assert_eq!(after.pods, m.pods, "same member pods, no restarts");
}
