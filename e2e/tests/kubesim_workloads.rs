//! kubesim's controllers: StatefulSets with claim templates, Deployments rolling through
//! ReplicaSets, Jobs, Endpoints/EndpointSlices, namespace deletion, server-side apply.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::harness::wait_for;
use e2e::kubesim::Cluster;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn sts(replicas: i32, policy: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "replicas": replicas, "serviceName": "db", "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db:1"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }))
    .unwrap()
}

/// Waits until StatefulSet `db` has `n` ready replicas.
async fn db_ready(sets: &Api<StatefulSet>, n: i32, secs: u64) {
    wait_for(
        &format!("{n} ready replicas"),
        Duration::from_secs(secs),
        || async { sets.get("db").await.ok().and_then(|s| s.status?.ready_replicas) == Some(n) },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn statefulset_pods_keep_their_claims() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &sts(3, "OrderedReady"))
        .await
        .unwrap();
    db_ready(&sets, 3, 15).await;
    for i in 0..3 {
        let p = pods.get(&format!("db-{i}")).await.unwrap();
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("db-{i}").as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("db"));
        let claim = spec
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "data")
            .unwrap()
            .persistent_volume_claim
            .unwrap()
            .claim_name;
        assert_eq!(claim, format!("data-db-{i}"));
        let pvc = pvcs.get(&claim).await.unwrap();
        assert_eq!(pvc.status.unwrap().phase.as_deref(), Some("Bound"));
    }
    // A deleted pod comes back with the same name and the same claim.
    let old_uid = pods.get("db-1").await.unwrap().metadata.uid.unwrap();
    let pvc_uid = pvcs.get("data-db-1").await.unwrap().metadata.uid.unwrap();
    pods.delete("db-1", &DeleteParams::default()).await.unwrap();
    wait_for("db-1 recreated", Duration::from_secs(15), || async {
        pods.get_opt("db-1")
            .await
            .unwrap()
            .is_some_and(|p| p.metadata.uid.as_deref() != Some(old_uid.as_str()))
    })
    .await
    .unwrap();
    assert_eq!(
        pvcs.get("data-db-1").await.unwrap().metadata.uid.unwrap(),
        pvc_uid,
        "same claim"
    );
    // Scale through the scale subresource; claims outlive scaled-away pods.
    sets.patch_scale(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_for("scaled to 1", Duration::from_secs(15), || async {
        pods.list(&ListParams::default()).await.unwrap().items.len() == 1
    })
    .await
    .unwrap();
    assert!(
        pvcs.get_opt("data-db-2").await.unwrap().is_some(),
        "claims are retained"
    );
    let status = sets.get("db").await.unwrap().status.unwrap();
    assert_eq!(status.current_revision, status.update_revision);
}

#[tokio::test]
async fn statefulset_rolling_update_respects_partition() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &sts(3, "Parallel"))
        .await
        .unwrap();
    db_ready(&sets, 3, 15).await;
    let image = |p: Pod| p.spec.unwrap().containers[0].image.clone().unwrap();
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}, "template": {"spec": {"containers": [{"name": "db", "image": "db:2"}]}}}})),
    )
    .await
    .unwrap();
    // Done once the status counts both updated ordinals, not after a pause.
    wait_for("ordinals >= 1 updated", Duration::from_secs(15), || async {
        image(pods.get("db-1").await.unwrap()) == "db:2"
            && image(pods.get("db-2").await.unwrap()) == "db:2"
            && sets
                .get("db")
                .await
                .is_ok_and(|s| s.status.and_then(|s| s.updated_replicas) == Some(2))
    })
    .await
    .unwrap();
    assert_eq!(
        image(pods.get("db-0").await.unwrap()),
        "db:1",
        "below the partition stays"
    );
    let st = sets.get("db").await.unwrap().status.unwrap();
    assert_eq!(st.updated_replicas, Some(2));
}

#[tokio::test]
async fn deployment_rolls_pods_on_template_change() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dep: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}})).unwrap();
    deps.create(&PostParams::default(), &dep).await.unwrap();
    wait_for("2 available", Duration::from_secs(15), || async {
        deps.get("web")
            .await
            .unwrap()
            .status
            .and_then(|s| s.available_replicas)
            == Some(2)
    })
    .await
    .unwrap();
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}),
        ),
    )
    .await
    .unwrap();
    wait_for("pods rolled to web:2", Duration::from_secs(15), || async {
        let ps = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items;
        let live: Vec<_> = ps
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        live.len() == 2
            && live
                .iter()
                .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("web:2"))
    })
    .await
    .unwrap();
    assert_eq!(
        rss.list(&ListParams::default()).await.unwrap().items.len(),
        2,
        "old ReplicaSet kept at 0"
    );
}

