//! The etcd-operator deployed from deploy/ into kubesim process mode runs real etcd
//! clusters: bootstrap to 3 Ready members with TLS (mode auto), 1,000 keys written through the
//! client Service with the published client certificate, `kubectl scale` to 5 and back to 3
//! with membership matching at every step and the keys intact; healing, upgrades, admission
//! and convergence under operator kills (these with TLS disabled).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::bins;
use e2e::etcd::{Etcdctl, Writer, cluster_yaml, clusters_api, condition, member_selector, status};
use e2e::harness::{Env, wait_for};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};

fn clusters(env: &Env) -> Api<DynamicObject> {
    clusters_api(&env.client, "default")
}

async fn deploy_cluster(env: &Env, name: &str, version: &str, extra: &str) -> Api<DynamicObject> {
    env.deploy_operators(&["etcd-operator"]).await.unwrap();
    env.apply(&cluster_yaml(
        name,
        3,
        version,
        &format!("  tls: {{mode: disabled}}\n  storage: {{volumeClaimTemplate: {{size: 1Gi}}}}\n{extra}"),
    ))
    .await
    .unwrap();
    clusters(env)
}

async fn connect(env: &Env, name: &str) -> Etcdctl {
    Etcdctl::connect(env, name).await.unwrap()
}

/// Waits until every acknowledged key of `writer` is in cluster `name`.
async fn check_acked(env: &Env, name: &str, prefix: &str, writer: Writer) {
    let acked = writer.stop().await.unwrap();
    assert!(acked.len() >= 20, "writes kept flowing: {}", acked.len());
    let missing = connect(env, name).await.missing(prefix, &acked).unwrap();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
}

