//! kubesim's API semantics, exercised through kube-rs exactly as our operators use it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::harness::{pod_phase, wait_for};
use e2e::kubesim::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

/// The resourceVersion of a list of `cms`: a watch from it sees what happens next.
async fn list_version(cms: &Api<ConfigMap>) -> String {
    cms.list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
}

/// Creates ConfigMap `name` with `k: v`, then changes `k` to `changed`.
async fn create_and_change(cms: &Api<ConfigMap>, name: &str) {
    cms.create(&PostParams::default(), &cm(name)).await.unwrap();
    cms.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn crud_conflicts_generate_name_and_selectors() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some());

    // Optimistic concurrency: an update carrying a stale resourceVersion is refused.
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "1".to_string())].into());
    cms.replace("a", &PostParams::default(), &first).await.unwrap();
    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "2".to_string())].into());
    let err = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
    // Create of an existing name.
    let err = cms.create(&PostParams::default(), &cm("a")).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"));

    // generateName.
    let generated: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = cms.create(&PostParams::default(), &generated).await.unwrap();
    let name = g.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Label and field selectors.
    let labelled: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "l", "labels": {"tier": "web"}}})).unwrap();
    cms.create(&PostParams::default(), &labelled).await.unwrap();
    let by_label = cms
        .list(&ListParams::default().labels("tier in (web,db)"))
        .await
        .unwrap();
    assert_eq!(by_label.items.len(), 1);
    let by_field = cms
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    let not = cms
        .list(&ListParams::default().fields("metadata.name!=a"))
        .await
        .unwrap();
    assert!(not.items.iter().all(|o| o.metadata.name.as_deref() != Some("a")));

    // Pagination.
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("p{i}")))
            .await
            .unwrap();
    }
    let page = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(page.items.len(), 3);
    let token = page.metadata.continue_.clone().unwrap();
    let next = cms
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(next.items.len(), 3);
    assert!(next.items[0].metadata.name > page.items[2].metadata.name);

    // Unknown namespace.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let err = other.create(&PostParams::default(), &cm("x")).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(s) if s.code == 404 && s.message == "namespaces \"nope\" not found")
    );

    // Patches: merge, json, strategic.
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"m": "1"}})),
    )
    .await
    .unwrap();
    let p: Patch<()> =
        Patch::Json(serde_json::from_value(json!([{"op": "add", "path": "/data/j", "value": "2"}])).unwrap());
    cms.patch("a", &PatchParams::default(), &p).await.unwrap();
    let got = cms.get("a").await.unwrap();
    let data = got.data.unwrap();
    assert_eq!((data["m"].as_str(), data["j"].as_str()), ("1", "2"));

    // Namespace defaults: a default ServiceAccount and the root CA ConfigMap appear.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
    )
    .await
    .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    wait_for("default service account", Duration::from_secs(15), || async {
        sas.get_opt("default").await.unwrap().is_some()
    })
    .await
    .unwrap();
}

/// With `watch_delay_ms` set, a watch delivers each event that long after the write (in
/// order), while a GET already shows the write: what a controller trusting its watch copy
/// right after its own write runs into on a real cluster.
#[tokio::test]
async fn watches_can_lag_behind_writes() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    c.server
        .watch_delay_ms
        .store(1500, std::sync::atomic::Ordering::Relaxed);
    let start = list_version(&cms).await;
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &start)
        .await
        .unwrap()
        .boxed();
    let written = std::time::Instant::now();
    create_and_change(&cms, "late").await;
    assert_eq!(cms.get("late").await.unwrap().data.unwrap()["k"], "changed");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(("ADDED", o.data.unwrap()["k"].clone())),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.data.unwrap()["k"].clone())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            written.elapsed() >= Duration::from_millis(1500),
            "an event arrived {:?} after the write",
            written.elapsed()
        );
    }
    assert_eq!(
        seen,
        [("ADDED", "v".to_string()), ("MODIFIED", "changed".to_string())]
    );
}

