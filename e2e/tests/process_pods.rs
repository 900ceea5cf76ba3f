//! kubesim process mode, pod features: environment sources and $(VAR) expansion, init
//! containers in order, configMap/secret/projected/downwardAPI volumes kept in sync,
//! liveness restarts, unknown images, and stopping the kubelet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::harness::{Env, wait_for, wait_until};
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
    let Some(cluster) = env.require_kubesim("checks kubesim's kubelet (fault injection, pod processes)")
    else {
        return;
    };
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

const USERS: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: plain, namespace: default}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: grouped, namespace: default}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Secret
metadata: {name: key, namespace: default}
stringData: {pw: hidden}
---
apiVersion: v1
kind: Pod
metadata: {name: root-refused, namespace: default}
spec:
  securityContext: {runAsNonRoot: true}
  containers: [{name: app, image: kubesim/host, command: [sleep, "1000"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: no-fsgroup, namespace: default}
spec:
  securityContext: {runAsUser: 1000}
  containers:
  - name: app
    image: kubesim/host
    command: [sh, -c, 'echo "user=$(id -u)"; (touch /data/x && echo pvc=wrote) || echo pvc=denied; (cat /secret/pw && echo) || echo secret=denied; sleep 1000']
    volumeMounts: [{name: data, mountPath: /data}, {name: secret, mountPath: /secret}]
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: plain}}
  - {name: secret, secret: {secretName: key, defaultMode: 0400}}
---
apiVersion: v1
kind: Pod
metadata: {name: fsgroup, namespace: default}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000, supplementalGroups: [3000]}
  containers:
  - name: app
    image: kubesim/host
    command: [sh, -c, 'echo "groups=$(id -G)"; touch /data/x && echo "pvc=wrote group=$(stat -c %g /data/x) dir=$(stat -c %a /data)"; echo "secret=$(cat /secret/pw)"; (touch /x 2>/dev/null && echo root=writable) || echo root=readonly; (touch /tmp/x 2>/dev/null && echo tmp=writable) || echo tmp=readonly; touch /scratch/x && echo scratch=wrote; sleep 1000']
    securityContext: {readOnlyRootFilesystem: true}
    volumeMounts: [{name: data, mountPath: /data}, {name: secret, mountPath: /secret}, {name: scratch, mountPath: /scratch}]
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: grouped}}
  - {name: secret, secret: {secretName: key, defaultMode: 0400}}
  - {name: scratch, emptyDir: {}}
"#;

/// The kubelet's user handling: runAsNonRoot refuses a root container, a non-root user cannot
/// write a fresh volume or read a 0400 Secret without fsGroup, fsGroup gives both (and joins
/// the supplementary groups), readOnlyRootFilesystem leaves only volumes writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_users_and_fs_group_like_the_kubelet() {
    let env = Env::start().await.unwrap();
    if env
        .require_kubesim("checks kubesim's kubelet: users and fsGroup of pod processes")
        .is_none()
    {
        return;
    }
    env.apply(USERS).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let logs = |name: &'static str| {
        let pods = pods.clone();
        async move { pods.logs(name, &LogParams::default()).await.unwrap_or_default() }
    };
    let waiting = |name: &'static str| {
        let pods = pods.clone();
        async move {
            pods.get(name)
                .await
                .ok()
                .and_then(|p| p.status?.container_statuses?.into_iter().next()?.state?.waiting)
                .map(|w| (w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
        }
    };
    wait_for("runAsNonRoot refusal", Duration::from_secs(30), || async {
        waiting("root-refused").await.is_some_and(|(r, m)| {
            r == "CreateContainerConfigError"
                && m.starts_with(
                    "container has runAsNonRoot and image will run as root (pod: \"root-refused_default(",
                )
        })
    })
    .await
    .unwrap();

    wait_for("no-fsgroup output", Duration::from_secs(30), || async {
        logs("no-fsgroup").await.contains("secret=")
    })
    .await
    .unwrap();
    let out = logs("no-fsgroup").await;
    assert!(out.contains("user=1000"), "{out}");
    assert!(out.contains("pvc=denied"), "a fresh volume is root's: {out}");
    assert!(
        out.contains("secret=denied"),
        "a 0400 Secret file is root's: {out}"
    );

    wait_for("fsgroup output", Duration::from_secs(30), || async {
        logs("fsgroup").await.contains("scratch=")
    })
    .await
    .unwrap();
    let out = logs("fsgroup").await;
    assert!(out.contains("groups=1000 2000 3000"), "{out}");
    assert!(out.contains("pvc=wrote group=2000 dir=2775"), "{out}");
    assert!(out.contains("secret=hidden"), "{out}");
    assert!(
        out.contains("root=readonly") && out.contains("tmp=readonly"),
        "{out}"
    );
    assert!(out.contains("scratch=wrote"), "{out}");
}

