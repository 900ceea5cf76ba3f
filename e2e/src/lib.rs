//! Steward's end-to-end harness. For now: locating the real binaries (etcd, Prometheus,
//! Alertmanager, promtool, kubectl) that `make test-deps` puts under `.cache/bin`.

pub mod bins;
