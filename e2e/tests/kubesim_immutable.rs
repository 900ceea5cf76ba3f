//! Updates that change immutable fields are refused with kube-apiserver's 422 and messages;
//! the allowed changes, and re-sending an unchanged manifest (PUT without the defaulted or
//! server-owned fields, server-side apply), still pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Debug;
use std::time::Duration;

use e2e::harness::{pod_phase, wait_for};
use e2e::kubesim::Cluster;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn obj<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

/// GET, edit the JSON, PUT.
async fn edit<K>(api: &Api<K>, name: &str, change: impl FnOnce(&mut Value)) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let mut v = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
    change(&mut v);
    api.replace(name, &PostParams::default(), &obj(v)).await
}

/// PUT of a fresh manifest: no resourceVersion, no defaulted or server-owned fields.
async fn put<K>(api: &Api<K>, name: &str, manifest: Value) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    api.replace(name, &PostParams::default(), &obj(manifest)).await
}

/// The message of a 422 Invalid.
fn invalid<K: Debug>(r: Result<K, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{}", s.message);
            s.message
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

const POD_FORBIDDEN: &str = "Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn pod_manifest(image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "app", "image": image}]}})
}

#[tokio::test]
async fn pod_specs_are_immutable_but_images() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &obj(pod_manifest("app:1")))
        .await
        .unwrap();
    // The scheduler binds and the kubelet reports status: neither is refused.
    pod_phase(&pods, "p", "Running", Duration::from_secs(15))
        .await
        .unwrap();

    // A fresh manifest with a new image: the defaulted fields are not the client's to repeat,
    // but (as upstream) leaving out the node the pod was bound to is a change.
    let node = pods.get("p").await.unwrap().spec.unwrap().node_name.unwrap();
    let msg = invalid(put(&pods, "p", pod_manifest("app:2")).await);
    assert_eq!(msg, POD_FORBIDDEN);
    let mut manifest = pod_manifest("app:2");
    manifest["spec"]["nodeName"] = json!(node);
    let p = put(&pods, "p", manifest).await.unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.containers[0].image.as_deref(), Some("app:2"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    // activeDeadlineSeconds and added tolerations may change.
    edit(&pods, "p", |v| {
        v["spec"]["activeDeadlineSeconds"] = json!(600);
        v["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]);
    })
    .await
    .unwrap();
    // Labels are metadata.
    edit(&pods, "p", |v| v["metadata"]["labels"] = json!({"tier": "web"}))
        .await
        .unwrap();

    let msg = invalid(
        edit(&pods, "p", |v| {
            v["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
        })
        .await,
    );
    assert_eq!(msg, POD_FORBIDDEN);
    let msg = invalid(edit(&pods, "p", |v| v["spec"]["nodeName"] = json!("elsewhere")).await);
    assert_eq!(msg, POD_FORBIDDEN);
    let msg = invalid(
        edit(&pods, "p", |v| {
            v["spec"]["containers"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "sidecar", "image": "side:1"}));
        })
        .await,
    );
    assert_eq!(
        msg,
        "Pod \"p\" is invalid: spec.containers: Forbidden: pod updates may not add or remove containers"
    );
    let msg = invalid(edit(&pods, "p", |v| v["spec"]["activeDeadlineSeconds"] = json!(900)).await);
    assert_eq!(
        msg,
        "Pod \"p\" is invalid: spec.activeDeadlineSeconds: Invalid value: 900: must be less than or equal to previous value"
    );
    let msg = invalid(edit(&pods, "p", |v| v["spec"]["tolerations"] = json!([])).await);
    assert_eq!(
        msg,
        "Pod \"p\" is invalid: spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
    );
    // Every patch flavour goes through the same check.
    let err = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})),
        )
        .await;
    assert_eq!(invalid(err), POD_FORBIDDEN);
    let err = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Json::<()>(obj(json!([
                {"op": "replace", "path": "/spec/containers/0/name", "value": "renamed"}
            ]))),
        )
        .await;
    assert_eq!(invalid(err), POD_FORBIDDEN);
    let current = pods.get("p").await.unwrap();
    assert_eq!(
        current.spec.unwrap().containers[0].image.as_deref(),
        Some("app:2")
    );
}

