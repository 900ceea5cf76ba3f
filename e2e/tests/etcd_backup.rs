//! EtcdBackups end to end: a one-off backup of a TLS cluster is stored with its size,
//! SHA-256 and revision and restores with the real `etcdutl` into an etcd that serves the
//! keys written before; a backup naming a missing cluster fails with `ClusterNotFound` and a
//! Warning Event; a `* * * * *` schedule creates labelled backups and retention
//! (`maxBackups: 2`) prunes the oldest scheduled one, object and stored file, while a backup
//! made by hand is left alone; an upgrade waits for its pre-upgrade (spot) backup, and one
//! interrupted by a member recovery takes a fresh one before it goes on; the
//! PersistentVolumeClaim destination stores, restores, fails and prunes through pods.
//!
//! Storage: a real S3 server (s3s-fs, `e2e::s3`) on the host's pod-network address, which
//! the operator's pod reaches as it would an object store outside the cluster; credentials
//! come from a Secret, and the test reads the stored objects from the server's directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/backups.rs"]
mod support;

use std::time::Duration;

use e2e::bins::{self, Release};
use e2e::etcd::{Etcdctl, cluster_yaml, clusters_api};
use e2e::harness::{Env, wait_for, wait_until};
use e2e::local_etcd::{LocalEtcd, etcdctl};
use e2e::s3::S3Server;
use etcd_operator::crd::BackupPhase;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

const BUCKET: &str = "backups";
/// The Secret holding the S3 credentials, in the backups' namespace.
const CREDENTIALS: &str = "s3-credentials";

/// Where backups go, and how the test reads them back.
struct Store {
    /// `None` for a destination nothing is ever stored in (the cluster is missing).
    server: Option<S3Server>,
}

impl Store {
    /// s3s-fs on kubesim's host address with bucket [`BUCKET`], and the credentials Secret.
    async fn s3(env: &Env) -> Store {
        let sim = env.kubesim().expect("kubesim in process mode");
        let server = S3Server::for_pods(sim, env, BUCKET, CREDENTIALS).await.unwrap();
        Store { server: Some(server) }
    }

    /// The `destination` of an EtcdBackup, as YAML lines indented by four spaces.
    fn destination(&self) -> String {
        let endpoint = self
            .server
            .as_ref()
            .map_or("http://127.0.0.1:9".to_string(), |s| s.endpoint.clone());
        format!(
            "    s3: {{bucket: {BUCKET}, endpoint: \"{endpoint}\", region: {}, forcePathStyle: true, credentialsSecret: {CREDENTIALS}}}\n",
            S3Server::REGION
        )
    }

    /// The stored object `key`, or `None` when it does not exist.
    async fn read(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.server.as_ref()?.object_file(BUCKET, key)).ok()
    }
}

fn backup_yaml(name: &str, cluster: &str, labels: &str, store: &Store) -> String {
    format!(
        "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdBackup\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{{labels}}}\nspec:\n  clusterRef: {{name: {cluster}}}\n  destination:\n{}",
        store.destination()
    )
}

