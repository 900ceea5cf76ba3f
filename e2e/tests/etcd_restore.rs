//! Restores end to end (`spec.bootstrap.fromBackup`): a 1-member TLS cluster with 10,000 keys
//! is backed up to a real S3 server (s3s-fs on kubesim's host address); a NEW 3-member
//! EtcdCluster naming that EtcdBackup is restored by its seed's init containers
//! (`restore-fetch` in the operator image, the real `etcdutl snapshot restore`,
//! `restore-finish`) and grows to 3 members with every key and value, its revision bumped
//! above the source's, and a watch from an old revision answered "compacted". A backup whose
//! stored object was overwritten with garbage fails the restore (`RestoreFailed` with the
//! init container's message, a Warning Event, no member beyond the seed pod), and a backupRef
//! that does not exist waits (`BackupNotReady`) without starting any pod.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/backups.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::bins::{self, Release};
use e2e::etcd::{Etcdctl, cluster_yaml, clusters_api, condition, member_pods};
use e2e::harness::{Env, wait_for, wait_until};
use e2e::s3::S3Server;
use etcd_operator::crd::BackupPhase;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

const BUCKET: &str = "backups";
const CREDENTIALS: &str = "s3-credentials";
const KEYS: usize = 10_000;

/// etcdctl with the client certificate of `ctl` against `https://<ip>:2379` (the server
/// certificate is not checked against the IP: the test has no DNS), with `stdin`, killed
/// after 30 seconds (a watch that is not refused would never end).
fn etcdctl_raw(ctl: &Etcdctl, ip: &str, args: &[&str], stdin: &str) -> (bool, String) {
    let dir = ctl.tls.as_ref().expect("TLS cluster").path();
    let file = |n: &str| dir.join(n).display().to_string();
    let mut child = Command::new("timeout")
        .arg("30")
        .arg(bins::etcdctl(Release::Current).unwrap())
        .args([
            format!("--endpoints=https://{ip}:2379"),
            format!("--cacert={}", file("ca.crt")),
            format!("--cert={}", file("tls.crt")),
            format!("--key={}", file("tls.key")),
            "--insecure-skip-tls-verify".to_string(),
            "--dial-timeout=10s".to_string(),
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn value(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(i % 17))
}

/// The revision the member at `ip` reports.
fn revision(ctl: &Etcdctl, ip: &str) -> i64 {
    let (ok, out) = etcdctl_raw(ctl, ip, &["get", "none", "-w", "json"], "");
    assert!(ok, "get: {out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

fn restore_yaml(name: &str, backup: &str) -> String {
    cluster_yaml(
        name,
        3,
        &bins::version("ETCD_CURRENT").unwrap(),
        &format!(
            "  tls: {{mode: auto}}\n  storage: {{emptyDir: {{}}}}\n  bootstrap:\n    fromBackup:\n      backupRef: {{name: {backup}}}\n"
        ),
    )
}

/// Status condition `type_` of cluster `name` (`Value::Null` when absent).
async fn cluster_condition(env: &Env, name: &str, type_: &str) -> serde_json::Value {
    let c = clusters_api(&env.client, "default").get(name).await.unwrap();
    condition(&c.data["status"], type_).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_is_restored_from_a_backup_and_a_corrupt_one_is_refused() {
    let started = std::time::Instant::now();
    let env = Env::start().await.unwrap();
    let Some(sim) = env.require_kubesim("pods reach the test's S3 server on kubesim's host address") else {
        return;
    };
    env.deploy_operators(&["etcd-operator"]).await.unwrap();
    let server = S3Server::for_pods(sim, &env, BUCKET, CREDENTIALS).await.unwrap();

    // The source: one member with 10,000 keys.
    let current = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&cluster_yaml(
        "source",
        1,
        &current,
        "  tls: {mode: auto}\n  storage: {emptyDir: {}}\n",
    ))
    .await
    .unwrap();
    support::wait_available(&env, "source", 1, Duration::from_secs(180)).await;
    let src = Etcdctl::connect(&env, "source").await.unwrap();
    let src_ip = src.ips[0].clone();
    wait_for("source takes writes", Duration::from_secs(60), || async {
        etcdctl_raw(&src, &src_ip, &["put", "key-00000", &value(0)], "").0
    })
    .await
    .unwrap();
    // 125 puts per transaction (etcd allows 128 operations in one).
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(125) {
        let puts: String = chunk
            .iter()
            .map(|i| format!("put key-{i:05} {}\n", value(*i)))
            .collect();
        let (ok, out) = etcdctl_raw(&src, &src_ip, &["txn"], &format!("\n{puts}\n\n"));
        assert!(ok && out.contains("SUCCESS"), "txn: {out}");
    }
    // A watcher of the source would have seen these revisions.
    let source_revision = revision(&src, &src_ip);
    assert!(source_revision >= 81, "{source_revision}");

    // Two backups; the second one's stored object is then overwritten with garbage.
    let destination = format!(
        "    s3: {{bucket: {BUCKET}, endpoint: \"{}\", region: {}, forcePathStyle: true, credentialsSecret: {CREDENTIALS}}}\n",
        server.endpoint,
        S3Server::REGION
    );
    for name in ["good", "bad"] {
        env.apply(&format!(
            "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdBackup\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  clusterRef: {{name: source}}\n  destination:\n{destination}"
        ))
        .await
        .unwrap();
        let st = support::backup_finished(&env, name).await;
        assert_eq!(st.phase, Some(BackupPhase::Succeeded), "{name}: {st:?}");
    }
    let good = support::backup_finished(&env, "good").await;
    assert_eq!(good.revision, Some(source_revision));
    let bad_key = support::backup_finished(&env, "bad").await.key.unwrap();
    let bad_file = server.object_file(BUCKET, &bad_key);
    let len = std::fs::metadata(&bad_file).unwrap().len() as usize;
    let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&bad_file, garbage).unwrap();
    eprintln!("source and backups ready after {:?}", started.elapsed());

    // Three new clusters: from the good backup, from the corrupt one, from one that does not
    // exist.
    env.apply(&restore_yaml("restored", "good")).await.unwrap();
    env.apply(&restore_yaml("corrupt", "bad")).await.unwrap();
    env.apply(&restore_yaml("waiting", "missing")).await.unwrap();

    // fromBackup is immutable.
    let patch = serde_json::json!({"spec": {"bootstrap": {"fromBackup": {"backupRef": {"name": "bad"}}}}});
    let refused = env
        .kubectl(&[
            "patch",
            "etcdcluster",
            "restored",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])
        .await;
    let message = format!("{refused:?}");
    assert!(
        refused.is_err() && message.contains("spec.bootstrap is immutable"),
        "{message}"
    );

    support::wait_available(&env, "restored", 3, Duration::from_secs(180)).await;
    eprintln!("restored cluster available after {:?}", started.elapsed());
    let pods = member_pods(&env.client, "restored").await.unwrap();
    assert_eq!(pods.len(), 3);
    // Only the seed ran the restore; members added later joined through the learner path.
    let with_init: Vec<_> = pods
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|i| !i.is_empty())
        })
        .collect();
    assert_eq!(with_init.len(), 1, "only the seed pod restores");
    let names: Vec<&str> = with_init[0]
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["restore-fetch", "restore", "restore-finish"]);

    let ctl = Etcdctl::connect(&env, "restored").await.unwrap();
    assert_eq!(ctl.ips.len(), 3);
    for ip in &ctl.ips {
        // Every member, the learners that joined included, serves every key and value.
        let (ok, out) = etcdctl_raw(&ctl, ip, &["get", "key-", "--prefix", "--consistency=s"], "");
        assert!(ok, "get from {ip}: {out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2 * KEYS, "keys and values on {ip}");
        for (i, pair) in lines.chunks(2).enumerate() {
            assert_eq!(pair[0], format!("key-{i:05}"));
            assert_eq!(pair[1], value(i), "value of key-{i:05} on {ip}");
        }
    }
    let restored_revision = revision(&ctl, &ctl.ips[0]);
    assert!(
        restored_revision > source_revision + 999_999_999,
        "revisions are bumped: {restored_revision} after {source_revision}"
    );
    // A watcher resuming from a revision it saw on the source is told to re-list.
    let (ok, out) = etcdctl_raw(
        &ctl,
        &ctl.ips[0],
        &["watch", "key-0001", &format!("--rev={}", source_revision - 1)],
        "",
    );
    assert!(
        !ok && out.contains("compacted"),
        "watch from an old revision: {out}"
    );
    // New writes work and go above the bumped revision.
    let (ok, out) = etcdctl_raw(&ctl, &ctl.ips[0], &["put", "after", "restore"], "");
    assert!(ok, "{out}");

    // The corrupt backup: RestoreFailed with restore-fetch's message, a Warning Event, only
    // the seed pod and never Available.
    let failed = wait_until("corrupt: RestoreFailed", Duration::from_secs(90), || async {
        let c = cluster_condition(&env, "corrupt", "Progressing").await;
        (c["reason"] == "RestoreFailed").then_some(c)
    })
    .await;
    let failed = env
        .or_diagnose(failed, "default", "etcdclusters,pods,events")
        .await;
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("restore-fetch") && message.contains("ChecksumMismatch"),
        "{message}"
    );
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    wait_for(
        "a RestoreFailed Warning Event",
        Duration::from_secs(30),
        || async {
            events.list(&ListParams::default()).await.is_ok_and(|l| {
                l.items.iter().any(|e| {
                    e.reason.as_deref() == Some("RestoreFailed")
                        && e.type_.as_deref() == Some("Warning")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("corrupt")
                })
            })
        },
    )
    .await
    .unwrap();
    let corrupt_pods = member_pods(&env.client, "corrupt").await.unwrap();
    assert_eq!(corrupt_pods.len(), 1, "nothing grows from a failed restore");
    let st = clusters_api(&env.client, "default")
        .get("corrupt")
        .await
        .unwrap()
        .data["status"]
        .clone();
    let available = condition(&st, "Available").cloned().unwrap_or_default();
    assert_eq!(
        (&available["status"], &available["reason"]),
        (&"False".into(), &"RestoreFailed".into()),
        "{st}"
    );
    assert_eq!(st["readyMembers"].as_i64().unwrap_or(0), 0, "{st}");

    // The missing backup: BackupNotReady, and no pod at all.
    let c = cluster_condition(&env, "waiting", "Progressing").await;
    assert_eq!(c["reason"], "BackupNotReady", "{c}");
    let available = cluster_condition(&env, "waiting", "Available").await;
    assert_eq!(available["status"], "False", "{available}");
    assert!(
        c["message"]
            .as_str()
            .is_some_and(|m| m.contains("default/missing does not exist")),
        "{c}"
    );
    assert!(member_pods(&env.client, "waiting").await.unwrap().is_empty());
    eprintln!("done after {:?}", started.elapsed());
}
