//! The EtcdCluster controller: observe (pods, claims, etcd membership and health) → plan one
//! safe step (`crate::plan`) → execute it → report status, conditions, Events and metrics.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use steward_core::apply::{Applier, ApplyError, Desired, OwnedKind};
use steward_core::children::{self, Children};
use steward_core::conditions::{self, NewCondition, Status};
use steward_core::{ControllerRuntime, EventRecorder, MetricsBuilder, ReconcileError};

use crate::crd::{EtcdCluster, EtcdClusterSpec, EtcdClusterStatus, TlsMode};
use crate::etcd::{ClientTls, EtcdApi, EtcdError};
use crate::plan::{DefragObs, MemberObs, Observed, PodObs, RemoveReason, Step, StorageKind, plan};
use crate::resources;
pub use crate::version::Version;
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
    /// Applying children failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Another API call failed.
    #[error("{0}: {1}")]
    Kube(&'static str, Box<kube::Error>),
    /// etcd refused or did not answer.
    #[error(transparent)]
    Etcd(EtcdError),
    /// A certificate could not be issued.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl ReconcileError for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::NoNamespace(_) | Error::NoUid(_) => "invalid_object",
            Error::Status { .. } | Error::Kube(..) => "api",
            Error::Apply(e) => e.reason(),
            Error::Etcd(_) => "etcd",
            Error::Tls(_) => "tls",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    namespace: String,
    cluster: String,
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberStateLabels {
    namespace: String,
    cluster: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    cluster: String,
}

/// The etcd-specific metrics.
#[derive(Clone, Debug, Default)]
pub struct EtcdMetrics {
    members: Family<MemberStateLabels, Gauge>,
    member_changes: Family<ChangeLabels, Counter>,
    available: Family<ClusterLabels, Gauge>,
}

impl EtcdMetrics {
    /// Registers the families on the operator's registry.
    pub fn register(builder: &mut MetricsBuilder) -> Self {
        let m = Self::default();
        let r = builder.registry_mut();
        r.register(
            "steward_etcd_members",
            "Members of each EtcdCluster by state (healthy, unhealthy, learner)",
            m.members.clone(),
        );
        r.register(
            "steward_etcd_member_changes",
            "Changes the operator made to members, by op: bootstrap, add, promote, remove, upgrade, defrag",
            m.member_changes.clone(),
        );
        r.register(
            "steward_etcd_cluster_available",
            "1 when the cluster has a healthy quorum",
            m.available.clone(),
        );
        m
    }
}

/// How long after the operator's last write for a cluster its reads still go to the API
/// instead of the watch caches (see [`Applier::quiet_for`]).
const CACHE_QUIET: Duration = Duration::from_secs(10);

/// How long the user's TLS Secrets (mode secrets) are trusted without reading them again.
/// Members read the files themselves; the operator only needs its client material, so an idle
/// cluster does not have to cost three reads every few seconds.
const USER_SECRETS_TTL: Duration = Duration::from_secs(300);

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

type UserSecrets = std::sync::Mutex<BTreeMap<(String, String), (std::time::Instant, Option<Secret>)>>;

/// Shared state of the controller.
pub struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    applier: Applier,
    children: Arc<Children>,
    user_secrets: UserSecrets,
    member_changes: Family<ChangeLabels, Counter>,
    metrics: EtcdMetrics,
}

impl Context {
    fn new(rt: &ControllerRuntime, metrics: EtcdMetrics, children: Arc<Children>) -> Self {
        Context {
            client: rt.client.clone(),
            recorder: EventRecorder::new(rt.client.clone(), FIELD_MANAGER, std::env::var("POD_NAME").ok()),
            applier: Applier::new(rt.client.clone(), FIELD_MANAGER).with_children(children.clone()),
            children,
            user_secrets: Default::default(),
            member_changes: metrics.member_changes.clone(),
            metrics,
        }
    }

