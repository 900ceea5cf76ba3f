//! Leader election on a `coordination.k8s.io` Lease, through kube-lease-manager.
//!
//! We drive [`LeaseManager::changed`] ourselves instead of its background `watch()` task: that
//! task only logs API errors and keeps reporting "leader" while its Lease may already have
//! expired. Here any renewal error while leading counts as lost leadership, so a replica that
//! cannot renew stops reconciling before another one can take over.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease object name, e.g. `etcd-operator-leader`.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// Validity of the Lease without renewal.
    pub duration: Duration,
}

/// Leadership as seen by this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Waiting for the Lease.
    Standby,
    /// Holding the Lease.
    Leading,
    /// Held the Lease and lost it (or could not renew it). Terminal.
    Lost,
}

/// Picks the Lease namespace: the flag, then the pod's namespace, then `default`.
pub fn lease_namespace(flag: Option<&str>) -> String {
    if let Some(ns) = flag.filter(|s| !s.is_empty()) {
        return ns.to_string();
    }
    if let Ok(ns) = std::env::var("POD_NAMESPACE")
        && !ns.is_empty()
    {
        return ns;
    }
    if let Ok(ns) = std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace") {
        let ns = ns.trim();
        if !ns.is_empty() {
            return ns.to_string();
        }
    }
    "default".to_string()
}

/// This replica's identity: the pod name (else the hostname) plus a random suffix. The suffix
/// matters: a restarted container keeps its pod name, and must not mistake its previous
/// life's Lease for its own and resume leading while its state is gone.
pub fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "steward".to_string())
        });
    format!("{base}_{:08x}", rand::random::<u32>())
}

/// Grace before expiry at which the holder renews.
fn grace_for(duration: Duration) -> u64 {
    (duration.as_secs() / 3).clamp(1, duration.as_secs().saturating_sub(1).max(1))
}

/// A running election. Drop the stop sender (or send `true`) to release the Lease.
#[derive(Debug)]
pub struct Election {
    /// Current leadership.
    pub state: watch::Receiver<Leadership>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Starts competing for the Lease.
    pub async fn start(client: Client, config: LeaseConfig) -> anyhow::Result<Self> {
        let duration = config.duration.as_secs().max(2);
        let manager = LeaseManagerBuilder::new(client, config.name.clone())
            .with_namespace(config.namespace.clone())
            .with_identity(config.identity.clone())
            .with_duration(duration)
            .with_grace(grace_for(config.duration))
            .build()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot set up the leader Lease {}/{}: {e}",
                    config.namespace,
                    config.name
                )
            })?;
        let (state_tx, state) = watch::channel(Leadership::Standby);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(drive(manager, config, state_tx, stop_rx));
        Ok(Self { state, stop, task })
    }

    /// Stops competing and releases the Lease if held; waits for the release to finish.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn drive(
    manager: LeaseManager,
    config: LeaseConfig,
    state: watch::Sender<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    let mut leading = false;
    loop {
        let changed = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            changed = manager.changed() => changed,
        };
        match changed {
            Ok(true) => {
                info!(lease = %config.name, identity = %config.identity, "acquired the leader lease");
                leading = true;
                let _ = state.send(Leadership::Leading);
            }
            Ok(false) => {
                if leading {
                    warn!(lease = %config.name, "lost the leader lease");
                    let _ = state.send(Leadership::Lost);
                    return;
                }
            }
            Err(e) => {
                if leading {
                    warn!(lease = %config.name, error = %e, "cannot renew the leader lease; stepping down");
                    let _ = state.send(Leadership::Lost);
                    return;
                }
                warn!(lease = %config.name, error = %e, "leader election error; retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }
    if leading {
        match manager.release().await {
            Ok(()) => info!(lease = %config.name, "released the leader lease"),
            Err(e) => warn!(lease = %config.name, error = %e, "could not release the leader lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_is_below_duration() {
        for secs in 2..120 {
            let g = grace_for(Duration::from_secs(secs));
            assert!(g >= 1 && g < secs, "duration {secs} grace {g}");
        }
    }

    #[test]
    fn lease_namespace_prefers_flag() {
        assert_eq!(lease_namespace(Some("ops")), "ops");
    }
}