/// Waits until the `demo` cluster reports `size` healthy voting members and Available, then
/// checks that etcd's own member list (over TLS when the cluster uses it) agrees.
async fn wait_size(env: &Env, clusters: &Api<DynamicObject>, size: i64) {
    let waited = wait_for(
        &format!("{size} ready members"),
        Duration::from_secs(240),
        || async {
            let Ok(c) = clusters.get("demo").await else {
                return false;
            };
            let scheme = if c.data["spec"]["tls"]["mode"] == "disabled" {
                "http://"
            } else {
                "https://"
            };
            let st = &c.data["status"];
            let members = st["members"].as_array().cloned().unwrap_or_default();
            st["size"] == size
                && st["readyMembers"] == size
                && members.len() as i64 == size
                && members.iter().all(|m| {
                    m["isLearner"] == false && m["clientUrl"].as_str().is_some_and(|u| u.starts_with(scheme))
                })
                && st["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Available" && c["status"] == "True")
                })
        },
    )
    .await;
    env.or_diagnose(waited, "default", "etcdclusters,secrets").await;
    // Exactly the members' pods (a removed member's pod goes one step after its removal), and
    // the client Service has a ready endpoint.
    wait_for("one pod per member", Duration::from_secs(60), || async {
        let ctl = connect(env, "demo").await;
        ctl.members.len() as i64 == size && !ctl.service.is_empty()
    })
    .await
    .unwrap();
    // etcd's own view agrees: as many started voters, each advertising the right scheme.
    let ctl = connect(env, "demo").await;
    let (ok, out) = ctl.run(&ctl.members(), &["member", "list"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count() as i64, size, "{out}");
    let scheme = if ctl.tls.is_some() { "https://" } else { "http://" };
    assert!(
        out.lines()
            .all(|l| l.contains(", started, ") && l.contains(scheme) && l.ends_with(", false")),
        "every member started, a voter, on {scheme}: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_write_and_scale() {
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    // No tls field: the default, mode auto.
    env.apply(&cluster_yaml(
        "demo",
        3,
        &version,
        "  memberFailureTimeout: 2m\n  storage: {volumeClaimTemplate: {size: 1Gi}}\n",
    ))
    .await
    .unwrap();
    let clusters = clusters(&env);
    wait_size(&env, &clusters, 3).await;
    assert_eq!(
        clusters.get("demo").await.unwrap().data["spec"]["tls"]["mode"],
        "auto",
        "TLS defaults to auto"
    );

    // 1,000 keys through the client Service name with the published client certificate,
    // one etcdctl process per key, a few at a time.
    let ctl = connect(&env, "demo").await;
    assert_eq!(ctl.service, "https://demo.default.svc:2379");
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let ctl = &ctl;
            scope.spawn(move || {
                for i in (worker..1000).step_by(8) {
                    let (ok, out) = ctl.run(
                        &ctl.service,
                        &["put", &format!("key-{i:04}"), &format!("value-{i}")],
                    );
                    assert!(ok, "put key-{i:04} through the Service: {out}");
                }
            });
        }
    });

    for size in [5, 3] {
        env.kubectl(&["scale", "etcdcluster", "demo", &format!("--replicas={size}")])
            .await
            .unwrap();
        wait_size(&env, &clusters, size).await;
        let ctl = connect(&env, "demo").await;
        let (ok, out) = ctl.run(
            &ctl.service,
            &["get", "key-", "--prefix", "--count-only", "-w", "fields"],
        );
        assert!(ok && out.contains("\"Count\" : 1000"), "{out}");
        let (ok, out) = ctl.run(&ctl.service, &["get", "key-0999", "--print-value-only"]);
        assert!(ok && out.trim() == "value-999", "{out}");
    }

    // An Event for every membership change, each naming its own member: 2 learners promoted
    // at bootstrap and 2 more for 5, then 2 members removed.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), "default");
    let all = events.list(&Default::default()).await.unwrap().items;
    let notes = |reason: &str| -> std::collections::BTreeSet<String> {
        all.iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("demo"))
            .filter_map(|e| e.note.clone())
            .collect()
    };
    assert_eq!(notes("MemberPromoted").len(), 4, "{:?}", notes("MemberPromoted"));
    assert_eq!(notes("MemberRemoved").len(), 2, "{:?}", notes("MemberRemoved"));

    // Idle, the cluster costs (almost) no API requests: the operator reads its watch caches
    // and writes nothing that has not changed. Measured in 30 s windows from kubesim's audit
    // log (the operator's own requests in the cluster's namespace, watches aside); the first
    // windows after the scale-down may still see its last writes settle.
    if let Some(sim) = env.require_kubesim("the idle API load check reads kubesim's audit log") {
        let user = "system:serviceaccount:steward-system:etcd-operator";
        let count = |after: u64| {
            sim.audit_events()
                .into_iter()
                .filter(|e| e.seq > after && e.user == user && e.namespace == "default" && e.verb != "watch")
                .map(|e| format!("{} {}/{}", e.verb, e.resource, e.name))
                .collect::<Vec<_>>()
        };
        let mut windows = Vec::new();
        for _ in 0..6 {
            let start = sim.audit_events().last().map_or(0, |e| e.seq);
            tokio::time::sleep(Duration::from_secs(30)).await;
            let seen = count(start);
            let idle = seen.len() <= 1;
            windows.push(seen);
            if idle {
                break;
            }
        }
        let last = windows.last().cloned().unwrap_or_default();
        assert!(
            last.len() <= 1,
            "an idle cluster still costs API requests; per 30 s window: {windows:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healing_keeps_data_and_replaces_lost_members() {
    let env = Env::start().await.unwrap();
    let Some(cluster) = env.require_kubesim("kills a member's process and cuts its pod network") else {
        return;
    };
    let version = bins::version("ETCD_CURRENT").unwrap();
    let clusters = deploy_cluster(&env, "demo", &version, "  memberFailureTimeout: 15s\n").await;
    wait_size(&env, &clusters, 3).await;
    let ctl = connect(&env, "demo").await;
    for i in 0..100 {
        assert!(ctl.run(&ctl.members(), &["put", &format!("key-{i:04}"), "v"]).0);
    }
    let members = |st: &serde_json::Value| -> Vec<(String, String)> {
        st["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or_default().to_string(),
                    m["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let before = members(&status(&clusters, "demo").await);

    // Kill one member's process repeatedly: it restarts on its PVC with the same identity.
    let (victim, victim_id) = before[0].clone();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for n in 1..=3 {
        env.kill_container("default", &victim, "etcd").await.unwrap();
        wait_for("the member restarted", Duration::from_secs(60), || async {
            pods.get(&victim).await.ok().is_some_and(|p| {
                e2e::harness::pod_ready(&p)
                    && p.status
                        .and_then(|s| s.container_statuses)
                        .is_some_and(|cs| cs[0].restart_count == n)
            })
        })
        .await
        .unwrap();
        wait_size(&env, &clusters, 3).await;
    }
    let after_kills = members(&status(&clusters, "demo").await);
    assert!(
        after_kills.contains(&(victim.clone(), victim_id.clone())),
        "same member after restarts: {after_kills:?}"
    );
    assert_eq!(connect(&env, "demo").await.count("key-"), Some(100));

    // Cut another member off longer than memberFailureTimeout: replaced by a fresh member.
    let (cut, _) = before[1].clone();
    cluster.cut_pod_network("default", &cut).unwrap();
    wait_for("the cut member replaced", Duration::from_secs(180), || async {
        let st = status(&clusters, "demo").await;
        let ms = members(&st);
        ms.len() == 3 && !ms.iter().any(|(n, _)| *n == cut) && st["readyMembers"] == 3
    })
    .await
    .unwrap();
    assert_eq!(connect(&env, "demo").await.count("key-"), Some(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_one_member_at_a_time_and_blocks_bad_versions() {
    let env = Env::start().await.unwrap();
    let old = bins::version("ETCD_OLD").unwrap();
    let current = bins::version("ETCD_CURRENT").unwrap();
    let newest = bins::version("ETCD_NEWEST").unwrap();
    let clusters = deploy_cluster(&env, "demo", &old, "").await;
    wait_size(&env, &clusters, 3).await;
    assert_eq!(status(&clusters, "demo").await["currentVersion"], old.as_str());

    // Writes keep going during the upgrade; every acknowledged write must survive.
    let writer = Writer::start(&env, "demo", "key-").await.unwrap();
    for target in [&current, &newest] {
        env.kubectl(&[
            "patch",
            "etcdcluster",
            "demo",
            "--type=merge",
            "-p",
            &format!("{{\"spec\":{{\"version\":\"{target}\"}}}}"),
        ])
        .await
        .unwrap();
        wait_for(
            &format!("all members at {target}"),
            Duration::from_secs(300),
            || async {
                let st = status(&clusters, "demo").await;
                st["currentVersion"] == target.as_str()
                    && st["readyMembers"] == 3
                    && st["members"]
                        .as_array()
                        .is_some_and(|ms| ms.iter().all(|m| m["version"] == target.as_str()))
            },
        )
        .await
        .unwrap();
    }
    check_acked(&env, "demo", "key-", writer).await;
    // Leadership was moved away before the leader restarted.
    let events = env
        .kubectl(&[
            "get",
            "events",
            "-n",
            "default",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .await
        .unwrap();
    assert!(
        events.contains("LeaderMoved") && events.contains("MemberUpgrading"),
        "{events}"
    );

    // A downgrade or a skipped minor version is refused without touching anything.
    for bad in [old.as_str(), "3.7.0"] {
        env.kubectl(&[
            "patch",
            "etcdcluster",
            "demo",
            "--type=merge",
            "-p",
            &format!("{{\"spec\":{{\"version\":\"{bad}\"}}}}"),
        ])
        .await
        .unwrap();
        wait_for("UpgradeBlocked", Duration::from_secs(30), || async {
            status(&clusters, "demo").await["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "UpgradeBlocked"))
        })
        .await
        .unwrap();
        assert_eq!(status(&clusters, "demo").await["currentVersion"], newest.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_clusters_are_rejected_at_admission() {
    // The CRDs' schema and rules decide; no operator and no pods are needed.
    let env = Env::start_instant_with_crds().await.unwrap();
    let base = "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata: {name: bad, namespace: default}\n";
    let cases = [
        (
            "spec: {size: 10, version: 3.5.16}",
            "spec.size: Invalid value: 10: spec.size in body should be less than or equal to 9",
        ),
        (
            "spec: {size: 0, version: 3.5.16}",
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
        ),
        (
            // Passed the old pattern and panicked the duration parser.
            "spec: {size: 3, version: 3.5.16, memberFailureTimeout: 99999999999999999999h}",
            "spec.memberFailureTimeout: Invalid value: \"99999999999999999999h\": spec.memberFailureTimeout in body should match",
        ),
        (
            "spec: {size: 3, version: 3.5.16, tls: {mode: auto, certificateValidity: 99999999999999999999h}}",
            "spec.tls.certificateValidity: Invalid value: \"99999999999999999999h\": spec.tls.certificateValidity in body should match",
        ),
        (
            "spec: {size: 3, version: 3.5.16, options: {extraArgs: ['-name=evil']}}",
            "extraArgs must not set flags the operator manages or unsafe flags",
        ),
        (
            "spec: {size: 3, version: 3.5.16, options: {extraArgs: ['--log-level=debug', '--force-new-cluster']}}",
            "extraArgs must not set flags the operator manages or unsafe flags",
        ),
        (
            "spec: {size: 3, version: 3.5.16, options: {extraArgs: ['--client-cert-auth=false']}}",
            "extraArgs must not set flags the operator manages or unsafe flags",
        ),
        (
            "spec: {size: 3, version: 3.5.16, options: {extraArgs: ['--initial-cluster-state', 'new']}}",
            "each extraArgs item must be one --flag or --flag=value",
        ),
        (
            "spec: {size: 3, version: v3.5}",
            "spec.version: Invalid value: \"v3.5\": spec.version in body should match",
        ),
        (
            "spec: {size: 3, version: 3.5.16, storage: {emptyDir: {}, volumeClaimTemplate: {size: 1Gi}}}",
            "set at most one of volumeClaimTemplate and emptyDir",
        ),
        (
            "spec: {size: 3, version: 3.5.16, tls: {mode: secrets}}",
            "tls.secrets is required when tls.mode is secrets",
        ),
        (
            "spec: {size: 3, version: 3.5.16, options: {heartbeatIntervalMs: 100, electionTimeoutMs: 200}}",
            "electionTimeoutMs must be at least 5 times heartbeatIntervalMs",
        ),
        (
            "spec: {size: 3, version: 3.5.16, maintenance: {defrag: {schedule: '0 0 3 * * *'}}}",
            "spec.maintenance.defrag.schedule in body should match",
        ),
        (
            "spec: {size: 3, version: 3.5.16, maintenance: {defrag: {schedule: '0 3 * * *', dbSizeThresholdPercent: 101}}}",
            "spec.maintenance.defrag.dbSizeThresholdPercent in body should be less than or equal to 100",
        ),
        (
            "spec: {size: 3, version: 3.5.16, recovery: {after: 5 minutes, fromLatestBackup: true}}",
            "spec.recovery.after in body should match",
        ),
    ];
    for (spec, message) in cases {
        let err = env
            .kubectl_with_input(&["create", "-f", "-"], Some(&format!("{base}{spec}\n")))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{spec}: {err}");
    }
    // Flags the operator leaves alone are accepted.
    env.kubectl_with_input(
        &["create", "-f", "-"],
        Some(&format!(
            "{}spec: {{size: 3, version: 3.5.16, options: {{extraArgs: ['--log-level=debug', '-max-txn-ops=256']}}}}\n",
            base.replace("name: bad", "name: args-ok")
        )),
    )
    .await
    .unwrap();
    // Transition rules: the storage kind and TLS off->on cannot change after creation.
    env.kubectl_with_input(
        &["create", "-f", "-"],
        Some(&format!(
            "{base}spec: {{size: 3, version: 3.5.16, tls: {{mode: disabled}}}}\n"
        )),
    )
    .await
    .unwrap();
    let err = env
        .kubectl(&[
            "patch",
            "etcd",
            "bad",
            "--type=merge",
            "-p",
            r#"{"spec":{"tls":{"mode":"auto"}}}"#,
        ])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TLS cannot be turned on for a running cluster"),
        "{err}"
    );
    let err = env
        .kubectl(&[
            "patch",
            "etcd",
            "bad",
            "--type=merge",
            "-p",
            r#"{"spec":{"storage":{"emptyDir":{}}}}"#,
        ])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot change after creation"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_when_the_operator_is_killed_during_scaling() {
    let env = Env::start().await.unwrap();
    if env
        .require_kubesim("kills the leading operator's process")
        .is_none()
    {
        return;
    }
    // Short leases so each kill hands over quickly.
    env.deploy_default().await.unwrap();
    let patch = r#"[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--lease-duration-seconds=4"}]"#;
    env.kubectl(&[
        "-n",
        "steward-system",
        "patch",
        "deployment",
        "etcd-operator",
        "--type=json",
        "-p",
        patch,
    ])
    .await
    .unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    let clusters = deploy_cluster(&env, "demo", &version, "").await;
    wait_size(&env, &clusters, 3).await;
    let ctl = connect(&env, "demo").await;
    for i in 0..50 {
        assert!(ctl.run(&ctl.members(), &["put", &format!("key-{i:04}"), "v"]).0);
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "steward-system");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client.clone(), "steward-system");
    for size in [5, 3] {
        env.kubectl(&["scale", "etcdcluster", "demo", &format!("--replicas={size}")])
            .await
            .unwrap();
        // Kill the leader at random moments. The Lease still names a killed leader until a
        // standby takes over, so only a holder not killed yet is a live process to kill.
        let mut killed = Vec::new();
        for _ in 0..10 {
            // Random timing, not waiting for anything.
            let pause = 300 + u64::from(rand::random::<u16>() % 2000);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let holder = leases
                .get("etcd-operator-leader")
                .await
                .ok()
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity);
            if let Some(h) = holder
                && !killed.contains(&h)
                && let Some((pod, _)) = h.rsplit_once('_')
                && pods
                    .get_opt(pod)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
            {
                // Fails unless the process is gone afterwards.
                env.kill_container("steward-system", pod, "operator")
                    .await
                    .unwrap_or_else(|e| panic!("killing leader {h}: {e}"));
                killed.push(h);
            }
        }
        assert!(!killed.is_empty(), "no leader was killed while scaling to {size}");
        println!("scaling to {size}: killed leaders {killed:?}");
        wait_size(&env, &clusters, size).await;
        // No orphans: one pod and one claim per member, nothing else.
        let member_pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
        let sel = member_selector("demo");
        let exact = wait_for(
            "exactly the members' pods and claims",
            Duration::from_secs(60),
            || async {
                let n_pods = member_pods
                    .list(&sel)
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .count();
                let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
                    Api::namespaced(env.client.clone(), "default");
                let n_claims = claims
                    .list(&sel)
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .count();
                n_pods as i64 == size && n_claims as i64 == size
            },
        )
        .await;
        env.or_diagnose(
            exact,
            "default",
            "etcdclusters,pods,persistentvolumeclaims,events",
        )
        .await;
        assert_eq!(connect(&env, "demo").await.count("key-"), Some(50));
    }
}

/// (name, id) of every member in a cluster's status.
fn member_ids(st: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = st["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Waits until cluster `name` is Available with exactly the members `want` (same names and
/// IDs), all ready.
async fn wait_same_members(env: &Env, clusters: &Api<DynamicObject>, name: &str, want: &[(String, String)]) {
    let waited = wait_for(
        &format!("{name} back with the same members"),
        Duration::from_secs(240),
        || async {
            let st = status(clusters, name).await;
            member_ids(&st) == want
                && st["readyMembers"] == want.len()
                && st["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Available" && c["status"] == "True")
                })
        },
    )
    .await;
    if let Err(e) = waited {
        panic!(
            "{e}: {:#}\n{}",
            status(clusters, name).await,
            env.diagnostics("default", "etcdclusters,pvc").await
        );
    }
}

/// Members whose pods vanish (two of three at once, all three, the only pod of a size-1
/// cluster) come back from their PVCs with the same IDs and every acknowledged write; the
/// operator never bootstraps an empty cluster in their place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_whose_pods_vanish_come_back_from_their_volumes() {
    let env = Env::start().await.unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    let clusters = deploy_cluster(&env, "demo", &version, "").await;
    wait_size(&env, &clusters, 3).await;
    let before = member_ids(&status(&clusters, "demo").await);
    assert_eq!(before.len(), 3);

    // A writer follows the members' current addresses (recreated pods get new IPs).
    let writer = Writer::start(&env, "demo", "w-").await.unwrap();
    // Data written before the pods go, so there is something to lose.
    wait_for(
        "writes before the pods vanish",
        Duration::from_secs(60),
        || async { writer.acked() >= 10 },
    )
    .await
    .unwrap();

    // Two of three pods at once: quorum is gone until their pods come back from the PVCs.
    let (a, b) = (before[0].0.clone(), before[1].0.clone());
    env.kubectl(&["delete", "pod", &a, &b, "-n", "default", "--wait=false"])
        .await
        .unwrap();
    wait_same_members(&env, &clusters, "demo", &before).await;
    // All three.
    env.kubectl(&[
        "delete",
        "pods",
        "-n",
        "default",
        "-l",
        "app.kubernetes.io/instance=demo,app.kubernetes.io/component=member",
        "--wait=false",
    ])
    .await
    .unwrap();
    wait_same_members(&env, &clusters, "demo", &before).await;
    // Writes go on after the last recovery.
    let recovered_at = writer.acked();
    wait_for("writes after the recovery", Duration::from_secs(60), || async {
        writer.acked() >= recovered_at + 10
    })
    .await
    .unwrap();
    check_acked(&env, "demo", "w-", writer).await;

    // The only pod of a size-1 cluster.
    env.apply(&cluster_yaml(
        "solo",
        1,
        &version,
        "  tls: {mode: disabled}\n  storage: {volumeClaimTemplate: {size: 1Gi}}\n",
    ))
    .await
    .unwrap();
    wait_for("solo ready", Duration::from_secs(120), || async {
        let st = status(&clusters, "solo").await;
        st["readyMembers"] == 1 && member_ids(&st).len() == 1
    })
    .await
    .unwrap();
    let solo = member_ids(&status(&clusters, "solo").await);
    let ctl = connect(&env, "solo").await;
    for i in 0..10 {
        assert!(ctl.run(&ctl.members(), &["put", &format!("s-{i}"), "v"]).0);
    }
    env.kubectl(&["delete", "pod", &solo[0].0, "-n", "default"])
        .await
        .unwrap();
    wait_same_members(&env, &clusters, "solo", &solo).await;
    // The recreated pod has a new IP: look it up on every try (a loaded machine may need a few).
    let last = std::sync::Mutex::new(None);
    let read = wait_for("the solo member's 10 keys", Duration::from_secs(60), || {
        let (env, last) = (&env, &last);
        async move {
            let count = match Etcdctl::connect(env, "solo").await {
                Ok(ctl) => ctl.count("s-"),
                Err(_) => None,
            };
            if let Ok(mut l) = last.lock() {
                *l = count;
            }
            count == Some(10)
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "{read:?}: last count {:?}",
        last.lock().ok().and_then(|l| *l)
    );

    // Paused, a member whose pod is deleted still gets it back (a pause never strands a
    // member), and nothing else changes: the cluster stays Paused.
    env.kubectl(&[
        "patch",
        "etcdcluster",
        "demo",
        "--type=merge",
        "-p",
        "{\"spec\":{\"paused\":true}}",
    ])
    .await
    .unwrap();
    wait_for("demo paused", Duration::from_secs(60), || async {
        condition(&status(&clusters, "demo").await, "Progressing").is_some_and(|c| c["reason"] == "Paused")
    })
    .await
    .unwrap();
    env.kubectl(&["delete", "pod", &before[2].0, "-n", "default"])
        .await
        .unwrap();
    wait_same_members(&env, &clusters, "demo", &before).await;
    let st = status(&clusters, "demo").await;
    assert_eq!(condition(&st, "Progressing").unwrap()["reason"], "Paused", "{st}");

    // A pod stuck in Terminating (a finalizer someone left) holds up only its own member:
    // another member whose pod is deleted meanwhile comes back.
    env.kubectl(&[
        "patch",
        "etcdcluster",
        "demo",
        "--type=merge",
        "-p",
        "{\"spec\":{\"paused\":false}}",
    ])
    .await
    .unwrap();
    let (stuck, other) = (before[0].0.clone(), before[1].0.clone());
    let member_pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    member_pods
        .patch(
            &stuck,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"metadata": {"finalizers": ["steward.dev/test-hold"]}}),
            ),
        )
        .await
        .unwrap();
    env.kubectl(&["delete", "pod", &stuck, "-n", "default", "--wait=false"])
        .await
        .unwrap();
    wait_for("the stuck pod Terminating", Duration::from_secs(60), || async {
        member_pods
            .get_opt(&stuck)
            .await
            .ok()
            .flatten()
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await
    .unwrap();
    let other_uid = member_pods.get(&other).await.unwrap().metadata.uid;
    env.kubectl(&["delete", "pod", &other, "-n", "default", "--wait=false"])
        .await
        .unwrap();
    wait_for(
        "the other member's pod back while one is stuck",
        Duration::from_secs(180),
        || async {
            member_pods.get_opt(&other).await.ok().flatten().is_some_and(|p| {
                p.metadata.uid != other_uid
                    && p.metadata.deletion_timestamp.is_none()
                    && e2e::harness::pod_ready(&p)
            })
        },
    )
    .await
    .unwrap();
    // Released, the stuck member comes back too, with its identity.
    member_pods
        .patch(
            &stuck,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    wait_same_members(&env, &clusters, "demo", &before).await;
}

/// The members' versions as the status reports them (`None` for a member not answering).
fn member_versions(st: &serde_json::Value) -> Vec<Option<String>> {
    st["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| m["version"].as_str().map(String::from))
        .collect()
}

/// A 5-member emptyDir cluster upgraded from the old to the current minor (each restarted
/// member comes back as a new member, its data being gone), with a writer running. The version
/// is set back to the old one while the last member is being replaced: no member may join
/// below a running member, the operator says UpgradeBlocked instead of Stable, and it never
/// reports the old version as current. Set forward again, the upgrade finishes with every
/// member at the target and no acknowledged write lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptydir_upgrade_survives_a_version_set_back_mid_replacement() {
    let env = Env::start().await.unwrap();
    let old = bins::version("ETCD_OLD").unwrap();
    let current = bins::version("ETCD_CURRENT").unwrap();
    env.deploy_operators(&["etcd-operator"]).await.unwrap();
    env.apply(&cluster_yaml(
        "demo",
        5,
        &old,
        "  tls: {mode: disabled}\n  storage: {emptyDir: {}}\n",
    ))
    .await
    .unwrap();
    let clusters = clusters(&env);
    wait_size(&env, &clusters, 5).await;

    // Members are replaced (new pods, new addresses); the writer follows them.
    let writer = Writer::start(&env, "demo", "key-").await.unwrap();
    let set_version = |v: String| {
        let env = &env;
        async move {
            env.kubectl(&[
                "patch",
                "etcdcluster",
                "demo",
                "--type=merge",
                "-p",
                &format!("{{\"spec\":{{\"version\":\"{v}\"}}}}"),
            ])
            .await
            .unwrap();
        }
    };

    set_version(current.clone()).await;
    // The last member is being replaced: four members run the new version and the fifth is
    // missing or not answering yet.
    let waited = wait_for(
        "the last member being replaced",
        Duration::from_secs(400),
        || async {
            let st = status(&clusters, "demo").await;
            let versions = member_versions(&st);
            let new = versions
                .iter()
                .filter(|v| v.as_deref() == Some(current.as_str()))
                .count();
            new == 4 && (versions.len() < 5 || versions.iter().any(Option::is_none))
        },
    )
    .await;
    env.or_diagnose(waited, "default", "etcdclusters").await;
    set_version(old.clone()).await;

    // Blocked, and it says so; nothing joins at the old version, the old version is never
    // reported as the cluster's.
    let seen = std::sync::Mutex::new(serde_json::Value::Null);
    let waited = wait_for(
        "UpgradeBlocked after the set-back",
        Duration::from_secs(120),
        || async {
            let st = status(&clusters, "demo").await;
            assert!(
                !member_versions(&st).contains(&Some(old.clone())),
                "a member runs {old} among {current} members: {st}"
            );
            assert_ne!(st["currentVersion"], old.as_str(), "{st}");
            let blocked = condition(&st, "Progressing")
                .is_some_and(|c| c["status"] == "False" && c["reason"] == "UpgradeBlocked");
            *seen.lock().unwrap() = st;
            blocked
        },
    )
    .await;
    let last = seen.into_inner().unwrap();
    assert!(waited.is_ok(), "{waited:?}: {last}");
    let message = condition(&last, "Progressing").unwrap()["message"].clone();
    assert!(
        message.as_str().unwrap_or_default().contains("downgrade"),
        "{message}"
    );
    // It stays blocked: never Stable with mixed or lower versions. (Pods exist for each
    // member shown; no pod at the old version was started.)
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let members = pods.list(&member_selector("demo")).await.unwrap();
    for p in &members.items {
        let image = p.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default();
        assert!(
            !image.ends_with(&format!(":{old}")) || p.metadata.deletion_timestamp.is_some(),
            "{image}"
        );
    }

    // Forward again: the upgrade finishes with every member at the target.
    set_version(current.clone()).await;
    let waited = wait_for(
        "all five members at the target",
        Duration::from_secs(400),
        || async {
            let st = status(&clusters, "demo").await;
            let versions = member_versions(&st);
            versions.len() == 5
                && versions.iter().all(|v| v.as_deref() == Some(current.as_str()))
                && st["readyMembers"] == 5
                && st["currentVersion"] == current.as_str()
                && condition(&st, "Progressing").is_some_and(|c| c["reason"] == "Stable")
        },
    )
    .await;
    env.or_diagnose(waited, "default", "etcdclusters").await;
    check_acked(&env, "demo", "key-", writer).await;
}

/// One EtcdCluster whose reconcile panics (a test-only trigger: an annotation honoured only
/// when the operator runs with STEWARD_TESTING_PANIC_ON_ANNOTATION=1) does not stop the
/// operator: another cluster is created and scaled meanwhile, the panics are counted as
/// `reason="panic"`, and no operator pod restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_cluster_does_not_stop_the_others() {
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    env.kubectl(&[
        "set",
        "env",
        "-n",
        "steward-system",
        "deployment/etcd-operator",
        "STEWARD_TESTING_PANIC_ON_ANNOTATION=1",
    ])
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "steward-system");
    let operator_pods = || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/name=etcd-operator"))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect::<Vec<_>>()
    };
    let armed = |p: &Pod| {
        p.spec.as_ref().is_some_and(|s| {
            s.containers[0]
                .env
                .iter()
                .flatten()
                .any(|e| e.name == "STEWARD_TESTING_PANIC_ON_ANNOTATION")
        })
    };
    wait_for(
        "both operator replicas armed and ready",
        Duration::from_secs(180),
        || async {
            let ps = operator_pods().await;
            ps.len() == 2 && ps.iter().all(|p| armed(p) && e2e::harness::pod_ready(p))
        },
    )
    .await
    .unwrap();

    let current = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&format!(
        "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: bomb\n  namespace: default\n  annotations: {{etcd.steward.dev/testing-panic: \"yes\"}}\nspec:\n  size: 1\n  version: {current}\n  tls: {{mode: disabled}}\n  storage: {{emptyDir: {{}}}}\n---\napiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata: {{name: demo, namespace: default}}\nspec:\n  size: 1\n  version: {current}\n  tls: {{mode: disabled}}\n  storage: {{emptyDir: {{}}}}\n"
    ))
    .await
    .unwrap();
    let clusters = clusters(&env);
    wait_size(&env, &clusters, 1).await;
    env.kubectl(&["scale", "etcdcluster", "demo", "--replicas=3"])
        .await
        .unwrap();
    wait_size(&env, &clusters, 3).await;

    // The bad cluster got nothing (its reconcile never gets past the panic) ...
    assert_eq!(status(&clusters, "bomb").await, serde_json::Value::Null);
    // ... the panics were counted ...
    let mut panics = 0.0;
    for p in operator_pods().await {
        let ip = p.status.and_then(|s| s.pod_ip).unwrap_or_default();
        let text = reqwest::get(format!("http://{ip}:8080/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        panics += text
            .lines()
            .filter(|l| l.starts_with("steward_reconcile_errors_total{") && l.contains("reason=\"panic\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert!(panics >= 1.0, "no panic counted");
    // ... and no operator process died of it.
    for p in operator_pods().await {
        let restarts: i32 = p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .iter()
            .map(|c| c.restart_count)
            .sum();
        assert_eq!(restarts, 0, "{} restarted", p.metadata.name.unwrap_or_default());
    }
}
