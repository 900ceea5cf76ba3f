//! The pods/eviction subresource, honouring PodDisruptionBudgets as kube-apiserver does: an
//! eviction that would leave fewer healthy pods than a budget wants is refused with 429, so
//! `kubectl drain` (cordon, then evictions, retried) never takes more than a budget allows.
//!
//! Budgets are evaluated at the moment of the eviction (kubesim keeps no disruption controller
//! status): healthy pods are the selected pods that are Ready and not being deleted; the
//! expected count is, as upstream computes it, the replicas of the pods' controllers (through
//! their scale subresource: ReplicaSets, StatefulSets, custom resources such as EtcdCluster),
//! or the number of selected pods for pods without a scalable controller. Evictions are serialised so that concurrent
//! ones (kubectl drain evicts in parallel) each see the deletions before them.

use std::sync::Mutex;

use serde_json::{Value, json};

use super::errors::ApiError;
use super::objects::DeleteOpts;
use super::registry::{ResourceType, StorageKey};
use super::selectors::{LabelSelector, labels_of};
use super::server::ApiServer;

static EVICTIONS: Mutex<()> = Mutex::new(());

fn key(plural: &str, group: &str) -> StorageKey {
    StorageKey {
        group: group.into(),
        plural: plural.into(),
    }
}

fn healthy(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// An int or a percentage of `expected` (rounded up, as upstream rounds budgets).
fn scaled(v: &Value, expected: i64) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let pct: i64 = v.as_str()?.strip_suffix('%')?.parse().ok()?;
    Some((pct * expected + 99) / 100)
}

/// Healthy pods the budget wants kept, given how many it selects.
fn desired_healthy(pdb: &Value, expected: i64) -> i64 {
    let spec = &pdb["spec"];
    if let Some(min) = spec.get("minAvailable").and_then(|v| scaled(v, expected)) {
        min
    } else if let Some(max) = spec.get("maxUnavailable").and_then(|v| scaled(v, expected)) {
        (expected - max).max(0)
    } else {
        // Neither set: upstream defaults minAvailable to 1.
        1
    }
}

impl ApiServer {
    /// How many pods the controllers of `pods` want (the sum of their scale subresources'
    /// replicas, counting pods without a scalable controller one each), and how many pods
    /// have no scalable controller.
    fn expected_pods(&self, ns: &str, pods: &[&std::sync::Arc<Value>]) -> (i64, i64) {
        let mut owners = std::collections::BTreeSet::new();
        let mut bare = 0;
        for p in pods {
            let owner = p
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| refs.iter().find(|r| r["controller"] == Value::Bool(true)));
            let scale = owner.and_then(|o| {
                let rt = self
                    .registry()
                    .by_kind(o["apiVersion"].as_str()?, o["kind"].as_str()?)?;
                let path = rt.scale.as_ref()?.spec_replicas.clone();
                Some((rt, o["name"].as_str()?.to_string(), path))
            });
            match scale {
                Some((rt, name, path)) => {
                    owners.insert((rt.storage_key(), name, path));
                }
                None => bare += 1,
            }
        }
        let wanted: i64 = owners
            .iter()
            .filter_map(|(key, name, path)| {
                let owner = self.store.get(key, ns, name)?;
                let pointer = path.trim_start_matches('.').replace('.', "/");
                owner.pointer(&format!("/{pointer}")).and_then(Value::as_i64)
            })
            .sum();
        (wanted + bare, bare)
    }

    /// Evicts pod `name` in `ns` unless a PodDisruptionBudget forbids it.
    pub fn evict(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
        let _one_at_a_time = EVICTIONS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pod = self
            .store
            .get(&rt.storage_key(), ns, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let terminal = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !terminal && pod.pointer("/metadata/deletionTimestamp").is_none() {
            let labels = labels_of(&pod);
            let (budgets, _) = self.store.list(&key("poddisruptionbudgets", "policy"), Some(ns));
            let matching: Vec<_> = budgets
                .iter()
                .filter(|b| {
                    LabelSelector::from_object(b.pointer("/spec/selector").unwrap_or(&Value::Null))
                        .is_ok_and(|s| !s.is_empty() && s.matches(&labels))
                })
                .collect();
            if matching.len() > 1 {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            if let Some(pdb) = matching.first() {
                let selector =
                    LabelSelector::from_object(pdb.pointer("/spec/selector").unwrap_or(&Value::Null))
                        .map_err(ApiError::internal)?;
                let (pods, _) = self.store.list(&rt.storage_key(), Some(ns));
                let selected: Vec<_> = pods.iter().filter(|p| selector.matches(&labels_of(p))).collect();
                let (expected, unmanaged) = self.expected_pods(ns, &selected);
                let current = i64::try_from(selected.iter().filter(|p| healthy(p)).count()).unwrap_or(0);
                // Without controllers, only an integer minAvailable can be computed; upstream's
                // disruption controller allows no disruption for the other forms.
                let computable =
                    unmanaged == 0 || pdb.pointer("/spec/minAvailable").is_some_and(Value::is_i64);
                let desired = if computable {
                    desired_healthy(pdb, expected)
                } else {
                    current.max(1)
                };
                // An unhealthy pod may go while the budget is met; a healthy one only if one
                // more disruption is allowed.
                let allowed = if healthy(&pod) {
                    current - desired >= 1
                } else {
                    current >= desired
                };
                if !allowed {
                    let pdb_name = pdb
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let mut e = ApiError::new(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    );
                    e.details = Some(json!({
                        "causes": [{
                            "reason": "DisruptionBudget",
                            "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"),
                        }],
                    }));
                    return Err(e);
                }
            }
        }
        self.delete(rt, ns, name, &DeleteOpts::default())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_scale_like_upstream() {
        assert_eq!(desired_healthy(&json!({"spec": {"minAvailable": 2}}), 3), 2);
        assert_eq!(desired_healthy(&json!({"spec": {"minAvailable": "50%"}}), 3), 2);
        assert_eq!(desired_healthy(&json!({"spec": {"maxUnavailable": 1}}), 3), 2);
        assert_eq!(desired_healthy(&json!({"spec": {"maxUnavailable": "34%"}}), 3), 1);
        assert_eq!(desired_healthy(&json!({"spec": {"maxUnavailable": 0}}), 1), 1);
    }
}
