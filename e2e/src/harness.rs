//! The end-to-end harness: a cluster to run against (kubesim in process mode, or the
//! cluster named by `E2E_KUBECONFIG`), kubectl, deploying `deploy/default`, and waiting.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bins;
use crate::kubesim::{Cluster, NodeMode};

/// Where the tests run.
pub struct Env {
    /// The kubesim cluster, when not running against `E2E_KUBECONFIG`.
    pub cluster: Option<Cluster>,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Admin client.
    pub client: kube::Client,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// `E2E_KUBECONFIG`'s cluster, or a fresh kubesim in process mode.
    pub async fn start() -> anyhow::Result<Env> {
        if let Some(path) = std::env::var_os("E2E_KUBECONFIG") {
            let kubeconfig = PathBuf::from(path);
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
            return Ok(Env {
                cluster: None,
                kubeconfig,
                client: kube::Client::try_from(config)?,
            });
        }
        let cluster = Cluster::start_temp_with(NodeMode::Process).await?;
        let client = cluster.client().await?;
        Ok(Env {
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            client,
            cluster: Some(cluster),
        })
    }

    /// An `Env` around a kubesim cluster the caller started (any node mode).
    pub async fn from_cluster(cluster: Cluster) -> anyhow::Result<Env> {
        Ok(Env {
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            client: cluster.client().await?,
            cluster: Some(cluster),
        })
    }

    /// A fresh kubesim in instant mode (pods are records, no processes) with the CRDs of
    /// deploy/crds installed: for operators run as local processes ([`Env::run_operator`])
    /// and for admission tests. Always kubesim, also with `E2E_KUBECONFIG` set: a local
    /// operator process needs nothing from a real cluster.
    pub async fn start_instant_with_crds() -> anyhow::Result<Env> {
        let env = Env::from_cluster(Cluster::start_temp().await?).await?;
        env.install_crds().await?;
        Ok(env)
    }

    /// Applies deploy/crds server-side.
    pub async fn install_crds(&self) -> anyhow::Result<()> {
        let crds = bins::repo_root().join("deploy/crds");
        self.kubectl(&["apply", "--server-side", "-k", crds.to_str().context("path")?])
            .await?;
        Ok(())
    }

    /// Runs our `operator` binary (debug or release, as the caller was built) against this
    /// cluster without leader election; returns once it serves /metrics, with the local port
    /// it serves on. The process is killed when the handle drops.
    pub async fn run_operator(&self, operator: &str) -> anyhow::Result<(tokio::process::Child, u16)> {
        self.run_operator_as(operator, &self.kubeconfig, &[]).await
    }

