//! Leader election on a `coordination.k8s.io` Lease, with fencing: a leader stops writing
//! before any other replica may take its Lease.
//!
//! The rules, as client-go's leader election has them:
//! - Every Lease write is a `PUT` carrying the `resourceVersion` we read, so two replicas can
//!   never both win a race, and every write names this process (`holderIdentity` is the pod
//!   name plus a random suffix, unique per process).
//! - A candidate takes a Lease held by someone else only after it has seen that Lease unchanged
//!   for its whole `leaseDurationSeconds` by its own monotonic clock (no trust in other
//!   machines' wall clocks).
//! - The leader renews every retry period. Its permission to write lasts for the renew deadline
//!   counted from the moment it *sent* its last successful renewal. The renew deadline is shorter
//!   than the lease duration, so a leader that could not renew in time (a partition, a frozen
//!   process) has stopped writing while its Lease is still valid in everyone else's eyes.
//!
//! The permission is a [`Fence`]: the client the controllers use goes through [`FenceLayer`],
//! which refuses every mutating request once the permission has run out, whatever task sends
//! it. A process thawed after a long stop therefore cannot write even before its election task
//! has run and noticed that it lost.
//!
//! We once used kube-lease-manager; it renews with patches that carry no `resourceVersion`,
//! reports a renewal only when leadership changes, and has no renew deadline, so none of the
//! above could be built on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Where the Lease lives, who we are, and the timings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease object name, e.g. `etcd-operator-leader`.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity, unique per process (see [`identity`]).
    pub identity: String,
    /// How long others must see the Lease unrenewed before taking it.
    pub duration: Duration,
    /// How long the leader may write after sending its last successful renewal; shorter than
    /// `duration`. The difference is the margin for requests in flight and clock rates.
    pub renew_deadline: Duration,
    /// Pause between two renewals, and between two attempts to acquire.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A config with client-go's proportions: the renew deadline two thirds of the lease
    /// duration, the retry period a fifth of the renew deadline (15 s, 10 s, 2 s).
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
        duration: Duration,
    ) -> Self {
        let renew_deadline = default_renew_deadline(duration);
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration,
            renew_deadline,
            retry_period: default_retry_period(renew_deadline),
        }
    }

    /// Refuses timings under which a leader could still write when another may lead.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.duration.as_secs() < 1 {
            anyhow::bail!("the lease duration must be at least 1 s");
        }
        if self.renew_deadline >= self.duration {
            anyhow::bail!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline,
                self.duration
            );
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            anyhow::bail!(
                "the retry period ({:?}) must be above zero and shorter than the renew deadline ({:?})",
                self.retry_period,
                self.renew_deadline
            );
        }
        Ok(())
    }
}

/// Two thirds of the lease duration (15 s → 10 s).
pub fn default_renew_deadline(duration: Duration) -> Duration {
    duration.mul_f64(2.0 / 3.0)
}

/// A fifth of the renew deadline (10 s → 2 s), at least 100 ms.
pub fn default_retry_period(renew_deadline: Duration) -> Duration {
    (renew_deadline / 5).max(Duration::from_millis(100))
}

/// Leadership as seen by this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Waiting for the Lease.
    Standby,
    /// Holding the Lease.
    Leading,
    /// Held the Lease and lost it (or could not renew it in time). Terminal.
    Lost,
}

/// Picks the Lease namespace: the flag, then the pod's namespace, then `default`.
pub fn lease_namespace(flag: Option<&str>) -> String {
    if let Some(ns) = flag.filter(|s| !s.is_empty()) {
        return ns.to_string();
    }
    if let Ok(ns) = std::env::var("POD_NAMESPACE")
        && !ns.is_empty()
    {
        return ns;
    }
    if let Ok(ns) = std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace") {
        let ns = ns.trim();
        if !ns.is_empty() {
            return ns.to_string();
        }
    }
    "default".to_string()
}

/// This replica's identity: the pod name (else the hostname) plus a random suffix. The suffix
/// matters: a restarted container keeps its pod name, and must not mistake its previous
/// life's Lease for its own and resume leading while its state is gone.
pub fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "steward".to_string())
        });
    format!("{base}_{:08x}", rand::random::<u32>())
}

// ---- the fence ------------------------------------------------------------------------------

