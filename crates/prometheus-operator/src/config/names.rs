//! Name rules shared by the validators: Prometheus label and metric names, Kubernetes label
//! keys and values.

/// A label name both Prometheus 2.x and 3.x accept everywhere: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A metric name both Prometheus 2.x and 3.x accept: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Replaces every character Prometheus does not allow in label names with `_`, as Prometheus'
/// Kubernetes discovery does for `__meta_kubernetes_*_label_<name>`.
pub(crate) fn sanitize_label_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A Kubernetes label value: empty, or up to 63 of `[A-Za-z0-9._-]` starting and ending with an
/// alphanumeric.
pub(crate) fn is_k8s_label_value(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let b = s.as_bytes();
    b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A Kubernetes label key: an optional DNS subdomain prefix and `/`, then a name like a
/// non-empty label value.
pub(crate) fn is_k8s_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if name.is_empty() || !is_k8s_label_value(name) {
        return false;
    }
    match prefix {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 253
                && p.split('.').all(|part| {
                    !part.is_empty()
                        && part.len() <= 63
                        && part
                            .bytes()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                        && !part.starts_with('-')
                        && !part.ends_with('-')
                })
        }
    }
}

/// A DNS-1123 label (namespace, Service and port names): lowercase alphanumerics and `-`,
/// starting and ending with an alphanumeric, at most 63 characters.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        assert!(is_label_name("job"));
        assert!(is_label_name("_x1"));
        assert!(!is_label_name("1x"));
        assert!(!is_label_name("a.b"));
        assert!(!is_label_name(""));
        assert!(is_metric_name("a:b_c"));
        assert!(!is_metric_name("a-b"));
        assert_eq!(
            sanitize_label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
    }

    #[test]
    fn kubernetes_labels() {
        assert!(is_k8s_label_key("app.kubernetes.io/name"));
        assert!(is_k8s_label_key("team"));
        assert!(!is_k8s_label_key("/team"));
        assert!(!is_k8s_label_key("Foo.com/x"));
        assert!(!is_k8s_label_key("a b"));
        assert!(is_k8s_label_value(""));
        assert!(is_k8s_label_value("v1.2-rc_3"));
        assert!(!is_k8s_label_value("-x"));
        assert!(!is_k8s_label_value("a|b"));
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("Web"));
    }
}
