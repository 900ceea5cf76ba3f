//! steward-core's API-facing parts against a real API server (kubesim): the apply path with
//! orphan deletion, status writes, Events, leader election, and an operator binary's whole
//! life (connect, elect, reconcile, serve /readyz and /metrics, release the Lease on SIGTERM),
//! and the runner surviving a panicking reconcile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::bins;
use e2e::harness::{lease_holder, spawn_reporting_port, wait_for};
use e2e::kubesim::Cluster;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use steward_core::apply::{Applier, Desired, OwnedKind};
use steward_core::leader::{Election, Leadership, LeaseConfig};

fn child(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": value}})).unwrap()
}

#[tokio::test]
async fn apply_owned_creates_updates_and_prunes_only_its_own() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let owners: Api<Secret> = Api::namespaced(client.clone(), "default");
    let owner = owners
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let selector = steward_core::labels::owner_selector("widget", "owner", "test-operator");
    let applier = Applier::new(client.clone(), "steward.dev/test-operator");
    let kinds = [OwnedKind::namespaced::<ConfigMap>()];

    let report = applier
        .apply_owned(
            &owner,
            &selector,
            vec![
                Desired::namespaced(&child("a", "1")).unwrap(),
                Desired::namespaced(&child("b", "1")).unwrap(),
            ],
            &kinds,
        )
        .await
        .unwrap();
    assert_eq!(report.applied, ["ConfigMap/a", "ConfigMap/b"]);
    let a = cms.get("a").await.unwrap();
    let refs = a.metadata.owner_references.unwrap();
    assert_eq!(
        (refs[0].uid.as_str(), refs[0].controller),
        (owner.metadata.uid.as_deref().unwrap(), Some(true))
    );
    assert_eq!(a.metadata.labels.unwrap()["app.kubernetes.io/instance"], "owner");
    let mf = a.metadata.managed_fields.unwrap();
    assert!(
        mf.iter()
            .any(|m| m.manager.as_deref() == Some("steward.dev/test-operator")
                && m.operation.as_deref() == Some("Apply"))
    );

    // Someone else's object with the same labels must survive pruning.
    let mut foreign = child("foreign", "x");
    foreign.metadata.labels = Some(selector.clone());
    cms.create(&PostParams::default(), &foreign).await.unwrap();

    // Next desired set: a changed, b gone. Repeated, nothing is sent again: the object is as
    // this applier last wrote it (same content, same resourceVersion).
    for expected in [vec!["ConfigMap/a"], vec![]] {
        let report = applier
            .apply_owned(
                &owner,
                &selector,
                vec![Desired::namespaced(&child("a", "2")).unwrap()],
                &kinds,
            )
            .await
            .unwrap();
        assert_eq!(report.applied, expected);
    }
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "2");
    assert!(cms.get_opt("b").await.unwrap().is_none(), "orphan deleted");
    assert!(
        cms.get_opt("foreign").await.unwrap().is_some(),
        "objects of other owners are left alone"
    );

    // Force: a field another manager took is taken back (the changed resourceVersion tells
    // the applier to send it again).
    cms.patch("a", &PatchParams::apply("someone-else").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"v": "hijacked"}}))).await.unwrap();
    applier
        .apply_owned(
            &owner,
            &selector,
            vec![Desired::namespaced(&child("a", "2")).unwrap()],
            &kinds,
        )
        .await
        .unwrap();
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "2");

    // A name taken by an object nobody (or someone else) controls: nothing is written, not
    // even the other desired objects, and the error names the object.
    cms.create(&PostParams::default(), &child("taken", "theirs"))
        .await
        .unwrap();
    let err = applier
        .apply_owned(
            &owner,
            &selector,
            vec![
                Desired::namespaced(&child("a", "3")).unwrap(),
                Desired::namespaced(&child("taken", "ours")).unwrap(),
            ],
            &kinds,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, steward_core::ApplyError::Conflict(c) if c.len() == 1 && c[0].name == "default/taken"),
        "{err}"
    );
    let taken = cms.get("taken").await.unwrap();
    assert_eq!(taken.data.unwrap()["v"], "theirs");
    assert!(taken.metadata.owner_references.unwrap_or_default().is_empty());
    assert_eq!(
        cms.get("a").await.unwrap().data.unwrap()["v"],
        "2",
        "nothing written"
    );
}

