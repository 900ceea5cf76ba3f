//! What the Alertmanager end-to-end tests and benchmarks share: an Alertmanager object's
//! ready pods and what each one reports about its gossip cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::harness::pod_ready;

/// Ready pods of Alertmanager `name` in `ns`: (pod name, IP), by name.
pub async fn ready_pods(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/name=alertmanager,app.kubernetes.io/instance={name}");
    let mut out: Vec<(String, String)> = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .filter_map(|p| Some((p.metadata.name?, p.status?.pod_ip?)))
        .collect();
    out.sort();
    out
}

/// `/api/v2/status` of the Alertmanager at `ip`.
pub async fn status(ip: &str) -> Option<serde_json::Value> {
    let resp = reqwest::Client::new()
        .get(format!("http://{ip}:9093/api/v2/status"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

/// The peer addresses (IPs) the Alertmanager at `ip` sees.
pub async fn peer_ips(ip: &str) -> Option<BTreeSet<String>> {
    let s = status(ip).await?;
    Some(
        s["cluster"]["peers"]
            .as_array()?
            .iter()
            .filter_map(|p| p["address"].as_str())
            .map(|a| a.rsplit_once(':').map_or(a, |(h, _)| h).to_string())
            .collect(),
    )
}

/// The pods of Alertmanager `name` when exactly `n` are ready and each sees exactly those
/// `n` as its cluster; `None` otherwise (poll it with `wait_until`).
pub async fn cluster_formed(
    client: &kube::Client,
    ns: &str,
    name: &str,
    n: usize,
) -> Option<Vec<(String, String)>> {
    let pods = ready_pods(client, ns, name).await;
    if pods.len() != n {
        return None;
    }
    let ips: BTreeSet<String> = pods.iter().map(|(_, ip)| ip.clone()).collect();
    for (_, ip) in &pods {
        if peer_ips(ip).await? != ips {
            return None;
        }
    }
    Some(pods)
}
