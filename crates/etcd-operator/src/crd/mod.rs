//! Custom resource types of `etcd.steward.dev`.

// kube-derive's repeated `printcolumn(type_ = ...)` attributes look like duplicates to clippy.
#![allow(clippy::duplicated_attributes)]

mod backup;
mod cluster;

pub use backup::*;
pub use cluster::*;

/// API group of every etcd resource.
pub const GROUP: &str = "etcd.steward.dev";
