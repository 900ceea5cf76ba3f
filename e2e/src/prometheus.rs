//! What the prometheus-operator end-to-end tests and benchmarks share: the monitoring API,
//! a monitor's `Accepted` verdict and PromQL queries against a Prometheus pod.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::harness::Env;

/// Both operators deployed from deploy/, and `steward-system` open to discovery by the
/// Prometheus objects of each of `teams` (the team stacks' monitors look at the operators).
pub async fn operators_discoverable_by(teams: &[&str]) -> anyhow::Result<Env> {
    let env = Env::with_operators(&["etcd-operator", "prometheus-operator"]).await?;
    open_to_discovery(&env, "steward-system", teams).await?;
    Ok(env)
}

/// Labels namespace `ns` so the Prometheus objects of each of `teams` may discover there.
pub async fn open_to_discovery(env: &Env, ns: &str, teams: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["label".to_string(), "namespace".into(), ns.into()];
    args.extend(
        teams
            .iter()
            .map(|t| format!("discovery-from.monitoring.steward.dev/{t}=true")),
    );
    env.kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await?;
    Ok(())
}

/// `monitoring.steward.dev/v1alpha1` `kind` (plural `plural`) in `ns`.
pub fn api(client: &kube::Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind, plural))
}

/// The API resource of a `monitoring.steward.dev/v1alpha1` kind.
pub fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.steward.dev", "v1alpha1", kind),
        plural,
    )
}

/// (status, reason, message) of an object's `Accepted` condition.
pub fn accepted(obj: &DynamicObject) -> Option<(String, String, String)> {
    let c = obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Accepted")?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Whether an object's `type_` condition is True.
pub fn condition_true(obj: &DynamicObject, type_: &str) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == type_ && c["status"] == "True"))
}

/// The result vector of an instant PromQL query against the Prometheus at pod `ip` (empty
/// when it does not answer yet).
pub async fn query(ip: &str, promql: &str) -> Vec<serde_json::Value> {
    let Ok(resp) = reqwest::Client::new()
        .get(format!("http://{ip}:9090/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
    else {
        return Vec::new();
    };
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    body["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The sum of every sample of metric `name` on the Prometheus at pod `ip`'s own `/metrics`
/// (`None` when it does not answer yet).
pub async fn own_metric(ip: &str, name: &str) -> Option<f64> {
    crate::harness::metric_sum(&format!("http://{ip}:9090/metrics"), name).await
}

/// Pod IPs of Prometheus `name`'s replicas in `ns`, once all `replicas` have one.
pub async fn replica_ips(
    client: &kube::Client,
    ns: &str,
    name: &str,
    replicas: usize,
) -> Option<Vec<String>> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let mut ips = Vec::new();
    for i in 0..replicas {
        let pod = pods
            .get_opt(&format!("prometheus-{name}-{i}"))
            .await
            .ok()
            .flatten()?;
        ips.push(pod.status?.pod_ip?);
    }
    Some(ips)
}

/// Whether each of the `replicas` pods of Prometheus `name` in `ns` has discovered exactly
/// `alertmanagers` Alertmanagers to send to. An alert that fires before that is sent again
/// only after Prometheus' resend delay (1m), so tests and benchmarks load their rules after.
pub async fn discovered_alertmanagers(
    client: &kube::Client,
    ns: &str,
    name: &str,
    replicas: usize,
    alertmanagers: usize,
) -> bool {
    let Some(ips) = replica_ips(client, ns, name, replicas).await else {
        return false;
    };
    for ip in &ips {
        let found = own_metric(ip, "prometheus_notifications_alertmanagers_discovered").await;
        if found != Some(alertmanagers as f64) {
            return false;
        }
    }
    true
}
