//! The Prometheus controller. A reconcile is **fetch** (the Prometheus' StatefulSet, and from
//! the watch caches the namespaces, monitors, scrape configs and rules it selects) →
//! **validate** (its spec, where its Alertmanagers and monitors may discover) → **build** (the
//! configuration from `crate::config` and the children from `crate::resources`, pure) →
//! **apply** (children, discovery RBAC, the shared governing Service) → **status** (of the
//! Prometheus and of every object it selects). One module per stage.
//!
//! A change to a monitor, rule, scrape config, namespace or Secret re-renders only the
//! Prometheus objects that select it (or selected it before the change).

mod apply;
mod build;
mod caches;
mod fetch;
mod metrics;
mod rbac;
pub(crate) mod status;
#[cfg(test)]
mod tests;
mod upstream;
mod validate;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Api, ResourceExt};
use steward_core::apply::{Applier, ApplyError};
use steward_core::children::Children;
use steward_core::{ControllerRuntime, EventRecorder, ReconcileError};

use self::caches::Caches;
use crate::FIELD_MANAGER;
use crate::crd::Prometheus;
use crate::discovery::Policy;

pub use self::metrics::PrometheusMetrics;
pub use self::status::{HasConfigStatus, Outcome, desired_status, pod_selector};
pub use self::validate::validate;

/// Name of the controller in metrics and logs.
pub const CONTROLLER: &str = "prometheus";
/// Finalizer that removes the discovery bindings, which the Prometheus cannot own (they live
/// in other namespaces, or are cluster-scoped).
pub const FINALIZER: &str = "monitoring.steward.dev/rbac-cleanup";

/// How long after the operator's last write for a Prometheus its reads still go to the API
/// (see [`Applier::quiet_for`]).
const CACHE_QUIET: Duration = Duration::from_secs(10);
/// When to look again at a Prometheus with nothing pending.
const IDLE: Duration = Duration::from_secs(300);

/// Reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace.
    #[error("Prometheus {0} has no namespace")]
    NoNamespace(String),
    /// The finalizer cannot be managed on this object (it has no name).
    #[error("finalizer {FINALIZER}: {0}")]
    FinalizerRefused(String),
    /// The API refused adding or removing the finalizer.
    #[error("{action} finalizer {FINALIZER}: {source}")]
    Finalizer {
        /// `adding` or `removing`.
        action: &'static str,
        /// Cause.
        source: Box<kube::Error>,
    },
    /// The API refused a read (a list of Secrets, a get of the StatefulSet, ...).
    #[error("{what}: {source}")]
    Read {
        /// What was read, e.g. `list secrets in monitoring`.
        what: String,
        /// Cause.
        source: Box<kube::Error>,
    },
    /// The API refused the status write of the Prometheus.
    #[error("writing status of {name}: {source}")]
    Status {
        /// Object name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
    /// Applying children, bindings or the governing Service failed (conversion, API, or a
    /// name held by someone else).
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The generated configuration could not be gzipped.
    #[error("compressing the configuration: {0}")]
    Compress(std::io::Error),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::NoNamespace(_) | Error::FinalizerRefused(_) => "invalid_object",
            Error::Finalizer { .. } | Error::Read { .. } | Error::Status { .. } => "api",
            Error::Compress(_) => "build",
            Error::Apply(e) => e.reason(),
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    applier: Applier,
    children: Arc<Children>,
    /// Per Prometheus UID, the fingerprint of everything its last successful reconcile read.
    fingerprints: Mutex<HashMap<String, u64>>,
    reloader_image: String,
    caches: Caches,
    metrics: PrometheusMetrics,
    policy: Policy,
    grafana_label: crate::grafana::Label,
}

/// How the operator was configured (its `run` flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image of the config-reloader sidecar (this operator's own image).
    pub reloader_image: String,
    /// What discovery the cluster admin allows.
    pub policy: Policy,
    /// Whether to read upstream prometheus-operator's `monitoring.coreos.com` objects while
    /// their CRDs exist.
    pub upstream_monitors: bool,
    /// The label of Grafana datasource ConfigMaps.
    pub grafana_label: crate::grafana::Label,
}

