//! A real S3 server for tests: `s3s-fs` (installed by `make test-deps`) serving a temporary
//! directory on loopback, with known credentials. Buckets are directories under its root.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bins;
use crate::local_etcd::free_port;

/// One s3s-fs process (on 127.0.0.1 unless asked otherwise); killed on drop (with its data).
#[derive(Debug)]
pub struct S3Server {
    /// `http://<host>:<port>`.
    pub endpoint: String,
    /// Root directory: bucket `b`, key `k` is the file `root/b/k`.
    pub root: PathBuf,
    child: std::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Access key the server accepts.
    pub const ACCESS_KEY: &'static str = "steward-test-access";
    /// Secret key the server accepts.
    pub const SECRET_KEY: &'static str = "steward-test-secret-key";
    /// Region to sign for (s3s-fs accepts any).
    pub const REGION: &'static str = "us-east-1";

    /// The server's process ID (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts s3s-fs on 127.0.0.1 and a free port, and waits until it answers HTTP.
    pub async fn start() -> anyhow::Result<S3Server> {
        Self::start_on("127.0.0.1").await
    }

    /// s3s-fs where kubesim's pods reach it (its host address, process mode), with bucket
    /// `bucket` and a Secret `secret` in namespace `default` holding the credentials as
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (what a backup destination's
    /// `credentialsSecret` names).
    pub async fn for_pods(
        sim: &crate::kubesim::Cluster,
        env: &crate::harness::Env,
        bucket: &str,
        secret: &str,
    ) -> anyhow::Result<S3Server> {
        let host = sim
            .host_address()
            .context("pods reach the S3 server on kubesim's host address: process mode only")?;
        let server = Self::start_on(&host).await?;
        server.create_bucket(bucket)?;
        env.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {secret}, namespace: default}}\nstringData: {{AWS_ACCESS_KEY_ID: {}, AWS_SECRET_ACCESS_KEY: {}}}\n",
            Self::ACCESS_KEY,
            Self::SECRET_KEY
        ))
        .await?;
        Ok(server)
    }

    /// Starts s3s-fs on `host` (kubesim's [`host_address`](crate::kubesim::Cluster::host_address),
    /// for pods to reach it) and a free port, and waits until it answers HTTP.
    pub async fn start_on(host: &str) -> anyhow::Result<S3Server> {
        let bin = bins::s3s_fs()?;
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root)?;
        let log = dir.path().join("s3s-fs.log");
        let port = free_port();
        let log_file = std::fs::File::create(&log).context("s3s-fs log file")?;
        let child = std::process::Command::new(&bin)
            .arg(format!("--host={host}"))
            .arg(format!("--port={port}"))
            .arg(format!("--access-key={}", Self::ACCESS_KEY))
            .arg(format!("--secret-key={}", Self::SECRET_KEY))
            .arg(&root)
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = S3Server {
            endpoint: format!("http://{host}:{port}"),
            root,
            child,
            log,
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("s3s-fs exited ({status}) before answering: {}", self.log_text());
            }
            // Any HTTP answer (an anonymous request is refused) means it serves.
            if http.get(&self.endpoint).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("s3s-fs did not answer on {}: {}", self.endpoint, self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates a bucket (a directory under the root, as s3s-fs keeps them).
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.root.join(name)).with_context(|| format!("creating bucket {name}"))
    }

    /// The file that holds `key` of `bucket`.
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// Every object key in `bucket` (files below its directory, s3s-fs' own metadata
    /// excluded), sorted.
    pub fn keys(&self, bucket: &str) -> anyhow::Result<Vec<String>> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    walk(base, &path, out)?;
                } else if let Ok(rel) = path.strip_prefix(base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.root.join(bucket), &self.root.join(bucket), &mut out)?;
        out.sort();
        Ok(out)
    }

    /// Files of multipart uploads in progress (parts not yet assembled into an object).
    pub fn pending_parts(&self) -> anyhow::Result<Vec<String>> {
        let mut out: Vec<String> = std::fs::read_dir(&self.root)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".upload_id-"))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// An HTTPS endpoint in front of an [`S3Server`], with a certificate for 127.0.0.1 from its
/// own CA: real S3 clients speak TLS, and this checks ours does. Stops on drop.
#[derive(Debug)]
pub struct TlsFront {
    /// `https://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The CA certificate (PEM) that signed the serving certificate.
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    /// Serves this server over HTTPS on another port (TLS terminated here, plain HTTP/1.1
    /// forwarded to s3s-fs).
    pub async fn tls_front(&self) -> anyhow::Result<TlsFront> {
        let pki = crate::kubesim::pki::Pki::new()?;
        let mut config = (*pki.server_config(&["127.0.0.1".to_string()])?).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("https://{}", listener.local_addr()?);
        let upstream = self.endpoint.trim_start_matches("http://").to_string();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(TlsFront {
            endpoint,
            ca_pem: pki.ca_pem(),
            task,
        })
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
