//! Steward's shared operator runtime.
//!
//! Everything an operator needs that is not about etcd or Prometheus: command-line flags,
//! logging, metrics and the health endpoint, leader election, the controller runner, status
//! conditions, Events, and the server-side-apply path for owned objects.

pub mod apply;
pub mod children;
pub mod cli;
pub mod conditions;
pub mod controller;
pub mod duration;
pub mod events;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod runtime;
pub mod security;
pub mod server;
pub mod telemetry;

pub use apply::{Applier, ApplyError, Conflict, Desired, OwnedKind};
pub use children::{ChildStream, Children};
pub use cli::{CommonArgs, LogFormat};
pub use controller::{ControllerRuntime, ReconcileError};
pub use events::EventRecorder;
pub use metrics::{Metrics, MetricsBuilder};
pub use runtime::OperatorInfo;
