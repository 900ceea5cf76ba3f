//! Steward's etcd operator: the `EtcdCluster` API and the controllers that run etcd clusters.

pub mod backup;
pub mod controller;
pub mod crd;
pub mod etcd;
pub mod plan;
pub mod resources;
pub mod snapshot;
pub mod tls;
pub mod version;

/// Binary name; also the metrics `operator` label and the Lease name prefix.
pub const OPERATOR_NAME: &str = "etcd-operator";
/// Field manager of every server-side apply this operator makes.
pub const FIELD_MANAGER: &str = "steward.dev/etcd-operator";

/// Every CustomResourceDefinition this operator serves.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![crd::EtcdCluster::crd(), crd::EtcdBackup::crd()]
}