#[derive(Debug)]
enum Gate {
    /// No leader election: always open.
    Open,
    /// Open until the instant, if any.
    Until(Option<Instant>),
}

/// Whether this process may write now. Shared between the election (which extends it on each
/// renewal) and [`FenceLayer`] (which checks it before each mutating request).
#[derive(Clone, Debug)]
pub struct Fence {
    gate: Arc<Mutex<Gate>>,
}

impl Fence {
    /// A fence that never closes, for runs without leader election.
    pub fn open() -> Self {
        Self {
            gate: Arc::new(Mutex::new(Gate::Open)),
        }
    }

    /// A closed fence; the election opens it while leading.
    pub fn closed() -> Self {
        Self {
            gate: Arc::new(Mutex::new(Gate::Until(None))),
        }
    }

    /// Whether writes are allowed at this instant.
    pub fn allows_writes(&self) -> bool {
        match self.gate.lock().as_deref() {
            Ok(Gate::Open) => true,
            Ok(Gate::Until(Some(until))) => Instant::now() < *until,
            // A poisoned lock or a closed gate: refuse.
            _ => false,
        }
    }

    /// When the current permission ends (`None`: closed, or never for an open fence).
    pub fn deadline(&self) -> Option<Instant> {
        match self.gate.lock().as_deref() {
            Ok(Gate::Until(until)) => *until,
            _ => None,
        }
    }

    fn allow_until(&self, until: Instant) {
        if let Ok(mut g) = self.gate.lock()
            && let Gate::Until(current) = &mut *g
        {
            // Never shorten: a slow renewal answered late must not move the end backwards
            // past what an earlier, faster one granted (both were valid renewals).
            *current = Some(current.map_or(until, |c| c.max(until)));
        }
    }

    /// Closes for good (leadership lost or given up).
    pub fn close(&self) {
        if let Ok(mut g) = self.gate.lock()
            && let Gate::Until(current) = &mut *g
        {
            *current = None;
        }
    }
}

/// The refusal a fenced client returns for a write without leadership.
#[derive(Debug, thiserror::Error)]
#[error("not the leader (Lease not renewed within the renew deadline): refusing {method} {path}")]
pub struct Fenced {
    method: http::Method,
    path: String,
}

/// A tower layer for `kube::client::ClientBuilder` that refuses mutating requests while the
/// [`Fence`] is closed. Reads (GET, including watches) always pass.
#[derive(Clone, Debug)]
pub struct FenceLayer {
    fence: Fence,
}

impl FenceLayer {
    /// Guards a client with `fence`.
    pub fn new(fence: Fence) -> Self {
        Self { fence }
    }
}

impl<S> tower::Layer<S> for FenceLayer {
    type Service = FenceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FenceService {
            inner,
            fence: self.fence.clone(),
        }
    }
}

