//! The EtcdCluster controller. A reconcile is the pipeline
//! observe → validate → build → apply → plan and execute one step → status, one file per
//! stage:
//! - `observe`: the TLS Secrets, the member pods and claims (watch caches or API) and what
//!   etcd reports (membership, health, versions, backend sizes);
//! - `validate`: what the CRD schema cannot check;
//! - `build` (pure): every child that always exists, the planner's input, and the pod and
//!   claim a step starts;
//! - `execute`: the one apply of those children, then the planned step (etcd calls, pods);
//! - `status`: status and conditions, Warning Events, and when to look again;
//! - `metrics`: the etcd metric families.

mod build;
mod execute;
mod metrics;
mod observe;
mod restore;
mod status;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use steward_core::apply::{Applier, ApplyError, OwnedKind};
use steward_core::children::{self, Children};
use steward_core::conditions;
use steward_core::{ControllerRuntime, EventRecorder, ReconcileError};

pub use metrics::EtcdMetrics;
pub use observe::{MemberView, members_for_backup};
pub use status::{BACKUP_READY, MAINTENANCE, desired_status, member_selector, observed_status};
pub use validate::validate;

use crate::crd::EtcdCluster;
use crate::etcd::{EtcdApi, EtcdError};
use crate::plan::{Step, plan};
use crate::{FIELD_MANAGER, OPERATOR_NAME};

/// Name of the controller in metrics and logs.
pub const CONTROLLER: &str = "etcdcluster";

/// Reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object has no namespace (cannot happen for a namespaced kind read from the API).
    #[error("EtcdCluster {0} has no namespace")]
    NoNamespace(String),
    /// The object has no UID, so children cannot reference it (it was not read from the API).
    #[error("EtcdCluster {0} has no uid to own its children")]
    NoUid(String),
    /// The API refused a status write.
    #[error("writing status of {name}: {source}")]
    Status {
        /// Object name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
    /// Converting or applying the children failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Another API call failed.
    #[error("{verb} {kind} {name}: {source}")]
    Kube {
        /// `get`, `list`, `apply` or `delete`.
        verb: &'static str,
        /// Kind of the object.
        kind: &'static str,
        /// `namespace/name`, or the namespace of a list.
        name: String,
        /// Cause.
        source: Box<kube::Error>,
    },
    /// etcd refused or did not answer.
    #[error(transparent)]
    Etcd(EtcdError),
    /// A certificate could not be issued.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Running the backup schedule failed.
    #[error(transparent)]
    Backup(#[from] crate::backup::Error),
}

impl Error {
    /// A failed API call on `kind` `name`.
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
            Error::NoNamespace(_) | Error::NoUid(_) => "invalid_object",
            Error::Status { .. } | Error::Kube { .. } => "api",
            Error::Apply(e) => e.reason(),
            Error::Etcd(_) => "etcd",
            Error::Tls(_) => "tls",
            Error::Backup(e) => e.reason(),
        }
    }
}

/// How long after the operator's last write for a cluster its reads still go to the API
/// instead of the watch caches (see [`Applier::quiet_for`]).
const CACHE_QUIET: Duration = Duration::from_secs(10);

/// How long one etcd request may take.
const ETCD_TIMEOUT: Duration = Duration::from_secs(3);

/// The kinds of child the controller caches (every object labelled as ours), and what of them
/// it keeps: the TLS Secrets whole, each member pod's containers' images, metadata otherwise.
fn child_kinds() -> Vec<(OwnedKind, children::Trim)> {
    vec![
        (OwnedKind::namespaced::<Service>(), children::metadata_only),
        (
            OwnedKind::namespaced::<PodDisruptionBudget>(),
            children::metadata_only,
        ),
        (OwnedKind::namespaced::<Secret>(), children::keep_all),
        (OwnedKind::namespaced::<Pod>(), pod_images_only),
        (
            OwnedKind::namespaced::<PersistentVolumeClaim>(),
            children::metadata_only,
        ),
    ]
}

/// A cached member pod keeps its metadata and its containers' names and images (the planner
/// reads a member's version from its image).
fn pod_images_only(o: &mut kube::api::DynamicObject) {
    let containers: Vec<serde_json::Value> = o.data["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| serde_json::json!({"name": c["name"], "image": c["image"]}))
        .collect();
    o.data = serde_json::json!({"spec": {"containers": containers}});
}

/// The user's TLS Secrets (mode secrets) by namespace and name, with when they were read.
type UserSecrets = std::sync::Mutex<BTreeMap<(String, String), (Instant, Option<Secret>)>>;

/// Shared state of the controller.
pub struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    applier: Applier,
    children: Arc<Children>,
    user_secrets: UserSecrets,
    metrics: EtcdMetrics,
    /// The operator's own image, which runs a restore's `restore-fetch` and `restore-finish`.
    operator_image: String,
}

