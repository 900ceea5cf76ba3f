//! Our operators as pods from deploy/ (our RBAC, in-cluster config) in kubesim process mode:
//! Ready, metrics through their Service, leader election with failover, a missing RBAC verb
//! visible as 403 in the logs, and container restarts and readiness driving endpoints.
//! With E2E_KUBECONFIG set the deploy/metrics/leader tests run against that cluster; the
//! fault-injection parts need kubesim.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::harness::{self, Env, deployment_ready, lease_holder, pod_ready, wait_for};
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams};

const NS: &str = "steward-system";

/// deploy/default with both operators rolled out. Not `Env::with_operators`: that makes
/// `default` enforce "restricted", and these tests run plain pods there.
async fn deployed() -> Env {
    let env = Env::start().await.unwrap();
    env.deploy_default().await.unwrap();
    for op in ["etcd-operator", "prometheus-operator"] {
        deployment_ready(&env.client, NS, op, 2, Duration::from_secs(90))
            .await
            .unwrap();
    }
    env
}

async fn holder(env: &Env, lease: &str) -> Option<String> {
    lease_holder(&env.client, NS, lease).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_run_from_deploy_with_metrics_and_leader_failover() {
    let env = deployed().await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);

    // Exactly one holder per operator, and it is one of that operator's pods.
    for op in ["etcd-operator", "prometheus-operator"] {
        wait_for("a leader", Duration::from_secs(30), || async {
            holder(&env, &format!("{op}-leader")).await.is_some()
        })
        .await
        .unwrap();
        let h = holder(&env, &format!("{op}-leader")).await.unwrap();
        let mine = pods
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/name={op}")))
            .await
            .unwrap()
            .items;
        assert_eq!(mine.len(), 2);
        assert!(
            mine.iter()
                .any(|p| h.starts_with(&format!("{}_", p.metadata.name.as_deref().unwrap()))),
            "{h} is one of {op}'s pods"
        );
    }

    // /metrics through the Service, from inside the cluster.
    let probe = r#"
apiVersion: v1
kind: Pod
metadata: {name: metrics-check, namespace: default}
spec:
  restartPolicy: Never
  containers:
  - name: fetch
    image: kubesim/host
    command: [python3, -c, "import urllib.request; print(urllib.request.urlopen('http://etcd-operator-metrics.steward-system.svc.cluster.local:8080/metrics', timeout=5).read().decode())"]
"#;
    env.apply(probe).await.unwrap();
    let checks: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    wait_for("metrics fetched", Duration::from_secs(60), || async {
        checks
            .get("metrics-check")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.phase)
            .as_deref()
            == Some("Succeeded")
    })
    .await
    .unwrap();
    let out = checks.logs("metrics-check", &LogParams::default()).await.unwrap();
    assert!(
        out.contains("steward_build_info{") && out.contains("operator=\"etcd-operator\""),
        "{out}"
    );

    // Kill the leader's process: the standby takes over within the lease duration (15 s).
    if env
        .require_kubesim("kills the leading operator's process")
        .is_none()
    {
        return;
    }
    let leader = holder(&env, "etcd-operator-leader").await.unwrap();
    let leader_pod = leader.rsplit_once('_').unwrap().0.to_string();
    let started = Instant::now();
    env.kill_container(NS, &leader_pod, "operator").await.unwrap();
    // A live process takes over once the dead leader's Lease expires: usually the standby;
    // the killed container restarts with a new identity and may win the race instead.
    wait_for(
        "another process to take over",
        Duration::from_secs(30),
        || async {
            holder(&env, "etcd-operator-leader")
                .await
                .is_some_and(|h| h != leader)
        },
    )
    .await
    .unwrap();
    let took = started.elapsed();
    eprintln!("leader failover took {took:?}");
    assert!(took < Duration::from_secs(25), "took {took:?}");
    // The killed container restarts (restartPolicy Always) and serves again.
    wait_for("the old leader restarted", Duration::from_secs(30), || async {
        pods.get(&leader_pod).await.ok().is_some_and(|p| {
            let restarted = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| cs[0].restart_count >= 1);
            restarted && pod_ready(&p)
        })
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_rbac_verb_shows_as_403_in_the_logs() {
    // Works on any cluster: the next deploy_default puts the rules back.
    let env = deployed().await;
    // Take `list` away from the etcd-operator's own API.
    let patch = r#"[{"op": "replace", "path": "/rules/0/verbs", "value": ["get", "watch"]}]"#;
    env.kubectl(&[
        "patch",
        "clusterrole",
        "steward-etcd-operator",
        "--type=json",
        "-p",
        patch,
    ])
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app.kubernetes.io/name=etcd-operator"),
    )
    .await
    .unwrap();
    let seen = std::sync::Mutex::new(String::new());
    wait_for(
        "403 in a new etcd-operator pod's log",
        Duration::from_secs(60),
        || async {
            for p in pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=etcd-operator"))
                .await
                .unwrap()
                .items
            {
                if p.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if let Ok(log) = pods
                    .logs(p.metadata.name.as_deref().unwrap(), &LogParams::default())
                    .await
                    && log.contains("403")
                {
                    *seen.lock().unwrap() = log;
                    return true;
                }
            }
            false
        },
    )
    .await
    .unwrap();
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.contains("etcdclusters.etcd.steward.dev is forbidden") && seen.contains("cannot list resource"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_readiness_drive_endpoints() {
    let env = Env::start().await.unwrap();
    let Some(cluster) = env.require_kubesim("kills a container and cuts a pod's network") else {
        return;
    };
    env.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  containers:
  - name: web
    image: kubesim/host
    command: [sh, -c, "touch /data/ready; exec python3 -m http.server 8000 --directory /data"]
    ports: [{name: http, containerPort: 8000}]
    readinessProbe:
      exec: {command: [test, -f, /data/ready]}
      periodSeconds: 1
      failureThreshold: 1
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
"#,
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(env.client.clone(), "default");
    let ready_addresses = || async {
        eps.get_opt("web")
            .await
            .ok()
            .flatten()
            .and_then(|e| e.subsets)
            .map_or(0, |s| {
                s.iter()
                    .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
            })
    };
    wait_for("web ready in endpoints", Duration::from_secs(30), || async {
        ready_addresses().await == 1
    })
    .await
    .unwrap();
    // The server answers on the pod IP from the host.
    let ip = pods.get("web").await.unwrap().status.unwrap().pod_ip.unwrap();
    let body = reqwest::get(format!("http://{ip}:8000/ready")).await.unwrap();
    assert_eq!(body.status(), 200);

    // Kill the process: restarted (restartPolicy Always), restartCount and lastState recorded.
    env.kill_container("default", "web", "web").await.unwrap();
    wait_for("restart", Duration::from_secs(30), || async {
        pods.get("web")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.container_statuses)
            .is_some_and(|cs| {
                cs[0].restart_count == 1
                    && cs[0]
                        .last_state
                        .as_ref()
                        .and_then(|l| l.terminated.as_ref())
                        .is_some()
                    && cs[0].ready
            })
    })
    .await
    .unwrap();

    // Readiness failing (the file is gone) takes the pod out of the endpoints; back in after.
    let uid = pods.get("web").await.unwrap().metadata.uid.unwrap();
    let data = cluster
        .kubeconfig()
        .parent()
        .unwrap()
        .join("kubelet/pods")
        .join(&uid)
        .join("volumes/data/ready");
    std::fs::remove_file(&data).unwrap();
    wait_for(
        "web out of the ready endpoints",
        Duration::from_secs(20),
        || async { ready_addresses().await == 0 },
    )
    .await
    .unwrap();
    assert!(!pod_ready(&pods.get("web").await.unwrap()));
    std::fs::write(&data, "").unwrap();
    wait_for("web back", Duration::from_secs(20), || async {
        ready_addresses().await == 1
    })
    .await
    .unwrap();

    // Cutting the network makes the pod unreachable; restoring it brings it back.
    cluster.cut_pod_network("default", "web").unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(
        client
            .get(format!("http://{ip}:8000/ready"))
            .send()
            .await
            .is_err()
    );
    cluster.restore_pod_network("default", "web").unwrap();
    wait_for("reachable again", Duration::from_secs(10), || async {
        client.get(format!("http://{ip}:8000/ready")).send().await.is_ok()
    })
    .await
    .unwrap();
    let _ = harness::pod_ready;
}
