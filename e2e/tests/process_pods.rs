//! kubesim process mode, pod features: environment sources and $(VAR) expansion, init
//! containers in order, configMap/secret/projected/downwardAPI volumes kept in sync,
//! liveness restarts, unknown images, and stopping the kubelet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::harness::{Env, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, LogParams, Patch, PatchParams};
use serde_json::json;

const POD: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {color: blue, size: large}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: default}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: features, namespace: default, labels: {team: a}}
spec:
  initContainers:
  - name: first
    image: kubesim/host
    command: [sh, -c, "echo first > /shared/order"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: second
    image: kubesim/host
    command: [sh, -c, "echo second >> /shared/order"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: main
    image: kubesim/host
    command: [sh, -c]
    args:
    - |
      echo "greeting=$(GREETING) node=$NODE ns=$NS color=$COLOR password=$PASSWORD cfg_size=$CFG_size"
      cat /shared/order
      echo "team=$(cat /info/team) secretfile=$(cat /secret/pw) mode=$(stat -c %a /secret/pw)"
      while true; do echo "color-file=$(cat /cfg/color)"; sleep 1; done
    env:
    - {name: NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: GREETING, value: "hello-$(NAME)"}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: COLOR, valueFrom: {configMapKeyRef: {name: settings, key: color}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    envFrom: [{configMapRef: {name: settings}, prefix: CFG_}]
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: cfg, mountPath: /cfg}
    - {name: secret, mountPath: /secret, readOnly: true}
    - {name: info, mountPath: /info}
  - name: flaky
    image: kubesim/host
    command: [sleep, "1000"]
    livenessProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 1}
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: cfg, configMap: {name: settings}}
  - {name: secret, secret: {secretName: creds, items: [{key: password, path: pw}], defaultMode: 0400}}
  - name: info
    projected:
      sources:
      - downwardAPI: {items: [{path: team, fieldRef: {fieldPath: "metadata.labels['team']"}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: unknown-image, namespace: default}
spec:
  containers: [{name: web, image: "nginx:1.27"}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_features_in_process_mode() {
    let env = Env::start().await.unwrap();
    let Some(cluster) = env.kubesim() else { return };
    env.apply(POD).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let logs = |c: &'static str| {
        let pods = pods.clone();
        async move {
            pods.logs(
                "features",
                &LogParams {
                    container: Some(c.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_default()
        }
    };
    wait_for("main output", Duration::from_secs(30), || async {
        logs("main").await.contains("color-file=")
    })
    .await
    .unwrap();
    let out = logs("main").await;
    assert!(
        out.contains(
            "greeting=hello-features node=kubesim-node ns=default color=blue password=s3cret cfg_size=large"
        ),
        "{out}"
    );
    assert!(
        out.contains("first\nsecond\n"),
        "init containers ran in order: {out}"
    );
    assert!(out.contains("team=a secretfile=s3cret mode=400"), "{out}");

    // A ConfigMap change reaches the mounted file without a restart.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"color": "green"}})),
    )
    .await
    .unwrap();
    wait_for("the new color in the file", Duration::from_secs(20), || async {
        logs("main").await.contains("color-file=green")
    })
    .await
    .unwrap();

    // A failing liveness probe restarts its container, the other keeps running.
    wait_for("liveness restarts", Duration::from_secs(30), || async {
        pods.get("features")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.container_statuses)
            .is_some_and(|cs| {
                let by = |n: &str| cs.iter().find(|c| c.name == n).map_or(0, |c| c.restart_count);
                by("flaky") >= 1 && by("main") == 0
            })
    })
    .await
    .unwrap();

    // Unknown images wait with a clear reason.
    wait_for("ErrImagePull", Duration::from_secs(20), || async {
        pods.get("unknown-image")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.container_statuses)
            .is_some_and(|cs| {
                cs[0]
                    .state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .is_some_and(|w| {
                        w.reason.as_deref() == Some("ErrImagePull")
                            && w.message
                                .as_deref()
                                .unwrap_or_default()
                                .contains("not in kubesim's image table")
                    })
            })
    })
    .await
    .unwrap();

    // Stopping the kubelet marks the node not ready; restarting it brings it back.
    let nodes: Api<Node> = Api::all(env.client.clone());
    let ready = || async {
        nodes
            .get("kubesim-node")
            .await
            .unwrap()
            .status
            .unwrap()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .status
    };
    cluster.stop_kubelet().unwrap();
    assert_eq!(ready().await, "Unknown");
    cluster.start_kubelet().unwrap();
    assert_eq!(ready().await, "True");
}
