//! The etcd-operator never takes over an object it does not own: an EtcdCluster whose client
//! Service name is already used by someone else's Service waits with `Progressing=False
//! ChildConflict` naming that Service and a Warning Event, leaves the Service exactly as it
//! was and creates nothing else; once the Service is gone the cluster starts. Runs against
//! kubesim in instant mode with the operator as a local process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::harness::{Env, wait_for};
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use kube::api::{Api, DynamicObject, ListParams};

fn clusters_api(env: &Env) -> Api<DynamicObject> {
    e2e::etcd::clusters_api(&env.client, "default")
}

fn condition(cluster: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    cluster.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

#[tokio::test]
async fn a_child_name_taken_by_someone_else_is_reported_and_left_alone() {
    let env = Env::start_instant_with_crds().await.unwrap();
    let (_operator, _port) = env.run_operator("etcd-operator").await.unwrap();
    // Someone else's Service, with the name the cluster's client Service would have.
    env.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: clash, namespace: default, labels: {team: payments}}\nspec:\n  selector: {app: payments}\n  ports: [{name: http, port: 8080}]\n",
    )
    .await
    .unwrap();
    let services: Api<Service> = Api::namespaced(env.client.clone(), "default");
    let before = services.get("clash").await.unwrap();

    env.apply(
        "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata: {name: clash, namespace: default}\nspec:\n  size: 1\n  version: 3.5.16\n  tls: {mode: disabled}\n  storage: {volumeClaimTemplate: {size: 1Gi}}\n",
    )
    .await
    .unwrap();
    let clusters = clusters_api(&env);
    let seen = std::sync::Mutex::new(None);
    let waited = wait_for(
        "Progressing=False ChildConflict",
        Duration::from_secs(60),
        || async {
            let c = clusters
                .get("clash")
                .await
                .ok()
                .and_then(|c| condition(&c, "Progressing"));
            let blocked = c
                .as_ref()
                .is_some_and(|(status, reason, _)| status == "False" && reason == "ChildConflict");
            *seen.lock().unwrap() = c;
            blocked
        },
    )
    .await;
    let seen = seen.into_inner().unwrap();
    assert!(waited.is_ok(), "{waited:?}; last Progressing condition: {seen:?}");
    let (_, _, message) = seen.unwrap();
    assert!(
        message.contains("Service default/clash already exists") && message.contains("has no controller"),
        "{message}"
    );

    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    wait_for(
        "a ChildConflict Warning Event",
        Duration::from_secs(30),
        || async {
            events.list(&ListParams::default()).await.is_ok_and(|l| {
                l.items.iter().any(|e| {
                    e.reason.as_deref() == Some("ChildConflict")
                        && e.type_.as_deref() == Some("Warning")
                        && e.involved_object.name.as_deref() == Some("clash")
                })
            })
        },
    )
    .await
    .unwrap();

    // The foreign Service is exactly as it was, and nothing else was created for the cluster.
    let after = services.get("clash").await.unwrap();
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version);
    assert!(after.metadata.owner_references.unwrap_or_default().is_empty());
    assert_eq!(after.spec, before.spec);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let members = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=clash"))
        .await
        .unwrap();
    assert!(members.items.is_empty(), "no member pod while blocked");
    assert!(services.get_opt("clash-peers").await.unwrap().is_none());

    // Once the name is free the cluster is created as usual.
    services.delete("clash", &Default::default()).await.unwrap();
    wait_for(
        "the cluster's own Service and seed pod",
        Duration::from_secs(60),
        || async {
            let own = services.get_opt("clash").await.ok().flatten().is_some_and(|s| {
                s.metadata
                    .owner_references
                    .unwrap_or_default()
                    .iter()
                    .any(|r| r.kind == "EtcdCluster" && r.controller == Some(true))
            });
            let seed = pods
                .list(&ListParams::default().labels("app.kubernetes.io/instance=clash"))
                .await
                .is_ok_and(|l| l.items.len() == 1);
            own && seed
        },
    )
    .await
    .unwrap();
}