/// A reconcile working from a cached owner that was deleted meanwhile (or replaced by a new
/// object of the same name, or is being deleted) must not create children for it.
#[tokio::test]
async fn nothing_is_created_for_an_owner_that_is_gone() {
    use steward_core::apply::ApplyError;
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let owners: Api<Secret> = Api::namespaced(client.clone(), "default");
    let make = |finalizer: bool| {
        let mut meta = json!({"name": "owner"});
        if finalizer {
            meta["finalizers"] = json!(["test.steward.dev/hold"]);
        }
        serde_json::from_value::<Secret>(json!({ "metadata": meta })).unwrap()
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let selector = steward_core::labels::owner_selector("widget", "owner", "test-operator");
    let applier = Applier::new(client.clone(), "steward.dev/test-operator");
    let kinds = [OwnedKind::namespaced::<ConfigMap>()];
    let (applier, selector, kinds) = (&applier, &selector, &kinds);
    let apply = |owner: Secret| async move {
        applier
            .apply_owned(
                &owner,
                selector,
                vec![Desired::namespaced(&child("a", "1")).unwrap()],
                kinds,
            )
            .await
    };
    let gone = |r: Result<_, ApplyError>| matches!(r, Err(ApplyError::OwnerGone { .. }));

    // Deleted.
    let stale = owners.create(&PostParams::default(), &make(false)).await.unwrap();
    owners.delete("owner", &Default::default()).await.unwrap();
    assert!(gone(apply(stale.clone()).await));
    // Replaced by a new object of the same name: the old UID is still gone.
    let fresh = owners.create(&PostParams::default(), &make(true)).await.unwrap();
    assert!(gone(apply(stale).await));
    // Being deleted (held by a finalizer).
    owners.delete("owner", &Default::default()).await.unwrap();
    assert!(gone(apply(fresh.clone()).await));
    assert!(cms.get_opt("a").await.unwrap().is_none(), "nothing was created");

    // The live owner gets its child, and a later apply that creates nothing asks no more.
    owners
        .patch(
            "owner",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let live = owners.create(&PostParams::default(), &make(false)).await.unwrap();
    apply(live).await.unwrap();
    assert!(cms.get_opt("a").await.unwrap().is_some());
}

#[tokio::test]
async fn events_are_recorded_in_both_api_versions() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let obj = cms
        .create(&PostParams::default(), &child("subject", "1"))
        .await
        .unwrap();
    let recorder =
        steward_core::EventRecorder::new(client.clone(), "steward.dev/test-operator", Some("pod-1".into()));
    recorder
        .warning(&obj, "InvalidSpec", "Validate", "spec.size must be odd")
        .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap().items;
    let ev = list
        .iter()
        .find(|e| e.reason.as_deref() == Some("InvalidSpec"))
        .expect("event recorded");
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.note.as_deref(), Some("spec.size must be odd"));
    assert_eq!(ev.regarding.as_ref().unwrap().name.as_deref(), Some("subject"));
    // kubectl describe reads core/v1 Events.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let list = core
        .list(&ListParams::default().fields("involvedObject.name=subject"))
        .await
        .unwrap()
        .items;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].message.as_deref(), Some("spec.size must be odd"));
}

#[tokio::test]
async fn events_with_different_notes_stay_apart_and_repeats_form_a_series() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let obj = cms
        .create(&PostParams::default(), &child("cluster", "1"))
        .await
        .unwrap();
    let recorder =
        steward_core::EventRecorder::new(client.clone(), "steward.dev/test-operator", Some("pod-1".into()));
    recorder
        .normal(&obj, "MemberAdded", "Scale", "added member a")
        .await;
    recorder
        .normal(&obj, "MemberAdded", "Scale", "added member b")
        .await;
    recorder
        .normal(&obj, "MemberAdded", "Scale", "added member b")
        .await;
    let pod = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some("cluster-c".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    recorder
        .normal_related(&obj, pod, "MemberAdded", "Scale", "added member c")
        .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let mut seen: Vec<(String, i32, Option<String>)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("MemberAdded"))
        .map(|e| {
            (
                e.note.unwrap_or_default(),
                e.series.map_or(1, |s| s.count),
                e.related.and_then(|r| r.name),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("added member a".to_string(), 1, None),
            ("added member b".to_string(), 2, None),
            ("added member c".to_string(), 1, Some("cluster-c".to_string())),
        ]
    );
}

