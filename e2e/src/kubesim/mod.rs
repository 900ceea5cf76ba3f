//! kubesim: a single-machine, Kubernetes-compatible cluster for our tests and demo.
//!
//! Real clients (kubectl, kube-rs, Prometheus' Kubernetes discovery) talk to it over HTTPS.
//! [`Cluster::start`] runs the API server and the controllers in the current process;
//! the `kubesim` binary wraps the same thing for the command line.

pub mod audit;
pub mod auth;
pub mod controllers;
pub mod defaults;
pub mod discovery;
pub mod errors;
pub mod eviction;
pub mod http;
pub mod immutable;
pub mod kubelet;
pub mod merge;
pub mod objects;
pub mod pki;
pub mod pod_security;
pub mod protobuf;
pub mod rbac_admission;
pub mod registry;
pub mod request_metrics;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod store;
pub mod strict_json;
pub mod table;
pub mod validation;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use server::{ApiServer, NodeMode};

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// Folder for the kubeconfig, the CA and (in process mode) pod data.
    pub state_dir: PathBuf,
    /// Node mode.
    pub node_mode: NodeMode,
    /// Number of simulated nodes.
    pub nodes: usize,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
}

impl Options {
    /// Instant mode, one node, a free port.
    pub fn instant(state_dir: impl Into<PathBuf>) -> Self {
        Options {
            state_dir: state_dir.into(),
            node_mode: NodeMode::Instant,
            nodes: 1,
            port: 0,
        }
    }
}

/// A running cluster. Dropping it stops the API server and every controller.
pub struct Cluster {
    /// Shared server state (for fault injection and direct inspection in tests).
    pub server: Arc<ApiServer>,
    /// Address the API server listens on.
    pub addr: SocketAddr,
    kubeconfig: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The process-mode kubelet (fault injection), if any.
    pub kubelet: Option<Arc<kubelet::ProcessKubelet>>,
    _tempdir: Option<tempdir::TempDir>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

mod tempdir {
    /// A folder removed on drop.
    #[derive(Debug)]
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: kubesim-admin\n  user:\n    token: {token}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim-admin\n    namespace: default\ncurrent-context: kubesim\npreferences: {{}}\n"
    )
}

impl Cluster {
    /// Starts a cluster; returns once the API server answers.
    pub async fn start(opts: Options) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(&opts.state_dir)
            .with_context(|| format!("creating {}", opts.state_dir.display()))?;
        // Process mode needs its pod network first: the API server listens on the bridge too.
        let bridge = match opts.node_mode {
            NodeMode::Process => {
                kubelet::network::Bridge::check_support()?;
                Some(kubelet::network::Bridge::create()?)
            }
            NodeMode::Instant => None,
        };
        let pki = pki::Pki::new()?;
        let listener = TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .context("binding the API server port")?;
        let addr = listener.local_addr()?;
        let mut sans: Vec<String> = [
            "localhost",
            "127.0.0.1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pod_listener = match &bridge {
            Some(b) => {
                sans.push(b.gateway());
                Some(
                    TcpListener::bind((b.gateway().as_str(), 0))
                        .await
                        .context("binding the API server on the pod network")?,
                )
            }
            None => None,
        };
        let tls = TlsAcceptor::from(pki.server_config(&sans)?);
        let server = Arc::new(ApiServer::new(opts.node_mode, opts.nodes, pki.ca_pem()));
        let url = format!("https://{addr}");
        if let Ok(mut u) = server.server_url.write() {
            *u = url.clone();
        }
        bootstrap(&server, addr)?;

        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = controllers::spawn_all(server.clone(), stop_rx.clone());
        let router = http::router(server.clone());
        tasks.push(tokio::spawn(serve(
            listener,
            tls.clone(),
            router.clone(),
            stop_rx.clone(),
        )));
        let mut kubelet = None;
        if let (Some(b), Some(l)) = (bridge, pod_listener) {
            let api_port = l.local_addr()?.port();
            tasks.push(tokio::spawn(serve(l, tls, router, stop_rx.clone())));
            kubelet = Some(kubelet::ProcessKubelet::start(
                server.clone(),
                b,
                opts.state_dir.join("kubelet"),
                api_port,
                stop_rx.clone(),
            ));
        }

