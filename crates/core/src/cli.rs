//! Command-line flags shared by every Steward operator.
//!
//! Each operator flattens [`CommonArgs`] into its own `run` subcommand, so the flags, their
//! defaults and their environment variables are the same everywhere.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Output format of the operator's logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Flags every operator understands.
#[derive(Clone, Debug, Args)]
pub struct CommonArgs {
    /// Address serving /metrics (OpenMetrics), /healthz and /readyz.
    #[arg(long, env = "STEWARD_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Namespace to watch; repeat the flag for several. None means every namespace.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,

    /// Elect a leader through a coordination.k8s.io Lease so only one replica reconciles.
    /// The deploy manifests turn this on; `--leader-elect=false` runs without a Lease.
    #[arg(long, env = "STEWARD_LEADER_ELECT", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Namespace holding the leader-election Lease. Defaults to the pod's own namespace
    /// (POD_NAMESPACE or the service-account namespace file), else `default`.
    #[arg(long, env = "STEWARD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a Lease stays valid without renewal, in seconds: a standby takes the Lease
    /// after seeing it unrenewed this long.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    pub lease_duration_seconds: u64,

    /// How long the leader keeps writing after its last successful renewal, in seconds; must
    /// be below the lease duration, so a leader that cannot renew has stopped before anyone
    /// may take over. Default: two thirds of the lease duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_renew_deadline_seconds: Option<u64>,

    /// Seconds between Lease renewals (and between attempts to acquire); must be below the
    /// renew deadline. Default: a fifth of the renew deadline.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_retry_period_seconds: Option<u64>,

    /// Log output format.
    #[arg(long, env = "STEWARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `info,kube=debug`.
    #[arg(long, env = "STEWARD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Objects reconciled at once per controller.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Seconds to wait for in-flight reconciles on shutdown before exiting anyway.
    /// Keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, default_value_t = 20)]
    pub shutdown_timeout_seconds: u64,
}

impl CommonArgs {
    /// How long the leader's Lease is valid without renewal.
    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(self.lease_duration_seconds)
    }

    /// How long the leader may write after its last successful renewal.
    pub fn lease_renew_deadline(&self) -> Duration {
        self.lease_renew_deadline_seconds
            .map(Duration::from_secs)
            .unwrap_or_else(|| crate::leader::default_renew_deadline(self.lease_duration()))
    }

    /// The pause between Lease renewals.
    pub fn lease_retry_period(&self) -> Duration {
        self.lease_retry_period_seconds
            .map(Duration::from_secs)
            .unwrap_or_else(|| crate::leader::default_retry_period(self.lease_renew_deadline()))
    }

    /// How long shutdown may take before the process exits regardless.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["op"]).unwrap();
        assert_eq!(cli.common.metrics_addr.to_string(), "0.0.0.0:8080");
        assert!(cli.common.namespaces.is_empty());
        assert!(!cli.common.leader_elect);
        assert_eq!(cli.common.log_format, LogFormat::Text);
        assert_eq!(cli.common.log_level, "info");
        assert_eq!(cli.common.lease_renew_deadline(), Duration::from_secs(10));
        assert_eq!(cli.common.lease_retry_period(), Duration::from_secs(2));
    }

    #[test]
    fn lease_timings_follow_the_duration_unless_set() {
        let cli = Cli::try_parse_from(["op", "--lease-duration-seconds", "30"]).unwrap();
        assert_eq!(cli.common.lease_renew_deadline(), Duration::from_secs(20));
        assert_eq!(cli.common.lease_retry_period(), Duration::from_secs(4));
        let cli = Cli::try_parse_from([
            "op",
            "--lease-renew-deadline-seconds=8",
            "--lease-retry-period-seconds=1",
        ])
        .unwrap();
        assert_eq!(cli.common.lease_renew_deadline(), Duration::from_secs(8));
        assert_eq!(cli.common.lease_retry_period(), Duration::from_secs(1));
    }

    #[test]
    fn repeated_namespaces_and_bool_forms() {
        let cli = Cli::try_parse_from([
            "op",
            "--namespace",
            "a",
            "--namespace=b",
            "--leader-elect",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.common.namespaces, vec!["a", "b"]);
        assert!(cli.common.leader_elect);
        assert_eq!(cli.common.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["op", "--leader-elect=false"]).unwrap();
        assert!(!cli.common.leader_elect);
        let cli = Cli::try_parse_from(["op", "--leader-elect=true"]).unwrap();
        assert!(cli.common.leader_elect);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Cli::try_parse_from(["op", "--metrics-addr", "nonsense"]).is_err());
        assert!(Cli::try_parse_from(["op", "--log-format", "xml"]).is_err());
        assert!(Cli::try_parse_from(["op", "--concurrency", "0"]).is_err());
    }
}