#[tokio::test]
async fn exactly_one_leader_and_takeover_after_release() {
    let c = Cluster::start_temp().await.unwrap();
    let config = |identity: &str| {
        LeaseConfig::new(
            "test-operator-leader",
            "default",
            identity,
            Duration::from_secs(3),
        )
    };
    let a = Election::start(c.client().await.unwrap(), config("a"))
        .await
        .unwrap();
    let b = Election::start(c.client().await.unwrap(), config("b"))
        .await
        .unwrap();
    let leading = |e: &Election| *e.state.borrow() == Leadership::Leading;
    wait_for("a leader", Duration::from_secs(10), || async {
        leading(&a) || leading(&b)
    })
    .await
    .unwrap();
    // Give the other election time to (wrongly) win too: an absence cannot be awaited.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(leading(&a) ^ leading(&b), "exactly one leads");
    let leases: Api<Lease> = Api::namespaced(c.client().await.unwrap(), "default");
    let holder = leases
        .get("test-operator-leader")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let (leader, standby, leader_id) = if leading(&a) { (a, b, "a") } else { (b, a, "b") };
    assert_eq!(holder, leader_id, "the Lease names the leader");
    leader.release().await;
    wait_for("the standby takes over", Duration::from_secs(15), || async {
        leading(&standby)
    })
    .await
    .unwrap();
    standby.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_binary_elects_reconciles_serves_and_releases_on_sigterm() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    // Install the operator's CRDs the way users do: from crdgen's output (it watches both
    // kinds, and is ready only once both caches are filled).
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    for name in ["etcdclusters.etcd.steward.dev", "etcdbackups.etcd.steward.dev"] {
        let text =
            std::fs::read_to_string(bins::repo_root().join(format!("deploy/crds/{name}.yaml"))).unwrap();
        let crd: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        crds.patch(name, &PatchParams::apply("test").force(), &Patch::Apply(crd))
            .await
            .unwrap();
    }

    // With leader election, unlike Env::run_operator.
    let mut cmd = tokio::process::Command::new(bins::own_binary("etcd-operator").unwrap());
    cmd.args([
        "run",
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-duration-seconds",
        "4",
    ])
    .env("KUBECONFIG", c.kubeconfig())
    .env("POD_NAME", "etcd-operator-test")
    .stderr(std::process::Stdio::null());
    let (mut op, port) = spawn_reporting_port(cmd).await.unwrap();
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .ok()
        }
    };
    // Ready once the caches are filled: on a busy machine (CI runs two test binaries at a
    // time) that can take a while; say what it still waited for if it never came.
    let ready = wait_for("/readyz", Duration::from_secs(90), || async {
        get("/readyz").await.is_some_and(|r| r.status() == 200)
    })
    .await;
    if let Err(e) = ready {
        let body = match get("/readyz").await {
            Some(r) => r.text().await.unwrap_or_default(),
            None => "no answer".to_string(),
        };
        panic!("{e}: /readyz says {body}");
    }

    // Ready comes before leading (a standby is ready too): await the Lease, do not read it once.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    wait_for(
        "the operator holds the Lease",
        Duration::from_secs(30),
        || async {
            lease_holder(&client, "default", "etcd-operator-leader")
                .await
                .is_some_and(|h| h.starts_with("etcd-operator-test_"))
        },
    )
    .await
    .unwrap();

    // The controller reconciles: status with observedGeneration and a condition.
    let clusters = e2e::etcd::clusters_api(&client, "default");
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({"apiVersion": "etcd.steward.dev/v1alpha1", "kind": "EtcdCluster", "metadata": {"name": "main"}, "spec": {"size": 3, "version": "3.3.9"}})).unwrap();
    clusters.create(&PostParams::default(), &obj).await.unwrap();
    wait_for("status written", Duration::from_secs(20), || async {
        clusters.get("main").await.unwrap().data["status"]["observedGeneration"] == 1
    })
    .await
    .unwrap();
    let st = clusters.get("main").await.unwrap().data["status"].clone();
    let cond = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap()
        .clone();
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("InvalidSpec"))
    );
    assert!(cond["lastTransitionTime"].is_string());
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for("warning event", Duration::from_secs(10), || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("InvalidSpec"))
    })
    .await
    .unwrap();

    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("steward_reconcile_total{controller=\"etcdcluster\",result=\"success\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("steward_leader{operator=\"etcd-operator\"} 1"),
        "{metrics}"
    );

    // SIGTERM: stop, release the Lease, exit 0 — well within a 30 s grace period.
    let pid = op.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(25), op.wait())
        .await
        .unwrap()
        .unwrap();
    // In time, or the timeout above failed the test already.
    assert!(status.success(), "{status:?}");
    let lease = leases.get("etcd-operator-leader").await.unwrap().spec.unwrap();
    assert!(
        lease.holder_identity.as_deref().is_none_or(str::is_empty),
        "lease released: {lease:?}"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("test reconcile failed")]