    /// A Normal Event on `obj` that also names member pod `member`; best effort.
    async fn member_event(&self, obj: &EtcdCluster, member: &str, reason: &str, action: &str, note: String) {
        let related = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(member.to_string()),
            namespace: obj.namespace(),
            ..Default::default()
        };
        self.recorder
            .normal_related(obj, related, reason, action, note)
            .await;
    }

    fn metrics_for(&self, obj: &EtcdCluster, status: &EtcdClusterStatus) {
        let ns = obj.namespace().unwrap_or_default();
        let cluster = obj.name_any();
        let count = |f: &dyn Fn(&crate::crd::EtcdMemberStatus) -> bool| {
            status.members.iter().filter(|m| f(m)).count() as i64
        };
        for (state, n) in [
            ("healthy", count(&|m| m.healthy && !m.is_learner)),
            ("unhealthy", count(&|m| !m.healthy)),
            ("learner", count(&|m| m.is_learner)),
        ] {
            self.metrics
                .members
                .get_or_create(&MemberStateLabels {
                    namespace: ns.clone(),
                    cluster: cluster.clone(),
                    state: state.into(),
                })
                .set(n);
        }
        let available = conditions::is_true(&status.conditions, "Available");
        self.metrics
            .available
            .get_or_create(&ClusterLabels {
                namespace: ns,
                cluster,
            })
            .set(i64::from(available));
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
    for arg in spec.options.iter().flat_map(|o| o.extra_args.iter()) {
        if let Some(p) = crate::resources::extra_arg_problem(arg) {
            problems.push(format!("spec.options.extraArgs: {p}"));
        }
    }
    if let Err(e) = steward_core::duration::parse(&spec.member_failure_timeout) {
        problems.push(format!("spec.memberFailureTimeout: {e}"));
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
fn certificate_validity(spec: &EtcdClusterSpec) -> i64 {
    spec.tls
        .certificate_validity
        .as_deref()
        .and_then(|v| steward_core::duration::parse(v).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(crate::tls::DEFAULT_VALIDITY_SECS)
}

/// Label selector of a cluster's member pods (used by the scale subresource).
pub fn member_selector(cluster: &str) -> String {
    format!(
        "app.kubernetes.io/instance={cluster},app.kubernetes.io/managed-by={OPERATOR_NAME},app.kubernetes.io/name=etcd,app.kubernetes.io/component=member"
    )
}

/// The status a plan result leads to, from the object, validation problems and what was
/// observed. Pure.
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
    if !problems.is_empty() {
        conditions::set(
            &mut status.conditions,
            NewCondition {
                type_: "Progressing",
                status: Status::False,
                reason: "InvalidSpec",
                message: problems.join("; "),
                observed_generation: generation,
            },
            now,
        );
    }
    status
}

/// Condition type saying whether scheduled maintenance (defragmentation) is set up.
pub const MAINTENANCE: &str = "MaintenanceScheduled";

/// The defrag schedule, when there is one, and whether it parses.
fn maintenance_schedule(spec: &crate::crd::EtcdClusterSpec) -> Option<Result<String, String>> {
    let schedule = spec.maintenance.as_ref()?.defrag.as_ref()?.schedule.as_deref()?;
    Some(crate::plan::parse_schedule(schedule).map(|_| schedule.to_string()))
}

/// Status after observing the cluster and choosing `step`.
pub fn observed_status(
    obj: &EtcdCluster,
    members: &[MemberView],
    leader: Option<u64>,
    step: &Step,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> EtcdClusterStatus {
    let mut status = desired_status(obj, &[], now.clone());
    let generation = obj.metadata.generation;
    let voters: Vec<&MemberView> = members.iter().filter(|m| !m.is_learner).collect();
    let healthy = voters.iter().filter(|m| m.healthy).count();
    let quorum = voters.len() / 2 + 1;
    status.size = voters.len() as i32;
    status.ready_members = members.iter().filter(|m| m.healthy).count() as i32;
    status.leader = members
        .iter()
        .find(|m| Some(m.id) == leader)
        .map(|m| m.name.clone());
    // The version the whole cluster runs: only known when every wanted member is there and
    // reports one (a missing member may come back at another version).
    let whole = voters.len() >= obj.spec.size.max(1) as usize && members.iter().all(|m| m.version.is_some());
    status.current_version = members
        .iter()
        .filter_map(|m| m.version)
        .min()
        .filter(|_| whole)
        .map(|v| v.to_string());
    status.members = members
        .iter()
        .map(|m| crate::crd::EtcdMemberStatus {
            name: m.name.clone(),
            id: Some(crate::etcd::hex_id(m.id)),
            version: m.version.map(|v| v.to_string()),
            is_leader: Some(m.id) == leader,
            is_learner: m.is_learner,
            healthy: m.healthy,
            client_url: Some(m.client_url.clone()),
            unhealthy_since: m.unhealthy_since.clone(),
            last_defrag_time: m.last_defrag.clone(),
        })
        .collect();
    status.last_defrag_time = members
        .iter()
        .filter_map(|m| m.last_defrag.clone())
        .chain(status.last_defrag_time.take())
        .max();
    let available = !voters.is_empty() && healthy >= quorum;
    let (a_reason, a_msg) = match step {
        Step::QuorumLost { reason } => ("QuorumLost", reason.clone()),
        Step::Unreachable { reason } => ("EtcdUnreachable", reason.clone()),
        _ if available => (
            "QuorumHealthy",
            format!("{healthy} of {} voting members healthy", voters.len()),
        ),
        _ => ("NotReady", "no healthy quorum yet".to_string()),
    };
    let available = available && !matches!(step, Step::QuorumLost { .. } | Step::Unreachable { .. });
    let cond = |status: &mut EtcdClusterStatus, type_, ok: bool, reason: &str, message: String| {
        conditions::set(
            &mut status.conditions,
            NewCondition {
                type_,
                status: ok.into(),
                reason,
                message,
                observed_generation: generation,
            },
            now.clone(),
        );
    };
    cond(&mut status, "Available", available, a_reason, a_msg);
    let (progressing, p_reason, p_msg) = match step {
        Step::Nothing => (
            false,
            "Stable",
            "membership and versions match the spec".to_string(),
        ),
        Step::Paused => (
            false,
            "Paused",
            "spec.paused is true: no changes are made".to_string(),
        ),
        Step::Bootstrap { member } => (true, "Bootstrapping", format!("starting seed member {member}")),
        Step::AddMember { member } | Step::CreatePod { member } | Step::Promote { member, .. } => {
            (true, "Scaling", format!("adding member {member}"))
        }
        Step::RemoveMember {
            member,
            reason: RemoveReason::ScaleDown,
            ..
        } => (true, "Scaling", format!("removing member {member}")),
        Step::RemoveMember {
            member,
            reason: RemoveReason::Replace,
            ..
        } => (
            true,
            "MemberReplaced",
            format!("replacing failed member {member}"),
        ),
        Step::DeletePod { member } => (
            true,
            "Scaling",
            format!("deleting the pod of removed member {member}"),
        ),
        Step::UpgradeMember { member, .. } => (true, "Upgrading", format!("upgrading member {member}")),
        Step::Defrag { member, .. } => (true, "Defragmenting", format!("defragmented member {member}")),
        Step::MoveLeader { .. } => (
            true,
            "Upgrading",
            "moving leadership before upgrading the leader".to_string(),
        ),
        Step::Wait { reason } => (true, "Waiting", reason.clone()),
        Step::QuorumLost { reason } => (false, "QuorumLost", reason.clone()),
        Step::Unreachable { reason } => (false, "EtcdUnreachable", reason.clone()),
        Step::UpgradeBlocked { reason } => (false, "UpgradeBlocked", reason.clone()),
    };
    cond(&mut status, "Progressing", progressing, p_reason, p_msg);
    let unhealthy = members.iter().filter(|m| !m.healthy).count();
    let (degraded, d_reason, d_msg) = match step {
        Step::QuorumLost { reason } => (true, "QuorumLost", reason.clone()),
        Step::Unreachable { reason } => (true, "EtcdUnreachable", reason.clone()),
        Step::UpgradeBlocked { reason } => (true, "UpgradeBlocked", reason.clone()),
        _ if unhealthy > 0 => (
            true,
            "MembersUnhealthy",
            format!("{unhealthy} member(s) unhealthy"),
        ),
        _ => (false, "AllMembersHealthy", "every member is healthy".to_string()),
    };
    cond(&mut status, "Degraded", degraded, d_reason, d_msg);
    // A schedule that does not parse only switches defragmentation off: the rest of the
    // lifecycle (healing above all) keeps running.
    match maintenance_schedule(&obj.spec) {
        None => status.conditions.retain(|c| c.type_ != MAINTENANCE),
        Some(Ok(schedule)) => cond(
            &mut status,
            MAINTENANCE,
            true,
            "Scheduled",
            format!("defragmentation windows open at {schedule:?} (UTC)"),
        ),
        Some(Err(e)) => cond(
            &mut status,
            MAINTENANCE,
            false,
            "InvalidSchedule",
            format!("spec.maintenance.defrag.schedule: {e}; nothing is defragmented"),
        ),
    }
    status.phase = Some(
        match step {
            Step::Paused => "Paused",
            Step::QuorumLost { .. } | Step::Unreachable { .. } => "Degraded",
            Step::Bootstrap { .. } => "Creating",
            Step::UpgradeMember { .. } | Step::MoveLeader { .. } => "Upgrading",
            Step::AddMember { .. }
            | Step::CreatePod { .. }
            | Step::Promote { .. }
            | Step::RemoveMember { .. }
            | Step::DeletePod { .. } => "Scaling",
            _ if degraded => "Degraded",
            _ if available => "Running",
            _ => "Creating",
        }
        .to_string(),
    );
    status
}

/// One member as the controller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Member ID.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Started (etcd knows its name).
    pub started: bool,
    /// Learner.
    pub is_learner: bool,
    /// Healthy now.
    pub healthy: bool,
    /// Version it reports.
    pub version: Option<Version>,
    /// Client URL.
    pub client_url: String,
    /// RFC 3339 time it became unhealthy.
    pub unhealthy_since: Option<String>,
    /// Backend size and the part in use, in bytes, when it answered.
    pub db_size: Option<(i64, i64)>,
    /// Raft index the member reports (how far its log has come), when reachable.
    pub raft_index: Option<u64>,
    /// RFC 3339 time the operator last defragmented it.
    pub last_defrag: Option<String>,
}

fn ts(t: &str) -> Option<i64> {
    t.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// A fresh member name: the cluster name and five random characters.
fn fresh_member_name(cluster: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| ALPHABET[(rand::random::<u32>() as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{cluster}-{suffix}")
}

/// The membership as etcd reports it, its leader, and why etcd could not be asked if it could not.
async fn observe(
    etcd: &EtcdApi,
    obj: &EtcdCluster,
    pods: &[Pod],
) -> (Option<Vec<MemberView>>, Option<u64>, Option<String>) {
    let endpoints: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| resources::client_url(obj, &p.name_any()))
        .collect();
    if endpoints.is_empty() {
        return (None, None, None);
    }
    let list = match etcd.members(&endpoints).await {
        Ok(list) => list,
        Err(e) => return (None, None, Some(e.describe())),
    };
    let previous = obj.status.as_ref().map(|s| s.members.clone()).unwrap_or_default();
    let now = conditions::now();
    let checks = list.iter().map(|m| {
        let name = if m.name.is_empty() {
            m.peer_urls
                .first()
                .and_then(|u| resources::member_of_peer_url(u))
                .unwrap_or_default()
        } else {
            m.name.clone()
        };
        let url = m
            .client_urls
            .first()
            .cloned()
            .unwrap_or_else(|| resources::client_url(obj, &name));
        async move {
            let healthy = etcd.healthy(&url).await;
            let status = if healthy || m.is_learner {
                etcd.status(&url).await.ok()
            } else {
                None
            };
            (m.clone(), name, url, healthy, status)
        }
    });
    let mut leader = None;
    let mut views = Vec::new();
    for (m, name, url, healthy, status) in futures::future::join_all(checks).await {
        if let Some(s) = &status
            && s.leader != 0
        {
            leader = Some(s.leader);
        }
        let since = if healthy {
            None
        } else {
            previous
                .iter()
                .find(|p| p.name == name)
                .and_then(|p| p.unhealthy_since.clone())
                .or_else(|| Some(now.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
        };
        let last_defrag = previous
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.last_defrag_time.clone());
        views.push(MemberView {
            id: m.id,
            name,
            started: !m.name.is_empty(),
            is_learner: m.is_learner,
            healthy,
            version: status.as_ref().and_then(|s| Version::parse(&s.version)),
            client_url: url,
            unhealthy_since: since,
            db_size: status.as_ref().map(|s| (s.db_size, s.db_size_in_use)),
            raft_index: status.as_ref().map(|s| s.raft_index),
            last_defrag,
        });
    }
    (Some(views), leader, None)
}

/// The members the cluster had, without asking etcd: `status.members` and the member PVCs
/// carrying the cluster's labels, in that order, without duplicates.
fn known_members(obj: &EtcdCluster, pvcs: &[PersistentVolumeClaim]) -> Vec<String> {
    let mut known: Vec<String> = obj
        .status
        .iter()
        .flat_map(|s| s.members.iter().map(|m| m.name.clone()))
        .collect();
    for name in pvcs
        .iter()
        .filter_map(|c| c.labels().get(resources::MEMBER_LABEL))
    {
        if !known.contains(name) {
            known.push(name.clone());
        }
    }
    known
}

/// The cluster's member pods and claims: from the watch caches when `cached`, else from the API.
async fn member_objects(
    ctx: &Context,
    obj: &EtcdCluster,
    ns: &str,
    cached: bool,
) -> Result<(Vec<Pod>, Vec<PersistentVolumeClaim>), Error> {
    if cached {
        let labels = resources::member_selector(obj);
        if let (Some(pods), Some(pvcs)) = (
            ctx.children.list_as::<Pod>(Some(ns), &labels),
            ctx.children.list_as::<PersistentVolumeClaim>(Some(ns), &labels),
        ) {
            return Ok((pods, pvcs));
        }
    }
    let lp = ListParams::default().labels(&member_selector(&obj.name_any()));
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&lp)
        .await
        .map_err(|e| Error::Kube("list pods", Box::new(e)))?
        .items;
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
        .list(&lp)
        .await
        .map_err(|e| Error::Kube("list claims", Box::new(e)))?
        .items;
    Ok((pods, pvcs))
}

/// Environment variable that arms [`TEST_PANIC_ANNOTATION`]; only end-to-end tests set it.
pub const TEST_PANIC_ENV: &str = "STEWARD_TESTING_PANIC_ON_ANNOTATION";
/// With [`TEST_PANIC_ENV`] set to `1`, a reconcile of an EtcdCluster carrying this annotation
/// panics: how the tests show that one object's panic does not stop the others.
pub const TEST_PANIC_ANNOTATION: &str = "etcd.steward.dev/testing-panic";

fn test_panic_armed(obj: &EtcdCluster) -> bool {
    static ARMED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ARMED.get_or_init(|| std::env::var(TEST_PANIC_ENV).is_ok_and(|v| v == "1"))
        && obj.annotations().contains_key(TEST_PANIC_ANNOTATION)
}

async fn reconcile(obj: Arc<EtcdCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    #[allow(clippy::panic)]
    if test_panic_armed(&obj) {
        panic!("{TEST_PANIC_ANNOTATION} is set and {TEST_PANIC_ENV}=1: panicking on purpose");
    }
    let name = obj.name_any();
    let ns = obj.namespace().ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let api: Api<EtcdCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = obj.uid().unwrap_or_default();
    // Right after our own writes the caches may lag behind them: read the API then.
    let cached = ctx.applier.quiet_for(&uid, CACHE_QUIET);
    let problems = validate(&obj.spec);
    if !problems.is_empty() {
        let status = desired_status(&obj, &problems, conditions::now());
        if obj.status.as_ref().and_then(|s| s.observed_generation) != obj.metadata.generation {
            ctx.recorder
                .warning(obj.as_ref(), "InvalidSpec", "Validate", problems.join("; "))
                .await;
        }
        write_status(&api, &obj, &status).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    // TLS material: issued here in mode auto, read from the user's Secrets in mode secrets.
    let tls = match tls_material(&ctx, &obj, &ns, cached).await? {
        Ok(t) => t,
        Err(problem) => {
            blocked(&ctx, &api, &obj, "TLSSecretsMissing", "ReadSecrets", problem).await?;
            return Ok(Action::requeue(Duration::from_secs(15)));
        }
    };
    for issued in &tls.issued {
        ctx.recorder
            .normal(
                obj.as_ref(),
                "CertificateIssued",
                "IssueCertificate",
                format!("issued Secret {issued}"),
            )
            .await;
    }
    let etcd = EtcdApi::new(tls.client.clone(), Duration::from_secs(3));

    // Children that always exist.
    let selector = steward_core::labels::owner_selector("etcd", &name, OPERATOR_NAME);
    let desired = vec![
        Desired::namespaced(&resources::client_service(&obj))?,
        Desired::namespaced(&resources::peer_service(&obj))?,
        Desired::namespaced(&resources::pod_disruption_budget(&obj))?,
    ];
    let desired = desired
        .into_iter()
        .chain(
            tls.secrets
                .iter()
                .map(Desired::namespaced)
                .collect::<Result<Vec<_>, _>>()?,
        )
        .collect();
    match ctx
        .applier
        .apply_owned(
            obj.as_ref(),
            &selector,
            desired,
            &[
                OwnedKind::namespaced::<Service>(),
                OwnedKind::namespaced::<PodDisruptionBudget>(),
                OwnedKind::namespaced::<Secret>(),
            ],
        )
        .await
    {
        Ok(_) => {}
        Err(ApplyError::Conflict(conflicts)) => {
            let message = conflicts
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            blocked(&ctx, &api, &obj, "ChildConflict", "Apply", message).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        Err(e) => return Err(e.into()),
    }

    let (pods, pvcs) = member_objects(&ctx, &obj, &ns, cached).await?;
    let (members, leader, unreachable) = observe(&etcd, &obj, &pods).await;

    let now = conditions::now();
    let timeout =
        steward_core::duration::parse(&obj.spec.member_failure_timeout).unwrap_or(Duration::from_secs(120));
    let observed = Observed {
        size: obj.spec.size.max(0) as usize,
        version: Version::parse(&obj.spec.version).unwrap_or(Version {
            major: 0,
            minor: 0,
            patch: 0,
        }),
        paused: obj.spec.paused,
        storage: if obj.spec.storage.empty_dir.is_some() {
            StorageKind::Ephemeral
        } else {
            StorageKind::Persistent
        },
        member_failure_timeout: timeout,
        now: now.0.as_second(),
        pods: pods
            .iter()
            .map(|p| PodObs {
                name: p.name_any(),
                version: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.as_deref())
                    .and_then(|i| i.rsplit(':').next())
                    .and_then(Version::parse)
                    .unwrap_or(Version {
                        major: 0,
                        minor: 0,
                        patch: 0,
                    }),
                terminating: p.metadata.deletion_timestamp.is_some(),
            })
            .collect(),
        volumes: pvcs
            .iter()
            .filter_map(|c| c.labels().get(resources::MEMBER_LABEL).cloned())
            .collect(),
        known: known_members(&obj, &pvcs),
        members: members.as_ref().map(|ms| {
            ms.iter()
                .map(|m| MemberObs {
                    id: m.id,
                    name: m.name.clone(),
                    started: m.started,
                    is_learner: m.is_learner,
                    healthy: m.healthy,
                    unhealthy_since: m.unhealthy_since.as_deref().and_then(ts),
                    version: m.version,
                    db_size: m.db_size,
                    raft_index: m.raft_index,
                    last_defrag: m.last_defrag.as_deref().and_then(ts),
                })
                .collect()
        }),
        leader,
        fresh_name: fresh_member_name(&name),
        defrag: obj
            .spec
            .maintenance
            .as_ref()
            .and_then(|m| m.defrag.as_ref())
            .and_then(|d| {
                Some(DefragObs {
                    schedule: d.schedule.clone()?,
                    threshold_percent: i64::from(d.db_size_threshold_percent.unwrap_or(0)),
                    created: obj
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map_or(now.0.as_second(), |t| t.0.as_second()),
                })
            }),
        unreachable,
    };
    let step = plan(&observed);
    if cached && matches!(step, Step::Bootstrap { .. }) {
        // A new cluster is never started from a cache's view: look again at the API itself.
        ctx.applier.touched(&uid);
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    match execute(
        &ctx,
        &etcd,
        &obj,
        &step,
        members.as_deref().unwrap_or_default(),
        &pods,
    )
    .await
    {
        Ok(()) => {}
        Err(Error::Apply(ApplyError::Conflict(conflicts))) => {
            let message = conflicts
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            blocked(&ctx, &api, &obj, "ChildConflict", "CreatePod", message).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        Err(e) => return Err(e),
    }
    let mut members = members.unwrap_or_default();
    if let Step::Defrag { id, .. } = &step
        && let Some(m) = members.iter_mut().find(|m| m.id == *id)
    {
        // Recorded so this schedule window does not defragment the member again.
        m.last_defrag = Some(conditions::now().0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    let now_secs = now.0.as_second();
    let mut status = observed_status(&obj, &members, leader, &step, now);
    if members.is_empty() {
        // Nobody answered: the membership is still what it was. Keeping it in the status is
        // what lets lost pods come back with their identity instead of a new, empty cluster.
        status.members = obj
            .status
            .iter()
            .flat_map(|s| s.members.iter().cloned())
            .map(|mut m| {
                m.healthy = false;
                m.is_leader = false;
                m
            })
            .collect();
    }
    let invalid_schedule = |st: Option<&EtcdClusterStatus>| {
        st.and_then(|st| st.conditions.iter().find(|c| c.type_ == MAINTENANCE))
            .filter(|c| c.status == "False")
            .map(|c| c.message.clone())
    };
    if let Some(message) = invalid_schedule(Some(&status))
        && invalid_schedule(obj.status.as_ref()).as_ref() != Some(&message)
    {
        ctx.recorder
            .warning(obj.as_ref(), "InvalidSchedule", "Validate", message)
            .await;
    }
    ctx.metrics_for(&obj, &status);
    write_status(&api, &obj, &status).await?;
    // Come back in time to renew the next certificate, switch CAs or retire the old CA.
    let renew_in = crate::tls::next_renewal(&tls.secrets)
        .map(|at| Duration::from_secs((at - now_secs).clamp(1, 3600) as u64 + 1));
    // And in time to replace a member whose failure timeout runs out.
    let failure_due = observed_failure_deadline(&status, timeout, now_secs);
    let settle = |d: Duration| {
        let d = renew_in.map_or(d, |r| r.min(d));
        Action::requeue(failure_due.map_or(d, |f| f.min(d)))
    };
    Ok(match step {
        // Health is polled: a member that stops answering is noticed within this period.
        Step::Nothing | Step::Paused => settle(Duration::from_secs(5)),
        // Nothing to do until etcd or the pods change: do not crowd out other clusters.
        Step::Wait { .. }
        | Step::QuorumLost { .. }
        | Step::Unreachable { .. }
        | Step::UpgradeBlocked { .. } => settle(Duration::from_secs(5)),
        // A membership change was made: look again soon (pod changes also wake us).
        _ => settle(Duration::from_secs(1)),
    })
}

/// Time until the first unhealthy member's failure timeout runs out, if any.
fn observed_failure_deadline(status: &EtcdClusterStatus, timeout: Duration, now: i64) -> Option<Duration> {
    status
        .members
        .iter()
        .filter_map(|m| m.unhealthy_since.as_deref().and_then(ts))
        .map(|since| since + timeout.as_secs() as i64 - now)
        .min()
        .map(|left| Duration::from_secs(left.clamp(0, 3600) as u64 + 1))
}

/// TLS Secrets to apply and the operator's client material.
struct TlsMaterial {
    secrets: Vec<Secret>,
    client: Option<ClientTls>,
    issued: Vec<String>,
}

/// Mode auto: the Secrets as they should be now (issuing or renewing certificates). Mode
/// secrets: the user's client Secret, after checking that every named Secret exists. The inner
/// `Err` is a problem for the user, reported in status.
async fn tls_material(
    ctx: &Context,
    obj: &EtcdCluster,
    ns: &str,
    cached: bool,
) -> Result<Result<TlsMaterial, String>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    // Our own Secrets come from the cache when it can be trusted; the user's from a short-lived
    // memory of the last read.
    let get = |name: String, cached: bool| {
        let api = api.clone();
        let from_cache = match obj.spec.tls.mode {
            TlsMode::Auto if cached => ctx.children.get_as::<Secret>(Some(ns), &name),
            _ => None,
        };
        let remembered = match obj.spec.tls.mode {
            TlsMode::Secrets => ctx.user_secrets.lock().ok().and_then(|m| {
                m.get(&(ns.to_string(), name.clone()))
                    .filter(|(at, _)| at.elapsed() < USER_SECRETS_TTL)
                    .map(|(_, s)| s.clone())
            }),
            _ => None,
        };
        async move {
            if let Some(secret) = from_cache.or(remembered) {
                return Ok::<_, Error>((name, secret));
            }
            let secret = api
                .get_opt(&name)
                .await
                .map_err(|e| Error::Kube("get secret", Box::new(e)))?;
            if obj.spec.tls.mode == TlsMode::Secrets
                && let Ok(mut m) = ctx.user_secrets.lock()
            {
                m.insert(
                    (ns.to_string(), name.clone()),
                    (std::time::Instant::now(), secret.clone()),
                );
            }
            Ok((name, secret))
        }
    };
    match obj.spec.tls.mode {
        TlsMode::Disabled => Ok(Ok(TlsMaterial {
            secrets: Vec::new(),
            client: None,
            issued: Vec::new(),
        })),
        TlsMode::Auto => {
            let now = conditions::now().0.as_second();
            let ca_validity = crate::tls::ca_validity(&obj.spec.tls).unwrap_or(crate::tls::CA_VALIDITY_SECS);
            // The cache serves the steady case only: whatever would be issued or rotated is
            // decided on the API's own copy (a cache a step behind would mint a second CA).
            let material = |use_cache: bool| async move {
                let names = std::iter::once(crate::tls::ca_secret_name(obj))
                    .chain(crate::tls::Role::ALL.map(|r| crate::tls::secret_name(obj, r)));
                let mut existing = BTreeMap::new();
                for name in names {
                    if let (name, Some(secret)) = get(name, use_cache).await? {
                        existing.insert(name, secret);
                    }
                }
                Ok::<_, Error>(crate::tls::desired_secrets(
                    obj,
                    &existing,
                    now,
                    certificate_validity(&obj.spec),
                    ca_validity,
                )?)
            };
            let mut t = material(cached).await?;
            if cached && !t.issued.is_empty() {
                t = material(false).await?;
            }
            Ok(Ok(TlsMaterial {
                secrets: t.secrets,
                client: Some(t.client),
                issued: t.issued,
            }))
        }
        TlsMode::Secrets => {
            let Some(names) = &obj.spec.tls.secrets else {
                return Ok(Err(
                    "spec.tls.secrets is required when spec.tls.mode is secrets".into()
                ));
            };
            let mut missing = Vec::new();
            let mut client = None;
            for (role, name) in [
                ("server", &names.server),
                ("peer", &names.peer),
                ("client", &names.client),
            ] {
                match get(name.clone(), cached).await? {
                    (_, None) => missing.push(format!("Secret {name} ({role}) not found")),
                    (_, Some(secret)) => match crate::tls::client_from_secret(&secret) {
                        None => {
                            missing.push(format!("Secret {name} ({role}) lacks tls.crt, tls.key or ca.crt"))
                        }
                        Some(c) if role == "client" => client = Some(c),
                        Some(_) => {}
                    },
                }
            }
            if !missing.is_empty() {
                return Ok(Err(missing.join("; ")));
            }
            Ok(Ok(TlsMaterial {
                secrets: Vec::new(),
                client,
                issued: Vec::new(),
            }))
        }
    }
}

/// Stops the reconcile for a problem only a person can fix: `Progressing=False` with `reason`
/// and `message`, and a Warning Event when the message is new. Nothing else is changed.
async fn blocked(
    ctx: &Context,
    api: &Api<EtcdCluster>,
    obj: &EtcdCluster,
    reason: &str,
    action: &str,
    message: String,
) -> Result<(), Error> {
    let mut status = desired_status(obj, &[], conditions::now());
    status.observed_generation = obj.status.as_ref().and_then(|s| s.observed_generation);
    conditions::set(
        &mut status.conditions,
        NewCondition {
            type_: "Progressing",
            status: Status::False,
            reason,
            message: message.clone(),
            observed_generation: obj.metadata.generation,
        },
        conditions::now(),
    );
    if obj.status.as_ref() != Some(&status) {
        ctx.recorder.warning(obj, reason, action, message).await;
    }
    write_status(api, obj, &status).await
}

async fn write_status(
    api: &Api<EtcdCluster>,
    obj: &EtcdCluster,
    status: &EtcdClusterStatus,
) -> Result<(), Error> {
    if obj.status.as_ref() == Some(status) {
        return Ok(());
    }
    steward_core::apply::apply_status(api, obj, FIELD_MANAGER, status)
        .await
        .map_err(|source| Error::Status {
            name: obj.name_any(),
            source,
        })
}

async fn create_member_pod(
    ctx: &Context,
    obj: &EtcdCluster,
    member: &str,
    initial: &[(String, String)],
    state: &str,
) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let owner = obj
        .controller_owner_ref(&())
        .ok_or_else(|| Error::NoUid(obj.name_any()))?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    ctx.applier.touched(&owner.uid);
    // A pod or claim of that name that is not ours is never taken over.
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let mut conflicts = Vec::new();
    if let Some(pod) = pods
        .get_opt(member)
        .await
        .map_err(|e| Error::Kube("get pod", Box::new(e)))?
        && let Some(holder) = foreign_holder_of(&pod, &owner.uid)
    {
        conflicts.push(steward_core::Conflict {
            kind: "Pod".into(),
            name: format!("{ns}/{member}"),
            holder,
        });
    }
    if obj.spec.storage.empty_dir.is_none()
        && let Some(pvc) = claims
            .get_opt(&resources::pvc_name(member))
            .await
            .map_err(|e| Error::Kube("get claim", Box::new(e)))?
        && !is_member_claim(&pvc, obj, member)
    {
        conflicts.push(steward_core::Conflict {
            kind: "PersistentVolumeClaim".into(),
            name: format!("{ns}/{}", resources::pvc_name(member)),
            holder: "does not carry this cluster's member labels".into(),
        });
    }
    if !conflicts.is_empty() {
        return Err(Error::Apply(ApplyError::Conflict(conflicts)));
    }
    if obj.spec.storage.empty_dir.is_none() {
        let mut pvc = resources::member_pvc(obj, member);
        // With reclaimPolicy Delete the claims go with the cluster; with Retain they stay.
        if obj.spec.storage.reclaim_policy == crate::crd::ReclaimPolicy::Delete {
            pvc.metadata.owner_references = Some(vec![owner.clone()]);
        }
        let api = claims;
        api.patch(&resources::pvc_name(member), &params, &Patch::Apply(&pvc))
            .await
            .map_err(|e| Error::Kube("apply claim", Box::new(e)))?;
    }
    let mut pod = resources::member_pod(obj, member, initial, state);
    pod.metadata.owner_references = Some(vec![owner]);
    pods.patch(member, &params, &Patch::Apply(&pod))
        .await
        .map_err(|e| Error::Kube("apply pod", Box::new(e)))?;
    Ok(())
}

/// Who controls `obj` when it is not the cluster with UID `owner_uid`.
fn foreign_holder_of<K: Resource>(obj: &K, owner_uid: &str) -> Option<String> {
    let controller = obj
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    match controller {
        Some(r) if r.uid == owner_uid => None,
        Some(r) => Some(format!("is controlled by {}/{} (uid {})", r.kind, r.name, r.uid)),
        None => Some("has no controller (it was not created by this operator)".into()),
    }
}

/// Whether `pvc` is the data claim of `member` of `cluster` (claims kept by reclaimPolicy
/// Retain have no owner, so their labels say whose they are).
fn is_member_claim(pvc: &PersistentVolumeClaim, cluster: &EtcdCluster, member: &str) -> bool {
    let l = pvc.labels();
    resources::member_selector(cluster)
        .iter()
        .all(|(k, v)| l.get(k) == Some(v))
        && l.get(resources::MEMBER_LABEL).map(String::as_str) == Some(member)
}

/// A deletion that found nothing to delete (404) succeeded; every other error is one.
fn gone_or_deleted<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn execute(
    ctx: &Context,
    etcd: &EtcdApi,
    obj: &EtcdCluster,
    step: &Step,
    members: &[MemberView],
    pods: &[Pod],
) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    if !matches!(
        step,
        Step::Nothing
            | Step::Paused
            | Step::Wait { .. }
            | Step::QuorumLost { .. }
            | Step::Unreachable { .. }
            | Step::UpgradeBlocked { .. }
    ) {
        // Every step changes what the next reconcile must see; read the API until the caches
        // have caught up.
        ctx.applier.touched(&obj.uid().unwrap_or_default());
    }
    // Membership calls go to healthy voters only: a learner refuses them ("rpc not supported
    // for learner"), and the client may pick any endpoint.
    let endpoints: Vec<String> = members
        .iter()
        .filter(|m| m.healthy && !m.is_learner)
        .map(|m| m.client_url.clone())
        .collect();
    let changed = |op: &str| {
        ctx.member_changes
            .get_or_create(&ChangeLabels {
                namespace: ns.clone(),
                cluster: obj.name_any(),
                op: op.to_string(),
            })
            .inc()
    };
    match step {
        Step::Bootstrap { member } => {
            create_member_pod(
                ctx,
                obj,
                member,
                &[(member.clone(), resources::peer_url(obj, member))],
                "new",
            )
            .await?;
            changed("bootstrap");
            ctx.member_event(
                obj,
                member,
                "MemberAdded",
                "Bootstrap",
                format!("started seed member {member}"),
            )
            .await;
        }
        Step::AddMember { member } => {
            etcd.add_learner(&endpoints, &resources::peer_url(obj, member))
                .await
                .map_err(Error::Etcd)?;
            changed("add");
            ctx.member_event(
                obj,
                member,
                "MemberAdded",
                "Scale",
                format!("added learner {member}"),
            )
            .await;
        }
        Step::CreatePod { member } => {
            // A member with data ignores --initial-cluster; one that never started needs it.
            let mut names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
            if names.is_empty() {
                names = obj
                    .status
                    .iter()
                    .flat_map(|s| s.members.iter().map(|m| m.name.clone()))
                    .collect();
            }
            if !names.contains(member) {
                names.push(member.clone());
            }
            let initial: Vec<(String, String)> = names
                .iter()
                .map(|n| (n.clone(), resources::peer_url(obj, n)))
                .collect();
            create_member_pod(ctx, obj, member, &initial, "existing").await?;
            ctx.member_event(
                obj,
                member,
                "MemberPodCreated",
                "Scale",
                format!("created the pod of member {member}"),
            )
            .await;
        }
        Step::Promote { id, member } => {
            etcd.promote(&endpoints, *id).await.map_err(Error::Etcd)?;
            changed("promote");
            ctx.member_event(
                obj,
                member,
                "MemberPromoted",
                "Scale",
                format!("promoted learner {member} to voter"),
            )
            .await;
        }
        Step::RemoveMember { id, member, reason } => {
            let via: Vec<String> = members
                .iter()
                .filter(|m| m.healthy && m.id != *id)
                .map(|m| m.client_url.clone())
                .collect();
            etcd.remove(&via, *id).await.map_err(Error::Etcd)?;
            changed("remove");
            let why = match reason {
                RemoveReason::ScaleDown => "scaling down",
                RemoveReason::Replace => "replacing a failed member",
            };
            ctx.member_event(
                obj,
                member,
                "MemberRemoved",
                "Scale",
                format!("removed member {member} ({why})"),
            )
            .await;
        }
        Step::DeletePod { member } => {
            let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            gone_or_deleted(pods_api.delete(member, &DeleteParams::default()).await)
                .map_err(|e| Error::Kube("delete pod", Box::new(e)))?;
            // The member is gone for good: its data must never come back. A failed deletion
            // fails the step (it is retried), so the old ID cannot return with its data.
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
            gone_or_deleted(
                pvcs.delete(&resources::pvc_name(member), &DeleteParams::default())
                    .await,
            )
            .map_err(|e| Error::Kube("delete claim", Box::new(e)))?;
            ctx.member_event(
                obj,
                member,
                "MemberPodDeleted",
                "Scale",
                format!("deleted the pod of removed member {member}"),
            )
            .await;
        }
        Step::UpgradeMember { member, from } => {
            let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            if pods.iter().any(|p| p.name_any() == *member) {
                pods_api
                    .delete(member, &DeleteParams::default())
                    .await
                    .map_err(|e| Error::Kube("delete pod", Box::new(e)))?;
            }
            changed("upgrade");
            ctx.member_event(
                obj,
                member,
                "MemberUpgrading",
                "Upgrade",
                format!("restarting {member} from {from} at {}", obj.spec.version),
            )
            .await;
        }
        Step::Defrag { id, member } => {
            let Some(m) = members.iter().find(|m| m.id == *id) else {
                return Ok(());
            };
            etcd.defragment(&m.client_url).await.map_err(Error::Etcd)?;
            changed("defrag");
            let before = m
                .db_size
                .map(|(size, in_use)| format!("; database {size} bytes, {in_use} in use before"))
                .unwrap_or_default();
            let after = etcd
                .status(&m.client_url)
                .await
                .map(|s| format!(", {} bytes after", s.db_size))
                .unwrap_or_default();
            ctx.member_event(
                obj,
                member,
                "MemberDefragmented",
                "Defragment",
                format!("defragmented member {member}{before}{after}"),
            )
            .await;
        }
        Step::MoveLeader { from, to } => {
            let leader_url = members
                .iter()
                .find(|m| m.id == *from)
                .map(|m| m.client_url.clone())
                .unwrap_or_default();
            etcd.move_leader(&leader_url, *to).await.map_err(Error::Etcd)?;
            ctx.recorder
                .normal(
                    obj,
                    "LeaderMoved",
                    "Upgrade",
                    format!("moved leadership to {}", crate::etcd::hex_id(*to)),
                )
                .await;
        }
        Step::QuorumLost { reason } => {
            ctx.recorder
                .warning(obj, "QuorumLost", "Observe", reason.clone())
                .await;
        }
        Step::UpgradeBlocked { reason } => {
            ctx.recorder
                .warning(obj, "UpgradeBlocked", "Upgrade", reason.clone())
                .await;
        }
        Step::Unreachable { reason } => {
            ctx.recorder
                .warning(obj, "EtcdUnreachable", "Observe", reason.clone())
                .await;
        }
        Step::Nothing | Step::Paused | Step::Wait { .. } => {}
    }
    Ok(())
}

/// Runs the EtcdCluster controller until the runtime shuts down.
pub async fn run(rt: ControllerRuntime, metrics: EtcdMetrics) {
    // Children wake their cluster (a member pod turning ready or not ready is what the next
    // step usually waits for) and fill the caches a steady reconcile reads instead of the API.
    let (children, streams) = Children::watch(&rt, OPERATOR_NAME, &child_kinds());
    let ctx = Arc::new(Context::new(&rt, metrics, children));
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
    fn a_trimmed_member_pod_keeps_its_image() {
        let mut obj = crate::crd::EtcdCluster::new("c", spec("3.5.16"));
        obj.metadata.namespace = Some("ns".into());
        let pod = resources::member_pod(&obj, "c-abcde", &[], "new");
        let mut o: kube::api::DynamicObject =
            serde_json::from_value(serde_json::to_value(&pod).unwrap()).unwrap();
        pod_images_only(&mut o);
        let back: Pod = o.try_parse().unwrap();
        assert_eq!(back.metadata.name.as_deref(), Some("c-abcde"));
        let image = back.spec.unwrap().containers[0].image.clone().unwrap_or_default();
        assert!(image.ends_with(":v3.5.16"), "{image}");
        assert!(back.status.is_none());
    }

    #[test]
    fn only_not_found_counts_as_deleted() {
        let api = |code: u16| -> Result<(), kube::Error> {
            Err(kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            })))
        };
        assert!(gone_or_deleted(Ok::<_, kube::Error>(())).is_ok());
        assert!(gone_or_deleted(api(404)).is_ok());
        for code in [403, 409, 422, 500] {
            assert!(gone_or_deleted(api(code)).is_err(), "{code}");
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
            certificate_validity: None,
            ca_validity: None,
        };
        assert_eq!(validate(&s).len(), 1);
        s.tls.secrets = Some(EtcdTlsSecrets {
            server: "a".into(),
            peer: String::new(),
            client: "c".into(),
            peer_allowed_cn: None,
        });
        assert_eq!(validate(&s), vec!["spec.tls.secrets.peer must name a Secret"]);
        let mut s = spec("3.5.16");
        s.tls.certificate_validity = Some("10s".into());
        assert_eq!(
            validate(&s),
            vec!["spec.tls.certificateValidity 10s is too short: at least 30s"]
        );
        s.tls.certificate_validity = Some("1h".into());
        assert!(validate(&s).is_empty());
        // Durations that pass the CRD pattern but are absurd are a problem, not a panic.
        s.member_failure_timeout = "9999999h".into();
        s.tls.certificate_validity = Some("9999999h".into());
        assert_eq!(
            validate(&s),
            vec![
                "spec.memberFailureTimeout: duration \"9999999h\" is longer than 100 years",
                "spec.tls.certificateValidity: duration \"9999999h\" is longer than 100 years"
            ]
        );
        s.member_failure_timeout = "2m".into();
        s.tls.certificate_validity = Some("1h".into());
        s.maintenance = Some(crate::crd::EtcdMaintenance {
            defrag: Some(crate::crd::DefragPolicy {
                schedule: Some("0 3 * * *".into()),
                db_size_threshold_percent: Some(20),
            }),
        });
        assert!(validate(&s).is_empty());
        // A bad schedule is not a blocking problem: it only switches defragmentation off.
        if let Some(d) = s.maintenance.as_mut().and_then(|m| m.defrag.as_mut()) {
            d.schedule = Some("0 0 3 * * *".into());
        }
        assert!(validate(&s).is_empty());
    }

    #[test]
    fn maintenance_condition_reports_the_schedule() {
        let condition = |schedule: Option<&str>| {
            let mut s = spec("3.5.16");
            s.maintenance = schedule.map(|sch| crate::crd::EtcdMaintenance {
                defrag: Some(crate::crd::DefragPolicy {
                    schedule: Some(sch.into()),
                    db_size_threshold_percent: None,
                }),
            });
            let obj = EtcdCluster::new("main", s);
            let st = observed_status(&obj, &[], None, &Step::Nothing, conditions::now());
            assert!(
                st.conditions.iter().any(|c| c.type_ == "Available"),
                "the other conditions are still set"
            );
            st.conditions
                .into_iter()
                .find(|c| c.type_ == MAINTENANCE)
                .map(|c| (c.status, c.reason, c.message))
        };
        assert_eq!(condition(None), None);
        let ok = condition(Some("0 3 * * *")).unwrap();
        assert_eq!((ok.0.as_str(), ok.1.as_str()), ("True", "Scheduled"));
        let bad = condition(Some("61 * * * *")).unwrap();
        assert_eq!((bad.0.as_str(), bad.1.as_str()), ("False", "InvalidSchedule"));
        assert!(
            bad.2.starts_with(
                "spec.maintenance.defrag.schedule: \"61 * * * *\" is not a 5-field cron schedule"
            ),
            "{}",
            bad.2
        );
    }

    #[test]
    fn defrag_status_keeps_per_member_times() {
        let obj = EtcdCluster::new("main", spec("3.5.16"));
        let view = |id: u64, name: &str, last: Option<&str>| MemberView {
            id,
            name: name.into(),
            started: true,
            is_learner: false,
            healthy: true,
            version: Version::parse("3.5.16"),
            client_url: format!("http://{name}:2379"),
            unhealthy_since: None,
            db_size: Some((1000, 500)),
            raft_index: None,
            last_defrag: last.map(String::from),
        };
        let members = [
            view(1, "a", None),
            view(2, "b", Some("2025-01-01T13:30:05Z")),
            view(3, "c", Some("2025-01-01T12:30:05Z")),
        ];
        let now = Time(Timestamp::from_second(1_735_738_220).unwrap());
        let step = Step::Defrag {
            id: 2,
            member: "b".into(),
        };
        let st = observed_status(&obj, &members, Some(1), &step, now);
        let times: Vec<Option<&str>> = st.members.iter().map(|m| m.last_defrag_time.as_deref()).collect();
        assert_eq!(
            times,
            [None, Some("2025-01-01T13:30:05Z"), Some("2025-01-01T12:30:05Z")]
        );
        assert_eq!(st.last_defrag_time.as_deref(), Some("2025-01-01T13:30:05Z"));
        let c = conditions::find(&st.conditions, "Progressing").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Defragmenting"));
        assert_eq!(st.phase.as_deref(), Some("Running"));
        // The cluster-wide time survives members that are gone.
        let mut obj = obj;
        obj.status = Some(EtcdClusterStatus {
            last_defrag_time: Some("2025-01-01T14:00:00Z".into()),
            ..Default::default()
        });
        let st = observed_status(
            &obj,
            &members,
            Some(1),
            &Step::Nothing,
            Time(Timestamp::from_second(1_735_738_220).unwrap()),
        );
        assert_eq!(st.last_defrag_time.as_deref(), Some("2025-01-01T14:00:00Z"));
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
