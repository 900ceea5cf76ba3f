//! kubesim process mode: a real Prometheus pod with in-cluster Kubernetes service discovery
//! (its ServiceAccount token, kubesim's CA, RBAC) finds a Service's endpoints and scrapes them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::bins;
use e2e::harness::{Env, wait_for};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_and_scrapes_endpoints() {
    let prom = bins::version("PROMETHEUS_CURRENT").unwrap();
    let etcd = bins::version("ETCD_CURRENT").unwrap();
    let env = Env::start().await.unwrap();
    let manifests = format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: monitoring}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: prometheus, namespace: monitoring}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: prometheus-sd}}
rules:
- apiGroups: [""]
  resources: [services, endpoints, pods]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: prometheus-sd}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: prometheus-sd}}
subjects: [{{kind: ServiceAccount, name: prometheus, namespace: monitoring}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: prometheus, namespace: monitoring}}
data:
  prometheus.yml: |
    global:
      scrape_interval: 2s
    scrape_configs:
    - job_name: kubernetes-endpoints
      kubernetes_sd_configs:
      - role: endpoints
        namespaces: {{names: [default]}}
      relabel_configs:
      - source_labels: [__meta_kubernetes_service_name]
        regex: target
        action: keep
      - source_labels: [__meta_kubernetes_service_name]
        target_label: service
---
apiVersion: v1
kind: Pod
metadata: {{name: prometheus, namespace: monitoring}}
spec:
  serviceAccountName: prometheus
  securityContext: {{runAsUser: 65534, runAsGroup: 65534}}
  containers:
  - name: prometheus
    image: quay.io/prometheus/prometheus:v{prom}
    ports: [{{name: web, containerPort: 9090}}]
    readinessProbe: {{httpGet: {{path: /-/ready, port: web}}, periodSeconds: 2}}
    volumeMounts:
    - {{name: config, mountPath: /etc/prometheus}}
    - {{name: data, mountPath: /prometheus}}
  volumes:
  - {{name: config, configMap: {{name: prometheus}}}}
  - {{name: data, emptyDir: {{}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: target, namespace: default}}
spec:
  selector: {{app: target}}
  ports: [{{name: metrics, port: 2379}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: target, namespace: default, labels: {{app: target}}}}
spec:
  containers:
  - name: etcd
    image: gcr.io/etcd-development/etcd:v{etcd}
    args: [--data-dir=/tmp/etcd, --listen-client-urls=http://0.0.0.0:2379, --advertise-client-urls=http://127.0.0.1:2379]
    ports: [{{name: metrics, containerPort: 2379}}]
    readinessProbe: {{httpGet: {{path: /health, port: 2379}}, periodSeconds: 1}}
"#
    );
    env.apply(&manifests).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "monitoring");
    wait_for("prometheus ready", Duration::from_secs(60), || async {
        pods.get("prometheus")
            .await
            .ok()
            .is_some_and(|p| e2e::harness::pod_ready(&p))
    })
    .await
    .unwrap();
    let ip = pods
        .get("prometheus")
        .await
        .unwrap()
        .status
        .unwrap()
        .pod_ip
        .unwrap();
    let query = format!("http://{ip}:9090/api/v1/query?query=up%7Bservice%3D%22target%22%7D");
    let last = std::sync::Mutex::new(String::new());
    let found = wait_for("up{service=\"target\"} == 1", Duration::from_secs(60), || async {
        let Ok(resp) = reqwest::get(&query).await else {
            return false;
        };
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        *last.lock().unwrap() = v.to_string();
        v["data"]["result"]
            .as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["value"][1] == "1")
    })
    .await;
    if found.is_err() {
        let logs = pods
            .logs("prometheus", &Default::default())
            .await
            .unwrap_or_default();
        panic!("last answer: {}\nprometheus log:\n{logs}", last.lock().unwrap());
    }
}