impl Context {
    fn new(
        rt: &ControllerRuntime,
        metrics: EtcdMetrics,
        children: Arc<Children>,
        operator_image: String,
    ) -> Self {
        Context {
            client: rt.client.clone(),
            recorder: EventRecorder::new(rt.client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
            applier: Applier::new(rt.client.clone(), FIELD_MANAGER).with_children(children.clone()),
            children,
            user_secrets: Default::default(),
            metrics,
            operator_image,
        }
    }
}

/// The EtcdCluster one reconcile works on, with what every stage needs to address it.
struct Target<'a> {
    obj: &'a EtcdCluster,
    name: String,
    ns: String,
    uid: String,
    api: Api<EtcdCluster>,
    /// Whether the watch caches may be read: not right after our own writes, which they may
    /// not show yet.
    cached: bool,
}

impl<'a> Target<'a> {
    fn new(ctx: &Context, obj: &'a EtcdCluster) -> Result<Self, Error> {
        let name = obj.name_any();
        let ns = obj.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
        let uid = obj.uid().ok_or_else(|| Error::NoUid(name.clone()))?;
        Ok(Target {
            api: Api::namespaced(ctx.client.clone(), &ns),
            cached: ctx.applier.quiet_for(&uid, CACHE_QUIET),
            obj,
            name,
            ns,
            uid,
        })
    }
}

/// Environment variable that arms [`TEST_PANIC_ANNOTATION`]; only end-to-end tests set it.
pub const TEST_PANIC_ENV: &str = "STEWARD_TESTING_PANIC_ON_ANNOTATION";
/// With [`TEST_PANIC_ENV`] set to `1`, a reconcile of an EtcdCluster carrying this annotation
/// panics: how the tests show that one object's panic does not stop the others.
pub const TEST_PANIC_ANNOTATION: &str = "etcd.steward.dev/testing-panic";

fn panic_when_asked(obj: &EtcdCluster) {
    static ARMED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    #[allow(clippy::panic)]
    if *ARMED.get_or_init(|| std::env::var(TEST_PANIC_ENV).is_ok_and(|v| v == "1"))
        && obj.annotations().contains_key(TEST_PANIC_ANNOTATION)
    {
        panic!("{TEST_PANIC_ANNOTATION} is set and {TEST_PANIC_ENV}=1: panicking on purpose");
    }
}

/// One reconcile of `obj`. A cluster deleted while it ran is left alone: its children go
/// with it, and nothing is created for it.
async fn reconcile(obj: Arc<EtcdCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(obj) = latest(&ctx, obj).await? else {
        return Ok(Action::await_change());
    };
    match pipeline(obj, ctx).await {
        Err(Error::Apply(ApplyError::OwnerGone { .. })) => Ok(Action::await_change()),
        result => result,
    }
}

/// `obj` as the API holds it now when the operator wrote for it lately, else `obj` itself;
/// None when it is gone. The status carries what earlier reconciles learnt (which member an
/// upgrade restarted, when a member was last recovered, since when quorum is lost): a watch
/// copy that misses our own last status write would forget it, and the status written from
/// it would erase it.
async fn latest(ctx: &Context, obj: Arc<EtcdCluster>) -> Result<Option<Arc<EtcdCluster>>, Error> {
    let (Some(uid), Some(ns)) = (obj.uid(), obj.namespace()) else {
        return Ok(Some(obj));
    };
    if ctx.applier.quiet_for(&uid, CACHE_QUIET) {
        return Ok(Some(obj));
    }
    let api: Api<EtcdCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let name = obj.name_any();
    let live = api
        .get_opt(&name)
        .await
        .map_err(Error::kube("get", "EtcdCluster", format!("{ns}/{name}")))?;
    Ok(live
        .filter(|l| l.uid().as_deref() == Some(uid.as_str()))
        .map(Arc::new))
}