/// Like the kubelet, every container has a PID namespace of its own (it sees only its own
/// processes, and it is PID 1 there); with `shareProcessNamespace` the pod's containers see
/// each other's processes, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_namespaces_per_container_or_shared_by_the_pod() {
    let env = Env::start().await.unwrap();
    if env
        .require_kubesim("checks kubesim's kubelet: process namespaces of containers")
        .is_none()
    {
        return;
    }
    let pod = |name: &str, shared: bool| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  shareProcessNamespace: {shared}
  containers:
  - name: sleeper
    image: kubesim/host
    command: [sleep, "1000"]
  - name: looker
    image: kubesim/host
    command: [sh, -c]
    args:
    - |
      while true; do
        echo "self=$$ sleepers=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sleep$')"
        sleep 1
      done
"#
        )
    };
    env.apply(&pod("apart", false)).await.unwrap();
    env.apply(&pod("together", true)).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let last_line = |name: &'static str| {
        let pods = pods.clone();
        async move {
            pods.logs(
                name,
                &LogParams {
                    container: Some("looker".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_default()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
        }
    };
    // Apart: the looker is PID 1 of its own namespace and sees no sleep of its pod's other
    // container (its own `sleep 1` may be running: at most one). Together: it sees the
    // sleeper's, and the shell is not PID 1 (the pod's namespace holder is).
    for (name, want) in [("apart", "self=1 "), ("together", "")] {
        let seen = std::sync::Mutex::new(String::new());
        let ok = wait_for(
            &format!("{name}'s looker output"),
            Duration::from_secs(60),
            || async {
                let line = last_line(name).await;
                let done = line.starts_with("self=") && line.contains(want);
                *seen.lock().unwrap() = line;
                done
            },
        )
        .await;
        assert!(ok.is_ok(), "{name}: {:?}", seen.lock().unwrap());
    }
    let count = |line: &str| -> usize {
        line.rsplit("sleepers=")
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(usize::MAX)
    };
    let apart = last_line("apart").await;
    assert!(
        count(&apart) <= 1,
        "a container saw another container's processes: {apart}"
    );
    let together = last_line("together").await;
    println!("apart: {apart}\ntogether: {together}");
    assert!(!together.starts_with("self=1 "), "{together}");
    assert!(
        count(&together) >= 1,
        "the shared namespace shows the sleeper: {together}"
    );
    // Nothing of other pods: with both pods running there are at least two `sleep 1000` on
    // the machine, yet the shared namespace shows only its own: the sleeper and the
    // namespace holder (the looker counts before its own `sleep 1` starts).
    assert!(count(&together) <= 2, "{together}");
}

const MESSAGES: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: wrote, namespace: default}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 1000}
  initContainers:
  - {name: first, image: kubesim/host, command: [sh, -c, 'echo -n "init done" > /dev/termination-log']}
  containers:
  - {name: app, image: kubesim/host, command: [sh, -c, 'echo noise; echo -n "{\"ok\":true}" > /tmp/msg; cp /tmp/msg /work/out'], terminationMessagePath: /work/out}
---
apiVersion: v1
kind: Pod
metadata: {name: failed, namespace: default}
spec:
  restartPolicy: Never
  containers:
  - {name: logs, image: kubesim/host, command: [sh, -c, 'echo one; echo "two: checksum mismatch" >&2; exit 3'], terminationMessagePolicy: FallbackToLogsOnError}
  - {name: file, image: kubesim/host, command: [sh, -c, 'echo ignored; exit 4']}
"#;

/// Termination messages as the kubelet reports them: what a container wrote to its
/// terminationMessagePath (default /dev/termination-log, writable by a non-root user), or,
/// with FallbackToLogsOnError, a failed container's last log lines; with the default policy
/// a failed container that wrote nothing has no message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_messages_from_the_file_or_the_logs() {
    let env = Env::start().await.unwrap();
    if env
        .require_kubesim("checks kubesim's kubelet: termination messages")
        .is_none()
    {
        return;
    }
    env.apply(MESSAGES).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let terminated = |pod: &'static str| {
        let pods = pods.clone();
        async move {
            let status = pods.get(pod).await.ok()?.status?;
            let all: Vec<_> = status
                .init_container_statuses
                .unwrap_or_default()
                .into_iter()
                .chain(status.container_statuses.unwrap_or_default())
                .collect();
            all.iter()
                .map(|c| {
                    let t = c.state.as_ref()?.terminated.as_ref()?;
                    Some((c.name.clone(), t.exit_code, t.message.clone()))
                })
                .collect::<Option<Vec<_>>>()
        }
    };
    let wrote = match wait_until("pod wrote finished", Duration::from_secs(30), || {
        terminated("wrote")
    })
    .await
    {
        Ok(w) => w,
        Err(e) => panic!("{e}: {:?}", pods.get("wrote").await.map(|p| p.status)),
    };
    assert_eq!(
        wrote,
        [
            ("first".to_string(), 0, Some("init done".to_string())),
            ("app".to_string(), 0, Some(r#"{"ok":true}"#.to_string())),
        ]
    );
    let failed = wait_until("pod failed finished", Duration::from_secs(30), || {
        terminated("failed")
    })
    .await
    .unwrap();
    assert_eq!(
        failed,
        [
            (
                "logs".to_string(),
                3,
                Some("one\ntwo: checksum mismatch".to_string())
            ),
            ("file".to_string(), 4, None),
        ]
    );
}
