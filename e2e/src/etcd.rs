//! What the etcd-operator end-to-end tests share: EtcdCluster objects, etcdctl against a
//! cluster's members (plain or mutual TLS with the published client Secret) and a background
//! writer whose acknowledged keys a test checks afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

use crate::bins::Release;
use crate::harness::Env;
use crate::local_etcd::{etcdctl, etcdctl_input, etcdctl_with_hosts};

/// The files of a TLS Secret etcdctl needs.
pub const CLIENT_FILES: [&str; 3] = ["ca.crt", "tls.crt", "tls.key"];

/// EtcdClusters in `ns`.
pub fn clusters_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("etcd.steward.dev", "v1alpha1", "EtcdCluster"),
        "etcdclusters",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// An EtcdCluster in `default`; `spec` holds the further spec lines, each indented by two
/// spaces and ending in a newline (`"  tls: {mode: disabled}\n"`).
pub fn cluster_yaml(name: &str, size: u32, version: &str, spec: &str) -> String {
    format!(
        "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  size: {size}\n  version: {version}\n{spec}"
    )
}

/// A cluster's status (`Null` while it has none or cannot be read).
pub async fn status(clusters: &Api<DynamicObject>, name: &str) -> serde_json::Value {
    clusters
        .get(name)
        .await
        .map(|c| c.data["status"].clone())
        .unwrap_or_default()
}