/// Restores `snapshot` with the real etcdutl, starts etcd on the result and returns how many
/// keys start with `prefix`.
async fn restored_keys(snapshot: &std::path::Path, prefix: &str, revision: i64) -> u64 {
    let etcdutl = bins::etcdutl(Release::Current).unwrap();
    let status = std::process::Command::new(&etcdutl)
        .args(["snapshot", "status", "-w", "json"])
        .arg(snapshot)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["revision"], revision, "etcdutl snapshot status: {status}");

    let dir = tempfile::tempdir().unwrap();
    let mut member = LocalEtcd::plan("restored", false);
    let out = std::process::Command::new(&etcdutl)
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg(format!("--data-dir={}", dir.path().join("restored").display()))
        .args([
            "--name=restored",
            &format!("--initial-cluster={}", member.initial()),
            &format!("--initial-advertise-peer-urls={}", member.peer_url),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdutl snapshot restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    member
        .start(Release::Current, dir.path(), &member.initial(), "new", None)
        .unwrap();
    let endpoints = member.client_url.clone();
    let counted = wait_until("the restored etcd answers", Duration::from_secs(30), || {
        let (ok, out) = etcdctl(
            Release::Current,
            &[
                "--endpoints",
                &endpoints,
                "get",
                prefix,
                "--prefix",
                "--keys-only",
            ],
        );
        async move { ok.then(|| out.lines().filter(|l| l.starts_with(prefix)).count() as u64) }
    })
    .await;
    counted.unwrap_or_else(|e| {
        let log = std::fs::read_to_string(dir.path().join("restored.log")).unwrap_or_default();
        panic!("{e}\n{log}")
    })
}

fn sha256_hex(bytes: &[u8], dir: &std::path::Path) -> String {
    let file = dir.join("sum");
    std::fs::write(&file, bytes).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A one-off backup of a 1-member TLS cluster is stored with size, SHA-256 and revision, and
/// restores into an etcd serving every key written before. Then a `* * * * *` schedule with
/// `maxBackups: 2` creates `<cluster>-<yyyymmddhhmm>` backups labelled with cluster and
/// trigger, prunes the oldest scheduled backup (its stored file first, then the object),
/// never touches the backup made by hand, and reports `BackupReady=True`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_restore_and_scheduled_ones_are_pruned() {
    let env = Env::start().await.unwrap();
    if env
        .require_kubesim("pods reach the test's S3 server on kubesim's host address")
        .is_none()
    {
        return;
    }
    env.deploy_operators(&["etcd-operator"]).await.unwrap();
    let store = Store::s3(&env).await;
    let current = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&cluster_yaml(
        "demo",
        1,
        &current,
        "  tls: {mode: auto}\n  storage: {emptyDir: {}}\n",
    ))
    .await
    .unwrap();
    support::wait_available(&env, "demo", 1, Duration::from_secs(180)).await;
    let ctl = Etcdctl::connect(&env, "demo").await.unwrap();
    // The member may still be settling right after Available: wait for one write to pass.
    wait_for("demo takes writes", Duration::from_secs(60), || async {
        ctl.run(&ctl.members(), &["put", "key-00", "value"]).0
    })
    .await
    .unwrap();
    for i in 0..20 {
        let (ok, out) = ctl.run(&ctl.members(), &["put", &format!("key-{i:02}"), "value"]);
        assert!(ok, "put: {out}");
    }

    // A one-off backup.
    env.apply(&backup_yaml("manual", "demo", "", &store))
        .await
        .unwrap();
    let st = support::backup_finished(&env, "manual").await;
    assert_eq!(st.phase, Some(BackupPhase::Succeeded), "{st:?}");
    let key = st.key.clone().unwrap();
    assert!(
        key.starts_with("default/demo/manual-") && key.ends_with("Z.db"),
        "{key}"
    );
    let bytes = store.read(&key).await.expect("the stored snapshot");
    assert_eq!(st.size_bytes, Some(bytes.len() as i64));
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        st.sha256.as_deref(),
        Some(sha256_hex(&bytes, tmp.path()).as_str())
    );
    assert!(
        st.member.as_deref().is_some_and(|m| m.starts_with("demo-")),
        "{st:?}"
    );
    assert_eq!(st.etcd_version.as_deref(), Some(current.as_str()));
    assert_eq!(st.attempts, 1);
    let revision = st.revision.unwrap();
    assert!(revision >= 21, "20 puts after the first revision: {revision}");
    let snapshot = tmp.path().join("manual.db");
    std::fs::write(&snapshot, &bytes).unwrap();
    assert_eq!(restored_keys(&snapshot, "key-", revision).await, 20);

    // Wrong credentials and a missing bucket fail for good, with the engine's reason in the
    // condition and a Warning Event, and leave no object behind.
    env.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: wrong-credentials, namespace: default}\nstringData: {AWS_ACCESS_KEY_ID: nobody, AWS_SECRET_ACCESS_KEY: not-the-secret}\n",
    )
    .await
    .unwrap();
    let destination = store.destination();
    for (name, dest, reason) in [
        (
            "wrong-credentials",
            destination.replace(
                &format!("credentialsSecret: {CREDENTIALS}"),
                "credentialsSecret: wrong-credentials",
            ),
            "InvalidCredentials",
        ),
        (
            "missing-bucket",
            destination.replace(&format!("bucket: {BUCKET}"), "bucket: no-such-bucket"),
            "BucketNotFound",
        ),
    ] {
        env.apply(&format!(
            "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdBackup\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  clusterRef: {{name: demo}}\n  destination:\n{dest}"
        ))
        .await
        .unwrap();
        let st = support::backup_finished(&env, name).await;
        assert_eq!(st.phase, Some(BackupPhase::Failed), "{name}: {st:?}");
        let cond = st.conditions.iter().find(|c| c.type_ == "Succeeded").unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", reason),
            "{cond:?}"
        );
        assert!(st.key.is_none() && st.sha256.is_none(), "{name}: {st:?}");
    }
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    wait_for(
        "the failures' Warning Events",
        Duration::from_secs(30),
        || async {
            events.list(&ListParams::default()).await.is_ok_and(|l| {
                ["InvalidCredentials", "BucketNotFound"].iter().all(|r| {
                    l.items
                        .iter()
                        .any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(*r))
                })
            })
        },
    )
    .await
    .unwrap();

    // Two earlier "scheduled" backups (made here, labelled as the schedule labels its own),
    // one after the other so their completion times order them.
    let scheduled = "etcd.steward.dev/cluster: demo, etcd.steward.dev/trigger: schedule";
    for name in ["demo-old-1", "demo-old-2"] {
        env.apply(&backup_yaml(name, "demo", scheduled, &store))
            .await
            .unwrap();
        let st = support::backup_finished(&env, name).await;
        assert_eq!(st.phase, Some(BackupPhase::Succeeded), "{name}: {st:?}");
        // Completion times are to the second: keep the two apart.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let old_key = support::backups(&env)
        .get("demo-old-1")
        .await
        .unwrap()
        .status
        .unwrap()
        .key
        .unwrap();
    assert!(store.read(&old_key).await.is_some());

    // The schedule: every minute, keep two.
    let patch = serde_json::json!({"spec": {"backup": {
        "schedule": "* * * * *",
        "destination": serde_yaml_ng::from_str::<serde_json::Value>(&store.destination()).unwrap(),
        "retention": {"maxBackups": 2},
    }}});
    env.kubectl(&[
        "patch",
        "etcdcluster",
        "demo",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ])
    .await
    .unwrap();
    let api = support::backups(&env);
    let by_schedule =
        ListParams::default().labels("etcd.steward.dev/cluster=demo,etcd.steward.dev/trigger=schedule");
    let pruned = wait_for(
        "a scheduled backup succeeded, demo-old-1 was pruned and two successful ones are left",
        Duration::from_secs(150),
        || async {
            let Ok(list) = api.list(&by_schedule).await else {
                return false;
            };
            let made_by_schedule = list.items.iter().any(|b| {
                let name = b.metadata.name.as_deref().unwrap_or_default();
                name.strip_prefix("demo-")
                    .is_some_and(|s| s.len() == 12 && s.bytes().all(|c| c.is_ascii_digit()))
                    && b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Succeeded)
            });
            // maxBackups 2 keeps two successful scheduled backups.
            let succeeded = list
                .items
                .iter()
                .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Succeeded))
                .count();
            made_by_schedule
                && succeeded == 2
                && list
                    .items
                    .iter()
                    .all(|b| b.metadata.name.as_deref() != Some("demo-old-1"))
        },
    )
    .await;
    env.or_diagnose(pruned, "default", "etcdbackups,etcdclusters,events")
        .await;
    let left = api.list(&by_schedule).await.unwrap().items;
    assert!(
        store.read(&old_key).await.is_none(),
        "the pruned snapshot's file is deleted"
    );
    assert!(
        api.get_opt("manual").await.unwrap().is_some(),
        "a backup made by hand is never pruned"
    );
    let made = left
        .iter()
        .find(|b| {
            b.metadata
                .name
                .as_deref()
                .is_some_and(|n| !n.starts_with("demo-old"))
        })
        .unwrap();
    assert!(
        made.metadata.owner_references.is_none(),
        "scheduled backups outlive their cluster"
    );

    let clusters = clusters_api(&env.client, "default");
    wait_for("BackupReady=True", Duration::from_secs(60), || async {
        let st = e2e::etcd::status(&clusters, "demo").await;
        e2e::etcd::condition(&st, "BackupReady").is_some_and(|c| c["status"] == "True")
    })
    .await
    .unwrap();
}

