//! The binary's command line: every flag documented, version printed, and a clear one-line
//! error (not a hang, not a panic) when no cluster is reachable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

include!("../../../e2e/contracts/operator_cli.rs");