/// A status condition by type.
pub fn condition<'a>(st: &'a serde_json::Value, type_: &str) -> Option<&'a serde_json::Value> {
    st["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

/// Whether the operator reports `size` ready, healthy voting members. It asks them with its
/// own client (certificate), so this also shows that client works.
pub fn healthy_voters(st: &serde_json::Value, size: i64) -> bool {
    st["readyMembers"] == size
        && st["members"].as_array().is_some_and(|m| {
            m.len() as i64 == size && m.iter().all(|m| m["isLearner"] == false && m["healthy"] == true)
        })
}

/// The label selector of a cluster's member pods.
pub fn member_selector(cluster: &str) -> ListParams {
    ListParams::default().labels(&format!(
        "app.kubernetes.io/instance={cluster},app.kubernetes.io/component=member"
    ))
}

/// A cluster's live member pods (not being deleted), by name.
pub async fn member_pods(client: &kube::Client, cluster: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut live: Vec<Pod> = pods
        .list(&member_selector(cluster))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    live.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(live)
}

/// (name, uid, restarts) of each live member pod: equal before and after means no member
/// pod was replaced or restarted.
pub async fn pod_identities(
    client: &kube::Client,
    cluster: &str,
) -> anyhow::Result<Vec<(String, String, i32)>> {
    Ok(member_pods(client, cluster)
        .await?
        .into_iter()
        .map(|p| {
            let restarts = p
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default()
                .iter()
                .map(|c| c.restart_count)
                .sum();
            (
                p.metadata.name.unwrap_or_default(),
                p.metadata.uid.unwrap_or_default(),
                restarts,
            )
        })
        .collect())
}

/// etcdctl against one cluster's members, whatever its `tls.mode`: plain HTTP to the pod IPs
/// when TLS is disabled; otherwise mutual TLS with the published `<name>-client-tls` Secret to
/// the DNS names in the server certificate (`<member>.<name>-peers.default.svc` and the client
/// Service `<name>.default.svc`), mapped to the pods' IPs in a private /etc/hosts.
pub struct Etcdctl {
    /// The client Secret's files, with TLS (as they were at [`Etcdctl::connect`]).
    pub tls: Option<tempfile::TempDir>,
    /// (ip, name) pairs for the private /etc/hosts.
    pub hosts: Vec<(String, String)>,
    /// Every live member's client URL, in the order of the pods' names.
    pub members: Vec<String>,
    /// Every live member's pod IP, in the same order.
    pub ips: Vec<String>,
    /// The client Service's URL (empty while it has no ready endpoint).
    pub service: String,
}

impl Etcdctl {
    /// Looks the members up as they are now (connect again after membership changes).
    pub async fn connect(env: &Env, name: &str) -> anyhow::Result<Etcdctl> {
        let spec = clusters_api(&env.client, "default").get(name).await?.data["spec"].clone();
        let tls = spec["tls"]["mode"] != "disabled";
        let mut members = Vec::new();
        let mut hosts = Vec::new();
        let mut ips = Vec::new();
        for p in member_pods(&env.client, name).await? {
            let Some(ip) = p.status.and_then(|s| s.pod_ip) else {
                continue;
            };
            ips.push(ip.clone());
            let pod = p.metadata.name.unwrap_or_default();
            if tls {
                let host = format!("{pod}.{name}-peers.default.svc");
                members.push(format!("https://{host}:2379"));
                hosts.push((ip, host));
            } else {
                members.push(format!("http://{ip}:2379"));
            }
        }
        // The client Service resolves (as in a pod's /etc/hosts) to one of its ready endpoints.
        let endpoints: Api<Endpoints> = Api::namespaced(env.client.clone(), "default");
        let service_ip = endpoints
            .get_opt(name)
            .await?
            .and_then(|e| e.subsets)
            .and_then(|s| {
                s.into_iter()
                    .flat_map(|s| s.addresses.unwrap_or_default())
                    .map(|a| a.ip)
                    .find(|ip| ips.contains(ip))
            });
        let service = match (&service_ip, tls) {
            (Some(ip), true) => {
                hosts.push((ip.clone(), format!("{name}.default.svc")));
                format!("https://{name}.default.svc:2379")
            }
            (Some(ip), false) => format!("http://{ip}:2379"),
            (None, _) => String::new(),
        };
        let dir = if tls {
            let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "default");
            let data = secrets
                .get(&format!("{name}-client-tls"))
                .await?
                .data
                .context("client Secret without data")?;
            let dir = tempfile::tempdir()?;
            for key in CLIENT_FILES {
                std::fs::write(
                    dir.path().join(key),
                    &data.get(key).context("client Secret file")?.0,
                )?;
            }
            Some(dir)
        } else {
            None
        };
        Ok(Etcdctl {
            tls: dir,
            hosts,
            members,
            ips,
            service,
        })
    }

    /// Every member's client URL, comma-separated.
    pub fn members(&self) -> String {
        self.members.join(",")
    }

    /// Runs etcdctl against `endpoints` with the client files when TLS is on.
    pub fn run(&self, endpoints: &str, rest: &[&str]) -> (bool, String) {
        self.run_with(self.tls.as_ref().map(|d| d.path()), endpoints, rest)
    }

    /// Writes every key and value of `pairs` (no spaces in them), 125 to a transaction (etcd
    /// takes at most 128 operations in one).
    pub fn put_all(&self, pairs: &[(String, String)]) -> anyhow::Result<()> {
        for chunk in pairs.chunks(125) {
            let puts: String = chunk.iter().map(|(k, v)| format!("put {k} {v}\n")).collect();
            let (ok, out) = self.run_input(&self.members(), &["txn"], &format!("\n{puts}\n\n"));
            anyhow::ensure!(ok && out.contains("SUCCESS"), "txn: {out}");
        }
        Ok(())
    }

    /// [`Etcdctl::run`] with `stdin` as etcdctl's input.
    pub fn run_input(&self, endpoints: &str, rest: &[&str], stdin: &str) -> (bool, String) {
        let args = self.args(self.tls.as_ref().map(|d| d.path()), endpoints, rest);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let hosts: &[(String, String)] = if self.tls.is_some() { &self.hosts } else { &[] };
        etcdctl_input(Release::Current, hosts, &refs, stdin)
    }

    fn args(&self, dir: Option<&std::path::Path>, endpoints: &str, rest: &[&str]) -> Vec<String> {
        let mut args = vec![
            "--endpoints".to_string(),
            endpoints.to_string(),
            "--dial-timeout=10s".to_string(),
            "--command-timeout=20s".to_string(),
        ];
        if let Some(dir) = dir {
            let file = |n: &str| dir.join(n).display().to_string();
            args.push(format!("--cacert={}", file("ca.crt")));
            args.push(format!("--cert={}", file("tls.crt")));
            args.push(format!("--key={}", file("tls.key")));
        }
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    }

    /// [`Etcdctl::run`] with the client files in `dir` instead (a client certificate as it
    /// was at another time; `None` for none at all).
    pub fn run_with(&self, dir: Option<&std::path::Path>, endpoints: &str, rest: &[&str]) -> (bool, String) {
        let args = self.args(dir, endpoints, rest);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        if self.tls.is_some() {
            etcdctl_with_hosts(Release::Current, &self.hosts, &refs)
        } else {
            etcdctl(Release::Current, &refs)
        }
    }

    /// How many keys start with `prefix` (`None` when etcd does not answer).
    pub fn count(&self, prefix: &str) -> Option<u64> {
        let (ok, out) = self.run(
            &self.members(),
            &["get", prefix, "--prefix", "--count-only", "-w", "fields"],
        );
        if !ok {
            return None;
        }
        out.lines()
            .find_map(|l| l.strip_prefix("\"Count\" : "))
            .and_then(|n| n.trim().parse().ok())
    }

    /// The keys starting with `prefix` among `keys` that etcd does not have.
    pub fn missing(&self, prefix: &str, keys: &[String]) -> anyhow::Result<Vec<String>> {
        let (ok, out) = self.run(&self.members(), &["get", prefix, "--prefix", "--keys-only"]);
        anyhow::ensure!(ok, "listing {prefix}*: {out}");
        let have: std::collections::BTreeSet<&str> = out.lines().collect();
        Ok(keys
            .iter()
            .filter(|k| !have.contains(k.as_str()))
            .cloned()
            .collect())
    }
}

