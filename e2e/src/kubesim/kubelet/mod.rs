//! The process-mode kubelet: every pod scheduled to a kubesim node becomes real processes in
//! their own network, mount and UTS namespaces, with volumes, /etc/hosts, environment,
//! probes, restarts and logs, reported through the pod's status.

pub mod images;
pub mod launch;
pub mod network;
pub mod volumes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::objects::{Part, WriteOpts};
use super::registry::StorageKey;
use super::selectors::LabelSelector;
use super::server::{ApiServer, LogSource, now};
use network::Bridge;

fn key(group: &str, plural: &str) -> StorageKey {
    StorageKey {
        group: group.into(),
        plural: plural.into(),
    }
}

fn opts() -> WriteOpts {
    WriteOpts::system("kubelet")
}

/// One container's runtime state.
#[derive(Debug, Default)]
struct ContainerRt {
    child: Option<Child>,
    pid: Option<u32>,
    started_at: Option<String>,
    restart_count: i64,
    ready: bool,
    started: bool,
    last_state: Value,
    waiting: Option<(String, String)>,
    next_start: Option<Instant>,
    terminated: Option<Value>,
    probe_due: BTreeMap<&'static str, Instant>,
    probe_fail: BTreeMap<&'static str, u32>,
    probe_ok: BTreeMap<&'static str, u32>,
    done: bool,
}

/// Shared view of a running pod, for fault injection.
#[derive(Debug, Default)]
struct PodShared {
    pids: BTreeMap<String, u32>,
}

struct PodEntry {
    uid: String,
    slot: u8,
    shared: Arc<Mutex<PodShared>>,
    task: tokio::task::JoinHandle<()>,
}

/// The kubelet of every kubesim node in process mode.
pub struct ProcessKubelet {
    server: Arc<ApiServer>,
    /// The pod network.
    pub bridge: Bridge,
    root: PathBuf,
    api_port: u16,
    pods: Mutex<HashMap<(String, String), PodEntry>>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for ProcessKubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessKubelet").finish_non_exhaustive()
    }
}

struct Logs(PathBuf);

impl LogSource for Logs {
    fn logs(&self, ns: &str, pod: &str, container: &str, tail: Option<usize>) -> Result<String, String> {
        let path = self
            .0
            .join("logs")
            .join(ns)
            .join(pod)
            .join(format!("{container}.log"));
        let text = std::fs::read_to_string(&path).map_err(|_| {
            format!("container \"{container}\" in pod \"{pod}\" is waiting to start: no logs yet")
        })?;
        Ok(match tail {
            Some(n) => {
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.len().saturating_sub(n);
                lines[start..].iter().map(|l| format!("{l}\n")).collect()
            }
            None => text,
        })
    }
}

impl ProcessKubelet {
    /// Host folder holding the data of PersistentVolume `pv` (what a pod mounting a claim
    /// bound to it sees).
    pub fn volume_path(&self, pv: &str) -> PathBuf {
        self.root.join("pvs").join(pv)
    }