#[tokio::test]
async fn watcher_sees_changes_in_order_resumes_and_relists_after_gone() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // A raw watch from a resourceVersion sees exactly what happened after it, in order.
    let start = list_version(&cms).await;
    create_and_change(&cms, "w").await;
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &start)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(("ADDED", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ("ADDED", "w".to_string()),
            ("MODIFIED", "w".to_string()),
            ("DELETED", "w".to_string())
        ]
    );

    // A too-old resourceVersion gets 410 Gone as a watch ERROR event.
    c.server.store.compact();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &start)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }

    // kube-runtime's watcher: initial list, then live events; after the server drops every
    // watch and forgets its history, the watcher relists (Init .. InitDone) and carries on.
    let mut w = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut gone_errors = 0;
    let mut next = async || loop {
        match tokio::time::timeout(Duration::from_secs(20), w.try_next())
            .await
            .unwrap()
        {
            Ok(Some(ev)) => return ev,
            Ok(None) => panic!("watcher ended"),
            // The watcher reports the 410 and relists on its next poll.
            Err(watcher::Error::WatchError(s)) if s.code == 410 => gone_errors += 1,
            Err(e) => panic!("{e:?}"),
        }
    };
    while !matches!(next().await, watcher::Event::InitDone) {}
    cms.create(&PostParams::default(), &cm("live")).await.unwrap();
    loop {
        if let watcher::Event::Apply(o) = next().await
            && o.metadata.name.as_deref() == Some("live")
        {
            break;
        }
    }
    // The watcher loses its watch and misses a change while the history is compacted: its
    // next watch gets 410 Gone and it must relist.
    c.server.pause_watches();
    cms.create(&PostParams::default(), &cm("later")).await.unwrap();
    c.server.store.compact();
    c.server.resume_watches();
    let mut relisted = false;
    let mut later_seen = false;
    loop {
        match next().await {
            watcher::Event::Init => relisted = true,
            watcher::Event::InitApply(o) if o.metadata.name.as_deref() == Some("later") => later_seen = true,
            watcher::Event::Apply(o) if o.metadata.name.as_deref() == Some("later") => later_seen = true,
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert!(later_seen, "the relist includes objects created meanwhile");
    assert!(gone_errors >= 1, "the resumed watch was answered with 410 Gone");
    assert!(relisted, "watcher relisted after 410");
}

#[tokio::test]
async fn finalizers_and_garbage_collection_in_all_propagation_modes() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    // Finalizers hold an object with deletionTimestamp set until the last one goes.
    let held: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}))
            .unwrap();
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let o = cms.get("held").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());

    async fn family(cms: &Api<ConfigMap>, secrets: &Api<Secret>, owner: &str) {
        let o = cms.create(&PostParams::default(), &cm(owner)).await.unwrap();
        let child: Secret = serde_json::from_value(json!({"metadata": {"name": format!("{owner}-child"), "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": o.metadata.uid.unwrap(), "controller": true, "blockOwnerDeletion": true}
        ]}})).unwrap();
        secrets.create(&PostParams::default(), &child).await.unwrap();
    }

    // Background: owner gone at once, dependent collected afterwards.
    family(&cms, &secrets, "bg").await;
    cms.delete("bg", &DeleteParams::background()).await.unwrap();
    assert!(cms.get_opt("bg").await.unwrap().is_none());
    wait_for("background GC", Duration::from_secs(15), || async {
        secrets.get_opt("bg-child").await.unwrap().is_none()
    })
    .await
    .unwrap();

    // Foreground: the owner stays (with a foregroundDeletion finalizer) until dependents go.
    family(&cms, &secrets, "fg").await;
    cms.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let o = cms.get_opt("fg").await.unwrap();
    if let Some(o) = o {
        assert!(
            o.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"foregroundDeletion".to_string())
        );
    }
    wait_for("foreground GC", Duration::from_secs(15), || async {
        secrets.get_opt("fg-child").await.unwrap().is_none() && cms.get_opt("fg").await.unwrap().is_none()
    })
    .await
    .unwrap();

    // Orphan: the dependent survives without its owner reference.
    family(&cms, &secrets, "or").await;
    cms.delete("or", &DeleteParams::orphan()).await.unwrap();
    wait_for("orphaning", Duration::from_secs(15), || async {
        cms.get_opt("or").await.unwrap().is_none()
    })
    .await
    .unwrap();
    let child = secrets.get("or-child").await.unwrap();
    assert!(child.metadata.owner_references.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn instant_mode_runs_pods_and_explains_missing_logs() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pod_phase(&pods, "p", "Running", Duration::from_secs(15))
        .await
        .unwrap();
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("kubesim-node"));
    let err = pods.logs("p", &Default::default()).await.unwrap_err();
    assert!(format!("{err}").contains("instant mode"), "{err}");
    // Pods fail validation like the real apiserver.
    let bad: Pod =
        serde_json::from_value(json!({"metadata": {"name": "bad"}, "spec": {"containers": []}})).unwrap();
    let err = pods.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(s) if s.code == 422 && s.message == "Pod \"bad\" is invalid: spec.containers: Required value")
    );
}

#[tokio::test]
async fn anonymous_requests_are_unauthorized() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client_with_token("not-a-token").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let err = cms.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(s) if s.code == 401),
        "unknown tokens get 401"
    );
}