        let kubeconfig = opts.state_dir.join("kubeconfig");
        std::fs::write(opts.state_dir.join("ca.crt"), pki.ca_pem()).context("writing ca.crt")?;
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(&url, &pki.ca_pem(), server.tokens.admin()),
        )
        .context("writing the kubeconfig")?;
        Ok(Cluster {
            server,
            addr,
            kubeconfig,
            stop,
            tasks,
            kubelet,
            _tempdir: None,
        })
    }

    /// Starts an instant-mode cluster in a fresh temporary folder (removed on drop).
    pub async fn start_temp() -> anyhow::Result<Cluster> {
        Self::start_temp_with(NodeMode::Instant).await
    }

    /// Starts a cluster of the given mode in a fresh temporary folder (removed on drop).
    pub async fn start_temp_with(node_mode: NodeMode) -> anyhow::Result<Cluster> {
        let dir = std::env::temp_dir().join(format!("kubesim-{}", auth::random_token("t").replace('.', "-")));
        let mut c = Cluster::start(Options {
            node_mode,
            ..Options::instant(&dir)
        })
        .await?;
        c._tempdir = Some(tempdir::TempDir(dir));
        Ok(c)
    }

    fn kubelet(&self) -> anyhow::Result<&kubelet::ProcessKubelet> {
        self.kubelet
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("fault injection needs --node-mode process"))
    }

    /// Kills a container's process (SIGKILL).
    pub fn kill_container(&self, ns: &str, pod: &str, container: &str) -> anyhow::Result<()> {
        self.kubelet()?.kill_container(ns, pod, container)
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`, ...) to a container's process group, e.g. to
    /// freeze a process as a long GC pause or an overloaded node would; returns its pid.
    pub fn signal_container(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        signal: &str,
    ) -> anyhow::Result<u32> {
        self.kubelet()?.signal_container(ns, pod, container, signal)
    }

    /// The process id of a container's current process.
    pub fn container_pid(&self, ns: &str, pod: &str, container: &str) -> anyhow::Result<u32> {
        self.kubelet()?.container_pid(ns, pod, container)
    }

    /// Holds back every answer to a pod's requests by `delay` after the request took effect
    /// (`None` ends it), so a test can catch the pod with a request in flight.
    pub fn delay_responses_to_pod(&self, pod: &str, delay: Option<Duration>) {
        if let Ok(mut d) = self.server.response_delays.write() {
            match delay {
                Some(delay) => d.insert(pod.to_string(), delay),
                None => d.remove(pod),
            };
        }
    }

    /// Every API request so far, in order of response (see [`audit::AuditLog`]).
    pub fn audit_events(&self) -> Vec<audit::AuditEvent> {
        self.server.audit.events()
    }

    /// Cuts a pod off the network.
    pub fn cut_pod_network(&self, ns: &str, pod: &str) -> anyhow::Result<()> {
        self.kubelet()?.set_pod_network(ns, pod, false)
    }

    /// Reconnects a pod.
    pub fn restore_pod_network(&self, ns: &str, pod: &str) -> anyhow::Result<()> {
        self.kubelet()?.set_pod_network(ns, pod, true)
    }

    /// Stops the node's kubelet (processes keep running, nothing is reported).
    pub fn stop_kubelet(&self) -> anyhow::Result<()> {
        self.kubelet()?.set_running(false);
        Ok(())
    }

    /// Restarts the node's kubelet.
    pub fn start_kubelet(&self) -> anyhow::Result<()> {
        self.kubelet()?.set_running(true);
        Ok(())
    }

    /// The host's address on the pod network (process mode): what a pod dials to reach a
    /// server a test runs on this machine, as it would reach a service outside the cluster.
    pub fn host_address(&self) -> Option<String> {
        self.kubelet.as_ref().map(|k| k.bridge.gateway())
    }

    /// Host folder of PersistentVolume `pv`'s data (process mode).
    pub fn volume_path(&self, pv: &str) -> Option<PathBuf> {
        self.kubelet.as_ref().map(|k| k.volume_path(pv))
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kube client authenticated as admin.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let text = std::fs::read_to_string(&self.kubeconfig)?;
        let kc = kube::config::Kubeconfig::from_yaml(&text)?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// A kube client authenticated with `token` (e.g. a ServiceAccount token).
    pub async fn client_with_token(&self, token: &str) -> anyhow::Result<kube::Client> {
        let text = kubeconfig_yaml(&self.url(), &self.server.ca_pem, token);
        let kc = kube::config::Kubeconfig::from_yaml(&text)?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Stops the cluster (and, in process mode, every pod process and the pod network).
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(k) = self.kubelet.take() {
            k.shutdown_now();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    router: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let conn = tokio::select! {
            _ = stop.changed() => return,
            c = listener.accept() => c,
        };
        let Ok((tcp, _)) = conn else { continue };
        let tls = tls.clone();
        let router = router.clone();
        let mut conn_stop = stop.clone();
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else { return };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = conn_stop.changed() => {}
            }
        });
    }
}

/// Objects every cluster starts with.
fn bootstrap(server: &ApiServer, addr: SocketAddr) -> anyhow::Result<()> {
    let sys = objects::WriteOpts::system("kube-apiserver");
    let rt = |g: &str, p: &str| {
        server
            .resource_any(g, p)
            .with_context(|| format!("{g}/{p} not served"))
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        server
            .create(
                &*rt("", "namespaces")?,
                "",
                json!({"metadata": {"name": ns}}),
                &sys,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for node in &server.nodes {
        let obj = json!({
            "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
            "spec": {},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubesim node is ready", "lastHeartbeatTime": server::now(), "lastTransitionTime": server::now()}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node}],
                "capacity": {"cpu": "16", "memory": "64Gi", "pods": "250"},
                "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "250"},
                "nodeInfo": {"kubeletVersion": "v1.32.0-kubesim", "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "kubesim://1"},
            },
        });
        let nodes = rt("", "nodes")?;
        let w = server
            .create(&nodes, "", obj.clone(), &sys)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut with_status = (*w.object).clone();
        with_status["status"] = obj["status"].clone();
        server
            .update(&nodes, "", node, with_status, objects::Part::Status, &sys)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    server
        .create(
            &*rt("", "services")?,
            "default",
            json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                   "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": addr.port()}]}}),
            &sys,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let roles: Value = json!([
        {"metadata": {"name": "cluster-admin"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]},
        {"metadata": {"name": "view"}, "rules": [{"apiGroups": ["", "apps", "batch", "policy", "discovery.k8s.io", "networking.k8s.io"], "resources": ["pods", "pods/log", "services", "endpoints", "configmaps", "persistentvolumeclaims", "events", "deployments", "replicasets", "statefulsets", "jobs", "poddisruptionbudgets", "endpointslices", "networkpolicies", "namespaces"], "verbs": ["get", "list", "watch"]}]},
    ]);
    for r in roles.as_array().into_iter().flatten() {
        server
            .create(
                &*rt("rbac.authorization.k8s.io", "clusterroles")?,
                "",
                r.clone(),
                &sys,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
