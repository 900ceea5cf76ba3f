//! Custom resource types of `monitoring.steward.dev`.

// kube-derive's repeated `printcolumn(type_ = ...)` attributes look like duplicates to clippy.
#![allow(clippy::duplicated_attributes)]

mod alertmanager;
pub mod common;
mod compat;
mod monitors;
mod prometheus;
mod rules;
mod scrapeconfig;

pub use alertmanager::*;
pub use compat::*;
pub use monitors::*;
pub use prometheus::*;
pub use rules::*;
pub use scrapeconfig::*;

/// API group of every monitoring resource.
pub const GROUP: &str = "monitoring.steward.dev";
