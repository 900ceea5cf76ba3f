//! RBAC for ServiceAccount tokens: denied with the real 403 shape, allowed once bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::harness::wait_until;
use e2e::kubesim::Cluster;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn service_account_needs_a_role() {
    let c = Cluster::start_temp().await.unwrap();
    let admin = c.client().await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap(),
    )
    .await
    .unwrap();
    // A token Secret, filled by the token controller.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "default");
    let token_secret: Secret = serde_json::from_value(json!({"metadata": {"name": "reader-token", "annotations": {"kubernetes.io/service-account.name": "reader"}}, "type": "kubernetes.io/service-account-token"})).unwrap();
    secrets
        .create(&PostParams::default(), &token_secret)
        .await
        .unwrap();
    let token = wait_until("the token filled in", Duration::from_secs(5), || async {
        let t = secrets
            .get("reader-token")
            .await
            .ok()?
            .data?
            .get("token")?
            .clone();
        String::from_utf8(t.0).ok()
    })
    .await
    .unwrap();
    let as_reader = c.client_with_token(&token).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(as_reader.clone(), "default");
    match cms.list(&ListParams::default()).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
            assert_eq!(
                s.message,
                "configmaps is forbidden: User \"system:serviceaccount:default:reader\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
            );
        }
        other => panic!("{other:?}"),
    }
    let roles: Api<Role> = Api::namespaced(admin.clone(), "default");
    roles.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "cm-reader"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})).unwrap()).await.unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    bindings
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"}, "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]})).unwrap())
        .await
        .unwrap();
    assert!(!cms.list(&ListParams::default()).await.unwrap().items.is_empty());
    // Reading is not writing.
    let err = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 403));
    // Other namespaces stay closed.
    let other: Api<ConfigMap> = Api::namespaced(as_reader, "kube-system");
    assert!(
        matches!(other.list(&ListParams::default()).await.unwrap_err(), kube::Error::Api(s) if s.code == 403)
    );

    // Projected tokens through the TokenRequest API authenticate the same way.
    let tr: serde_json::Value = admin
        .request(
            http_request("/api/v1/namespaces/default/serviceaccounts/reader/token", json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["https://kubernetes.default.svc"]}})),
        )
        .await
        .unwrap();
    let projected = tr["status"]["token"].as_str().unwrap().to_string();
    let cms: Api<ConfigMap> = Api::namespaced(c.client_with_token(&projected).await.unwrap(), "default");
    assert!(!cms.list(&ListParams::default()).await.unwrap().items.is_empty());
}

fn http_request(path: &str, body: serde_json::Value) -> http::Request<Vec<u8>> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap()
}
