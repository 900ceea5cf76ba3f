//! Custom resource types of `etcd.steward.dev`.

mod cluster;

pub use cluster::*;

/// API group of every etcd resource.
pub const GROUP: &str = "etcd.steward.dev";
