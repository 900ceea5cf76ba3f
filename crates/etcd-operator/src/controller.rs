//! The EtcdCluster controller.
//!
//! This build registers the controller and runs its reconcile shape end to end — fetch,
//! validate, status — so the operator really watches and reports on EtcdClusters. Building and
//! applying member pods, Services and PVCs is the cluster-lifecycle work that follows.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use steward_core::conditions::{self, NewCondition, Status};
use steward_core::{ControllerRuntime, EventRecorder, ReconcileError};

use crate::crd::{EtcdCluster, EtcdClusterSpec, EtcdClusterStatus, TlsMode};
use crate::{FIELD_MANAGER, OPERATOR_NAME};

/// Name of the controller in metrics and logs.
pub const CONTROLLER: &str = "etcdcluster";

/// Reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace (cannot happen for a namespaced kind read from the API).
    #[error("EtcdCluster {0} has no namespace")]
    NoNamespace(String),
    /// The API refused a status write.
    #[error("writing status of {name}: {source}")]
    Status {
        /// Object name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::NoNamespace(_) => "invalid_object",
            Error::Status { .. } => "api",
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    client: kube::Client,
    recorder: EventRecorder,
}

/// A `major.minor.patch` etcd version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Parses `3.5.16` (a leading `v` is tolerated).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.strip_prefix('v').unwrap_or(s).split('.');
        let v = Version {
            major: parts.next()?.parse().ok()?,
            minor: parts.next()?.parse().ok()?,
            patch: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(v)
    }
}

/// Checks what the CRD schema cannot express. Returns every problem found.
pub fn validate(spec: &EtcdClusterSpec) -> Vec<String> {
    let mut problems = Vec::new();
    match Version::parse(&spec.version) {
        None => problems.push(format!(
            "spec.version {:?} is not MAJOR.MINOR.PATCH",
            spec.version
        )),
        Some(v)
            if v < (Version {
                major: 3,
                minor: 4,
                patch: 0,
            }) =>
        {
            problems.push(format!(
                "spec.version {} is too old: etcd 3.4 or newer is required",
                spec.version
            ))
        }
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
    problems
}

/// Label selector of a cluster's member pods (used by the scale subresource).
pub fn member_selector(cluster: &str) -> String {
    format!(
        "app.kubernetes.io/name=etcd,app.kubernetes.io/instance={cluster},app.kubernetes.io/managed-by={OPERATOR_NAME}"
    )
}

/// The status this reconcile reports, from the object and the validation result.
pub fn desired_status(
    obj: &EtcdCluster,
    problems: &[String],
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> EtcdClusterStatus {
    let mut status = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    status.observed_generation = generation;
    status.selector = Some(member_selector(&obj.name_any()));
    status.target_version = Some(obj.spec.version.clone());
    let (cond_status, reason, message) = if !problems.is_empty() {
        (Status::False, "InvalidSpec", problems.join("; "))
    } else if obj.spec.paused {
        (
            Status::False,
            "Paused",
            "spec.paused is true: no changes are made".to_string(),
        )
    } else {
        (
            Status::Unknown,
            "LifecycleNotImplemented",
            "this operator build validates EtcdClusters but does not create members yet".to_string(),
        )
    };
    status.phase = Some(if obj.spec.paused { "Paused" } else { "Pending" }.to_string());
    conditions::set(
        &mut status.conditions,
        NewCondition {
            type_: "Progressing",
            status: cond_status,
            reason,
            message,
            observed_generation: generation,
        },
        now,
    );
    status
}

async fn reconcile(obj: Arc<EtcdCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = obj.name_any();
    let ns = obj.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let problems = validate(&obj.spec);
    let status = desired_status(&obj, &problems, conditions::now());
    if !problems.is_empty()
        && obj.status.as_ref().and_then(|s| s.observed_generation) != obj.metadata.generation
    {
        ctx.recorder
            .warning(obj.as_ref(), "InvalidSpec", "Validate", problems.join("; "))
            .await;
    }
    if obj.status.as_ref() != Some(&status) {
        let api: Api<EtcdCluster> = Api::namespaced(ctx.client.clone(), &ns);
        steward_core::apply::apply_status(&api, obj.as_ref(), FIELD_MANAGER, &status)
            .await
            .map_err(|source| Error::Status {
                name: name.clone(),
                source,
            })?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Runs the EtcdCluster controller until the runtime shuts down.
pub async fn run(rt: ControllerRuntime) {
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        recorder: EventRecorder::new(rt.client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
    });
    steward_core::controller::run_namespaced::<EtcdCluster, _, _, _, _>(&rt, CONTROLLER, ctx, reconcile)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{EtcdStorage, EtcdTls, EtcdTlsSecrets};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn spec(version: &str) -> EtcdClusterSpec {
        EtcdClusterSpec {
            size: 3,
            version: version.to_string(),
            repository: crate::crd::DEFAULT_REPOSITORY.to_string(),
            paused: false,
            storage: EtcdStorage::default(),
            pod_template: None,
            tls: EtcdTls::default(),
            options: None,
            member_failure_timeout: "2m".to_string(),
            maintenance: None,
        }
    }

    #[test]
    fn versions() {
        assert_eq!(
            Version::parse("3.5.16"),
            Some(Version {
                major: 3,
                minor: 5,
                patch: 16
            })
        );
        assert_eq!(
            Version::parse("v3.4.23"),
            Some(Version {
                major: 3,
                minor: 4,
                patch: 23
            })
        );
        assert_eq!(Version::parse("3.5"), None);
        assert_eq!(Version::parse("3.5.1.2"), None);
        assert!(Version::parse("3.4.23") < Version::parse("3.5.0"));
    }

    #[test]
    fn validation() {
        assert!(validate(&spec("3.5.16")).is_empty());
        assert_eq!(
            validate(&spec("3.3.9")),
            vec!["spec.version 3.3.9 is too old: etcd 3.4 or newer is required"]
        );
        let mut s = spec("3.5.16");
        s.tls = EtcdTls {
            mode: TlsMode::Secrets,
            secrets: None,
        };
        assert_eq!(validate(&s).len(), 1);
        s.tls.secrets = Some(EtcdTlsSecrets {
            server: "a".into(),
            peer: String::new(),
            client: "c".into(),
        });
        assert_eq!(validate(&s), vec!["spec.tls.secrets.peer must name a Secret"]);
    }

    #[test]
    fn status_reports_generation_selector_and_problems() {
        let mut obj = EtcdCluster::new("main", spec("3.3.0"));
        obj.metadata.generation = Some(4);
        let now = Time(Timestamp::from_second(1_000).unwrap());
        let st = desired_status(&obj, &validate(&obj.spec), now.clone());
        assert_eq!(st.observed_generation, Some(4));
        assert_eq!(st.selector.as_deref(), Some(member_selector("main").as_str()));
        let c = conditions::find(&st.conditions, "Progressing").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "InvalidSpec"));
        obj.status = Some(st.clone());
        // Same input later: unchanged status, so no write happens.
        let later = Time(Timestamp::from_second(2_000).unwrap());
        assert_eq!(desired_status(&obj, &validate(&obj.spec), later), st);
    }
}