#[tokio::test]
async fn server_side_apply_of_unchanged_manifests_succeeds() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let pp = PatchParams::apply("deployer");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.patch("p", &pp, &Patch::Apply(pod_manifest("app:1")))
        .await
        .unwrap();
    pods.patch("p", &pp, &Patch::Apply(pod_manifest("app:1")))
        .await
        .unwrap();
    pods.patch("p", &pp, &Patch::Apply(pod_manifest("app:2")))
        .await
        .unwrap();
    let mut with_port = pod_manifest("app:2");
    with_port["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let err = pods.patch("p", &pp, &Patch::Apply(with_port)).await;
    assert_eq!(invalid(err), POD_FORBIDDEN);

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let set = sts_manifest("db", 1, "1Gi");
    sets.patch("db", &pp, &Patch::Apply(&set)).await.unwrap();
    sets.patch("db", &pp, &Patch::Apply(&set)).await.unwrap();
    let generation = sets.get("db").await.unwrap().metadata.generation;
    assert_eq!(generation, Some(1));
    sets.patch("db", &pp, &Patch::Apply(sts_manifest("db", 3, "1Gi")))
        .await
        .unwrap();
    let err = sets
        .patch("db", &pp, &Patch::Apply(sts_manifest("db", 3, "2Gi")))
        .await;
    assert!(
        invalid(err)
            .starts_with("StatefulSet.apps \"db\" is invalid: spec: Forbidden: updates to statefulset spec")
    );

    let services: Api<Service> = Api::namespaced(client, "default");
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                     "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    let ip = services
        .patch("web", &pp, &Patch::Apply(&svc))
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip;
    let again = services.patch("web", &pp, &Patch::Apply(&svc)).await.unwrap();
    assert_eq!(again.spec.unwrap().cluster_ip, ip);
}

fn sts_manifest(name: &str, replicas: i32, storage: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "db", "image": "db:1"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}}],
        },
    })
}

const STS_FORBIDDEN: &str = "StatefulSet.apps \"db\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

