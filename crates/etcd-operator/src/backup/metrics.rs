//! The backup metric families, by namespace and cluster.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use steward_core::MetricsBuilder;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    cluster: String,
}

fn duration_histogram() -> Histogram {
    // 0.5 s to about 68 min.
    Histogram::new(exponential_buckets(0.5, 2.0, 14))
}

/// The backup metrics.
#[derive(Clone, Debug)]
pub struct BackupMetrics {
    last_success: Family<ClusterLabels, Gauge>,
    duration: Family<ClusterLabels, Histogram, fn() -> Histogram>,
    size: Family<ClusterLabels, Gauge>,
    failures: Family<ClusterLabels, Counter>,
}

impl Default for BackupMetrics {
    fn default() -> Self {
        BackupMetrics {
            last_success: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            size: Family::default(),
            failures: Family::default(),
        }
    }
}

impl BackupMetrics {
    /// Registers the families on the operator's registry.
    pub fn register(builder: &mut MetricsBuilder) -> Self {
        let m = Self::default();
        let r = builder.registry_mut();
        r.register(
            "etcd_operator_backup_last_success_timestamp_seconds",
            "Unix time the last successful EtcdBackup of each cluster completed",
            m.last_success.clone(),
        );
        r.register(
            "etcd_operator_backup_duration_seconds",
            "Time taken by successful snapshot attempts (taking and storing the snapshot)",
            m.duration.clone(),
        );
        r.register(
            "etcd_operator_backup_size_bytes",
            "Stored size of the last successful EtcdBackup of each cluster",
            m.size.clone(),
        );
        r.register(
            "etcd_operator_backup_failures",
            "EtcdBackups that failed for good (after their retries)",
            m.failures.clone(),
        );
        m
    }

    fn labels(namespace: &str, cluster: &str) -> ClusterLabels {
        ClusterLabels {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
        }
    }

    /// Records a stored snapshot.
    pub fn succeeded(&self, namespace: &str, cluster: &str, at: i64, seconds: f64, size: u64) {
        let l = Self::labels(namespace, cluster);
        self.last_success.get_or_create(&l).set(at);
        self.duration.get_or_create(&l).observe(seconds);
        self.size.get_or_create(&l).set(size.min(i64::MAX as u64) as i64);
    }

    /// Counts a backup that failed for good.
    pub fn failed(&self, namespace: &str, cluster: &str) {
        self.failures
            .get_or_create(&Self::labels(namespace, cluster))
            .inc();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_prometheus_naming_and_carry_namespace_and_cluster() {
        let mut builder = MetricsBuilder::new("etcd-operator", "0.0.0");
        let m = BackupMetrics::register(&mut builder);
        m.succeeded("prod", "main", 1_767_582_245, 3.2, 4096);
        m.failed("prod", "main");
        m.failed("prod", "main");
        let text = builder.build().encode().unwrap();
        let labels = r#"{namespace="prod",cluster="main"}"#;
        for line in [
            format!("etcd_operator_backup_last_success_timestamp_seconds{labels} 1767582245"),
            format!("etcd_operator_backup_size_bytes{labels} 4096"),
            format!("etcd_operator_backup_failures_total{labels} 2"),
            format!("etcd_operator_backup_duration_seconds_count{labels} 1"),
            format!("etcd_operator_backup_duration_seconds_sum{labels} 3.2"),
        ] {
            assert!(text.contains(&line), "{line} missing in:\n{text}");
        }
        assert!(
            text.contains("# TYPE etcd_operator_backup_duration_seconds histogram"),
            "{text}"
        );
    }
}