/// The service [`FenceLayer`] builds.
#[derive(Clone, Debug)]
pub struct FenceService<S> {
    inner: S,
    fence: Fence,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<B>> for FenceService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let reads = [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS];
        // Checked as late as the client lets us: right before the request goes to the
        // connection. A process frozen between here and the socket can still send one
        // request on waking; the renew-deadline margin is what covers that.
        if !reads.contains(req.method()) && !self.fence.allows_writes() {
            let refused = Fenced {
                method: req.method().clone(),
                path: req.uri().path().to_string(),
            };
            debug!(error = %refused, "write fenced");
            return Box::pin(std::future::ready(Err(Box::new(refused) as BoxError)));
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

// ---- the election ---------------------------------------------------------------------------

/// A running election. [`Election::release`] gives the Lease back.
#[derive(Debug)]
pub struct Election {
    /// Current leadership.
    pub state: watch::Receiver<Leadership>,
    /// Open while this replica may write.
    pub fence: Fence,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Starts competing for the Lease. `client` must not be fenced (Lease writes happen
    /// exactly when we are not yet, or no longer surely, the leader).
    pub async fn start(client: Client, config: LeaseConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let fence = Fence::closed();
        let (state_tx, state) = watch::channel(Leadership::Standby);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(drive(api, config, fence.clone(), state_tx, stop_rx));
        Ok(Self {
            state,
            fence,
            stop,
            task,
        })
    }

    /// Stops competing and releases the Lease if still surely held; waits for that to finish.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The Lease record as last seen, and when (by our clock) it last changed.
struct Observed {
    resource_version: Option<String>,
    since: Instant,
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

enum Attempt {
    /// We hold the Lease (acquired or renewed).
    Held,
    /// Someone else holds it (or won the race).
    NotHeld,
}

impl Elector {
    fn observe(&mut self, resource_version: Option<String>) {
        if self
            .observed
            .as_ref()
            .is_none_or(|o| o.resource_version != resource_version)
        {
            self.observed = Some(Observed {
                resource_version,
                since: Instant::now(),
            });
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let held_before = previous
            .and_then(|s| s.holder_identity.as_deref())
            .is_some_and(|h| h == self.config.identity);
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: if held_before {
                previous.and_then(|s| s.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if held_before || previous.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..previous.cloned().unwrap_or_default()
        }
    }

    /// One round: read the Lease and, if it is ours or free to take, write it. `leading`
    /// says whether we believe we hold it; `write_by` is the last instant a write may be sent
    /// (the fence's end while leading).
    async fn try_acquire_or_renew(
        &mut self,
        leading: bool,
        write_by: Option<Instant>,
    ) -> kube::Result<Attempt> {
        let name = self.config.name.clone();
        let current = self.api.get_opt(&name).await?;
        let may_write = || write_by.is_none_or(|by| Instant::now() < by);
        let Some(lease) = current else {
            if leading || !may_write() {
                // Our Lease vanished under us: that is not ours to recreate as a leader.
                return Ok(Attempt::NotHeld);
            }
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, Timestamp::now())),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created.metadata.resource_version);
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::NotHeld),
                Err(e) => Err(e),
            };
        };
        self.observe(lease.metadata.resource_version.clone());
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(self.config.identity.as_str());
        if leading && !ours {
            return Ok(Attempt::NotHeld);
        }
        if !ours && holder.is_some() {
            let valid_for = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.config.duration, Duration::from_secs);
            let unchanged_since = self.observed.as_ref().map_or_else(Instant::now, |o| o.since);
            if unchanged_since.elapsed() < valid_for {
                return Ok(Attempt::NotHeld);
            }
            info!(lease = %self.config.name, holder = ?holder, "the leader lease expired; taking it");
        }
        if !may_write() {
            return Ok(Attempt::NotHeld);
        }
        let mut updated = lease.clone();
        updated.spec = Some(self.spec(lease.spec.as_ref(), Timestamp::now()));
        // The resourceVersion we read makes this a compare-and-swap.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &updated)
            .await
        {
            Ok(written) => {
                self.observe(written.metadata.resource_version);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::NotHeld),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease back (holder cleared), if it is still ours.
    async fn release(&mut self) -> kube::Result<()> {
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let mut released = lease;
        released.spec = Some(LeaseSpec {
            holder_identity: None,
            // One second, as client-go releases: whoever reads it next may take it at once.
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..spec
        });
        self.api
            .replace(&self.config.name, &PostParams::default(), &released)
            .await
            .map(|_| ())
    }
}

fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + 0.2 * rand::random::<f64>())
}

async fn drive(
    api: Api<Lease>,
    config: LeaseConfig,
    fence: Fence,
    state: watch::Sender<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    let mut elector = Elector {
        api,
        config: config.clone(),
        observed: None,
    };

    // Standby: try until we hold the Lease.
    loop {
        let sent_at = Instant::now();
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            r = elector.try_acquire_or_renew(false, None) => match r {
                Ok(Attempt::Held) => {
                    fence.allow_until(sent_at + config.renew_deadline);
                    info!(lease = %config.name, identity = %config.identity, "acquired the leader lease");
                    let _ = state.send(Leadership::Leading);
                    break;
                }
                Ok(Attempt::NotHeld) => {}
                Err(e) => warn!(lease = %config.name, error = %e, "leader election error; retrying"),
            },
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(jittered(config.retry_period)) => {}
        }
    }

