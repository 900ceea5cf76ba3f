//! `apiserver_request_total`, as kube-apiserver exports it on `/metrics`: one counter per verb,
//! group, version, resource, subresource, scope and response code, so benchmarks can count the
//! API requests an operator makes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

/// The labels of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`.
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: String,
    /// `resource` (one object), `namespace` or `cluster`.
    pub scope: String,
}

/// Counters by labels and response code.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    counts: Mutex<BTreeMap<(RequestLabels, u16), u64>>,
}

impl RequestMetrics {
    /// Counts one finished request.
    pub fn record(&self, labels: RequestLabels, code: u16) {
        if let Ok(mut m) = self.counts.lock() {
            *m.entry((labels, code)).or_default() += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.\n# TYPE apiserver_request_total counter\n",
        );
        if let Ok(m) = self.counts.lock() {
            for ((l, code), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "apiserver_request_total{{code=\"{code}\",component=\"apiserver\",dry_run=\"\",group=\"{}\",resource=\"{}\",scope=\"{}\",subresource=\"{}\",verb=\"{}\",version=\"{}\"}} {n}",
                    l.group, l.resource, l.scope, l.subresource, l.verb, l.version
                );
            }
        }
        out
    }
}

/// The labels of a resource request (`None` for discovery and other non-resource paths).
pub fn labels_for(
    method: &str,
    path: &str,
    query: &HashMap<String, String>,
    content_type: &str,
) -> Option<RequestLabels> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespaced, rest) = match rest {
        ["namespaces", ns, more @ ..] if !more.is_empty() => {
            let _ = ns;
            (true, more)
        }
        other => (false, other),
    };
    let (resource, name, sub) = match rest {
        [] => return None,
        [r] => (*r, None, ""),
        [r, n] => (*r, Some(*n), ""),
        [r, n, s, ..] => (*r, Some(*n), *s),
    };
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "WATCH",
        ("GET", false) => "LIST",
        ("PATCH", _) if content_type.starts_with("application/apply-patch") => "APPLY",
        (m, _) => m,
    };
    let scope = if name.is_some() {
        "resource"
    } else if namespaced {
        "namespace"
    } else {
        "cluster"
    };
    Some(RequestLabels {
        verb: verb.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        resource: resource.to_string(),
        subresource: sub.to_string(),
        scope: scope.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_scopes() {
        let q = HashMap::new();
        let l = labels_for("GET", "/api/v1/namespaces/default/pods", &q, "").unwrap_or_default();
        assert_eq!(
            (l.verb.as_str(), l.scope.as_str(), l.resource.as_str()),
            ("LIST", "namespace", "pods")
        );
        let w = HashMap::from([("watch".to_string(), "true".to_string())]);
        let l = labels_for("GET", "/apis/apps/v1/deployments", &w, "").unwrap_or_default();
        assert_eq!(
            (l.verb.as_str(), l.scope.as_str(), l.group.as_str()),
            ("WATCH", "cluster", "apps")
        );
        let l = labels_for(
            "PATCH",
            "/apis/etcd.steward.dev/v1alpha1/namespaces/x/etcdclusters/a/status",
            &q,
            "application/apply-patch+yaml",
        )
        .unwrap_or_default();
        assert_eq!(
            (l.verb.as_str(), l.scope.as_str(), l.subresource.as_str()),
            ("APPLY", "resource", "status")
        );
        let l = labels_for("GET", "/api/v1/namespaces/team", &q, "").unwrap_or_default();
        assert_eq!(
            (l.verb.as_str(), l.resource.as_str(), l.scope.as_str()),
            ("GET", "namespaces", "resource")
        );
        assert_eq!(labels_for("GET", "/apis/apps/v1", &q, ""), None);
    }
}