/// The PersistentVolumeClaim destination: a pod of the operator's image takes the snapshot
/// of a TLS cluster into the claim (the status comes from its termination message; the
/// file's SHA-256 is the status's and it restores with the real etcdutl); a new cluster is
/// restored from it with every one of 10,000 keys and values; a missing claim
/// fails with `ClaimNotFound`; retention prunes an old backup through a second pod that
/// deletes its file.
/// Keys written before the backup to a claim (as many as through S3 in `etcd_restore`).
const PVC_KEYS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_to_a_volume_claim() {
    let env = Env::start().await.unwrap();
    if env
        .require_kubesim("the test reads the claim's files from kubesim's volume folder")
        .is_none()
    {
        return;
    }
    env.deploy_operators(&["etcd-operator"]).await.unwrap();
    let current = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: backups, namespace: default}}\nspec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n---\n{}",
        cluster_yaml("vol", 1, &current, "  tls: {mode: auto}\n  storage: {emptyDir: {}}\n")
    ))
    .await
    .unwrap();
    support::wait_available(&env, "vol", 1, Duration::from_secs(180)).await;
    let ctl = Etcdctl::connect(&env, "vol").await.unwrap();
    wait_for("vol takes writes", Duration::from_secs(60), || async {
        ctl.run(&ctl.members(), &["put", "ready", "yes"]).0
    })
    .await
    .unwrap();
    let pairs: Vec<(String, String)> = (0..PVC_KEYS)
        .map(|i| {
            (
                format!("pvc-{i:05}"),
                format!("value-{i:05}-{}", "x".repeat(i % 17)),
            )
        })
        .collect();
    ctl.put_all(&pairs).unwrap();
    let to_claim = |claim: &str| format!("    pvc: {{claimName: {claim}, path: etcd/snapshots}}\n");
    let backup = |name: &str, labels: &str, claim: &str| {
        format!(
            "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdBackup\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{{labels}}}\nspec:\n  clusterRef: {{name: vol}}\n  destination:\n{}",
            to_claim(claim)
        )
    };

    env.apply(&backup("to-claim", "", "backups")).await.unwrap();
    let st = support::backup_finished(&env, "to-claim").await;
    assert_eq!(st.phase, Some(BackupPhase::Succeeded), "{st:?}");
    let key = st.key.clone().unwrap();
    assert!(
        key.starts_with("default/vol/to-claim-") && key.ends_with("Z.db"),
        "{key}"
    );
    assert_eq!(
        st.location.as_deref(),
        Some(format!("pvc://backups/etcd/snapshots/{key}").as_str())
    );
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(env.client.clone(), "default");
    let pv = pvcs
        .get("backups")
        .await
        .unwrap()
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    let folder = env
        .kubesim()
        .and_then(|c| c.volume_path(&pv))
        .unwrap()
        .join("etcd/snapshots");
    let bytes = std::fs::read(folder.join(&key)).expect("the snapshot on the claim");
    assert_eq!(st.size_bytes, Some(bytes.len() as i64));
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        st.sha256.as_deref(),
        Some(sha256_hex(&bytes, tmp.path()).as_str())
    );
    let snapshot = tmp.path().join("to-claim.db");
    std::fs::write(&snapshot, &bytes).unwrap();
    assert_eq!(
        restored_keys(&snapshot, "pvc-", st.revision.unwrap()).await,
        PVC_KEYS as u64
    );

    // A new cluster restored from the claim (its restore-fetch mounts it read-only) serves the
    // same keys and values.
    env.apply(&cluster_yaml(
        "vol-restored",
        1,
        &current,
        "  tls: {mode: auto}\n  storage: {emptyDir: {}}\n  bootstrap:\n    fromBackup:\n      backupRef: {name: to-claim}\n",
    ))
    .await
    .unwrap();
    support::wait_available(&env, "vol-restored", 1, Duration::from_secs(180)).await;
    let restored = Etcdctl::connect(&env, "vol-restored").await.unwrap();
    let (ok, out) = restored.run(&restored.members(), &["get", "pvc-", "--prefix"]);
    assert!(ok, "get: {out}");
    let expected: Vec<String> = pairs.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect();
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), expected.len(), "keys and values restored");
    assert!(got == expected, "a restored key or value differs");

    // A claim that does not exist: Failed at once, with the reason.
    env.apply(&backup("no-claim", "", "nowhere")).await.unwrap();
    let st = support::backup_finished(&env, "no-claim").await;
    assert_eq!(st.phase, Some(BackupPhase::Failed), "{st:?}");
    let cond = st.conditions.iter().find(|c| c.type_ == "Succeeded").unwrap();
    assert_eq!(cond.reason, "ClaimNotFound", "{cond:?}");

    // Retention on the claim: two "scheduled" backups, keep one; the older one's file is
    // deleted by a pod, then the object goes.
    let scheduled = "etcd.steward.dev/cluster: vol, etcd.steward.dev/trigger: schedule";
    for name in ["vol-old-1", "vol-old-2"] {
        env.apply(&backup(name, scheduled, "backups")).await.unwrap();
        let st = support::backup_finished(&env, name).await;
        assert_eq!(st.phase, Some(BackupPhase::Succeeded), "{name}: {st:?}");
        // Completion times are to the second: keep the two apart.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let api = support::backups(&env);
    let old_key = api.get("vol-old-1").await.unwrap().status.unwrap().key.unwrap();
    assert!(folder.join(&old_key).exists());
    // A schedule that fires once a year (not during this test): only retention acts.
    let patch = serde_json::json!({"spec": {"backup": {
        "schedule": "0 0 1 1 *",
        "destination": {"pvc": {"claimName": "backups", "path": "etcd/snapshots"}},
        "retention": {"maxBackups": 1},
    }}});
    env.kubectl(&[
        "patch",
        "etcdcluster",
        "vol",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ])
    .await
    .unwrap();
    let pruned = wait_for("vol-old-1 pruned", Duration::from_secs(90), || async {
        api.get_opt("vol-old-1").await.is_ok_and(|b| b.is_none())
    })
    .await;
    env.or_diagnose(pruned, "default", "etcdbackups,pods,events")
        .await;
    assert!(
        !folder.join(&old_key).exists(),
        "the pruned snapshot's file is deleted"
    );
    assert!(
        api.get_opt("vol-old-2").await.unwrap().is_some(),
        "the newest is kept"
    );
    assert!(
        folder.join(&key).exists(),
        "a backup made by hand is never pruned"
    );
}

