//! The Alertmanager controller. A reconcile is **fetch** (the configuration's Secrets, the
//! StatefulSet) → **validate** (render `spec.config` or read `spec.configSecret`, then
//! `config::check`) → **build** (`build`, pure) → **apply** (children; the shared
//! `alertmanager-operated`) → **status** (replicas, cluster peers as the pods report them,
//! conditions). An invalid configuration is never written: the last good one keeps running,
//! and the rest of the spec is still applied.

pub mod build;
pub mod config;
mod fetch;
pub mod merge;
mod status;
mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use steward_core::apply::{Applier, ApplyError, Conflict, Desired, OwnedKind};
use steward_core::{ControllerRuntime, EventRecorder, ReconcileError};

use crate::crd::{Alertmanager, AlertmanagerConfig};
use crate::{FIELD_MANAGER, OPERATOR_NAME};

/// Name of the controller in metrics and logs.
pub const CONTROLLER: &str = "alertmanager";

/// Reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace.
    #[error("Alertmanager {0} has no namespace")]
    NoNamespace(String),
    /// The API refused a read.
    #[error("{what}: {source}")]
    Read {
        /// What was read.
        what: String,
        /// Cause.
        source: Box<kube::Error>,
    },
    /// The API refused the status write.
    #[error("writing status of {name}: {source}")]
    Status {
        /// Object name.
        name: String,
        /// Cause.
        source: Box<kube::Error>,
    },
    /// Applying children failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The AlertmanagerConfig cache has not listed its objects yet: rendering now would leave
    /// teams out for a moment.
    #[error("the AlertmanagerConfig cache is still syncing")]
    CacheSyncing,
    /// The configuration could not be gzipped.
    #[error("compressing the configuration: {0}")]
    Compress(std::io::Error),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::NoNamespace(_) => "invalid_object",
            Error::Read { .. } | Error::Status { .. } => "api",
            Error::Compress(_) => "build",
            Error::CacheSyncing => "not_ready",
            Error::Apply(e) => e.reason(),
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    applier: Applier,
    reloader_image: String,
    grafana_label: crate::grafana::Label,
    alertmanagers: Store<Alertmanager>,
    /// Every AlertmanagerConfig in scope, for the merge.
    configs: Store<AlertmanagerConfig>,
    http: reqwest::Client,
}

/// Runs the Alertmanager controller until the runtime shuts down; `reloader_image` is the
/// config-reloader sidecar's image (this operator's own), `grafana_label` the label of
/// Grafana datasource ConfigMaps.
pub async fn run(rt: ControllerRuntime, reloader_image: String, grafana_label: crate::grafana::Label) {
    let client = rt.client.clone();
    let (alertmanagers, configs, controller) = watch::start(&rt);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: EventRecorder::new(client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
        applier: Applier::new(client, FIELD_MANAGER),
        reloader_image,
        grafana_label,
        alertmanagers,
        configs,
        http,
    });
    steward_core::controller::run(&rt, CONTROLLER, controller, ctx, reconcile).await;
}

async fn reconcile(obj: Arc<Alertmanager>, ctx: Arc<Context>) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(obj.name_any()))?;
    if obj.spec.paused {
        return Ok(Action::await_change());
    }
    match reconcile_live(&obj, &ctx, &ns).await {
        // Deleted while this reconcile ran: the garbage collector removes the children.
        Err(Error::Apply(ApplyError::OwnerGone { .. })) => Ok(Action::await_change()),
        other => other,
    }
}