    /// Starts the kubelet. `api_port` is the API server's port on the bridge address.
    pub fn start(
        server: Arc<ApiServer>,
        bridge: Bridge,
        root: PathBuf,
        api_port: u16,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Self> {
        let _ = std::fs::create_dir_all(&root);
        if let Ok(mut ls) = server.log_source.write() {
            *ls = Some(Arc::new(Logs(root.clone())));
        }
        let k = Arc::new(ProcessKubelet {
            server,
            bridge,
            root,
            api_port,
            pods: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
        });
        tokio::spawn(k.clone().sync_loop(stop));
        k
    }

    async fn sync_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut rx = self.server.store.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    self.shutdown();
                    return;
                }
                _ = tick.tick() => {}
                _ = rx.recv() => {
                    while rx.try_recv().is_ok() {}
                }
            }
            if !self.stopped.load(Ordering::SeqCst) {
                self.sync();
            }
        }
    }

    /// Starts workers for new pods; stops workers of pods that are gone.
    fn sync(self: &Arc<Self>) {
        let (pods, _) = self.server.store.list(&key("", "pods"), None);
        let mine: Vec<Arc<Value>> = pods
            .into_iter()
            .filter(|p| {
                p.pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| self.server.nodes.iter().any(|x| x == n))
            })
            .collect();
        let Ok(mut running) = self.pods.lock() else { return };
        let present: BTreeSet<(String, String)> = mine
            .iter()
            .map(|p| (str_at(p, "/metadata/namespace"), str_at(p, "/metadata/name")))
            .collect();
        // Pods force-deleted from the API: kill at once.
        let gone: Vec<(String, String)> = running
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(e) = running.get(&k)
                && e.task.is_finished()
            {
                running.remove(&k);
            }
        }
        for pod in mine {
            let k = (
                str_at(&pod, "/metadata/namespace"),
                str_at(&pod, "/metadata/name"),
            );
            let uid = str_at(&pod, "/metadata/uid");
            // A running worker, or a finished one for this very pod, means nothing to start; a
            // new pod of the same name waits until the old one's worker has finished.
            if let Some(e) = running.get(&k)
                && (e.uid == uid || !e.task.is_finished())
            {
                continue;
            }
            if matches!(
                pod.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            ) {
                continue;
            }
            let used: BTreeSet<u8> = running
                .values()
                .filter(|e| !e.task.is_finished())
                .map(|e| e.slot)
                .collect();
            let Some(slot) = (2..=254u8).find(|s| !used.contains(s)) else {
                continue;
            };
            let shared = Arc::new(Mutex::new(PodShared::default()));
            let task = tokio::spawn(self.clone().run_pod(
                k.0.clone(),
                k.1.clone(),
                uid.clone(),
                slot,
                shared.clone(),
            ));
            running.insert(
                k,
                PodEntry {
                    uid,
                    slot,
                    shared,
                    task,
                },
            );
        }
    }

    /// Kills every pod process and removes the pod network (cluster shutdown).
    pub fn shutdown_now(&self) {
        self.shutdown();
    }

    fn shutdown(&self) {
        if let Ok(mut pods) = self.pods.lock() {
            for (_, e) in pods.drain() {
                e.task.abort();
                if let Ok(s) = e.shared.lock() {
                    for pid in s.pids.values() {
                        kill_group(*pid, "KILL");
                    }
                }
                self.bridge.remove_pod(e.slot);
            }
        }
    }

    // ---- fault injection -------------------------------------------------------------------

    /// Kills a container's process (SIGKILL); the kubelet restarts it per restartPolicy.
    pub fn kill_container(&self, ns: &str, pod: &str, container: &str) -> anyhow::Result<()> {
        self.signal_container(ns, pod, container, "KILL").map(|_| ())
    }

    /// The process id of a container's current process.
    pub fn container_pid(&self, ns: &str, pod: &str, container: &str) -> anyhow::Result<u32> {
        let pods = self
            .pods
            .lock()
            .map_err(|_| anyhow::anyhow!("kubelet lock poisoned"))?;
        let e = pods
            .get(&(ns.to_string(), pod.to_string()))
            .ok_or_else(|| anyhow::anyhow!("pod {ns}/{pod} is not running"))?;
        let pid = e.shared.lock().ok().and_then(|s| s.pids.get(container).copied());
        pid.ok_or_else(|| anyhow::anyhow!("container {container} of {ns}/{pod} has no process"))
    }

    /// Sends `signal` (a `kill` name such as `STOP`, `CONT`, `KILL`) to a container's process
    /// group; returns the process id signalled.
    pub fn signal_container(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        signal: &str,
    ) -> anyhow::Result<u32> {
        let pid = self.container_pid(ns, pod, container)?;
        kill_group(pid, signal);
        Ok(pid)
    }

    /// Cuts (`false`) or restores (`true`) a pod's network.
    pub fn set_pod_network(&self, ns: &str, pod: &str, up: bool) -> anyhow::Result<()> {
        let pods = self
            .pods
            .lock()
            .map_err(|_| anyhow::anyhow!("kubelet lock poisoned"))?;
        let e = pods
            .get(&(ns.to_string(), pod.to_string()))
            .ok_or_else(|| anyhow::anyhow!("pod {ns}/{pod} is not running"))?;
        self.bridge.set_link(e.slot, up)
    }

    /// Stops (`false`) or restarts (`true`) the kubelet: while stopped, processes keep
    /// running but nothing is probed, restarted, started or reported, and nodes turn NotReady.
    pub fn set_running(&self, running: bool) {
        self.stopped.store(!running, Ordering::SeqCst);
        let Some(nodes) = self.server.resource_any("", "nodes") else {
            return;
        };
        for node in &self.server.nodes {
            if let Ok(n) = self.server.get(&nodes, "", node) {
                let mut next = (*n).clone();
                let (status, reason, message) = if running {
                    ("True", "KubeletReady", "kubelet is posting ready status")
                } else {
                    (
                        "Unknown",
                        "NodeStatusUnknown",
                        "Kubelet stopped posting node status.",
                    )
                };
                next["status"]["conditions"] = json!([{"type": "Ready", "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now(), "lastTransitionTime": now()}]);
                let _ = self.server.update(&nodes, "", node, next, Part::Status, &opts());
            }
        }
    }

    // ---- one pod -------------------------------------------------------------------------

    async fn run_pod(
        self: Arc<Self>,
        ns: String,
        name: String,
        uid: String,
        slot: u8,
        shared: Arc<Mutex<PodShared>>,
    ) {
        let dir = self.root.join("pods").join(&uid);
        let log_dir = self.root.join("logs").join(&ns).join(&name);
        let _ = std::fs::create_dir_all(&log_dir);
        if let Err(e) = self.bridge.add_pod(slot) {
            self.pod_event(&ns, &name, &format!("network setup failed: {e}"));
            return;
        }
        let mut pod = PodRt {
            k: self.clone(),
            ns: ns.clone(),
            name: name.clone(),
            uid,
            slot,
            dir,
            log_dir,
            ip: self.bridge.pod_ip(slot),
            containers: BTreeMap::new(),
            init_done: 0,
            shared,
            sa_token: String::new(),
            last_status: Value::Null,
            start_time: now(),
            volume_sync: Instant::now(),
            owned_volumes: Default::default(),
            pid_holder: None,
        };
        pod.run().await;
        self.bridge.remove_pod(slot);
    }

    fn pod_event(&self, ns: &str, pod: &str, message: &str) {
        tracing::warn!(%ns, %pod, %message, "kubelet");
    }
}

fn str_at(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn kill_group(pid: u32, signal: &str) {
    // Containers run in their own process group: signal all of it.
    let _ = std::process::Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pid}")])
        .stderr(std::process::Stdio::null())
        .status();
}

struct PodRt {
    k: Arc<ProcessKubelet>,
    ns: String,
    name: String,
    uid: String,
    slot: u8,
    dir: PathBuf,
    log_dir: PathBuf,
    ip: String,
    containers: BTreeMap<String, ContainerRt>,
    init_done: usize,
    shared: Arc<Mutex<PodShared>>,
    sa_token: String,
    last_status: Value,
    start_time: String,
    volume_sync: Instant,
    /// emptyDir and PVC volumes already given fsGroup ownership (once, when first mounted).
    owned_volumes: std::collections::BTreeSet<String>,
    /// With `shareProcessNamespace`, the process that holds the pod's PID namespace (the
    /// pause container's job); killed when the pod's runtime goes.
    pid_holder: Option<Child>,
}

fn backoff(restarts: i64) -> Duration {
    // Like the kubelet's crash-loop back-off, scaled down (1 s doubling to 30 s) so tests
    // that kill processes stay quick.
    Duration::from_secs(1u64 << restarts.clamp(0, 5) as u32).min(Duration::from_secs(30))
}

impl PodRt {
    fn pod(&self) -> Option<Arc<Value>> {
        self.k
            .server
            .store
            .get(&key("", "pods"), &self.ns, &self.name)
            .filter(|p| str_at(p, "/metadata/uid") == self.uid)
    }

    async fn run(&mut self) {
        loop {
            let Some(pod) = self.pod() else {
                self.kill_all("KILL");
                return;
            };
            if self.k.stopped.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                self.terminate(&pod).await;
                if let Some(rt) = self.k.server.resource_any("", "pods") {
                    let _ = self.k.server.finish_graceful_delete(&rt, &self.ns, &self.name);
                }
                return;
            }
            self.step(&pod).await;
            if self.finished(&pod) {
                self.report(&pod);
                return;
            }
            self.report(&pod);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn kill_all(&mut self, signal: &str) {
        for c in self.containers.values_mut() {
            if let Some(pid) = c.pid {
                kill_group(pid, signal);
            }
        }
    }

    async fn terminate(&mut self, pod: &Value) {
        let grace = pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
            .max(0) as u64;
        self.kill_all("TERM");
        let deadline = Instant::now() + Duration::from_secs(grace);
        loop {
            let mut alive = false;
            for c in self.containers.values_mut() {
                if let Some(child) = c.child.as_mut()
                    && matches!(child.try_wait(), Ok(None))
                {
                    alive = true;
                }
            }
            if !alive {
                break;
            }
            if Instant::now() >= deadline {
                self.kill_all("KILL");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn spec_containers(pod: &Value, field: &str) -> Vec<Value> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    fn finished(&self, pod: &Value) -> bool {
        let policy = pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always");
        if policy == "Always" {
            return false;
        }
        let mains = Self::spec_containers(pod, "containers");
        !mains.is_empty()
            && mains.iter().all(|c| {
                self.containers
                    .get(c["name"].as_str().unwrap_or_default())
                    .is_some_and(|r| r.done)
            })
    }

    /// One pass: volumes, hosts, init containers, containers, probes.
    async fn step(&mut self, pod: &Value) {
        if self.sa_token.is_empty() {
            let sa = pod
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            self.sa_token = self
                .k
                .server
                .tokens
                .issue_pod_bound(&self.ns, sa, &self.name, &self.uid);
        }
        let _ = self.write_hosts(pod);
        if self.volume_sync.elapsed() > Duration::from_secs(1) || self.containers.is_empty() {
            self.volume_sync = Instant::now();
            if let Err(missing) = self.sync_volumes(pod) {
                for c in Self::spec_containers(pod, "containers") {
                    let rt = self
                        .containers
                        .entry(c["name"].as_str().unwrap_or_default().to_string())
                        .or_default();
                    if rt.child.is_none() {
                        rt.waiting = Some(("ContainerCreating".into(), missing.clone()));
                    }
                }
                return;
            }
        }
        let policy = pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
            .to_string();
        let inits = Self::spec_containers(pod, "initContainers");
        while self.init_done < inits.len() {
            let c = &inits[self.init_done];
            let cname = c["name"].as_str().unwrap_or_default().to_string();
            self.tick_container(pod, c, if policy == "Always" { "OnFailure" } else { &policy })
                .await;
            let rt = self.containers.entry(cname).or_default();
            if rt.done && rt.terminated.as_ref().is_some_and(|t| t["exitCode"] == 0) {
                self.init_done += 1;
            } else {
                return;
            }
        }
        for c in Self::spec_containers(pod, "containers") {
            self.tick_container(pod, &c, &policy).await;
        }
    }

    async fn tick_container(&mut self, pod: &Value, spec: &Value, policy: &str) {
        let cname = spec["name"].as_str().unwrap_or_default().to_string();
        let exited = {
            let rt = self.containers.entry(cname.clone()).or_default();
            match rt.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => Some(status),
                _ => None,
            }
        };
        if let Some(status) = exited {
            let code = status.code().unwrap_or(137);
            let message = self.termination_message(spec, code);
            let rt = self.containers.entry(cname.clone()).or_default();
            let mut term = json!({"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": rt.started_at, "finishedAt": now()});
            if let Some(message) = message {
                term["message"] = json!(message);
            }
            rt.child = None;
            rt.pid = None;
            rt.ready = false;
            rt.started = false;
            rt.last_state = json!({"terminated": term});
            rt.terminated = Some(term);
            if let Ok(mut s) = self.shared.lock() {
                s.pids.remove(&cname);
            }
            let restart = match policy {
                "Always" => true,
                "OnFailure" => code != 0,
                _ => false,
            };
            if restart {
                rt.next_start = Some(Instant::now() + backoff(rt.restart_count));
                rt.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!("back-off restarting failed container {cname}"),
                ));
            } else {
                rt.done = true;
            }
        }
        let needs_start = {
            let rt = self.containers.entry(cname.clone()).or_default();
            rt.child.is_none() && !rt.done && rt.next_start.is_none_or(|t| Instant::now() >= t)
        };
        if needs_start {
            let restarting = self
                .containers
                .get(&cname)
                .is_some_and(|r| r.terminated.is_some());
            match self.start_container(pod, spec) {
                Ok((child, pid)) => {
                    let rt = self.containers.entry(cname.clone()).or_default();
                    if restarting {
                        rt.restart_count += 1;
                    }
                    rt.child = Some(child);
                    rt.pid = Some(pid);
                    rt.started_at = Some(now());
                    rt.waiting = None;
                    rt.terminated = None;
                    rt.probe_due.clear();
                    rt.probe_fail.clear();
                    rt.probe_ok.clear();
                    rt.started = spec.get("startupProbe").is_none();
                    rt.ready = false;
                    if let Ok(mut s) = self.shared.lock() {
                        s.pids.insert(cname.clone(), pid);
                    }
                }
                Err((reason, message)) => {
                    let rt = self.containers.entry(cname.clone()).or_default();
                    rt.waiting = Some((reason, message));
                    rt.next_start = Some(Instant::now() + Duration::from_secs(2));
                }
            }
        }
        self.probe(spec).await;
    }

    async fn probe(&mut self, spec: &Value) {
        let cname = spec["name"].as_str().unwrap_or_default().to_string();
        let Some(rt) = self.containers.get(&cname) else {
            return;
        };
        if rt.child.is_none() {
            return;
        }
        let pid = rt.pid;
        let started = rt.started;
        for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
            if kind != "startupProbe" && !started {
                continue;
            }
            if kind == "startupProbe" && started {
                continue;
            }
            let Some(probe) = spec.get(kind) else {
                if kind == "readinessProbe"
                    && let Some(rt) = self.containers.get_mut(&cname)
                {
                    rt.ready = rt.started;
                }
                continue;
            };
            let initial = probe["initialDelaySeconds"].as_u64().unwrap_or(0);
            let period = probe["periodSeconds"].as_u64().unwrap_or(10).max(1);
            let Some(rt) = self.containers.get_mut(&cname) else {
                return;
            };
            let started_at = rt.started_at.clone().unwrap_or_default();
            let due = *rt
                .probe_due
                .entry(kind)
                .or_insert_with(|| Instant::now() + Duration::from_secs(initial));
            if Instant::now() < due {
                continue;
            }
            rt.probe_due
                .insert(kind, Instant::now() + Duration::from_secs(period));
            let _ = started_at;
            let ok = run_probe(probe, spec, &self.ip, pid).await;
            let Some(rt) = self.containers.get_mut(&cname) else {
                return;
            };
            let failure_threshold = probe["failureThreshold"].as_u64().unwrap_or(3) as u32;
            let success_threshold = probe["successThreshold"].as_u64().unwrap_or(1) as u32;
            if ok {
                rt.probe_fail.insert(kind, 0);
                let n = rt.probe_ok.entry(kind).or_insert(0);
                *n += 1;
                if *n >= success_threshold {
                    match kind {
                        "startupProbe" => rt.started = true,
                        "readinessProbe" => rt.ready = true,
                        _ => {}
                    }
                }
            } else {
                rt.probe_ok.insert(kind, 0);
                let n = rt.probe_fail.entry(kind).or_insert(0);
                *n += 1;
                if *n >= failure_threshold {
                    match kind {
                        "readinessProbe" => rt.ready = false,
                        // Liveness or startup failure: kill; the restart policy brings it back.
                        _ => {
                            if let Some(pid) = rt.pid {
                                kill_group(pid, "KILL");
                            }
                        }
                    }
                }
            }
        }
    }

    fn env(&self, pod: &Value, spec: &Value) -> Result<BTreeMap<String, String>, (String, String)> {
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        );
        env.insert("HOSTNAME".to_string(), hostname(pod));
        env.insert("KUBERNETES_SERVICE_HOST".to_string(), self.k.bridge.gateway());
        env.insert("KUBERNETES_SERVICE_PORT".to_string(), self.k.api_port.to_string());
        env.insert(
            "KUBERNETES_SERVICE_PORT_HTTPS".to_string(),
            self.k.api_port.to_string(),
        );
        env.insert(
            "KUBERNETES_PORT".to_string(),
            format!("tcp://{}:{}", self.k.bridge.gateway(), self.k.api_port),
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let lookup = |kind: &str, name: &str, k: &str| -> Option<String> {
            let (plural, obj) = if kind == "secret" {
                ("secrets", "data")
            } else {
                ("configmaps", "data")
            };
            let o = self.k.server.store.get(&key("", plural), &self.ns, name)?;
            let v = o[obj][k].as_str()?;
            if kind == "secret" {
                b64.decode(v).ok().and_then(|b| String::from_utf8(b).ok())
            } else {
                Some(v.to_string())
            }
        };
        for from in spec["envFrom"].as_array().into_iter().flatten() {
            let prefix = from["prefix"].as_str().unwrap_or_default();
            let (kind, plural, r) = if let Some(r) = from.get("configMapRef") {
                ("configmap", "configmaps", r)
            } else if let Some(r) = from.get("secretRef") {
                ("secret", "secrets", r)
            } else {
                continue;
            };
            let name = r["name"].as_str().unwrap_or_default();
            match self.k.server.store.get(&key("", plural), &self.ns, name) {
                Some(o) => {
                    for (k, _) in o["data"].as_object().into_iter().flatten() {
                        if let Some(v) = lookup(kind, name, k) {
                            env.insert(format!("{prefix}{k}"), v);
                        }
                    }
                }
                None if r["optional"] == Value::Bool(true) => {}
                None => {
                    return Err((
                        "CreateContainerConfigError".into(),
                        format!("{kind} \"{name}\" not found"),
                    ));
                }
            }
        }
        for e in spec["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default().to_string();
            let value = if let Some(v) = e.get("value") {
                launch::expand(v.as_str().unwrap_or_default(), &env)
            } else if let Some(f) = e.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str) {
                let mut p = pod.clone();
                p["status"]["podIP"] = json!(self.ip);
                p["status"]["hostIP"] = json!(self.k.bridge.gateway());
                volumes::field_ref(&p, f).unwrap_or_default()
            } else if let Some(r) = e
                .pointer("/valueFrom/secretKeyRef")
                .or_else(|| e.pointer("/valueFrom/configMapKeyRef"))
            {
                let kind = if e.pointer("/valueFrom/secretKeyRef").is_some() {
                    "secret"
                } else {
                    "configmap"
                };
                match lookup(
                    kind,
                    r["name"].as_str().unwrap_or_default(),
                    r["key"].as_str().unwrap_or_default(),
                ) {
                    Some(v) => v,
                    None if r["optional"] == Value::Bool(true) => continue,
                    None => {
                        return Err((
                            "CreateContainerConfigError".into(),
                            format!(
                                "couldn't find key {} in {kind} {}/{}",
                                r["key"].as_str().unwrap_or_default(),
                                self.ns,
                                r["name"].as_str().unwrap_or_default()
                            ),
                        ));
                    }
                }
            } else {
                String::new()
            };
            env.insert(name, value);
        }
        Ok(env)
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }

    /// Host folder of each volume; `Err` names a missing source.
    fn volume_sources(&self, pod: &Value) -> Result<BTreeMap<String, PathBuf>, String> {
        let mut out = BTreeMap::new();
        for v in pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = v["name"].as_str().unwrap_or_default().to_string();
            if let Some(claim) = v
                .pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
            {
                let pvc = self
                    .k
                    .server
                    .store
                    .get(&key("", "persistentvolumeclaims"), &self.ns, claim)
                    .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
                let pv = pvc
                    .pointer("/spec/volumeName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" is not bound"))?;
                out.insert(name, self.k.root.join("pvs").join(pv));
            } else if let Some(path) = v.pointer("/hostPath/path").and_then(Value::as_str) {
                out.insert(name, PathBuf::from(path));
            } else {
                out.insert(name.clone(), self.volume_dir(&name));
            }
        }
        Ok(out)
    }

    fn sync_volumes(&mut self, pod: &Value) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let sources = self.volume_sources(pod)?;
        let fs_group = pod
            .pointer("/spec/securityContext/fsGroup")
            .and_then(Value::as_u64)
            .and_then(|g| u32::try_from(g).ok());
        let always = pod
            .pointer("/spec/securityContext/fsGroupChangePolicy")
            .and_then(Value::as_str)
            != Some("OnRootMismatch");
        for v in pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = v["name"].as_str().unwrap_or_default();
            let Some(dir) = sources.get(name) else { continue };
            let empty_dir = v.get("emptyDir").is_some();
            if empty_dir || v.get("persistentVolumeClaim").is_some() {
                if !dir.exists() {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                    // The kubelet makes emptyDirs world-writable; a fresh volume's root is
                    // root's 0755 (as on a newly formatted disk), writable by others only
                    // through fsGroup.
                    let mode = if empty_dir { 0o777 } else { 0o755 };
                    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
                }
                if let Some(g) = fs_group
                    && !self.owned_volumes.contains(name)
                {
                    volumes::apply_fs_group(dir, g, false, always).map_err(|e| e.to_string())?;
                    self.owned_volumes.insert(name.to_string());
                }
                continue;
            }
            if v.get("hostPath").is_some() {
                continue;
            }
            let files = volumes::files_of(&self.k.server, pod, v, &self.sa_token)
                .ok_or_else(|| format!("volume \"{name}\": a referenced ConfigMap or Secret is missing"))?;
            volumes::sync_dir(dir, &files).map_err(|e| e.to_string())?;
            if let Some(g) = fs_group {
                volumes::apply_fs_group(dir, g, true, true).map_err(|e| e.to_string())?;
            }
        }
        // The service-account files every pod gets unless it opts out.
        if automount(pod) {
            let mut files = volumes::Files::new();
            files.insert("token".into(), (self.sa_token.as_bytes().to_vec(), 0o644));
            files.insert("ca.crt".into(), (self.k.server.ca_pem.as_bytes().to_vec(), 0o644));
            files.insert("namespace".into(), (self.ns.as_bytes().to_vec(), 0o644));
            volumes::sync_dir(&self.volume_dir("kube-api-access"), &files).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn write_hosts(&self, pod: &Value) -> std::io::Result<()> {
        let path = self.dir.join("hosts");
        let text = hosts_file(&self.k.server, pod, &self.ip, &self.k.bridge.gateway());
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::create_dir_all(&self.dir)?;
            // In place: bind mounts of the file keep seeing its inode.
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)?;
            use std::io::Write;
            f.write_all(text.as_bytes())?;
        }
        Ok(())
    }

    fn start_container(&mut self, pod: &Value, spec: &Value) -> Result<(Child, u32), (String, String)> {
        let cname = spec["name"].as_str().unwrap_or_default();
        let image_ref = spec["image"].as_str().unwrap_or_default();
        let image = images::resolve(image_ref).map_err(|e| ("ErrImagePull".to_string(), e))?;
        let env = self.env(pod, spec)?;
        let argv = launch::argv(spec, &image, &env);
        if argv.is_empty() {
            return Err((
                "CreateContainerError".into(),
                format!("image {image_ref:?} has no entrypoint: set command"),
            ));
        }
        let sources = self
            .volume_sources(pod)
            .map_err(|e| ("ContainerCreating".to_string(), e))?;
        let mut mounts = Vec::new();
        for m in spec["volumeMounts"].as_array().into_iter().flatten() {
            let vname = m["name"].as_str().unwrap_or_default();
            let Some(src) = sources.get(vname) else {
                return Err((
                    "CreateContainerConfigError".into(),
                    format!("volume \"{vname}\" not found"),
                ));
            };
            let mut src = src.clone();
            if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
                src = src.join(sub);
                if !src.exists() {
                    let _ = std::fs::create_dir_all(&src);
                }
            }
            mounts.push((
                src.display().to_string(),
                m["mountPath"].as_str().unwrap_or_default().to_string(),
                m["readOnly"] == Value::Bool(true),
            ));
        }
        // The termination message file, empty at each start and writable by the container's
        // user, at terminationMessagePath (default /dev/termination-log), as the kubelet does.
        // (Under the host's /dev, bound into the container, an empty file of that name appears
        // once; a real runtime's /dev is a tmpfs of its own.)
        use std::os::unix::fs::PermissionsExt;
        let message_file = self.termination_file(cname);
        let _ = std::fs::create_dir_all(self.dir.join("containers"));
        std::fs::write(&message_file, b"").map_err(|e| {
            (
                "CreateContainerError".to_string(),
                format!("cannot create {}: {e}", message_file.display()),
            )
        })?;
        let _ = std::fs::set_permissions(&message_file, std::fs::Permissions::from_mode(0o666));
        mounts.push((
            message_file.display().to_string(),
            spec["terminationMessagePath"]
                .as_str()
                .filter(|p| !p.is_empty())
                .unwrap_or("/dev/termination-log")
                .to_string(),
            false,
        ));
        if automount(pod)
            && !mounts
                .iter()
                .any(|(_, p, _)| p == "/var/run/secrets/kubernetes.io/serviceaccount")
        {
            mounts.push((
                self.volume_dir("kube-api-access").display().to_string(),
                "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                true,
            ));
        }
        let sc = |field: &str| {
            spec.pointer(&format!("/securityContext/{field}"))
                .or_else(|| pod.pointer(&format!("/spec/securityContext/{field}")))
                .and_then(Value::as_u64)
        };
        // The image's USER unless the securityContext says otherwise; a runAsUser without
        // runAsGroup takes the group of the same number (what the passwd files of our images
        // give).
        let uid = sc("runAsUser").unwrap_or(image.user.0);
        let gid = sc("runAsGroup").unwrap_or(if sc("runAsUser").is_some() {
            uid
        } else {
            image.user.1
        });
        let non_root = spec
            .pointer("/securityContext/runAsNonRoot")
            .or_else(|| pod.pointer("/spec/securityContext/runAsNonRoot"))
            .and_then(Value::as_bool);
        if non_root == Some(true) && uid == 0 {
            return Err((
                "CreateContainerConfigError".into(),
                format!(
                    "container has runAsNonRoot and image will run as root (pod: \"{}_{}({})\", container: {cname})",
                    str_at(pod, "/metadata/name"),
                    self.ns,
                    str_at(pod, "/metadata/uid")
                ),
            ));
        }
        let user = (uid != 0 || gid != 0).then_some((uid, gid));
        // fsGroup joins the supplementary groups, as the kubelet does.
        let groups: Vec<u64> = pod
            .pointer("/spec/securityContext/fsGroup")
            .and_then(Value::as_u64)
            .into_iter()
            .chain(
                pod.pointer("/spec/securityContext/supplementalGroups")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64),
            )
            .collect();
        let read_only_root =
            spec.pointer("/securityContext/readOnlyRootFilesystem") == Some(&Value::Bool(true));
        let working_dir = spec["workingDir"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| image.working_dir.clone());
        let rootfs = self.dir.join("containers").join(cname).join("rootfs");
        let _ = std::fs::create_dir_all(&rootfs);
        let hosts = self.dir.join("hosts");
        let script = launch::script(&launch::Launch {
            rootfs: &rootfs,
            hostname: &hostname(pod),
            hosts_file: &hosts,
            image: &image,
            mounts,
            env: &env,
            working_dir,
            user,
            groups,
            read_only_root,
            argv,
        });
        let script_path = self.dir.join("containers").join(format!("{cname}.sh"));
        std::fs::write(&script_path, script)
            .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        let log_path = self.log_dir.join(format!("{cname}.log"));
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
        };
        let (out, err) = match (open(), open()) {
            (Ok(o), Ok(e)) => (o, e),
            _ => {
                return Err((
                    "CreateContainerError".into(),
                    format!("cannot open {}", log_path.display()),
                ));
            }
        };
        // Like the kubelet: each container sees only its own processes (a PID namespace of its
        // own), unless the pod shares one namespace among its containers.
        let netns = self.k.bridge.netns(self.slot);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &netns]);
        if pod
            .pointer("/spec/shareProcessNamespace")
            .and_then(Value::as_bool)
            == Some(true)
        {
            let holder = self.pid_holder(&netns)?;
            cmd.arg("nsenter")
                .arg(format!("--pid=/proc/{holder}/ns/pid_for_children"))
                .args(["--", "unshare"]);
        } else {
            cmd.args(["unshare", "--pid", "--fork", "--kill-child"]);
        }
        cmd.args(["--mount", "--uts", "--propagation", "private", "--", "/bin/sh"])
            .arg(&script_path)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
        let pid = child.id().unwrap_or(0);
        Ok((child, pid))
    }

    /// The pid of the process holding the pod's shared PID namespace, started on first use.
    fn pid_holder(&mut self, netns: &str) -> Result<u32, (String, String)> {
        if let Some(c) = self.pid_holder.as_mut()
            && matches!(c.try_wait(), Ok(None))
            && let Some(pid) = c.id()
        {
            return Ok(pid);
        }
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                netns,
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                "--",
                "sleep",
                "infinity",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                (
                    "RunContainerError".to_string(),
                    format!("cannot start the pod's PID namespace: {e}"),
                )
            })?;
        let pid = child.id().unwrap_or(0);
        // The namespace exists once unshare has forked its child.
        let ready = std::path::PathBuf::from(format!("/proc/{pid}/ns/pid_for_children"));
        let own = std::fs::read_link("/proc/self/ns/pid").ok();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&ready).ok() == own && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.pid_holder = Some(child);
        Ok(pid)
    }

    /// Where a container's termination message file lives on this machine.
    fn termination_file(&self, container: &str) -> PathBuf {
        self.dir
            .join("containers")
            .join(format!("{container}.termination-log"))
    }

    /// The message of a container that exited with `code`, as the kubelet reports it: what the
    /// container wrote to its terminationMessagePath (at most 4096 bytes), or, with policy
    /// FallbackToLogsOnError, a failed container's last log lines (at most 80 lines and 2048
    /// bytes) when it wrote nothing.
    fn termination_message(&self, spec: &Value, code: i32) -> Option<String> {
        let cname = spec["name"].as_str().unwrap_or_default();
        let written = std::fs::read(self.termination_file(cname)).unwrap_or_default();
        if !written.is_empty() {
            let cut = &written[..written.len().min(4096)];
            return Some(String::from_utf8_lossy(cut).into_owned());
        }
        if code == 0 || spec["terminationMessagePolicy"] != "FallbackToLogsOnError" {
            return None;
        }
        let log = std::fs::read_to_string(self.log_dir.join(format!("{cname}.log"))).ok()?;
        let lines: Vec<&str> = log.lines().collect();
        let mut tail = lines[lines.len().saturating_sub(80)..].join("\n");
        if tail.len() > 2048 {
            let mut start = tail.len() - 2048;
            while !tail.is_char_boundary(start) {
                start += 1;
            }
            tail = tail[start..].to_string();
        }
        (!tail.is_empty()).then_some(tail)
    }

    fn container_status(&self, spec: &Value) -> Value {
        let cname = spec["name"].as_str().unwrap_or_default();
        let rt = self.containers.get(cname);
        let state = match rt {
            Some(r) if r.child.is_some() => json!({"running": {"startedAt": r.started_at}}),
            Some(r) if r.done => json!({"terminated": r.terminated.clone().unwrap_or(json!({}))}),
            Some(ContainerRt {
                waiting: Some((reason, message)),
                ..
            }) => json!({"waiting": {"reason": reason, "message": message}}),
            _ => json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        let image = spec["image"].clone();
        json!({
            "name": cname, "image": image, "imageID": format!("kubesim://{}", image.as_str().unwrap_or_default()),
            "containerID": rt.and_then(|r| r.pid).map(|p| format!("kubesim://{p}")),
            "ready": rt.is_some_and(|r| r.ready && r.child.is_some()),
            "started": rt.is_some_and(|r| r.started && r.child.is_some()),
            "restartCount": rt.map_or(0, |r| r.restart_count),
            "state": state,
            "lastState": rt.map_or(json!({}), |r| r.last_state.clone()),
        })
    }

    fn report(&mut self, pod: &Value) {
        let mains = Self::spec_containers(pod, "containers");
        let inits = Self::spec_containers(pod, "initContainers");
        let statuses: Vec<Value> = mains.iter().map(|c| self.container_status(c)).collect();
        let init_statuses: Vec<Value> = inits.iter().map(|c| self.container_status(c)).collect();
        let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s["ready"] == Value::Bool(true));
        let initialized = self.init_done >= inits.len();
        let policy = pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always");
        let phase = if self.finished(pod) {
            let failed = mains.iter().any(|c| {
                self.containers
                    .get(c["name"].as_str().unwrap_or_default())
                    .and_then(|r| r.terminated.as_ref())
                    .is_some_and(|t| t["exitCode"] != 0)
            });
            if failed { "Failed" } else { "Succeeded" }
        } else if initialized && statuses.iter().any(|s| s["state"].get("running").is_some()) {
            "Running"
        } else {
            "Pending"
        };
        let _ = policy;
        let prev = &self.last_status;
        let cond = |type_: &str, ok: bool| -> Value {
            let status = if ok { "True" } else { "False" };
            let since = prev["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == type_ && c["status"] == status))
                .map(|c| c["lastTransitionTime"].clone())
                .unwrap_or(json!(now()));
            json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": since})
        };
        let mut status = json!({
            "phase": phase,
            "podIP": self.ip, "podIPs": [{"ip": self.ip}],
            "hostIP": self.k.bridge.gateway(), "hostIPs": [{"ip": self.k.bridge.gateway()}],
            "startTime": self.start_time,
            "qosClass": pod.pointer("/status/qosClass").cloned().unwrap_or(json!("BestEffort")),
            "conditions": [
                cond("PodReadyToStartContainers", true),
                cond("Initialized", initialized),
                cond("Ready", all_ready && phase == "Running"),
                cond("ContainersReady", all_ready),
                cond("PodScheduled", true),
            ],
            "containerStatuses": statuses,
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        if status == self.last_status {
            return;
        }
        let Some(pods) = self.k.server.resource_any("", "pods") else {
            return;
        };
        let mut next = pod.clone();
        next["status"] = status.clone();
        if self
            .k
            .server
            .update(&pods, &self.ns, &self.name, next, Part::Status, &opts())
            .is_ok()
        {
            self.last_status = status;
        }
    }
}

fn automount(pod: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken") != Some(&Value::Bool(false))
}

fn hostname(pod: &Value) -> String {
    pod.pointer("/spec/hostname")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| str_at(pod, "/metadata/name"))
}

/// The pod's /etc/hosts: itself, its headless-service names, and every Service name (all
/// DNS forms) resolving to that Service's ready endpoints (no kube-proxy here).
pub fn hosts_file(server: &ApiServer, pod: &Value, ip: &str, api_ip: &str) -> String {
    let ns = str_at(pod, "/metadata/namespace");
    let host = hostname(pod);
    let mut lines = vec![
        "127.0.0.1\tlocalhost".to_string(),
        "::1\tlocalhost ip6-localhost ip6-loopback".to_string(),
    ];
    let mut me = vec![host.clone()];
    if let Some(sub) = pod.pointer("/spec/subdomain").and_then(Value::as_str) {
        me.insert(0, format!("{host}.{sub}.{ns}.svc.cluster.local"));
        me.push(format!("{host}.{sub}.{ns}.svc"));
        me.push(format!("{host}.{sub}.{ns}"));
        me.push(format!("{host}.{sub}"));
    }
    lines.push(format!("{ip}\t{}", me.join(" ")));
    let names = |svc: &str, svc_ns: &str| -> Vec<String> {
        let mut n = vec![
            format!("{svc}.{svc_ns}.svc.cluster.local"),
            format!("{svc}.{svc_ns}.svc"),
            format!("{svc}.{svc_ns}"),
        ];
        if svc_ns == ns {
            n.push(svc.to_string());
        }
        n
    };
    lines.push(format!("{api_ip}\t{}", names("kubernetes", "default").join(" ")));
    let (endpoints, _) = server.store.list(&key("", "endpoints"), None);
    for ep in endpoints {
        let svc = str_at(&ep, "/metadata/name");
        let svc_ns = str_at(&ep, "/metadata/namespace");
        if svc == "kubernetes" && svc_ns == "default" {
            continue;
        }
        for subset in ep["subsets"].as_array().into_iter().flatten() {
            for a in subset["addresses"].as_array().into_iter().flatten() {
                let aip = a["ip"].as_str().unwrap_or_default();
                let mut all = names(&svc, &svc_ns);
                if let Some(h) = a["hostname"].as_str() {
                    all.insert(0, format!("{h}.{svc}.{svc_ns}.svc.cluster.local"));
                    all.insert(1, format!("{h}.{svc}.{svc_ns}.svc"));
                    all.insert(2, format!("{h}.{svc}.{svc_ns}"));
                    if svc_ns == ns {
                        all.insert(3, format!("{h}.{svc}"));
                    }
                }
                if aip != ip {
                    lines.push(format!("{aip}\t{}", all.join(" ")));
                }
            }
        }
    }
    let _ = LabelSelector::default();
    lines.join("\n") + "\n"
}

/// Runs one probe; true on success.
async fn run_probe(probe: &Value, container: &Value, ip: &str, pid: Option<u32>) -> bool {
    let timeout = Duration::from_secs(probe["timeoutSeconds"].as_u64().unwrap_or(1).max(1));
    let port_of = |p: &Value| -> Option<u16> {
        match p {
            Value::Number(n) => n.as_u64().map(|n| n as u16),
            Value::String(s) => s.parse().ok().or_else(|| {
                container["ports"]
                    .as_array()?
                    .iter()
                    .find(|cp| cp["name"] == *s)?["containerPort"]
                    .as_u64()
                    .map(|n| n as u16)
            }),
            _ => None,
        }
    };
    let fut = async {
        if let Some(h) = probe.get("httpGet") {
            let Some(port) = port_of(&h["port"]) else {
                return false;
            };
            let host = h["host"].as_str().unwrap_or(ip);
            if h["scheme"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("https"))
            {
                // HTTPS probes are not verified by real kubelets either; a TCP connect is
                // the closest check without a TLS client here.
                return tokio::net::TcpStream::connect((host, port)).await.is_ok();
            }
            let Ok(mut s) = tokio::net::TcpStream::connect((host, port)).await else {
                return false;
            };
            let path = h["path"].as_str().unwrap_or("/");
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            );
            if s.write_all(req.as_bytes()).await.is_err() {
                return false;
            }
            let mut buf = vec![0u8; 64];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n]);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (200..400).contains(&code)
        } else if let Some(t) = probe.get("tcpSocket") {
            let Some(port) = port_of(&t["port"]) else {
                return false;
            };
            tokio::net::TcpStream::connect((t["host"].as_str().unwrap_or(ip), port))
                .await
                .is_ok()
        } else if let Some(e) = probe.get("exec") {
            let Some(pid) = pid else { return false };
            let argv: Vec<String> = e["command"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            if argv.is_empty() {
                return false;
            }
            // Into the container's own process (inside its PID namespace and chroot), not the
            // wrapper that created the namespaces.
            let target = container_process(pid);
            Command::new("nsenter")
                .args([
                    "--target",
                    &target.to_string(),
                    "--mount",
                    "--net",
                    "--uts",
                    "--root",
                    "--wd",
                    "--",
                ])
                .args(&argv)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .is_ok_and(|s| s.success())
        } else {
            false
        }
    };
    tokio::time::timeout(timeout, fut).await.unwrap_or(false)
}

/// The container's own process below the wrappers the kubelet starts it with (`ip netns
/// exec`, `nsenter`, `unshare --fork`): the first descendant that is none of them.
fn container_process(pid: u32) -> u32 {
    let mut pid = pid;
    for _ in 0..4 {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !matches!(comm.trim_end(), "ip" | "nsenter" | "unshare") {
            break;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        match children.split_whitespace().next().and_then(|c| c.parse().ok()) {
            Some(child) => pid = child,
            None => break,
        }
    }
    pid
}

/// Where a pod's files are (for tests).
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}
