//! An in-memory audit log: one entry per resource request once its response is known, with
//! the fields of upstream's `audit.k8s.io/v1` Event that tests need (user, the pod of a
//! pod-bound token, verb, object, response code). Tests use it to say who wrote what, e.g.
//! that a deposed leader made no write after its successor took the Lease.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::request_metrics::RequestLabels;

/// The most recent entries kept; older ones are dropped first.
const CAPACITY: usize = 200_000;

/// One request, as upstream's audit Event records it at the ResponseComplete stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// Order of responses, from 1 (a write is answered after it is stored).
    pub seq: u64,
    /// `user.username`.
    pub user: String,
    /// `user.extra["authentication.kubernetes.io/pod-name"]` for pod-bound tokens.
    pub pod: Option<String>,
    /// Audit verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// `objectRef.apiGroup` ("" for core).
    pub api_group: String,
    /// `objectRef.resource`.
    pub resource: String,
    /// `objectRef.subresource`.
    pub subresource: String,
    /// `objectRef.namespace`.
    pub namespace: String,
    /// `objectRef.name`.
    pub name: String,
    /// `responseStatus.code`.
    pub code: u16,
}

impl AuditEvent {
    /// Whether the request asked to change something (whatever its outcome).
    pub fn is_mutation(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// Whether the request succeeded (2xx).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// The log.
#[derive(Debug, Default)]
pub struct AuditLog {
    next: AtomicU64,
    events: Mutex<VecDeque<AuditEvent>>,
}

impl AuditLog {
    /// Records one finished request; `labels` as `apiserver_request_total` counts it.
    pub fn record(
        &self,
        user: Option<&super::auth::UserInfo>,
        path: &str,
        labels: &RequestLabels,
        code: u16,
    ) {
        let (namespace, name) = namespace_and_name(path);
        let verb = match labels.verb.as_str() {
            "GET" => "get",
            "LIST" => "list",
            "WATCH" => "watch",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" | "APPLY" => "patch",
            "DELETE" if name.is_empty() => "deletecollection",
            "DELETE" => "delete",
            other => other,
        };
        let event = AuditEvent {
            seq: self.next.fetch_add(1, Ordering::SeqCst) + 1,
            user: user
                .map(|u| u.name.clone())
                .unwrap_or_else(|| "system:anonymous".into()),
            pod: user.and_then(|u| u.pod_name()).map(String::from),
            verb: verb.to_string(),
            api_group: labels.group.clone(),
            resource: labels.resource.clone(),
            subresource: labels.subresource.clone(),
            namespace,
            name,
            code,
        };
        if let Ok(mut events) = self.events.lock() {
            if events.len() >= CAPACITY {
                events.pop_front();
            }
            events.push_back(event);
        }
    }

    /// Every kept entry, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The namespace and object name of a resource path ("" where there is none).
fn namespace_and_name(path: &str) -> (String, String) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segs.as_slice() {
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => return (String::new(), String::new()),
    };
    match rest {
        // A Namespace itself: /api/v1/namespaces/{name}[/status]
        ["namespaces", name] | ["namespaces", name, "status" | "finalize"] => {
            (String::new(), (*name).to_string())
        }
        ["namespaces", ns, _, name, ..] => ((*ns).to_string(), (*name).to_string()),
        ["namespaces", ns, _] => ((*ns).to_string(), String::new()),
        [_, name, ..] => (String::new(), (*name).to_string()),
        _ => (String::new(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            namespace_and_name("/apis/coordination.k8s.io/v1/namespaces/x/leases/l"),
            s("x", "l")
        );
        assert_eq!(namespace_and_name("/api/v1/namespaces/x/pods"), s("x", ""));
        assert_eq!(namespace_and_name("/api/v1/namespaces/x"), s("", "x"));
        assert_eq!(namespace_and_name("/api/v1/nodes/n/status"), s("", "n"));
        assert_eq!(namespace_and_name("/api/v1/pods"), s("", ""));
    }

    #[test]
    fn verbs_and_users() {
        let log = AuditLog::default();
        let mut user = super::super::auth::UserInfo::service_account("ns", "sa");
        user.extra
            .insert(super::super::auth::POD_NAME_EXTRA.into(), vec!["op-1".into()]);
        let path = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l";
        let labels = super::super::request_metrics::labels_for("PUT", path, &Default::default(), "")
            .unwrap_or_default();
        log.record(Some(&user), path, &labels, 409);
        let e = &log.events()[0];
        assert_eq!(
            (e.seq, e.verb.as_str(), e.pod.as_deref(), e.name.as_str()),
            (1, "update", Some("op-1"), "l")
        );
        assert!(e.is_mutation() && !e.succeeded());
    }
}