/// Writes `<prefix><n>` keys in the background, one etcdctl every 100 ms, to a TLS-disabled
/// cluster's members as they are now (it looks them up again every few writes and after a
/// failure, as members get new pods and addresses); remembers each acknowledged key.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts writing to cluster `name`.
    pub async fn start(env: &Env, name: &str, prefix: &str) -> anyhow::Result<Writer> {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut endpoints = member_urls(&env.client, name).await?;
        let (client, name, prefix) = (env.client.clone(), name.to_string(), prefix.to_string());
        let task = {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                let mut failed = false;
                while !stop.load(Ordering::SeqCst) {
                    if (failed || i.is_multiple_of(5))
                        && let Ok(now) = member_urls(&client, &name).await
                        && !now.is_empty()
                    {
                        endpoints = now;
                    }
                    let key = format!("{prefix}{i:05}");
                    let (eps, k) = (endpoints.clone(), key.clone());
                    // etcdctl blocks; keep it off the runtime's two workers.
                    let put = tokio::task::spawn_blocking(move || {
                        etcdctl(
                            Release::Current,
                            &["--endpoints", &eps, "--command-timeout=2s", "put", &k, "v"],
                        )
                        .0
                    });
                    failed = !put.await.unwrap_or(false);
                    if !failed && let Ok(mut a) = acked.lock() {
                        a.push(key);
                    }
                    i += 1;
                    // Pacing, not waiting for anything.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Ok(Writer { stop, acked, task })
    }

    /// How many writes were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Stops writing; returns every acknowledged key.
    pub async fn stop(self) -> anyhow::Result<Vec<String>> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await?;
        let acked = self.acked.lock().map(|a| a.clone()).unwrap_or_default();
        Ok(acked)
    }
}

/// Plain HTTP URLs of a cluster's live members with an IP, comma-separated.
async fn member_urls(client: &kube::Client, name: &str) -> anyhow::Result<String> {
    Ok(member_pods(client, name)
        .await?
        .into_iter()
        .filter_map(|p| p.status?.pod_ip)
        .map(|ip| format!("http://{ip}:2379"))
        .collect::<Vec<_>>()
        .join(","))
}