#[tokio::test]
async fn jobs_complete_and_services_get_endpoints() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job: Job = serde_json::from_value(json!({"metadata": {"name": "once"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}}})).unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_for("job complete", Duration::from_secs(15), || async {
        jobs.get("once").await.unwrap().status.and_then(|s| s.succeeded) == Some(1)
    })
    .await
    .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..2 {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": format!("web-{i}"), "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}]}]}})).unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})).unwrap();
    let created = svcs.create(&PostParams::default(), &svc).await.unwrap();
    assert!(created.spec.unwrap().cluster_ip.unwrap().starts_with("10.96."));
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    wait_for("two ready endpoints", Duration::from_secs(15), || async {
        eps.get_opt("web")
            .await
            .unwrap()
            .and_then(|e| e.subsets)
            .is_some_and(|s| {
                s[0].addresses.as_ref().map_or(0, Vec::len) == 2
                    && s[0].ports.as_ref().unwrap()[0].port == 8080
            })
    })
    .await
    .unwrap();
    let slice = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(slice.len(), 1);
    assert_eq!(
        serde_json::to_value(&slice[0]).unwrap()["endpoints"]
            .as_array()
            .map_or(0, Vec::len),
        2
    );
    // A pod that stops being ready leaves the ready addresses.
    pods.patch_status(
        "web-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
    )
    .await
    .unwrap();
    wait_for("web-0 not ready", Duration::from_secs(15), || async {
        eps.get("web").await.unwrap().subsets.is_some_and(|s| {
            s[0].addresses.as_ref().map_or(0, Vec::len) == 1
                && s[0].not_ready_addresses.as_ref().map_or(0, Vec::len) == 1
        })
    })
    .await
    .unwrap();
    // publishNotReadyAddresses lists it anyway.
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"publishNotReadyAddresses": true}})),
    )
    .await
    .unwrap();
    wait_for("published", Duration::from_secs(15), || async {
        eps.get("web")
            .await
            .unwrap()
            .subsets
            .is_some_and(|s| s[0].addresses.as_ref().map_or(0, Vec::len) == 2)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn namespace_deletion_empties_the_namespace() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "gone"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "gone");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
    )
    .await
    .unwrap();
    nss.delete("gone", &DeleteParams::default()).await.unwrap();
    if let Some(ns) = nss.get_opt("gone").await.unwrap() {
        assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    }
    wait_for("namespace gone", Duration::from_secs(15), || async {
        nss.get_opt("gone").await.unwrap().is_none()
    })
    .await
    .unwrap();
    assert!(
        cms.list(&ListParams::default()).await.unwrap().items.is_empty(),
        "its objects went first"
    );
    // And creating in it again needs the namespace again.
    assert!(matches!(
        cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "y"}})).unwrap()).await.unwrap_err(),
        kube::Error::Api(s) if s.code == 404
    ));
}

#[tokio::test]
async fn server_side_apply_owns_fields() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let apply = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    // Created by apply; managedFields recorded.
    let o = cms
        .patch(
            "ssa",
            &PatchParams::apply("alice"),
            &Patch::Apply(apply(json!({"a": "1", "b": "2"}))),
        )
        .await
        .unwrap();
    let mf = o.metadata.managed_fields.unwrap();
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("alice"), Some("Apply"))
    );
    // Another manager changing alice's field conflicts, unless forced.
    let err = cms
        .patch(
            "ssa",
            &PatchParams::apply("bob"),
            &Patch::Apply(apply(json!({"a": "9"}))),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(s.message.contains("conflict with \"alice\""), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    cms.patch(
        "ssa",
        &PatchParams::apply("bob").force(),
        &Patch::Apply(apply(json!({"a": "9"}))),
    )
    .await
    .unwrap();
    // Alice dropping a field she alone owns removes it; "a" now belongs to bob and stays.
    let o = cms
        .patch(
            "ssa",
            &PatchParams::apply("alice"),
            &Patch::Apply(apply(json!({}))),
        )
        .await
        .unwrap();
    let data = o.data.unwrap_or_default();
    assert_eq!(data.get("a").map(String::as_str), Some("9"));
    assert!(!data.contains_key("b"), "{data:?}");
}
