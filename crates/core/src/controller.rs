//! Running kube-runtime controllers the same way in every operator: per-object jittered
//! exponential backoff on errors, reconcile metrics, a concurrency limit, cache-sync readiness
//! and graceful shutdown.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;
use std::pin::Pin;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::server::Readiness;

/// An error a reconcile can return. `reason` must come from a small fixed set: it becomes the
/// `reason` label of `steward_reconcile_errors_total`.
pub trait ReconcileError: std::error::Error + Send + Sync + 'static {
    /// Short, bounded classification, e.g. `api`, `invalid_spec`, `etcd`.
    fn reason(&self) -> &'static str;
}

/// Per-object exponential backoff with jitter, reset by a successful reconcile.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Backoff starting at `base` and capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let attempt = match self.failures.lock() {
            Ok(mut f) => {
                let n = f.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        let jitter = rand::random::<f64>();
        self.delay(attempt, jitter)
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    /// The delay for the `attempt`-th consecutive failure, with `jitter` in `[0, 1)` spreading
    /// it over ±25 %, so many objects failing at once do not retry in lockstep.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp.min(20)).min(self.max);
        let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
        raw.mul_f64(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

/// What every controller gets from the operator runtime.
#[derive(Clone)]
pub struct ControllerRuntime {
    /// The API client.
    pub client: kube::Client,
    /// Shared metrics.
    pub metrics: Metrics,
    /// Readiness tracker; controllers register their caches here.
    pub readiness: Arc<Readiness>,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Reconciles at once per controller.
    pub concurrency: u16,
    /// Resolves when the controllers must stop taking new work.
    pub shutdown: Shutdown,
}

impl ControllerRuntime {
    /// One `Api` per watched namespace, or a single all-namespaces `Api`.
    pub fn apis<K>(&self) -> Vec<kube::Api<K>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        if self.namespaces.is_empty() {
            vec![kube::Api::all(self.client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| kube::Api::namespaced(self.client.clone(), ns))
                .collect()
        }
    }
}

/// A cloneable shutdown signal whose futures are `Send + Sync + 'static`, as
/// `Controller::graceful_shutdown_on` requires.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: tokio::sync::watch::Receiver<bool>,
}

/// The trigger side of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: tokio::sync::watch::Sender<bool>,
}

impl Shutdown {
    /// A new signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    /// Whether shutdown has been requested.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is requested (or the trigger is dropped).
    pub fn wait(&self) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        let mut rx = self.rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|v| *v).await;
        })
    }
}

impl ShutdownTrigger {
    /// Requests shutdown.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

/// What the runner hands kube-runtime: the reconcile's own error, or a panic it caught.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError<E: ReconcileError> {
    /// The reconcile returned an error.
    #[error(transparent)]
    Reconcile(E),
    /// The reconcile panicked; the message is the panic's payload.
    #[error("reconcile panicked: {0}")]
    Panic(String),
}

