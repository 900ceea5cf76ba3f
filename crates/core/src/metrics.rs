//! The metrics registry and the reconcile metrics every controller shares.
//!
//! Names follow Prometheus conventions: counters end in `_total` (prometheus-client appends
//! the suffix when encoding), durations are in seconds. Operators register their own
//! families on [`MetricsBuilder::registry_mut`] before the registry is frozen into [`Metrics`].

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Content type of the OpenMetrics text exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `steward_reconcile_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Controller name, e.g. `etcdcluster`.
    pub controller: String,
    /// `success` or `error`.
    pub result: String,
}

/// Labels of `steward_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Controller name.
    pub controller: String,
    /// A short, bounded error classification (never a free-form message).
    pub reason: String,
}

/// Labels carrying only the controller name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name.
    pub controller: String,
}

/// Labels carrying only the operator name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperatorLabels {
    /// Operator name, e.g. `etcd-operator`.
    pub operator: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    operator: String,
    version: String,
    rustc: String,
}

fn duration_histogram() -> Histogram {
    // 5 ms .. ~82 s: reconciles that talk to etcd can take seconds.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Collects registrations before the registry is shared.
#[derive(Debug)]
pub struct MetricsBuilder {
    registry: Registry,
    operator: String,
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    leader: Family<OperatorLabels, Gauge>,
}

impl MetricsBuilder {
    /// Registers the shared families for `operator` (its binary name) at `version`.
    pub fn new(operator: &str, version: &str) -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "steward_reconcile",
            "Reconciles finished, by controller and result",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "steward_reconcile_errors",
            "Reconciles that failed, by controller and error reason",
            errors.clone(),
        );
        let durations: Family<ControllerLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "steward_reconcile_duration",
            "Time spent in one reconcile",
            Unit::Seconds,
            durations.clone(),
        );
        let leader = Family::<OperatorLabels, Gauge>::default();
        registry.register(
            "steward_leader",
            "1 when this replica holds the leader Lease (or runs without leader election), else 0",
            leader.clone(),
        );
        let build = Info::new(BuildLabels {
            operator: operator.to_string(),
            version: version.to_string(),
            rustc: option_env!("STEWARD_RUSTC_VERSION")
                .unwrap_or("unknown")
                .to_string(),
        });
        registry.register(
            "steward_build",
            "Build information of the running operator",
            build,
        );
        // Nothing is leader until election says so.
        leader
            .get_or_create(&OperatorLabels {
                operator: operator.to_string(),
            })
            .set(0);
        Self {
            registry,
            operator: operator.to_string(),
            reconciles,
            errors,
            durations,
            leader,
        }
    }

    /// The registry, to add operator-specific families.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Freezes the registry.
    pub fn build(self) -> Metrics {
        Metrics {
            inner: Arc::new(Inner {
                registry: self.registry,
                operator: self.operator,
                reconciles: self.reconciles,
                errors: self.errors,
                durations: self.durations,
                leader: self.leader,
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    operator: String,
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    leader: Family<OperatorLabels, Gauge>,
}

/// Shared, cheaply cloneable handle to the operator's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Metrics {
    /// Records one finished reconcile. `error_reason` is `None` on success.
    pub fn observe_reconcile(&self, controller: &str, took: Duration, error_reason: Option<&str>) {
        let result = if error_reason.is_some() {
            "error"
        } else {
            "success"
        };
        self.inner
            .reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.to_string(),
                result: result.to_string(),
            })
            .inc();
        if let Some(reason) = error_reason {
            self.inner
                .errors
                .get_or_create(&ErrorLabels {
                    controller: controller.to_string(),
                    reason: reason.to_string(),
                })
                .inc();
        }
        self.inner
            .durations
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Sets whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.inner
            .leader
            .get_or_create(&OperatorLabels {
                operator: self.inner.operator.clone(),
            })
            .set(i64::from(leading));
    }

    /// The OpenMetrics text exposition of every registered family.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_shared_families_with_conventional_names() {
        let metrics = MetricsBuilder::new("test-operator", "1.2.3").build();
        metrics.observe_reconcile("widget", Duration::from_millis(20), None);
        metrics.observe_reconcile("widget", Duration::from_millis(30), Some("api"));
        metrics.set_leader(true);
        let text = metrics.encode().unwrap();
        assert!(text.contains("# TYPE steward_reconcile counter"), "{text}");
        assert!(
            text.contains(r#"steward_reconcile_total{controller="widget",result="success"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"steward_reconcile_total{controller="widget",result="error"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"steward_reconcile_errors_total{controller="widget",reason="api"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE steward_reconcile_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(r#"steward_reconcile_duration_seconds_count{controller="widget"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"steward_leader{operator="test-operator"} 1"#),
            "{text}"
        );
        assert!(text.contains("steward_build_info{"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
