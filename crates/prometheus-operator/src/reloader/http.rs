//! The reloader's metrics and its `/metrics` and `/healthz` endpoint.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use steward_core::metrics::OPENMETRICS_CONTENT_TYPE;

use super::reload::FailureKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The reloader's own metrics.
#[derive(Clone, Debug)]
pub struct ReloaderMetrics {
    registry: Arc<Registry>,
    reloads: Counter,
    failures: Family<ReasonLabels, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    last_successful: Gauge,
    pub(super) config_writes: Counter,
    pub(super) config_errors: Counter,
    pub(super) watched_files: Gauge,
}

impl Default for ReloaderMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ReloaderMetrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reloads = Counter::default();
        registry.register(
            "steward_reloader_reloads",
            "Reloads Prometheus accepted",
            reloads.clone(),
        );
        let failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "steward_reloader_reload_failures",
            "Failed reload attempts, by reason: rejected (Prometheus answered with an error, e.g. a bad config) or unreachable",
            failures.clone(),
        );
        // Both series exist from the start, so rate() and increase() see the first failure.
        for kind in [FailureKind::Rejected, FailureKind::Unreachable] {
            let _ = failures.get_or_create(&ReasonLabels {
                reason: kind.label().to_string(),
            });
        }
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "steward_reloader_last_reload_success_timestamp",
            "Unix time of the last reload Prometheus accepted",
            Unit::Seconds,
            last_success.clone(),
        );
        let last_successful = Gauge::default();
        registry.register(
            "steward_reloader_last_reload_successful",
            "1 when the last reload attempt succeeded, else 0",
            last_successful.clone(),
        );
        let config_writes = Counter::default();
        registry.register(
            "steward_reloader_config_apply",
            "Times a changed rendered config was written",
            config_writes.clone(),
        );
        let config_errors = Counter::default();
        registry.register(
            "steward_reloader_config_apply_errors",
            "Polls where the config could not be read, decoded or written",
            config_errors.clone(),
        );
        let watched_files = Gauge::default();
        registry.register(
            "steward_reloader_watched_files",
            "Files currently found in the watched directories",
            watched_files.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reloads,
            failures,
            last_success,
            last_successful,
            config_writes,
            config_errors,
            watched_files,
        }
    }

    pub(super) fn reload_succeeded(&self) {
        self.reloads.inc();
        self.last_successful.set(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.last_success.set(now);
    }

    pub(super) fn reload_failed(&self, kind: FailureKind) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: kind.label().to_string(),
            })
            .inc();
        self.last_successful.set(0);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

async fn metrics_handler(State(metrics): State<ReloaderMetrics>) -> Response {
    match metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// `/metrics` and `/healthz`.
pub fn router(metrics: ReloaderMetrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(metrics)
}
