//! Validation of what the CRD schema cannot express, and what the spec's durations mean once
//! they are valid. Pure.

use std::time::Duration;

use crate::crd::{EtcdClusterSpec, TlsMode};
use crate::version::Version;

/// The oldest etcd the operator runs: learners and their promotion need 3.4.
const OLDEST: Version = Version {
    major: 3,
    minor: 4,
    patch: 0,
};

/// Checks what the CRD schema cannot express. Returns every problem found.
pub fn validate(spec: &EtcdClusterSpec) -> Vec<String> {
    let mut problems = Vec::new();
    match Version::parse(&spec.version) {
        None => problems.push(format!(
            "spec.version {:?} is not MAJOR.MINOR.PATCH",
            spec.version
        )),
        Some(v) if v < OLDEST => problems.push(format!(
            "spec.version {} is too old: etcd 3.4 or newer is required",
            spec.version
        )),
        Some(_) => {}
    }
    if spec.tls.mode == TlsMode::Secrets {
        match &spec.tls.secrets {
            None => problems.push("spec.tls.secrets is required when spec.tls.mode is secrets".to_string()),
            Some(s) => {
                for (field, value) in [("server", &s.server), ("peer", &s.peer), ("client", &s.client)] {
                    if value.is_empty() {
                        problems.push(format!("spec.tls.secrets.{field} must name a Secret"));
                    }
                }
            }
        }
    }
    for arg in spec.options.iter().flat_map(|o| o.extra_args.iter()) {
        if let Some(p) = crate::resources::extra_arg_problem(arg) {
            problems.push(format!("spec.options.extraArgs: {p}"));
        }
    }
    if let Err(e) = steward_core::duration::parse(&spec.member_failure_timeout) {
        problems.push(format!("spec.memberFailureTimeout: {e}"));
    }
    if let Some(r) = &spec.recovery
        && let Err(e) = steward_core::duration::parse(&r.after)
    {
        problems.push(format!("spec.recovery.after: {e}"));
    }
    if let Some(v) = &spec.tls.certificate_validity {
        match steward_core::duration::parse(v) {
            Err(e) => problems.push(format!("spec.tls.certificateValidity: {e}")),
            Ok(d) if (d.as_secs() as i64) < crate::tls::MIN_VALIDITY_SECS => problems.push(format!(
                "spec.tls.certificateValidity {v} is too short: at least {}s",
                crate::tls::MIN_VALIDITY_SECS
            )),
            Ok(_) => {}
        }
    }
    if let Err(p) = crate::tls::ca_validity(&spec.tls) {
        problems.push(p);
    }
    problems
}

/// Lifetime of issued certificates in seconds.
pub(super) fn certificate_validity(spec: &EtcdClusterSpec) -> i64 {
    spec.tls
        .certificate_validity
        .as_deref()
        .and_then(|v| steward_core::duration::parse(v).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(crate::tls::DEFAULT_VALIDITY_SECS)
}

/// How long a member may be unhealthy before it is replaced.
pub(super) fn member_failure_timeout(spec: &EtcdClusterSpec) -> Duration {
    steward_core::duration::parse(&spec.member_failure_timeout).unwrap_or(Duration::from_secs(120))
}

/// How long quorum must have been lost, with the data gone, before a rebuild from a backup.
pub(super) fn recovery_after(spec: &EtcdClusterSpec) -> Duration {
    spec.recovery
        .as_ref()
        .and_then(|r| steward_core::duration::parse(&r.after).ok())
        .unwrap_or(Duration::from_secs(300))
}