/// A backup naming a cluster that does not exist fails for good with `ClusterNotFound`, a
/// Warning Event on the backup, and is not tried again. Also the schema: exactly one
/// destination, and the spec cannot change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_missing_cluster_fails() {
    let env = Env::start_instant_with_crds().await.unwrap();
    let (_operator, _port) = env.run_operator("etcd-operator").await.unwrap();
    let store = Store { server: None };
    env.apply(&backup_yaml("orphan", "nope", "", &store))
        .await
        .unwrap();
    let st = support::backup_finished(&env, "orphan").await;
    assert_eq!(st.phase, Some(BackupPhase::Failed));
    let cond = st.conditions.iter().find(|c| c.type_ == "Succeeded").unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "ClusterNotFound")
    );
    assert_eq!(cond.message, "EtcdCluster default/nope not found");
    assert_eq!(st.attempts, 0, "nothing was attempted");
    assert!(st.completion_time.is_some());
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    wait_for(
        "a ClusterNotFound Warning Event",
        Duration::from_secs(30),
        || async {
            events.list(&ListParams::default()).await.is_ok_and(|l| {
                l.items.iter().any(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some("ClusterNotFound")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("orphan")
                })
            })
        },
    )
    .await
    .unwrap();

    // The spec is immutable and needs exactly one destination.
    let err = env
        .kubectl(&[
            "patch",
            "etcdbackup",
            "orphan",
            "--type=merge",
            "-p",
            r#"{"spec":{"clusterRef":{"name":"other"}}}"#,
        ])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec is immutable"), "{err}");
    let err = env
        .apply("apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdBackup\nmetadata: {name: nowhere, namespace: default}\nspec:\n  clusterRef: {name: demo}\n  destination: {}\n")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("set exactly one destination"), "{err}");
    // Both kinds at once, and a claim path that climbs out of the volume, are refused too.
    for dest in [
        "{s3: {bucket: bkt}, pvc: {claimName: c}}",
        "{pvc: {claimName: c, path: ../other}}",
    ] {
        let err = env
            .apply(&format!("apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdBackup\nmetadata: {{name: nowhere, namespace: default}}\nspec:\n  clusterRef: {{name: demo}}\n  destination: {dest}\n"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Invalid value"), "{dest}: {err}");
    }
}

/// With `spec.backup` (spot `beforeUpgrade` is on by default) an upgrade first takes the
/// EtcdBackup `<cluster>-pre-upgrade-<version>` of the old version and restarts the first
/// member only after it succeeded. Plain HTTP here, so the backup path without TLS is
/// covered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_waits_for_its_pre_upgrade_backup() {
    let env = Env::start().await.unwrap();
    if env
        .require_kubesim("pods reach the test's S3 server on kubesim's host address")
        .is_none()
    {
        return;
    }
    env.deploy_operators(&["etcd-operator"]).await.unwrap();
    let store = Store::s3(&env).await;
    let old = bins::version("ETCD_OLD").unwrap();
    let current = bins::version("ETCD_CURRENT").unwrap();
    // A yearly schedule: no scheduled backup gets in the way. The default storage (a PVC per
    // member): a single member keeps its data across the upgrade's restart only on a PVC.
    let spec = format!(
        "  tls: {{mode: disabled}}\n  backup:\n    schedule: \"0 0 1 1 *\"\n    destination:\n  {}",
        store.destination()
    );
    env.apply(&cluster_yaml("up", 1, &old, &spec)).await.unwrap();
    support::wait_available(&env, "up", 1, Duration::from_secs(180)).await;
    env.kubectl(&[
        "patch",
        "etcdcluster",
        "up",
        "--type=merge",
        "-p",
        &format!("{{\"spec\":{{\"version\":\"{current}\"}}}}"),
    ])
    .await
    .unwrap();
    let clusters = clusters_api(&env.client, "default");
    let upgraded = wait_for(&format!("up at {current}"), Duration::from_secs(240), || async {
        let st = e2e::etcd::status(&clusters, "up").await;
        st["currentVersion"] == current.as_str() && st["readyMembers"] == 1
    })
    .await;
    env.or_diagnose(upgraded, "default", "etcdbackups,etcdclusters,events")
        .await;
    let name = format!("up-pre-upgrade-{current}");
    let backup = support::backups(&env).get(&name).await.unwrap();
    assert_eq!(
        backup.metadata.labels.as_ref().unwrap()["etcd.steward.dev/trigger"],
        "before-upgrade"
    );
    let st = backup.status.unwrap();
    assert_eq!(st.phase, Some(BackupPhase::Succeeded), "{st:?}");
    assert_eq!(
        st.etcd_version.as_deref(),
        Some(old.as_str()),
        "taken before the upgrade"
    );
    assert!(store.read(st.key.as_deref().unwrap()).await.is_some());
    let completed = st
        .completion_time
        .unwrap()
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap()
        .as_second();
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    let upgrading = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("MemberUpgrading"))
        .filter_map(|e| e.event_time.map(|t| t.0.as_second()))
        .min()
        .expect("a MemberUpgrading Event");
    assert!(
        completed <= upgrading,
        "the backup completed at {completed}, the first member restarted at {upgrading}"
    );
}

