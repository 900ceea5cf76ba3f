//! Security contexts that pass Pod Security "restricted", for every pod the operators create.
//!
//! A user who sets a securityContext through a CRD gets exactly theirs instead (and a
//! namespace's Pod Security level still decides whether it is admitted).

use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, SeccompProfile, SecurityContext};

/// Pod level: a fixed non-root user and group, `fsGroup` so fresh volumes are writable by it
/// (changed only when the volume's root does not match, so large volumes start fast), and the
/// runtime's default seccomp profile.
pub fn restricted_pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// Container level: no privilege escalation, no capabilities, a read-only root (programs
/// write only to their volumes).
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}