/// Observe, validate, build, apply, plan and execute one step, report status.
async fn pipeline(obj: Arc<EtcdCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    panic_when_asked(&obj);
    let target = Target::new(&ctx, &obj)?;
    let problems = validate(&obj.spec);
    if !problems.is_empty() {
        return status::invalid_spec(&ctx, &target, &problems).await;
    }
    let tls = match observe::tls_material(&ctx, &target).await? {
        Ok(tls) => tls,
        Err(blocked) => return status::blocked(&ctx, &target, blocked).await,
    };
    let children = build::children(&obj, &tls.secrets);
    if let Err(blocked) = execute::apply_children(&ctx, &target, children, &tls.issued).await? {
        return status::blocked(&ctx, &target, blocked).await;
    }
    let etcd = EtcdApi::new(tls.client.clone(), ETCD_TIMEOUT);
    let seen = observe::cluster(&ctx, &target, &etcd).await?;
    let now = conditions::now();
    let fresh_name = observe::fresh_member_name(&target.name);
    let mut step = plan(&build::planner_input(
        &obj,
        &seen,
        now.0.as_second(),
        fresh_name.clone(),
        None,
    ));
    if matches!(step, Step::QuorumLost { .. }) {
        // Only now does the newest backup matter: to rebuild from, or to name in the message.
        let latest = restore::latest_backup(&ctx, &target).await?;
        step = plan(&build::planner_input(
            &obj,
            &seen,
            now.0.as_second(),
            fresh_name,
            latest,
        ));
    }
    if target.cached && matches!(step, Step::Bootstrap { .. } | Step::Recover { .. }) {
        // A new cluster is never started from a cache's view (which may miss a member pod that
        // still holds data): look again at the API itself.
        ctx.applier.touched(&target.uid);
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let (step, source) = match gate(&ctx, &target, &seen, step).await? {
        Ok(ready) => ready,
        Err(blocked) => return status::blocked(&ctx, &target, blocked).await,
    };
    if let Err(blocked) = execute::step(&ctx, &target, &etcd, &step, &seen, source.as_ref(), &now).await? {
        return status::blocked(&ctx, &target, blocked).await;
    }
    let backups = crate::backup::schedule::reconcile(
        &ctx.client,
        &ctx.applier,
        &ctx.recorder,
        &obj,
        now.0.as_second(),
        &ctx.operator_image,
    )
    .await?;
    let status = status::report(&ctx, &target, seen, &step, now.clone(), backups.as_ref()).await?;
    Ok(status::next_reconcile(
        &obj.spec,
        &step,
        &tls.secrets,
        &status,
        now.0.as_second(),
        backups.and_then(|b| b.requeue),
    ))
}

/// What must hold before `step` runs: a failed restore stops everything (nothing grows from
/// it); a seed restored from a backup (a bootstrap with `fromBackup`, or a rebuild) needs that
/// backup first (without it nothing starts);
/// an upgrade or member replacement may first wait for a spot backup (`spec.backup.spot`).
/// Returns the step to run, which may be a wait, and the restore source of a seed.
async fn gate(
    ctx: &Context,
    target: &Target<'_>,
    seen: &observe::Observation,
    step: Step,
) -> Result<Result<(Step, Option<crate::resources::RestoreSource>), status::Blocked>, Error> {
    if let Some(blocked) = restore::failure(ctx, target, seen).await? {
        return Ok(Err(blocked));
    }
    let source = match &step {
        Step::Bootstrap { .. } => match restore::source(ctx, target).await? {
            Ok(source) => source,
            Err(blocked) => return Ok(Err(blocked)),
        },
        Step::Recover { backup, .. } => match restore::recovery_source(ctx, target, &backup.name).await? {
            Ok(source) => Some(source),
            Err(blocked) => return Ok(Err(blocked)),
        },
        _ => None,
    };
    let step = crate::backup::spot::hold(&ctx.client, &ctx.applier, &ctx.recorder, target.obj, step).await?;
    Ok(Ok((step, source)))
}

/// Seconds since the epoch of an RFC 3339 time, as status fields hold them.
fn unix_seconds(t: &str) -> Option<i64> {
    t.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// `t` as status fields hold it: RFC 3339 in UTC, to the second.
fn rfc3339(t: &Time) -> String {
    t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Runs the EtcdCluster controller until the runtime shuts down.
/// `operator_image` is the operator's own image, which runs the restore init containers.
pub async fn run(rt: ControllerRuntime, metrics: EtcdMetrics, operator_image: String) {
    // Children wake their cluster (a member pod turning ready or not ready is what the next
    // step usually waits for) and fill the caches a steady reconcile reads instead of the API.
    let (children, streams) = Children::watch(&rt, OPERATOR_NAME, &child_kinds());
    let ctx = Arc::new(Context::new(&rt, metrics, children, operator_image));
    let mut streams: Vec<_> = streams.into_iter().map(Some).collect();
    let runs = rt.apis::<EtcdCluster>().into_iter().map(|api| {
        let ns = api.namespace().map(str::to_string);
        let mut controller =
            kube::runtime::Controller::new(api, kube::runtime::watcher::Config::default().any_semantic());
        for slot in streams.iter_mut() {
            if let Some(s) = slot.take_if(|s| s.namespace == ns) {
                controller = controller.owns_stream_with(s.stream, s.resource);
            }
        }
        steward_core::controller::run(&rt, CONTROLLER, controller, ctx.clone(), reconcile)
    });
    let runs: Vec<_> = runs.collect();
    futures::future::join_all(runs).await;
}

#[cfg(test)]
mod tests;