#[tokio::test]
async fn workload_identity_fields_are_immutable() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();

    // StatefulSets: replicas, template, updateStrategy, minReadySeconds may change.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &obj(sts_manifest("db", 1, "1Gi")))
        .await
        .unwrap();
    let mut scaled = sts_manifest("db", 2, "1Gi");
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("db:2");
    scaled["spec"]["minReadySeconds"] = json!(3);
    scaled["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    let s = put(&sets, "db", scaled).await.unwrap();
    assert_eq!(s.spec.replicas, Some(2));
    assert_eq!(s.spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    for change in [
        json!({"spec": {"serviceName": "other"}}),
        json!({"spec": {"podManagementPolicy": "Parallel"}}),
        json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}]}}),
    ] {
        let err = sets
            .patch("db", &PatchParams::default(), &Patch::Merge(&change))
            .await;
        assert_eq!(invalid(err), STS_FORBIDDEN, "{change}");
    }

    // Deployments, ReplicaSets and DaemonSets: the selector.
    let template = |app: &str| json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "c:1"}]}});
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template("web")}})),
        )
        .await
        .unwrap();
    edit(&deployments, "web", |v| {
        v["spec"]["replicas"] = json!(3);
        v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("c:2");
    })
    .await
    .unwrap();
    let msg = invalid(
        edit(&deployments, "web", |v| {
            v["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
            v["spec"]["template"]["metadata"]["labels"] = json!({"app": "api"});
        })
        .await,
    );
    assert_eq!(
        msg,
        "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"api\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    );

    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    replicasets
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "rs"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "rs"}}, "template": template("rs")}})),
        )
        .await
        .unwrap();
    edit(&replicasets, "rs", |v| v["spec"]["replicas"] = json!(1))
        .await
        .unwrap();
    let msg = invalid(
        edit(&replicasets, "rs", |v| {
            v["spec"]["selector"]["matchExpressions"] =
                json!([{"key": "tier", "operator": "In", "values": ["a"]}]);
        })
        .await,
    );
    assert!(msg.starts_with("ReplicaSet.apps \"rs\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"rs\"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"tier\", Operator:\"In\", Values:[]string{\"a\"}}}}: field is immutable"), "{msg}");

    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    daemonsets
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "ds"}, "spec": {"selector": {"matchLabels": {"app": "ds"}}, "template": template("ds")}})),
        )
        .await
        .unwrap();
    let msg = invalid(
        edit(&daemonsets, "ds", |v| {
            v["spec"]["selector"]["matchLabels"]["app"] = json!("x")
        })
        .await,
    );
    assert!(
        msg.starts_with("DaemonSet.apps \"ds\" is invalid: spec.selector: Invalid value: v1.LabelSelector{")
            && msg.ends_with("field is immutable"),
        "{msg}"
    );

    // Jobs: selector and template (suspended, never-started jobs may move their pods).
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let job = |name: &str, suspend: bool| {
        obj::<Job>(
            json!({"metadata": {"name": name}, "spec": {"suspend": suspend, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "c:1"}]}}}}),
        )
    };
    jobs.create(&PostParams::default(), &job("j", false))
        .await
        .unwrap();
    edit(&jobs, "j", |v| v["spec"]["activeDeadlineSeconds"] = json!(600))
        .await
        .unwrap();
    let msg = invalid(
        edit(&jobs, "j", |v| {
            v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("c:2")
        })
        .await,
    );
    assert_eq!(
        msg,
        "Job.batch \"j\" is invalid: spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"
    );
    let msg = invalid(
        edit(&jobs, "j", |v| {
            v["spec"]["selector"]["matchLabels"]["extra"] = json!("x")
        })
        .await,
    );
    assert!(
        msg.starts_with("Job.batch \"j\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{")
            && msg.ends_with("field is immutable"),
        "{msg}"
    );
    // Several errors come back together.
    let msg = invalid(
        edit(&jobs, "j", |v| {
            v["spec"]["completions"] = json!(5);
            v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("c:2");
        })
        .await,
    );
    assert_eq!(
        msg,
        "Job.batch \"j\" is invalid: [spec.completions: Invalid value: 5: field is immutable, spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable]"
    );
    jobs.create(&PostParams::default(), &job("later", true))
        .await
        .unwrap();
    edit(&jobs, "later", |v| {
        v["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        v["spec"]["template"]["metadata"]["annotations"] = json!({"note": "moved"});
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn claims_may_only_grow() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, "default");
    pvcs.create(
        &PostParams::default(),
        &obj(
            json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
    )
    .await
    .unwrap();
    // The volume controller binds the claim with an update of spec.volumeName.
    wait_for("claim bound", Duration::from_secs(15), || async {
        pvcs.get("data")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            .as_deref()
            == Some("Bound")
    })
    .await
    .unwrap();
    let grow = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}});
    pvcs.patch("data", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap();
    // The same size in other units is no change.
    let same = json!({"spec": {"resources": {"requests": {"storage": "2048Mi"}}}});
    pvcs.patch("data", &PatchParams::default(), &Patch::Merge(&same))
        .await
        .unwrap();
    let shrink = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
    let msg = invalid(
        pvcs.patch("data", &PatchParams::default(), &Patch::Merge(&shrink))
            .await,
    );
    assert_eq!(
        msg,
        "PersistentVolumeClaim \"data\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
    );
    let modes = json!({"spec": {"accessModes": ["ReadWriteMany"]}});
    let msg = invalid(
        pvcs.patch("data", &PatchParams::default(), &Patch::Merge(&modes))
            .await,
    );
    assert_eq!(
        msg,
        "PersistentVolumeClaim \"data\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
    );
}

