//! The etcd metric families: members by state, changes the operator made, availability.

use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use steward_core::MetricsBuilder;
use steward_core::conditions;

use crate::crd::{EtcdCluster, EtcdClusterStatus, EtcdMemberStatus};

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
            "Changes the operator made to members, by op: bootstrap, recover, add, promote, remove, upgrade, defrag",
            m.member_changes.clone(),
        );
        r.register(
            "steward_etcd_cluster_available",
            "1 when the cluster has a healthy quorum",
            m.available.clone(),
        );
        m
    }

    /// Counts one change `op` made to a member of `obj`.
    pub(super) fn changed(&self, obj: &EtcdCluster, op: &str) {
        self.member_changes
            .get_or_create(&ChangeLabels {
                namespace: obj.namespace().unwrap_or_default(),
                cluster: obj.name_any(),
                op: op.to_string(),
            })
            .inc();
    }

    /// Sets the member and availability gauges of `obj` from the status just computed.
    pub(super) fn record(&self, obj: &EtcdCluster, status: &EtcdClusterStatus) {
        let ns = obj.namespace().unwrap_or_default();
        let cluster = obj.name_any();
        let count =
            |f: &dyn Fn(&EtcdMemberStatus) -> bool| status.members.iter().filter(|m| f(m)).count() as i64;
        for (state, n) in [
            ("healthy", count(&|m| m.healthy && !m.is_learner)),
            ("unhealthy", count(&|m| !m.healthy)),
            ("learner", count(&|m| m.is_learner)),
        ] {
            self.members
                .get_or_create(&MemberStateLabels {
                    namespace: ns.clone(),
                    cluster: cluster.clone(),
                    state: state.into(),
                })
                .set(n);
        }
        let available = conditions::is_true(&status.conditions, "Available");
        self.available
            .get_or_create(&ClusterLabels {
                namespace: ns,
                cluster,
            })
            .set(i64::from(available));
    }
}
