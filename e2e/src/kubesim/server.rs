//! The API server's shared state.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::auth::Tokens;
use super::registry::{Registry, ResourceType};
use super::store::Store;

/// How scheduled pods become running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NodeMode {
    /// Pods are marked Running and Ready at once; nothing runs (like kwok).
    #[default]
    Instant,
    /// Pods run as real processes (kubesim part 2).
    Process,
}

/// Serves container logs for `pods/log` (the process-mode kubelet provides one).
pub trait LogSource: Send + Sync {
    /// The log of one container, or an error message.
    fn logs(&self, ns: &str, pod: &str, container: &str, tail_lines: Option<usize>)
    -> Result<String, String>;
}

/// Shared state of one kubesim API server.
pub struct ApiServer {
    /// Object storage.
    pub store: Arc<Store>,
    registry: RwLock<Registry>,
    /// Bearer tokens.
    pub tokens: Arc<Tokens>,
    /// Node mode.
    pub node_mode: NodeMode,
    /// Names of the simulated nodes.
    pub nodes: Vec<String>,
    /// URL clients reach this server at.
    pub server_url: RwLock<String>,
    /// CA certificate PEM (for service-account volumes and token Secrets).
    pub ca_pem: String,
    next_ip: AtomicU32,
    /// Bumping this ends every open watch (clients re-watch from their last version).
    pub watch_epoch: tokio::sync::watch::Sender<u64>,
    /// Logs for `pods/log`.
    pub log_source: RwLock<Option<Arc<dyn LogSource>>>,
    /// While set, new watches are refused with 503 (fault injection: an unreachable API).
    pub watches_paused: std::sync::atomic::AtomicBool,
    /// `apiserver_request_total`, served on `/metrics`.
    pub request_metrics: super::request_metrics::RequestMetrics,
    /// Who made which request, for tests (an audit log at the ResponseComplete stage).
    pub audit: super::audit::AuditLog,
    /// Fault injection: answers to requests made with a pod's token are held back this long
    /// after the request took effect (a slow network back to the client), by pod name.
    pub response_delays: RwLock<std::collections::HashMap<String, std::time::Duration>>,
    /// Fault injection: every watch event reaches its watchers this many milliseconds after
    /// it happened (0: at once). Real watches lag behind writes; a controller that decides
    /// from its watch copy right after its own write sees the old object.
    pub watch_delay_ms: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").finish_non_exhaustive()
    }
}

impl ApiServer {
    /// A server with an empty store.
    pub fn new(node_mode: NodeMode, nodes: usize, ca_pem: String) -> Self {
        let (watch_epoch, _) = tokio::sync::watch::channel(0);
        ApiServer {
            request_metrics: Default::default(),
            audit: Default::default(),
            response_delays: Default::default(),
            store: Arc::new(Store::new(200_000)),
            registry: RwLock::new(Registry::default()),
            tokens: Arc::new(Tokens::new()),
            node_mode,
            nodes: (0..nodes.max(1))
                .map(|i| {
                    if i == 0 {
                        "kubesim-node".to_string()
                    } else {
                        format!("kubesim-node-{i}")
                    }
                })
                .collect(),
            server_url: RwLock::new(String::new()),
            ca_pem,
            // Service ClusterIPs come from 10.96.0.0/12, skipping .0 and .1 (the API server).
            next_ip: AtomicU32::new(10),
            watch_epoch,
            log_source: RwLock::new(None),
            watches_paused: std::sync::atomic::AtomicBool::new(false),
            watch_delay_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A snapshot of the served resources.
    pub fn registry(&self) -> Registry {
        self.registry.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The type served at group/version/plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.registry.read().ok()?.get(group, version, plural)
    }

    /// The preferred served type of group/plural (for in-process controllers).
    pub fn resource_any(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        let reg = self.registry.read().ok()?;
        let mut all = reg.versions_of(&super::registry::StorageKey {
            group: group.into(),
            plural: plural.into(),
        });
        all.sort_by(|a, b| {
            super::registry::version_priority(&b.version).cmp(&super::registry::version_priority(&a.version))
        });
        all.into_iter().next()
    }

    /// Serves (or re-serves) the custom resources of a CRD.
    pub fn register_crd(&self, crd: &Value) -> Result<(), String> {
        match self.registry.write() {
            Ok(mut r) => r.register_crd(crd),
            Err(_) => Err("registry lock poisoned".into()),
        }
    }

    /// Stops serving a custom resource.
    pub fn unregister_crd(&self, group: &str, plural: &str) {
        if let Ok(mut r) = self.registry.write() {
            r.unregister(group, plural);
        }
    }

    /// The next free Service ClusterIP.
    pub fn allocate_cluster_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::SeqCst);
        format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
    }

    /// Ends every open watch.
    pub fn drop_watches(&self) {
        self.watch_epoch.send_modify(|e| *e += 1);
    }

    /// Ends every open watch and refuses new ones until [`ApiServer::resume_watches`]:
    /// clients miss what happens meanwhile, as with a partitioned API server.
    pub fn pause_watches(&self) {
        self.watches_paused.store(true, Ordering::SeqCst);
        self.drop_watches();
    }

    /// Accepts watches again.
    pub fn resume_watches(&self) {
        self.watches_paused.store(false, Ordering::SeqCst);
    }
}

/// Now, as the API formats timestamps (RFC 3339, seconds).
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Now with microseconds (MicroTime fields).
pub fn now_micro() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A random UID in UUID v4 format.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:01x}{:02x}-{:01x}{:01x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6] & 0x0f,
        b[7],
        8 | (b[8] & 0x3),
        b[8] >> 4,
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// A `generateName` suffix: five characters from the apiserver's alphabet.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
