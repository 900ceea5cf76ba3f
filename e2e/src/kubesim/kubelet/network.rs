//! The pod network: one Linux bridge per cluster with a private /24, and a network
//! namespace plus veth pair per pod. The host owns the bridge address, so tests and the API
//! server reach every pod directly; nothing is routed off the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Runs a command, failing with its stderr.
pub fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Where the bridges record their owner process, so a crashed run's leftovers are found.
fn lock_dir() -> PathBuf {
    PathBuf::from("/run/kubesim")
}

/// One cluster's bridge and subnet (10.244.<index>.0/24).
#[derive(Debug)]
pub struct Bridge {
    /// Subnet index.
    pub index: u8,
    /// Bridge interface name.
    pub name: String,
}

impl Bridge {
    /// Whether this machine lets us create network namespaces (needs root).
    pub fn check_support() -> anyhow::Result<()> {
        // Unique per call: tests start several clusters at once in one process.
        let probe = format!("kscheck{}-{:08x}", std::process::id(), rand::random::<u32>());
        sh("ip", &["netns", "add", &probe])
            .context("process mode needs root and network namespaces (ip netns add failed)")?;
        let _ = sh("ip", &["netns", "del", &probe]);
        sh("unshare", &["--mount", "--propagation", "private", "true"])
            .context("process mode needs mount namespaces (unshare --mount failed)")?;
        Ok(())
    }

    /// Removes bridges, namespaces and veths left by kubesim processes that no longer run.
    pub fn clean_stale() {
        let Ok(entries) = std::fs::read_dir(lock_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(index) = name.strip_prefix("ksbr").and_then(|i| i.parse::<u8>().ok()) else {
                continue;
            };
            let owner = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if owner.is_some_and(pid_alive) {
                continue;
            }
            teardown(index);
            let _ = std::fs::remove_file(e.path());
        }
    }

    /// Claims a free subnet and creates its bridge with the gateway address.
    pub fn create() -> anyhow::Result<Bridge> {
        Self::clean_stale();
        std::fs::create_dir_all(lock_dir())?;
        for index in 1..=250u8 {
            let name = format!("ksbr{index}");
            // Creating the link is the atomic claim: it fails when another cluster holds it.
            if sh("ip", &["link", "add", &name, "type", "bridge"]).is_err() {
                continue;
            }
            std::fs::write(lock_dir().join(&name), std::process::id().to_string())?;
            let bridge = Bridge { index, name };
            sh(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/24", bridge.gateway()),
                    "dev",
                    &bridge.name,
                ],
            )?;
            sh("ip", &["link", "set", &bridge.name, "up"])?;
            return Ok(bridge);
        }
        bail!("no free pod subnet (10.244.1-250.0/24 all in use)")
    }

    /// The host's address on the bridge (pods' default gateway; the API server listens here).
    pub fn gateway(&self) -> String {
        format!("10.244.{}.1", self.index)
    }

    /// The address of pod slot `slot` (2..=254).
    pub fn pod_ip(&self, slot: u8) -> String {
        format!("10.244.{}.{slot}", self.index)
    }

    /// Network namespace name of a pod slot.
    pub fn netns(&self, slot: u8) -> String {
        format!("ks{}-{slot}", self.index)
    }

    fn host_veth(&self, slot: u8) -> String {
        format!("ksv{}-{slot}", self.index)
    }

    /// Creates a pod's namespace, veth pair and address.
    pub fn add_pod(&self, slot: u8) -> anyhow::Result<()> {
        let ns = self.netns(slot);
        let host = self.host_veth(slot);
        let peer = format!("ksp{}-{slot}", self.index);
        let _ = sh("ip", &["netns", "del", &ns]);
        let _ = sh("ip", &["link", "del", &host]);
        sh("ip", &["netns", "add", &ns])?;
        sh(
            "ip",
            &["link", "add", &host, "type", "veth", "peer", "name", &peer],
        )?;
        sh("ip", &["link", "set", &host, "master", &self.name, "up"])?;
        sh("ip", &["link", "set", &peer, "netns", &ns])?;
        let inside = |args: &[&str]| -> anyhow::Result<String> {
            let mut full = vec!["netns", "exec", ns.as_str()];
            full.extend_from_slice(args);
            sh("ip", &full)
        };
        inside(&["ip", "link", "set", &peer, "name", "eth0"])?;
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.pod_ip(slot)),
            "dev",
            "eth0",
        ])?;
        inside(&["ip", "link", "set", "eth0", "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&["ip", "route", "add", "default", "via", &self.gateway()])?;
        Ok(())
    }

    /// Cuts (`false`) or restores (`true`) a pod's network link.
    pub fn set_link(&self, slot: u8, up: bool) -> anyhow::Result<()> {
        sh(
            "ip",
            &[
                "link",
                "set",
                &self.host_veth(slot),
                if up { "up" } else { "down" },
            ],
        )
        .map(|_| ())
    }

    /// Removes a pod's namespace and veth.
    pub fn remove_pod(&self, slot: u8) {
        let _ = sh("ip", &["link", "del", &self.host_veth(slot)]);
        let _ = sh("ip", &["netns", "del", &self.netns(slot)]);
    }
}

fn teardown(index: u8) {
    if let Ok(list) = sh("ip", &["netns", "list"]) {
        let prefix = format!("ks{index}-");
        for line in list.lines() {
            if let Some(ns) = line.split_whitespace().next().filter(|n| n.starts_with(&prefix)) {
                let _ = sh("ip", &["netns", "del", ns]);
            }
        }
    }
    if let Ok(links) = sh("ip", &["-o", "link", "show"]) {
        let prefix = format!("ksv{index}-");
        for line in links.lines() {
            if let Some(name) = line
                .split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
                && name.starts_with(&prefix)
            {
                let _ = sh("ip", &["link", "del", &name]);
            }
        }
    }
    let _ = sh("ip", &["link", "del", &format!("ksbr{index}")]);
}

impl Drop for Bridge {
    fn drop(&mut self) {
        teardown(self.index);
        let _ = std::fs::remove_file(lock_dir().join(&self.name));
    }
}