/// fetch → validate → build → apply → status.
async fn reconcile_live(obj: &Alertmanager, ctx: &Context, ns: &str) -> Result<Action, Error> {
    // fetch + validate: the configuration with the selected AlertmanagerConfigs merged in,
    // checked; `Err` keeps the running one.
    let fetched = fetch::configuration(ctx, obj, ns).await?;
    let configuration = fetched.yaml;
    // build
    let mut desired = vec![
        Desired::namespaced(&build::statefulset(obj, &ctx.reloader_image))?,
        Desired::namespaced(&build::service(obj))?,
    ];
    if let Some(pdb) = build::pdb(obj) {
        desired.push(Desired::namespaced(&pdb)?);
    }
    if let Some(cm) = crate::grafana::alertmanager_datasource(obj, &ctx.grafana_label) {
        desired.push(Desired::namespaced(&cm)?);
    }
    let mut prune = vec![
        OwnedKind::namespaced::<StatefulSet>(),
        OwnedKind::namespaced::<Service>(),
        OwnedKind::namespaced::<PodDisruptionBudget>(),
        OwnedKind::namespaced::<ConfigMap>(),
    ];
    if let Ok(yaml) = &configuration {
        let gz = crate::reloader::gzip(yaml.as_bytes()).map_err(Error::Compress)?;
        desired.push(Desired::namespaced(&build::config_secret(obj, gz))?);
        // Only with a valid configuration may the config Secret be pruned or replaced.
        prune.push(OwnedKind::namespaced::<Secret>());
    }
    // apply
    let selector = build::pod_selector(obj);
    let applied = match ctx.applier.apply_owned(obj, &selector, desired, &prune).await {
        Ok(_) => apply_governing_service(ctx, ns).await,
        Err(e) => Err(e.into()),
    };
    let conflict = match applied {
        Ok(()) => None,
        Err(Error::Apply(ApplyError::Conflict(c))) => Some(c),
        Err(e) => return Err(e),
    };
    // status
    status::report_configs(ctx, obj, &fetched.verdicts, &fetched.namespace_labels).await;
    status::report(ctx, obj, ns, configuration.err(), conflict).await
}

/// A conflict with `alertmanager-operated` held by someone else.
fn not_ours(ns: &str) -> Error {
    Error::Apply(ApplyError::Conflict(vec![Conflict {
        kind: "Service".into(),
        name: format!("{ns}/{}", build::GOVERNING_SERVICE),
        holder: "was not created by this operator".into(),
    }]))
}

/// `alertmanager-operated`, owned (without controller) by every Alertmanager of the
/// namespace, so it goes with the last one; a Service of that name that is not ours is a
/// conflict and is left alone.
async fn apply_governing_service(ctx: &Context, ns: &str) -> Result<(), Error> {
    let owners = steward_core::apply::shared_owners(ctx.alertmanagers.state().iter().map(|o| o.as_ref()), ns);
    if owners.is_empty() {
        return Ok(());
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let live = api
        .get_opt(build::GOVERNING_SERVICE)
        .await
        .map_err(|e| Error::Read {
            what: format!("get service {ns}/{}", build::GOVERNING_SERVICE),
            source: Box::new(e),
        })?;
    if let Some(live) = &live {
        let ours = live
            .labels()
            .get(steward_core::labels::MANAGED_BY)
            .map(String::as_str)
            == Some(OPERATOR_NAME)
            && live.labels().get(steward_core::labels::NAME).map(String::as_str) == Some(build::APP);
        if !ours {
            return Err(not_ours(ns));
        }
        let uids = |refs: &[OwnerReference]| refs.iter().map(|r| r.uid.clone()).collect::<BTreeSet<_>>();
        let want = build::governing_service(ns);
        if uids(live.owner_references()) == uids(&owners)
            && live
                .spec
                .as_ref()
                .map(|s| (&s.ports, s.publish_not_ready_addresses))
                == want
                    .spec
                    .as_ref()
                    .map(|s| (&s.ports, s.publish_not_ready_addresses))
        {
            return Ok(());
        }
    }
    let mut svc = build::governing_service(ns);
    svc.metadata.owner_references = Some(owners);
    ctx.applier.apply_unowned(&Desired::namespaced(&svc)?).await?;
    Ok(())
}