    /// A kubeconfig like the admin's that authenticates as ServiceAccount `namespace/name`
    /// (kubesim only), written into `dir`.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<PathBuf> {
        let cluster = self
            .kubesim()
            .context("service account kubeconfigs need kubesim")?;
        let token = cluster.server.tokens.issue_service_account(namespace, name);
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let mut kc = serde_json::to_value(&kc)?;
        for user in kc["users"].as_array_mut().into_iter().flatten() {
            user["user"] = serde_json::json!({"token": token});
        }
        let path = dir.join(format!("kubeconfig-{namespace}-{name}"));
        std::fs::write(&path, serde_json::to_string(&kc)?)?;
        Ok(path)
    }

    /// A client of the test cluster that authenticates with `token` alone (a ServiceAccount's
    /// token from `kubectl create token`, say), so a test sees what that identity may do.
    pub async fn client_with_token(&self, token: &str) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let mut cfg = kube::config::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        cfg.auth_info = kube::config::AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        };
        Ok(kube::Client::try_from(cfg)?)
    }

    /// [`Env::run_operator`] with another kubeconfig (a ServiceAccount's token, say) and
    /// extra flags.
    pub async fn run_operator_as(
        &self,
        operator: &str,
        kubeconfig: &std::path::Path,
        extra: &[&str],
    ) -> anyhow::Result<(tokio::process::Child, u16)> {
        let mut cmd = tokio::process::Command::new(bins::own_binary(operator)?);
        cmd.args(["run", "--leader-elect=false"])
            .args(extra)
            .env("KUBECONFIG", kubeconfig);
        spawn_reporting_port(cmd).await
    }

    /// Process mode with deploy/default applied and every one of `operators` rolled out
    /// (both replicas ready).
    pub async fn with_operators(operators: &[&str]) -> anyhow::Result<Env> {
        let env = Env::start().await?;
        env.deploy_operators(operators).await?;
        Ok(env)
    }

    /// Applies deploy/default and waits until every one of `operators` is rolled out (both
    /// replicas ready).
    pub async fn deploy_operators(&self, operators: &[&str]) -> anyhow::Result<()> {
        self.deploy_default().await?;
        // The operators' children land in `default` in most scenarios: it enforces
        // "restricted" like steward-system, so a pod a real cluster would refuse fails here.
        self.kubectl(&[
            "label",
            "namespace",
            "default",
            "--overwrite",
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ])
        .await?;
        for op in operators {
            deployment_ready(&self.client, "steward-system", op, 2, Duration::from_secs(180)).await?;
        }
        Ok(())
    }

    /// The kubesim cluster for fault injection; `None` against a real cluster. A test that
    /// cannot run without it uses [`Env::require_kubesim`], which says so.
    pub fn kubesim(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// The kubesim cluster, or `None` after printing `SKIPPED on E2E_KUBECONFIG: <why>` to the
    /// test's output (not captured, so a passing run shows it too): a test never skips
    /// silently. Use as `let Some(sim) = env.require_kubesim("why") else { return };`.
    pub fn require_kubesim(&self, why: &str) -> Option<&Cluster> {
        if self.cluster.is_none() {
            report_skip(why);
        }
        self.cluster.as_ref()
    }

    /// Kills a container's process with SIGKILL and waits until it is gone, so a test that
    /// means to kill something knows it did (kubesim only). Returns the pid killed.
    pub async fn kill_container(&self, ns: &str, pod: &str, container: &str) -> anyhow::Result<u32> {
        let sim = self.kubesim().context("killing a container needs kubesim")?;
        let pid = sim.signal_container(ns, pod, container, "KILL")?;
        wait_for(
            &format!("{ns}/{pod} {container} (pid {pid}) to die"),
            Duration::from_secs(30),
            || async move { !process_alive(pid) },
        )
        .await?;
        Ok(pid)
    }

    /// Runs kubectl with this cluster's kubeconfig, feeding `stdin`; returns stdout.
    pub async fn kubectl_with_input(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(bins::kubectl()?);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs kubectl; returns stdout.
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_with_input(args, None).await
    }

    /// Renders `deploy/default` with kustomize and applies it server-side.
    pub async fn deploy_default(&self) -> anyhow::Result<()> {
        let dir = bins::repo_root().join("deploy/default");
        let rendered = self
            .kubectl(&["kustomize", dir.to_str().context("path")?])
            .await?;
        self.kubectl_with_input(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&rendered),
        )
        .await?;
        Ok(())
    }

    /// Applies YAML server-side.
    pub async fn apply(&self, yaml: &str) -> anyhow::Result<()> {
        self.kubectl_with_input(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(yaml),
        )
        .await
        .map(|_| ())
    }

    /// GETs `url` from a new pod in `ns` (Pod Security "restricted", kubesim's host image
    /// with curl) and returns the body: what a client inside the cluster, like Grafana, sees.
    pub async fn fetch_in_cluster(&self, ns: &str, url: &str) -> anyhow::Result<String> {
        use k8s_openapi::api::core::v1::Pod;
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!("fetch-{}", SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "curl", "image": "kubesim/host", "command": ["curl", "-sSf", "--max-time", "10", url],
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                }],
            },
        }))?;
        let pods: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), ns);
        pods.create(&Default::default(), &pod).await?;
        let phase = wait_until(
            &format!("the fetch pod {ns}/{name} finished"),
            Duration::from_secs(60),
            || async {
                let phase = pods.get(&name).await.ok()?.status?.phase?;
                (phase == "Succeeded" || phase == "Failed").then_some(phase)
            },
        )
        .await?;
        let body = pods.logs(&name, &Default::default()).await.unwrap_or_default();
        if phase != "Succeeded" {
            bail!("fetching {url} from {ns}: {phase}: {body}");
        }
        Ok(body)
    }

    /// What a failing test wants to see: objects of `kinds` in `namespace` as YAML, and the
    /// last log lines of every pod there and of the operators.
    pub async fn diagnostics(&self, namespace: &str, kinds: &str) -> String {
        let mut out = String::new();
        for args in [
            vec!["get", kinds, "-n", namespace, "-o", "yaml"],
            vec!["get", "pods", "-A", "-o", "wide"],
        ] {
            out.push_str(&format!("$ kubectl {}\n", args.join(" ")));
            out.push_str(&self.kubectl(&args).await.unwrap_or_else(|e| e.to_string()));
        }
        for ns in [namespace, "steward-system"] {
            let names = self
                .kubectl(&["get", "pods", "-n", ns, "-o", "name"])
                .await
                .unwrap_or_default();
            for pod in names.lines() {
                out.push_str(&format!("--- logs {ns}/{pod}\n"));
                let logs = self
                    .kubectl(&["logs", "-n", ns, pod, "--tail=30"])
                    .await
                    .unwrap_or_else(|e| e.to_string());
                out.push_str(&logs);
            }
        }
        out
    }
    /// `result`'s value; if it is an error, fails the test with it and the
    /// [`diagnostics`](Env::diagnostics) of `kinds` in `namespace`.
    #[allow(clippy::panic)] // failing the test is what it is for
    pub async fn or_diagnose<T>(&self, result: anyhow::Result<T>, namespace: &str, kinds: &str) -> T {
        match result {
            Ok(v) => v,
            Err(e) => panic!("{e:#}\n{}", self.diagnostics(namespace, kinds).await),
        }
    }
}

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(300);

