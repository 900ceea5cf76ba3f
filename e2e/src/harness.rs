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

    /// A fresh kubesim in instant mode (pods are records, no processes) with the CRDs of
    /// deploy/crds installed: for operators run as local processes ([`Env::run_operator`]).
    pub async fn start_instant_with_crds() -> anyhow::Result<Env> {
        let cluster = Cluster::start_temp().await?;
        let env = Env {
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            client: cluster.client().await?,
            cluster: Some(cluster),
        };
        let crds = bins::repo_root().join("deploy/crds");
        env.kubectl(&["apply", "--server-side", "-k", crds.to_str().context("path")?])
            .await?;
        Ok(env)
    }

    /// Runs our `operator` binary (debug or release, as the caller was built) against this
    /// cluster without leader election; it serves /metrics on the returned local port and is
    /// killed when the handle drops.
    pub fn run_operator(&self, operator: &str) -> anyhow::Result<(tokio::process::Child, u16)> {
        self.run_operator_as(operator, &self.kubeconfig, &[])
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

    /// [`Env::run_operator`] with another kubeconfig (a ServiceAccount's token, say) and
    /// extra flags.
    pub fn run_operator_as(
        &self,
        operator: &str,
        kubeconfig: &std::path::Path,
        extra: &[&str],
    ) -> anyhow::Result<(tokio::process::Child, u16)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = tokio::process::Command::new(bins::own_binary(operator)?)
            .args([
                "run",
                "--leader-elect=false",
                &format!("--metrics-addr=127.0.0.1:{port}"),
                "--log-level=warn",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .kill_on_drop(true)
            .spawn()?;
        Ok((child, port))
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

    /// The kubesim cluster for fault injection; `None` against a real cluster (such tests
    /// are the only ones skipped there).
    pub fn kubesim(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
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
}

/// Polls `check` until it is true or `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
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

/// Whether a pod's Ready condition is True.
pub fn pod_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The sum of `steward_reconcile_total` over every controller of the operator serving
/// /metrics on local `port` (`None` when it does not answer).
pub async fn reconciles_total(port: u16) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("steward_reconcile_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
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
