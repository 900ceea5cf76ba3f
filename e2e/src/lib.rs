//! Steward's end-to-end harness: locating the real binaries `make test-deps` installs, and
//! kubesim, the local Kubernetes-compatible cluster our end-to-end tests run against.

pub mod alertmanager;
pub mod bins;
pub mod etcd;
pub mod harness;
pub mod kubesim;
pub mod local_etcd;
pub mod prometheus;
pub mod s3;
pub mod webhook;