/// Polls `check` until it is true or `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until(what, timeout, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `check` until it returns a value or `timeout` passes; returns the value.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `sample` has returned the same value for `quiet` (something has stopped
/// moving: a request counter, a reconcile count), at most `timeout`; returns that value.
/// Unlike a fixed sleep followed by a comparison, a slow machine only makes it take longer.
pub async fn settle<T, F, Fut>(
    what: &str,
    quiet: Duration,
    timeout: Duration,
    mut sample: F,
) -> anyhow::Result<T>
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    let mut last = sample().await;
    let mut since = Instant::now();
    loop {
        if since.elapsed() >= quiet {
            return Ok(last);
        }
        if Instant::now() >= deadline {
            bail!("{what} did not stay still for {quiet:?} within {timeout:?}; last {last:?}");
        }
        tokio::time::sleep(POLL).await;
        let now = sample().await;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// Prints a skipped test's reason where the test runner does not capture it.
pub fn report_skip(why: &str) {
    use std::io::Write;
    // Written to the stderr handle, not with eprintln!, which libtest captures.
    let _ = writeln!(std::io::stderr(), "SKIPPED on E2E_KUBECONFIG: {why}");
}

/// The scheduling state letter of a process (`T` when stopped, `Z` a zombie), `None` once
/// it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the state follows the last ')', as comm may hold spaces.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether process `pid` still runs (a zombie waiting to be reaped does not).
pub fn process_alive(pid: u32) -> bool {
    process_state(pid).is_some_and(|state| state != 'Z' && state != 'X')
}

/// Spawns one of our operators (`cmd` without `--metrics-addr` and logging flags) on a port
/// the operator picks itself, and returns once it reports that port. Picking a free port here
/// and passing it on would race with anything else binding ports meanwhile.
pub async fn spawn_reporting_port(
    mut cmd: tokio::process::Command,
) -> anyhow::Result<(tokio::process::Child, u16)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = cmd
        .args([
            "--metrics-addr=127.0.0.1:0",
            "--log-format=json",
            // Warnings and up as before, plus the runtime's line naming the address.
            "--log-level=warn,steward_core::runtime=info",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("operator stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let port = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            let addr = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["addr"].as_str()?.parse::<std::net::SocketAddr>().ok());
            if let Some(addr) = addr {
                return Ok(addr.port());
            }
            seen.push(line);
        }
        bail!(
            "the operator exited before serving /metrics:\n{}",
            seen.join("\n")
        )
    })
    .await
    .context("the operator did not report its metrics address within 60 s")??;
    // Keep draining its log (a full pipe would block it), shown as before on our stdout.
    tokio::spawn(async move {
        use std::io::Write;
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    });
    Ok((child, port))
}

/// Waits until a Deployment has `replicas` ready replicas.
pub async fn deployment_ready(
    client: &kube::Client,
    ns: &str,
    name: &str,
    replicas: i32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("deployment {ns}/{name} with {replicas} ready replicas"),
        timeout,
        || async {
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|d| d.status)
                .and_then(|s| s.ready_replicas)
                == Some(replicas)
        },
    )
    .await
}

/// The `holderIdentity` of Lease `ns/name` (`None` while vacant or missing).
pub async fn lease_holder(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), ns);
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Waits until pod `name` is in `phase` (`Running`, `Succeeded`, ...).
pub async fn pod_phase(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    phase: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_for(&format!("pod {name} {phase}"), timeout, || async {
        pods.get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.status?.phase)
            .as_deref()
            == Some(phase)
    })
    .await
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The sum of every sample of metric `name` in the Prometheus text served at `url` (`None`
/// when it does not answer).
pub async fn metric_sum(url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    Some(
        text.lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with([' ', '{'])))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// The sum of `steward_reconcile_total` over every controller of the operator serving
/// /metrics on local `port` (`None` when it does not answer).
pub async fn reconciles_total(port: u16) -> Option<f64> {
    metric_sum(
        &format!("http://127.0.0.1:{port}/metrics"),
        "steward_reconcile_total",
    )
    .await
}

/// The TCP port process `pid` listens on, once it listens on exactly one: for programs
/// told to listen on port 0 that do not say which port they got (Prometheus).
pub fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                ports.extend(port);
            }
        }
    }
    ports.dedup();
    match ports[..] {
        [port] => Some(port),
        _ => None,
    }
}

/// Whether the operator serving on local `port` answers /readyz with success.
pub async fn operator_ready(port: u16) -> bool {
    reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// A KiB figure from /proc/<pid>/status, e.g. `VmRSS:` or `VmHWM:` (0 when unreadable).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
