//! Real etcd processes on loopback for tests of our etcd client layer and planner.

use std::path::PathBuf;

use anyhow::Context;

use crate::bins::{self, Release};
use crate::kubesim::pki::{Issued, Pki};

/// TLS material for a loopback cluster: one CA, a server/peer certificate for 127.0.0.1,
/// and a client certificate.
#[derive(Debug)]
pub struct LocalTls {
    dir: PathBuf,
    /// CA certificate PEM.
    pub ca: String,
    /// Client certificate.
    pub client: Issued,
}

impl LocalTls {
    /// Writes the CA and a server certificate into `dir`.
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let pki = Pki::new()?;
        let server = pki.issue("etcd", &["127.0.0.1".to_string(), "localhost".to_string()])?;
        let client = pki.issue("root", &[])?;
        std::fs::write(dir.join("ca.crt"), pki.ca_pem())?;
        std::fs::write(dir.join("server.crt"), &server.cert_pem)?;
        std::fs::write(dir.join("server.key"), &server.key_pem)?;
        Ok(Self {
            dir,
            ca: pki.ca_pem(),
            client,
        })
    }

    fn args(&self) -> Vec<String> {
        let f = |n: &str| self.dir.join(n).display().to_string();
        vec![
            format!("--cert-file={}", f("server.crt")),
            format!("--key-file={}", f("server.key")),
            format!("--trusted-ca-file={}", f("ca.crt")),
            "--client-cert-auth".into(),
            format!("--peer-cert-file={}", f("server.crt")),
            format!("--peer-key-file={}", f("server.key")),
            format!("--peer-trusted-ca-file={}", f("ca.crt")),
            "--peer-client-cert-auth".into(),
        ]
    }
}

/// One etcd member process on 127.0.0.1; killed on drop.
#[derive(Debug)]
pub struct LocalEtcd {
    /// Member name.
    pub name: String,
    /// Client URL.
    pub client_url: String,
    /// Peer URL.
    pub peer_url: String,
    child: Option<std::process::Child>,
}

/// A free TCP port on loopback for a process that must be told its port before it starts
/// (etcd's `--initial-cluster`, Prometheus' `--web.listen-address`).
///
/// Asking the kernel for port 0 and closing the socket would race: the port comes from the
/// ephemeral range, where any outgoing connection may take it before the process binds it.
/// These ports come from below that range instead, which the kernel never hands out on its
/// own, and a counter keeps the tests of one binary from getting the same port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(FIRST);
    // Test binaries run one after another: start each at its own place in the span.
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(FIRST + start.wrapping_add(n) % span.max(1)) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // No span below the ephemeral range (an unusual kernel setting): let the kernel pick.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl LocalEtcd {
    /// URLs for a member that is about to start (so they can go into `--initial-cluster`).
    pub fn plan(name: &str, tls: bool) -> LocalEtcd {
        let scheme = if tls { "https" } else { "http" };
        LocalEtcd {
            name: name.to_string(),
            client_url: format!("{scheme}://127.0.0.1:{}", free_port()),
            peer_url: format!("{scheme}://127.0.0.1:{}", free_port()),
            child: None,
        }
    }

    /// Starts the member with `initial_cluster` (`a=url,b=url`) and state `new`/`existing`.
    pub fn start(
        &mut self,
        release: Release,
        data: &std::path::Path,
        initial_cluster: &str,
        state: &str,
        tls: Option<&LocalTls>,
    ) -> anyhow::Result<()> {
        let mut cmd = std::process::Command::new(bins::etcd(release)?);
        cmd.arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", data.join(&self.name).display()))
            .arg(format!("--listen-client-urls={}", self.client_url))
            .arg(format!("--advertise-client-urls={}", self.client_url))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=steward-test")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(data.join(format!("{}.log", self.name))).context("log file")?);
        if let Some(t) = tls {
            cmd.args(t.args());
        }
        self.child = Some(cmd.spawn().context("starting etcd")?);
        Ok(())
    }

    /// `name=peer_url`.
    pub fn initial(&self) -> String {
        format!("{}={}", self.name, self.peer_url)
    }

    /// Kills the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the `release` etcdctl with `args`: whether it succeeded, and stdout plus stderr.
pub fn etcdctl(release: Release, args: &[&str]) -> (bool, String) {
    etcdctl_input(release, &[], args, "")
}

/// Runs etcdctl like [`etcdctl`], but in a private mount namespace whose `/etc/hosts` maps
/// the given names, so TLS clients can use the DNS names in a cluster's certificates from
/// the host. Needs root.
pub fn etcdctl_with_hosts(release: Release, hosts: &[(String, String)], args: &[&str]) -> (bool, String) {
    etcdctl_input(release, hosts, args, "")
}

/// Runs etcdctl with `stdin` as its input (`txn` reads its operations there), with the host
/// names `hosts` as [`etcdctl_with_hosts`] maps them (none: plain [`etcdctl`]).
pub fn etcdctl_input(
    release: Release,
    hosts: &[(String, String)],
    args: &[&str],
    stdin: &str,
) -> (bool, String) {
    let bin = match bins::etcdctl(release) {
        Ok(b) => b,
        Err(e) => return (false, e.to_string()),
    };
    // Kept until etcdctl is done: the /etc/hosts it sees.
    let mut hosts_file = None;
    let mut cmd = if hosts.is_empty() {
        std::process::Command::new(bin)
    } else {
        let file = match tempfile::NamedTempFile::new() {
            Ok(f) => f,
            Err(e) => return (false, e.to_string()),
        };
        let text: String = std::iter::once("127.0.0.1 localhost\n".to_string())
            .chain(hosts.iter().map(|(ip, name)| format!("{ip} {name}\n")))
            .collect();
        if let Err(e) = std::fs::write(file.path(), text) {
            return (false, e.to_string());
        }
        let script = format!(
            "mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
            file.path().display()
        );
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(bin);
        hosts_file = Some(file);
        cmd
    };
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = cmd.spawn().and_then(|mut child| {
        if let Some(mut input) = child.stdin.take() {
            std::io::Write::write_all(&mut input, stdin.as_bytes())?;
        }
        child.wait_with_output()
    });
    drop(hosts_file);
    match out {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}
