//! The Prometheus controller's own metrics, beside the shared reconcile metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use steward_core::MetricsBuilder;

use crate::config::{Generated, Kind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SelectedLabels {
    namespace: String,
    prometheus: String,
    kind: String,
    state: String,
}

/// The Prometheus-specific metrics.
#[derive(Clone, Debug)]
pub struct PrometheusMetrics {
    selected: Family<SelectedLabels, Gauge>,
    pub(super) generation: Histogram,
}

impl PrometheusMetrics {
    /// Registers the families on the operator's registry.
    pub fn register(builder: &mut MetricsBuilder) -> Self {
        let m = PrometheusMetrics {
            selected: Family::default(),
            generation: Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
        };
        let r = builder.registry_mut();
        r.register(
            "steward_prometheus_selected_resources",
            "Objects selected by each Prometheus, by kind and state (accepted or rejected)",
            m.selected.clone(),
        );
        r.register(
            "steward_prometheus_config_generation_duration_seconds",
            "Time to select, validate and render one Prometheus configuration",
            m.generation.clone(),
        );
        m
    }

    /// Sets the accepted and rejected counts per kind of the Prometheus `ns/name`.
    pub(super) fn record_selection(&self, ns: &str, name: &str, generated: &Generated) {
        for kind in [
            Kind::ServiceMonitor,
            Kind::PodMonitor,
            Kind::PrometheusRule,
            Kind::ScrapeConfig,
        ] {
            let accepted = generated.accepted.iter().filter(|o| o.kind == kind).count();
            let rejected = generated
                .rejected
                .iter()
                .filter(|r| r.object.kind == kind)
                .count();
            for (state, n) in [("accepted", accepted), ("rejected", rejected)] {
                self.selected
                    .get_or_create(&SelectedLabels {
                        namespace: ns.to_string(),
                        prometheus: name.to_string(),
                        kind: kind.as_str().to_string(),
                        state: state.to_string(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
}