/// Runs the Prometheus controller until the runtime shuts down.
pub async fn run(rt: ControllerRuntime, metrics: PrometheusMetrics, settings: Settings) {
    let client = rt.client.clone();
    let (caches, children, controller) = watch::start(&rt, settings.upstream_monitors);
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: EventRecorder::new(client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
        applier: Applier::new(client, FIELD_MANAGER).with_children(children.clone()),
        children,
        fingerprints: Mutex::default(),
        reloader_image: settings.reloader_image,
        caches,
        metrics,
        policy: settings.policy,
        grafana_label: settings.grafana_label,
    });
    steward_core::controller::run(&rt, CONTROLLER, controller, ctx, reconcile).await;
}

async fn reconcile(obj: Arc<Prometheus>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Nothing is written before every watch cache is filled (after a start or a failover);
    // `watch::start` reconciles everything once they are.
    if !*ctx.caches.ready.borrow() {
        return Ok(Action::await_change());
    }
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(obj.name_any()))?;
    let api: Api<Prometheus> = Api::namespaced(ctx.client.clone(), &ns);
    let c = ctx.clone();
    finalizer::finalizer(&api, FINALIZER, obj, |event| async move {
        match event {
            FinalizerEvent::Apply(p) => reconcile_unless_unchanged(&p, &c).await,
            FinalizerEvent::Cleanup(p) => rbac::cleanup(&p, &c).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(source) => Error::Finalizer {
            action: "adding",
            source: Box::new(source),
        },
        finalizer::Error::RemoveFinalizer(source) => Error::Finalizer {
            action: "removing",
            source: Box::new(source),
        },
        other => Error::FinalizerRefused(other.to_string()),
    })
}

/// Skips the reconcile when nothing it reads changed since the last successful one: then
/// there is nothing to write either, and no request to make (an idle Prometheus costs the API
/// nothing).
async fn reconcile_unless_unchanged(obj: &Prometheus, ctx: &Context) -> Result<Action, Error> {
    let uid = obj.uid().unwrap_or_default();
    let cached = ctx.applier.quiet_for(&uid, CACHE_QUIET);
    let fp = ctx.caches.fingerprint(obj, &ctx.children);
    if cached && fp.is_some() && ctx.fingerprints.lock().ok().and_then(|f| f.get(&uid).copied()) == fp {
        return Ok(Action::requeue(IDLE));
    }
    let action = match reconcile_live(obj, ctx, cached).await {
        // Deleted while this reconcile ran (its finalizer's cleanup comes next): nothing more.
        Err(Error::Apply(ApplyError::OwnerGone { .. })) => return Ok(Action::await_change()),
        result => result?,
    };
    if let (Some(fp), Ok(mut f)) = (fp, ctx.fingerprints.lock()) {
        f.insert(uid, fp);
    }
    Ok(action)
}

/// fetch → validate → build → apply → status, for a Prometheus that is not being deleted.
/// `cached`: the caches may stand in for the API (see [`CACHE_QUIET`]).
async fn reconcile_live(obj: &Prometheus, ctx: &Context, cached: bool) -> Result<Action, Error> {
    let fetched = fetch::fetch(ctx, obj, cached).await?;
    let replicas = fetched.replicas();
    let admitted = match validate::admit(obj, fetched, ctx.policy) {
        Ok(admitted) => admitted,
        Err(problems) => return status::invalid(ctx, obj, replicas, problems).await,
    };
    let inputs = fetch::inputs(ctx, obj, &admitted).await?;
    let generated = match build::configuration(&ctx.metrics, obj, &admitted, &inputs) {
        Ok(generated) => generated,
        Err(problem) => return status::config_refused(ctx, obj, replicas, problem).await,
    };
    let built = build::children(
        obj,
        &admitted,
        &generated,
        &ctx.reloader_image,
        &ctx.grafana_label,
    )?;
    if let Err(conflict) = apply::apply(ctx, obj, &built).await? {
        return status::conflict(ctx, obj, replicas, conflict).await;
    }
    let unsupported = &admitted.fetched.unsupported;
    status::report(ctx, obj, replicas, &generated, &inputs, built, unsupported).await
}