impl<E: ReconcileError> RunnerError<E> {
    fn reason(&self) -> &'static str {
        match self {
            RunnerError::Reconcile(e) => e.reason(),
            RunnerError::Panic(_) => "panic",
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

struct RunnerCtx<Ctx> {
    inner: Arc<Ctx>,
    name: String,
    metrics: Metrics,
    backoff: Backoff,
}

/// Runs `controller` until shutdown: reconciles through `reconcile`, records metrics, retries
/// failures with per-object jittered exponential backoff, and marks the cache synced in
/// `/readyz`. In-flight reconciles finish before this returns.
///
/// A reconcile that panics is caught: it counts as an error with reason `panic` and its
/// object backs off like any failure, while every other object keeps being reconciled (one
/// bad object must never take the operator down).
pub async fn run<K, Ctx, R, Fut, E>(
    rt: &ControllerRuntime,
    name: &str,
    controller: Controller<K>,
    ctx: Arc<Ctx>,
    reconcile: R,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    R: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: ReconcileError,
    ObjectRef<K>: Hash + Eq,
{
    let synced = rt.readiness.register_cache(name);
    let store = controller.store();
    tokio::spawn(async move {
        // The store's readiness signal wakes only its most recent waiter, and the controller
        // itself waits on it too: poll again now and then instead of waiting once.
        loop {
            match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    synced.store(true, Ordering::SeqCst);
                    return;
                }
                Ok(Err(_)) => return,
                Err(_) => {}
            }
        }
    });
    let rctx = Arc::new(RunnerCtx {
        inner: ctx,
        name: name.to_string(),
        metrics: rt.metrics.clone(),
        backoff: Backoff::default(),
    });
    let reconcile = Arc::new(reconcile);
    let controller_name = name.to_string();
    controller
        .with_config(ControllerConfig::default().concurrency(rt.concurrency))
        .graceful_shutdown_on(rt.shutdown.wait())
        .run(
            move |obj: Arc<K>, rctx: Arc<RunnerCtx<Ctx>>| {
                let reconcile = reconcile.clone();
                async move {
                    use futures::FutureExt as _;
                    let key = ObjectRef::from_obj(obj.as_ref()).to_string();
                    let started = Instant::now();
                    let result = match std::panic::AssertUnwindSafe(reconcile(obj, rctx.inner.clone()))
                        .catch_unwind()
                        .await
                    {
                        Ok(r) => r.map_err(RunnerError::Reconcile),
                        Err(payload) => Err(RunnerError::Panic(panic_message(payload.as_ref()))),
                    };
                    let took = started.elapsed();
                    match &result {
                        Ok(_) => {
                            rctx.backoff.succeeded(&key);
                            rctx.metrics.observe_reconcile(&rctx.name, took, None);
                        }
                        Err(e) => rctx.metrics.observe_reconcile(&rctx.name, took, Some(e.reason())),
                    }
                    result
                }
            },
            |obj: Arc<K>, err: &RunnerError<E>, rctx: Arc<RunnerCtx<Ctx>>| {
                let key = ObjectRef::from_obj(obj.as_ref()).to_string();
                let wait = rctx.backoff.failed(&key);
                warn!(controller = %rctx.name, object = %key, error = %err, retry_in = ?wait, "reconcile failed");
                Action::requeue(wait)
            },
            rctx,
        )
        .for_each(|res| {
            let controller_name = controller_name.clone();
            async move {
                match res {
                    Ok((obj, _)) => debug!(controller = %controller_name, object = %obj, "reconciled"),
                    // Watch failures (a missing RBAC verb, an unreachable API) must be visible;
                    // kube-runtime retries them itself.
                    Err(kube::runtime::controller::Error::QueueError(e)) => {
                        warn!(controller = %controller_name, error = %e, "watching failed; retrying")
                    }
                    // Reconcile errors are logged by the error policy.
                    Err(e) => debug!(controller = %controller_name, error = %e, "controller event"),
                }
            }
        })
        .await;
}

/// Runs one controller per watched namespace (or one for all namespaces) for the namespaced
/// kind `K`, until shutdown.
pub async fn run_namespaced<K, Ctx, R, Fut, E>(
    rt: &ControllerRuntime,
    name: &str,
    ctx: Arc<Ctx>,
    reconcile: R,
) where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    Ctx: Send + Sync + 'static,
    R: Fn(Arc<K>, Arc<Ctx>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: ReconcileError,
{
    let controllers = rt.apis::<K>().into_iter().map(|api| {
        let controller = Controller::new(api, kube::runtime::watcher::Config::default().any_semantic());
        run(rt, name, controller, ctx.clone(), reconcile.clone())
    });
    futures::future::join_all(controllers).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(b.delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(2, 0.5), Duration::from_secs(2));
        assert_eq!(b.delay(4, 0.5), Duration::from_secs(8));
        assert_eq!(b.delay(30, 0.5), Duration::from_secs(60));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(3));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(5));
        assert!(b.delay(40, 1.0) <= Duration::from_secs(60));
    }

    #[test]
    fn backoff_resets_per_object() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let first = b.failed("a");
        assert!(first <= Duration::from_millis(1250));
        let _ = b.failed("a");
        let third = b.failed("a");
        assert!(third >= Duration::from_secs(3), "{third:?}");
        assert!(
            b.failed("b") <= Duration::from_millis(1250),
            "other objects unaffected"
        );
        b.succeeded("a");
        assert!(b.failed("a") <= Duration::from_millis(1250));
    }

    #[tokio::test]
    async fn shutdown_signal_reaches_every_clone() {
        let (trigger, shutdown) = Shutdown::new();
        let a = shutdown.wait();
        let b = shutdown.clone().wait();
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        a.await;
        b.await;
        assert!(shutdown.is_triggered());
    }
}