#[tokio::test]
async fn secrets_configmaps_and_services() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}})),
        )
        .await
        .unwrap();
    // A fresh manifest without type: the default is Opaque again.
    put(
        &secrets,
        "s",
        json!({"metadata": {"name": "s"}, "stringData": {"k": "w"}}),
    )
    .await
    .unwrap();
    let msg = invalid(edit(&secrets, "s", |v| v["type"] = json!("example.com/custom")).await);
    assert_eq!(
        msg,
        "Secret \"s\" is invalid: type: Invalid value: \"example.com/custom\": field is immutable"
    );
    secrets
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "locked"}, "immutable": true, "data": {"k": "dg=="}})),
        )
        .await
        .unwrap();
    edit(&secrets, "locked", |v| {
        v["metadata"]["labels"] = json!({"a": "b"})
    })
    .await
    .unwrap();
    let msg = invalid(edit(&secrets, "locked", |v| v["stringData"] = json!({"k": "other"})).await);
    assert_eq!(
        msg,
        "Secret \"locked\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    let err = edit(&secrets, "locked", |v| {
        v["immutable"] = json!(false);
        v["data"]["k"] = json!("dzI=");
    })
    .await;
    assert_eq!(
        invalid(err),
        "Secret \"locked\" is invalid: [immutable: Forbidden: field is immutable when `immutable` is set, data: Forbidden: field is immutable when `immutable` is set]"
    );
    // Each error is a cause with its field and upstream's reason.
    match edit(&secrets, "locked", |v| {
        v["immutable"] = json!(false);
        v["type"] = json!("example.com/custom");
    })
    .await
    {
        Err(kube::Error::Api(s)) => {
            let details = s.details.unwrap();
            let causes: Vec<(&str, &str)> = details
                .causes
                .iter()
                .map(|c| (c.field.as_str(), c.reason.as_str()))
                .collect();
            assert_eq!(
                causes,
                vec![
                    ("type", "FieldValueInvalid"),
                    ("immutable", "FieldValueForbidden")
                ]
            );
            assert_eq!(
                (details.kind.as_str(), details.name.as_str()),
                ("Secret", "locked")
            );
        }
        other => panic!("{other:?}"),
    }

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "open"}, "data": {"k": "v"}})),
    )
    .await
    .unwrap();
    edit(&cms, "open", |v| v["data"]["k"] = json!("w")).await.unwrap();
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "frozen"}, "immutable": true, "data": {"k": "v"}, "binaryData": {"b": "AA=="}})),
    )
    .await
    .unwrap();
    let msg = invalid(edit(&cms, "frozen", |v| v["binaryData"]["b"] = json!("AQ==")).await);
    assert_eq!(
        msg,
        "ConfigMap \"frozen\" is invalid: binaryData: Forbidden: field is immutable when `immutable` is set"
    );
    let msg = invalid(edit(&cms, "frozen", |v| v["immutable"] = json!(false)).await);
    assert_eq!(
        msg,
        "ConfigMap \"frozen\" is invalid: immutable: Forbidden: field is immutable when `immutable` is set"
    );

    let services: Api<Service> = Api::namespaced(client, "default");
    let manifest =
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    let ip = services
        .create(&PostParams::default(), &obj(manifest.clone()))
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    // An update without clusterIP keeps the allocated one.
    let mut changed = manifest;
    changed["spec"]["ports"][0]["targetPort"] = json!(8080);
    let s = put(&services, "web", changed).await.unwrap().spec.unwrap();
    assert_eq!(s.cluster_ip.as_deref(), Some(ip.as_str()));
    assert_eq!(s.cluster_ips, Some(vec![ip.clone()]));
    let msg = invalid(
        edit(&services, "web", |v| {
            v["spec"]["clusterIP"] = json!("10.96.0.200")
        })
        .await,
    );
    assert_eq!(
        msg,
        "Service \"web\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.200\"}: may not change once set"
    );
}
