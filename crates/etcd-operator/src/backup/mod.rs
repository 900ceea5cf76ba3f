//! Backups of etcd clusters: the EtcdBackup controller and the scheduled backups of
//! `EtcdCluster.spec.backup`. The snapshot itself (etcd stream, compression, storage) is the
//! engine's, in [`crate::snapshot`]; this module only decides what to back up, where and
//! when, and reports it. One file per stage:
//! - `controller`: reconcile of an EtcdBackup, fetch (cluster, credentials, members) →
//!   validate → take (the engine) → status, with retries;
//! - `schedule`: what the EtcdCluster controller runs for `spec.backup`: create the backup a
//!   firing is due for, prune by retention, compute `BackupReady`;
//! - `spot`: the backup an upgrade or a member replacement waits for
//!   (`spec.backup.spot`), run by the EtcdCluster controller between plan and execute;
//! - `build` (pure): keys, names, member choice, targets, statuses, firings, `BackupReady`;
//! - `retention` (pure): which scheduled backups to prune;
//! - `pod` (pure): the pods that take and delete backups on a PersistentVolumeClaim;
//! - `metrics`: the backup metric families.

pub mod build;
mod controller;
mod metrics;
pub mod pod;
pub mod retention;
pub mod schedule;
pub mod spot;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use steward_core::{ControllerRuntime, EventRecorder, ReconcileError};

pub use metrics::BackupMetrics;

use crate::FIELD_MANAGER;
use crate::crd::{BackupDestination, EtcdBackup};
use crate::snapshot::Target;

/// Name of the controller in metrics and logs.
pub const CONTROLLER: &str = "etcdbackup";

/// Reconcile failure (an API call; everything else becomes status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{verb} {kind} {name}: {source}")]
    Kube {
        /// `get`, `list`, `apply` or `delete`.
        verb: &'static str,
        /// Kind of the object.
        kind: &'static str,
        /// `namespace/name`.
        name: String,
        /// Cause.
        source: Box<kube::Error>,
    },
    /// Applying an object failed.
    #[error(transparent)]
    Apply(#[from] steward_core::apply::ApplyError),
}

impl Error {
    fn kube(verb: &'static str, kind: &'static str, name: String) -> impl FnOnce(kube::Error) -> Self {
        move |e| Error::Kube {
            verb,
            kind,
            name,
            source: Box::new(e),
        }
    }
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "api",
            Error::Apply(e) => e.reason(),
        }
    }
}

/// Why a backup's destination cannot be used: a reason and a message for status.
pub(crate) type Refusal = (&'static str, String);

/// The engine's target for `dest` in `namespace`, with the credentials of its Secret.
pub(crate) async fn target_for(
    client: &kube::Client,
    namespace: &str,
    dest: &BackupDestination,
) -> Result<Result<Target, Refusal>, Error> {
    let credentials = match dest.s3.as_ref().and_then(|s| s.credentials_secret.as_deref()) {
        None => None,
        Some(name) => {
            let secret = Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(Error::kube("get", "Secret", format!("{namespace}/{name}")))?;
            let Some(secret) = secret else {
                return Ok(Err((
                    "CredentialsSecretMissing",
                    format!("credentials Secret {namespace}/{name} not found"),
                )));
            };
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            match build::credentials(&format!("{namespace}/{name}"), &data) {
                Ok(c) => Some(c),
                Err(message) => return Ok(Err(("InvalidCredentialsSecret", message))),
            }
        }
    };
    Ok(build::target(dest, credentials).ok_or_else(|| {
        (
            "InvalidDestination",
            "spec.destination names no destination".to_string(),
        )
    }))
}

/// Shared state of the backup controller.
pub struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    applier: steward_core::apply::Applier,
    metrics: BackupMetrics,
    operator_image: String,
}

/// Runs the EtcdBackup controller until the runtime shuts down; `operator_image` runs the
/// pods of backups to a PersistentVolumeClaim.
pub async fn run(rt: ControllerRuntime, metrics: BackupMetrics, operator_image: String) {
    let ctx = Arc::new(Context {
        client: rt.client.clone(),
        recorder: EventRecorder::new(rt.client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
        applier: steward_core::apply::Applier::new(rt.client.clone(), FIELD_MANAGER),
        metrics,
        operator_image,
    });
    steward_core::controller::run_namespaced::<EtcdBackup, _, _, _, _>(
        &rt,
        CONTROLLER,
        ctx,
        controller::reconcile,
    )
    .await;
}