    // Leading: renew every retry period; lose the Lease once the renew deadline passes
    // without a successful renewal, or as soon as someone else holds it.
    let lost = loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break None,
            _ = tokio::time::sleep(config.retry_period) => {}
        }
        let Some(deadline) = fence.deadline() else {
            break Some("the fence closed".to_string());
        };
        // Checked before anything is sent: a process thawed after a long stop lands here.
        if Instant::now() >= deadline {
            break Some("the renew deadline passed without a successful renewal".to_string());
        }
        let sent_at = Instant::now();
        let attempt = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break None,
            r = tokio::time::timeout_at(deadline.into(), elector.try_acquire_or_renew(true, Some(deadline))) => r,
        };
        match attempt {
            Ok(Ok(Attempt::Held)) => {
                fence.allow_until(sent_at + config.renew_deadline);
                debug!(lease = %config.name, "renewed the leader lease");
            }
            Ok(Ok(Attempt::NotHeld)) => break Some("another replica holds the lease".to_string()),
            Ok(Err(e)) => {
                warn!(lease = %config.name, error = %e, "cannot renew the leader lease; retrying until the renew deadline")
            }
            Err(_) => break Some("the renew deadline passed during a renewal".to_string()),
        }
    };

    match lost {
        Some(reason) => {
            fence.close();
            warn!(lease = %config.name, identity = %config.identity, %reason, "leader election lost");
            let _ = state.send(Leadership::Lost);
        }
        None => {
            // Asked to stop while leading: only give the Lease back if it is surely still
            // ours, i.e. within the renew deadline; otherwise leave it to expire.
            let in_time = fence.allows_writes();
            fence.close();
            if in_time {
                match elector.release().await {
                    Ok(()) => info!(lease = %config.name, "released the leader lease"),
                    Err(e) => warn!(lease = %config.name, error = %e, "could not release the leader lease"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timings_keep_the_renew_deadline_below_the_lease() {
        let c = LeaseConfig::new("l", "ns", "me", Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        for secs in 2..300 {
            let c = LeaseConfig::new("l", "ns", "me", Duration::from_secs(secs));
            assert!(c.validate().is_ok(), "{secs}: {c:?}");
        }
    }

    #[test]
    fn bad_timings_are_refused() {
        let mut c = LeaseConfig::new("l", "ns", "me", Duration::from_secs(15));
        c.renew_deadline = Duration::from_secs(15);
        assert!(c.validate().is_err());
        let mut c = LeaseConfig::new("l", "ns", "me", Duration::from_secs(15));
        c.retry_period = Duration::from_secs(10);
        assert!(c.validate().is_err());
    }

    #[test]
    fn fence_opens_until_the_deadline_and_closes_for_good() {
        let f = Fence::closed();
        assert!(!f.allows_writes());
        f.allow_until(Instant::now() + Duration::from_secs(60));
        assert!(f.allows_writes());
        // An earlier end from a slower renewal does not shorten it.
        f.allow_until(Instant::now());
        assert!(f.allows_writes());
        f.close();
        assert!(!f.allows_writes());
        let past = Fence::closed();
        past.allow_until(Instant::now());
        assert!(!past.allows_writes(), "a deadline in the past refuses");
        assert!(Fence::open().allows_writes());
    }

    #[tokio::test]
    async fn fenced_service_refuses_writes_but_not_reads() {
        use tower::{Layer as _, Service as _, ServiceExt as _};
        let inner = tower::service_fn(|_req: http::Request<()>| async { Ok::<_, BoxError>("sent") });
        let fence = Fence::closed();
        let mut svc = FenceLayer::new(fence.clone()).layer(inner);
        let req = |m: http::Method| {
            http::Request::builder()
                .method(m)
                .uri("/api/v1/pods")
                .body(())
                .unwrap_or_default()
        };
        let read = svc
            .ready()
            .await
            .unwrap_or_else(|_| unreachable!())
            .call(req(http::Method::GET))
            .await;
        assert!(read.is_ok());
        let write = svc
            .ready()
            .await
            .unwrap_or_else(|_| unreachable!())
            .call(req(http::Method::PATCH))
            .await;
        assert!(write.is_err_and(|e| e.to_string().contains("refusing PATCH /api/v1/pods")));
        fence.allow_until(Instant::now() + Duration::from_secs(60));
        let write = svc
            .ready()
            .await
            .unwrap_or_else(|_| unreachable!())
            .call(req(http::Method::POST))
            .await;
        assert!(write.is_ok());
    }

    #[test]
    fn lease_namespace_prefers_flag() {
        assert_eq!(lease_namespace(Some("ops")), "ops");
    }
}