/// The order recover, back up, upgrade also holds when a member recovery interrupts an
/// upgrade: a 3-member cluster upgrading with its pre-upgrade backup is paused right after
/// its first member restarted, a member's pod is deleted and comes back from its PVC (a
/// member recovery, `status.lastMemberRecoveryTime`), and once resumed the upgrade first takes
/// the fresh backup `<cluster>-pre-upgrade-<version>-<recovery time>`, which completes before
/// the next member restarts. The operator's watches lag behind its writes throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_interrupted_by_a_member_recovery_takes_a_fresh_backup_first() {
    let env = Env::start().await.unwrap();
    let Some(sim) = env.require_kubesim("pods reach the test's S3 server on kubesim's host address") else {
        return;
    };
    // The operator's watches lag a second behind its writes, as on a busy cluster: what it
    // keeps in the status (which member the upgrade restarted, when a member was recovered)
    // must not hang on its watch copy having seen its last status write.
    sim.server
        .watch_delay_ms
        .store(1000, std::sync::atomic::Ordering::Relaxed);
    env.deploy_operators(&["etcd-operator"]).await.unwrap();
    let store = Store::s3(&env).await;
    let old = bins::version("ETCD_OLD").unwrap();
    let current = bins::version("ETCD_CURRENT").unwrap();
    let spec = format!(
        "  tls: {{mode: disabled}}\n  backup:\n    schedule: \"0 0 1 1 *\"\n    destination:\n  {}",
        store.destination()
    );
    env.apply(&cluster_yaml("mid", 3, &old, &spec)).await.unwrap();
    let clusters = clusters_api(&env.client, "default");
    let whole = || async { e2e::etcd::healthy_voters(&e2e::etcd::status(&clusters, "mid").await, 3) };
    env.or_diagnose(
        wait_for("mid: 3 healthy voters", Duration::from_secs(240), whole).await,
        "default",
        "etcdclusters,events",
    )
    .await;
    let patch = |body: String| {
        let env = &env;
        async move {
            env.kubectl(&["patch", "etcdcluster", "mid", "--type=merge", "-p", &body])
                .await
                .unwrap();
        }
    };
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    // Restart times of members by the upgrade, in seconds, at or after `since`.
    let upgrade_restarts = |since: i64| {
        let events = events.clone();
        async move {
            let mut times: Vec<i64> = events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("MemberUpgrading"))
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("mid"))
                .filter_map(|e| e.event_time.map(|t| t.0.as_second()))
                .filter(|t| *t >= since)
                .collect();
            times.sort();
            times
        }
    };

    // The upgrade starts (after its pre-upgrade backup); right after the first member
    // restarts, the cluster is paused.
    patch(format!("{{\"spec\":{{\"version\":\"{current}\"}}}}")).await;
    let first = wait_until("the first member restarts", Duration::from_secs(180), || async {
        upgrade_restarts(0).await.first().copied()
    })
    .await;
    env.or_diagnose(first, "default", "etcdbackups,etcdclusters,events")
        .await;
    patch("{\"spec\":{\"paused\":true}}".to_string()).await;
    // The member being restarted still comes back while paused: at the new version, with
    // every member pod there and ready.
    let settled = wait_for(
        "mid: 3 healthy voters, one upgraded, paused",
        Duration::from_secs(120),
        || async {
            let st = e2e::etcd::status(&clusters, "mid").await;
            let pods = e2e::etcd::member_pods(&env.client, "mid")
                .await
                .unwrap_or_default();
            e2e::etcd::healthy_voters(&st, 3)
                && st["members"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|m| m["version"] == current.as_str()))
                && pods.len() == 3
                && pods.iter().all(e2e::harness::pod_ready)
        },
    )
    .await;
    env.or_diagnose(settled, "default", "etcdclusters,pods,events")
        .await;
    let st = e2e::etcd::status(&clusters, "mid").await;
    assert!(st["lastMemberRecoveryTime"].is_null(), "{st}");
    let members = st["members"].as_array().cloned().unwrap_or_default();
    let at = |v: &str| -> Vec<serde_json::Value> {
        members.iter().filter(|m| m["version"] == v).cloned().collect()
    };
    let (stale, upgraded) = (at(&old), at(&current));
    assert!(
        !stale.is_empty(),
        "the pause came after the whole upgrade; nothing left to interrupt: {st}"
    );
    // The member to lose: one whose pod coming back leaves a member to upgrade, and not the
    // one the upgrade restarted itself.
    let victim = if stale.len() >= 2 {
        stale
            .iter()
            .find(|m| m["isLeader"] == false)
            .unwrap_or(&stale[0])
            .clone()
    } else {
        upgraded
            .iter()
            .find(|m| m["name"] != st["upgradeRestarted"])
            .cloned()
            .unwrap_or_else(|| panic!("no member to lose: {st}"))
    };
    let victim = victim["name"].as_str().unwrap().to_string();
    env.kubectl(&["delete", "pod", &victim, "-n", "default", "--wait=false"])
        .await
        .unwrap();
    let recovered = wait_until(
        "the lost member is back: a member recovery",
        Duration::from_secs(120),
        || async {
            let st = e2e::etcd::status(&clusters, "mid").await;
            let at = st["lastMemberRecoveryTime"].as_str()?.to_string();
            e2e::etcd::healthy_voters(&st, 3).then_some(at)
        },
    )
    .await;
    let recovered = match recovered {
        Ok(t) => t.parse::<k8s_openapi::jiff::Timestamp>().unwrap().as_second(),
        Err(e) => panic!(
            "{e}\n{}",
            env.diagnostics("default", "etcdclusters,pods,events").await
        ),
    };

    // Resumed: the upgrade takes a fresh backup first, then restarts the next member.
    let resumed = k8s_openapi::jiff::Timestamp::now().as_second();
    patch("{\"spec\":{\"paused\":false}}".to_string()).await;
    let done = wait_for(&format!("mid at {current}"), Duration::from_secs(300), || async {
        let st = e2e::etcd::status(&clusters, "mid").await;
        st["currentVersion"] == current.as_str() && e2e::etcd::healthy_voters(&st, 3)
    })
    .await;
    env.or_diagnose(done, "default", "etcdbackups,etcdclusters,events")
        .await;
    let base = format!("mid-pre-upgrade-{current}");
    let fresh_name = format!("{base}-{recovered}");
    let first_backup = support::backups(&env).get(&base).await.unwrap();
    let fresh = support::backups(&env)
        .get_opt(&fresh_name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no fresh pre-upgrade backup {fresh_name}"));
    assert_eq!(
        fresh.metadata.labels.as_ref().unwrap()["etcd.steward.dev/trigger"],
        "before-upgrade"
    );
    let created =
        |b: &etcd_operator::crd::EtcdBackup| b.metadata.creation_timestamp.as_ref().unwrap().0.as_second();
    assert!(created(&first_backup) <= recovered);
    assert!(
        created(&fresh) >= recovered,
        "the fresh backup was created at {} after the recovery at {recovered}",
        created(&fresh)
    );
    let st = fresh.status.unwrap();
    assert_eq!(st.phase, Some(BackupPhase::Succeeded), "{st:?}");
    let completed = st
        .completion_time
        .unwrap()
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap()
        .as_second();
    let next = upgrade_restarts(resumed)
        .await
        .first()
        .copied()
        .expect("a member restarted after the upgrade resumed");
    assert!(
        completed <= next,
        "the fresh backup completed at {completed}, the next member restarted at {next}"
    );
}