struct TestError;

impl steward_core::ReconcileError for TestError {
    fn reason(&self) -> &'static str {
        "test"
    }
}

/// A reconcile that panics on one object is caught by the runner: counted as
/// `reason="panic"`, backed off, and the other objects keep being reconciled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_reconcile_does_not_stop_the_others() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &child("bomb", "1"))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &child("ok", "1"))
        .await
        .unwrap();
    let (trigger, shutdown) = steward_core::controller::Shutdown::new();
    let metrics = steward_core::MetricsBuilder::new("test", "0").build();
    let rt = steward_core::ControllerRuntime {
        client: client.clone(),
        metrics: metrics.clone(),
        readiness: steward_core::server::Readiness::new(),
        namespaces: vec!["default".into()],
        concurrency: 2,
        shutdown,
    };
    // (seen `data.v` of "ok", panics of "bomb")
    let seen = Arc::new((std::sync::Mutex::new(String::new()), AtomicUsize::new(0)));
    let runner = {
        let seen = seen.clone();
        tokio::spawn(async move {
            steward_core::controller::run_namespaced::<ConfigMap, _, _, _, TestError>(
                &rt,
                "test",
                seen,
                |cm: Arc<ConfigMap>, seen: Arc<(std::sync::Mutex<String>, AtomicUsize)>| async move {
                    match cm.metadata.name.as_deref() {
                        Some("bomb") => {
                            seen.1.fetch_add(1, Ordering::SeqCst);
                            panic!("a bad object");
                        }
                        Some("ok") => {}
                        // Other objects in the namespace (kube-root-ca.crt) are reconciled too,
                        // in any order: they must not overwrite what "ok" recorded.
                        _ => return Ok(kube::runtime::controller::Action::await_change()),
                    }
                    let v = cm
                        .data
                        .as_ref()
                        .and_then(|d| d.get("v"))
                        .cloned()
                        .unwrap_or_default();
                    if let Ok(mut s) = seen.0.lock() {
                        *s = v;
                    }
                    Ok(kube::runtime::controller::Action::await_change())
                },
            )
            .await;
        })
    };
    wait_for(
        "the panic and the first reconcile",
        Duration::from_secs(60),
        || async { seen.1.load(Ordering::SeqCst) >= 1 && *seen.0.lock().unwrap() == "1" },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: panics {}, ok saw {:?}",
            seen.1.load(Ordering::SeqCst),
            seen.0.lock().map(|s| s.clone())
        )
    });
    // After the panic, a change to the good object is still reconciled.
    cms.patch(
        "ok",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    wait_for("the change reconciled", Duration::from_secs(60), || async {
        *seen.0.lock().unwrap() == "2"
    })
    .await
    .unwrap();
    // The panic is counted once it has unwound to the runner, which can be after the test saw
    // the reconcile start (the panic hook prints a backtrace first when RUST_BACKTRACE is set).
    let counted = || {
        metrics.encode().unwrap().lines().any(|l| {
            l.starts_with("steward_reconcile_errors_total{")
                && l.contains("reason=\"panic\"")
                && l.contains("controller=\"test\"")
        })
    };
    if wait_for("the panic counted", Duration::from_secs(30), || async {
        counted()
    })
    .await
    .is_err()
    {
        panic!(
            "no reconcile counted with reason=\"panic\":\n{}",
            metrics.encode().unwrap()
        );
    }
    assert!(!runner.is_finished(), "the runner survives the panic");
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
}
