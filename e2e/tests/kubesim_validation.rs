//! kube-apiserver's validation of every kind in kubesim: names per kind, label keys and
//! values, annotation size, ConfigMap/Secret size and the request body limit, with the
//! upstream status codes and messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::kubesim::Cluster;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

fn api_error(r: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(ae)) => (ae.code, ae.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_labels_annotations_and_sizes_are_validated() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let pp = PostParams::default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |v: serde_json::Value| serde_json::from_value::<ConfigMap>(v).unwrap();

    // Namespaces are DNS-1123 labels (no dots), Services DNS-1035 labels.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let (code, msg) = api_error(
        namespaces
            .create(
                &pp,
                &serde_json::from_value(json!({"metadata": {"name": "team.a"}})).unwrap(),
            )
            .await,
    );
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "Namespace \"team.a\" is invalid: metadata.name: Invalid value: \"team.a\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let (code, msg) = api_error(
        services
            .create(
                &pp,
                &serde_json::from_value(
                    json!({"metadata": {"name": "1st"}, "spec": {"ports": [{"port": 80}]}}),
                )
                .unwrap(),
            )
            .await,
    );
    assert_eq!(code, 422);
    assert!(msg.contains("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"), "{msg}");
    // ConfigMap names are subdomains: dots are fine.
    cms.create(&pp, &cm(json!({"metadata": {"name": "app.settings"}})))
        .await
        .unwrap();

    // Label keys and values.
    let (code, msg) = api_error(
        cms.create(
            &pp,
            &cm(json!({"metadata": {"name": "l", "labels": {"team": "a b", "x/y/z": "1"}}})),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(
        msg.starts_with("ConfigMap \"l\" is invalid: [metadata.labels: "),
        "{msg}"
    );
    assert!(msg.contains("Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters"), "{msg}");
    assert!(
        msg.contains("Invalid value: \"x/y/z\": a qualified name must consist of"),
        "{msg}"
    );
    let (_, msg) = api_error(
        cms.create(
            &pp,
            &cm(json!({"metadata": {"name": "l", "labels": {"k": "v".repeat(64)}}})),
        )
        .await,
    );
    assert!(msg.ends_with("must be no more than 63 characters"), "{msg}");
    cms.create(
        &pp,
        &cm(json!({"metadata": {"name": "l", "labels": {"app.kubernetes.io/name": "web", "empty": ""}}})),
    )
    .await
    .unwrap();

    // Annotations: 256 KiB in total.
    let (code, msg) = api_error(
        cms.create(
            &pp,
            &cm(json!({"metadata": {"name": "a", "annotations": {"note": "x".repeat(262_144)}}})),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "ConfigMap \"a\" is invalid: metadata.annotations: Too long: must have at most 262144 bytes"
    );

    // ConfigMap data: 1 MiB.
    let (code, msg) = api_error(
        cms.create(
            &pp,
            &cm(json!({"metadata": {"name": "big"}, "data": {"blob": "x".repeat(1_048_577)}})),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "ConfigMap \"big\" is invalid: []: Too long: must have at most 1048576 bytes"
    );
    cms.create(
        &pp,
        &cm(json!({"metadata": {"name": "big"}, "data": {"blob": "x".repeat(1_000_000)}})),
    )
    .await
    .unwrap();

    // Request bodies over 3 MiB are refused before decoding.
    let (code, msg) = api_error(
        cms.create(
            &pp,
            &cm(json!({"metadata": {"name": "huge"}, "data": {"blob": "x".repeat(3 * 1024 * 1024)}})),
        )
        .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (413, "Request entity too large: limit is 3145728")
    );
}

/// `fieldValidation` for built-in kinds: Strict refuses fields the kind does not have (kubectl's
/// default), Warn drops them with a warning, Ignore drops them silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_of_built_in_kinds() {
    let c = Cluster::start_temp().await.unwrap();
    let k = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(e2e::bins::kubectl().unwrap())
            .args(args)
            .env("KUBECONFIG", c.kubeconfig())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let deployment = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  replica: 2\n  selector: {{matchLabels: {{app: x}}}}\n  template:\n    metadata: {{labels: {{app: x}}}}\n    spec:\n      containers: [{{name: c, image: busybox:1.36, imagePolicy: Always}}]\n"
        )
    };
    let (ok, err) = k(&["create", "-f", "-"], &deployment("strict"));
    assert!(!ok);
    assert!(
        err.contains("Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replica\", unknown field \"spec.template.spec.containers[0].imagePolicy\""),
        "{err}"
    );
    let (ok, err) = k(&["create", "--validate=warn", "-f", "-"], &deployment("warned"));
    assert!(ok, "{err}");
    assert!(err.contains("Warning: unknown field \"spec.replica\""), "{err}");
    let (ok, err) = k(&["create", "--validate=false", "-f", "-"], &deployment("ignored"));
    assert!(ok && !err.contains("Warning"), "{err}");
    let client = c.client().await.unwrap();
    let stored: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client, "default");
    let d = serde_json::to_value(stored.get("warned").await.unwrap()).unwrap();
    assert!(
        d["spec"].get("replica").is_none(),
        "unknown fields are dropped: {d}"
    );
    // Inline (embedded) fields such as a volume's source are known.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: busybox:1.36, readinessProbe: {exec: {command: [true]}}}]\n  volumes: [{name: v, emptyDir: {}}, {name: s, secret: {secretName: x}}]\n";
    let (ok, err) = k(&["create", "-f", "-"], pod);
    assert!(ok, "{err}");
}

/// Field selectors work only on the fields a kind supports; others get upstream's 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_selectors_are_limited_per_kind() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&kube::api::ListParams::default().fields("spec.nodeName=kubesim-node,status.phase!=Failed"))
        .await
        .unwrap();
    let (code, msg) = api_error(
        pods.list(&kube::api::ListParams::default().fields("spec.containers.image=x"))
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (400, "field label not supported: spec.containers.image")
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.list(&kube::api::ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    let (code, msg) = api_error(
        cms.list(&kube::api::ListParams::default().fields("data.a=1"))
            .await,
    );
    assert_eq!((code, msg.as_str()), (400, "field label not supported: data.a"));
}
