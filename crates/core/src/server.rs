//! The operator's HTTP endpoint: `/metrics`, `/healthz` and `/readyz`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

/// What `/readyz` reports.
///
/// A replica is ready when its controllers' caches have synced. A replica waiting for the
/// leader Lease runs no controllers; it is a healthy standby and reports ready, so a
/// two-replica Deployment can finish rolling out.
#[derive(Debug, Default)]
pub struct Readiness {
    standby: AtomicBool,
    caches: std::sync::Mutex<Vec<(String, Arc<AtomicBool>)>>,
}

impl Readiness {
    /// A fresh tracker: not ready until a cache or standby mode is reported.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks this replica as a standby (not leading, no controllers running).
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::SeqCst);
    }

    /// Registers a cache; the returned flag is set once it has synced.
    pub fn register_cache(&self, name: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut caches) = self.caches.lock() {
            caches.push((name.to_string(), flag.clone()));
        }
        flag
    }

    /// Forgets every registered cache (when controllers stop).
    pub fn clear_caches(&self) {
        if let Ok(mut caches) = self.caches.lock() {
            caches.clear();
        }
    }

    /// `Ok` with a short description when ready, else the names of unsynced caches.
    pub fn check(&self) -> Result<String, String> {
        if self.standby.load(Ordering::SeqCst) {
            return Ok("standby: waiting for the leader lease".to_string());
        }
        let caches = self
            .caches
            .lock()
            .map_err(|_| "readiness state poisoned".to_string())?;
        if caches.is_empty() {
            return Err("no controller started yet".to_string());
        }
        let pending: Vec<&str> = caches
            .iter()
            .filter(|(_, f)| !f.load(Ordering::SeqCst))
            .map(|(n, _)| n.as_str())
            .collect();
        if pending.is_empty() {
            Ok(format!("{} caches synced", caches.len()))
        } else {
            Err(format!("caches not synced: {}", pending.join(", ")))
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check() {
        Ok(msg) => (StatusCode::OK, format!("ok: {msg}\n")).into_response(),
        Err(msg) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {msg}\n")).into_response(),
    }
}

/// The router, exposed for tests that bind their own listener.
pub fn router(metrics: Metrics, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

/// A bound, not yet serving, HTTP server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
}

impl Server {
    /// Binds `addr`; fails at once (with the address in the message) when it is taken.
    pub async fn bind(addr: SocketAddr, metrics: Metrics, readiness: Arc<Readiness>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on --metrics-addr {addr}: {e}"))?;
        Ok(Self {
            listener,
            router: router(metrics, readiness),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_rules() {
        let r = Readiness::new();
        assert!(r.check().is_err(), "nothing started is not ready");
        r.set_standby(true);
        assert!(r.check().is_ok(), "standby is ready");
        r.set_standby(false);
        let a = r.register_cache("a");
        let b = r.register_cache("b");
        assert_eq!(r.check().unwrap_err(), "caches not synced: a, b");
        a.store(true, Ordering::SeqCst);
        assert_eq!(r.check().unwrap_err(), "caches not synced: b");
        b.store(true, Ordering::SeqCst);
        assert!(r.check().is_ok());
    }
}
