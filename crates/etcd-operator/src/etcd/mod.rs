//! Talking to etcd: membership (learners, promotion, removal), leadership moves,
//! per-member status and health, and defragmentation, with or without TLS.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, MemberAddOptions, TlsOptions};

// The material is made by the pure `tls` module; it is re-exported for clients of this one.
pub use crate::tls::ClientTls;

/// Failure talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("cannot connect to etcd at {endpoints}: {source}")]
    Connect {
        /// The endpoints tried.
        endpoints: String,
        /// Cause.
        source: etcd_client::Error,
    },
    /// A request failed.
    #[error("etcd {op} failed: {source}")]
    Request {
        /// Which call.
        op: &'static str,
        /// Cause.
        source: etcd_client::Error,
    },
    /// A request did not answer in time.
    #[error("etcd {0} timed out")]
    Timeout(&'static str),
}

impl EtcdError {
    /// One line that names the kind of failure first (timeout, TLS, refused connection, name
    /// resolution), then the whole cause chain, so a status message says what really failed.
    pub fn describe(&self) -> String {
        let mut chain = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            let text = e.to_string();
            if !chain.contains(&text) {
                chain.push_str(": ");
                chain.push_str(&text);
            }
            cause = e.source();
        }
        let lower = chain.to_lowercase();
        let kind = if matches!(self, EtcdError::Timeout(_))
            || lower.contains("timed out")
            || lower.contains("deadline")
        {
            "timeout"
        } else if [
            "certificate",
            "tls",
            "handshake",
            "x509",
            "unknownissuer",
            "invalidcontenttype",
            "corrupt message",
        ]
        .iter()
        .any(|w| lower.contains(w))
        {
            "TLS failure"
        } else if lower.contains("refused") {
            "connection refused"
        } else if ["dns", "resolve", "lookup", "name or service"]
            .iter()
            .any(|w| lower.contains(w))
        {
            "name resolution failed"
        } else {
            "request failed"
        };
        format!("cannot reach etcd ({kind}): {chain}")
    }
}

/// A member as the cluster lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Member ID.
    pub id: u64,
    /// Name; empty until a freshly added member has started.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs; empty until started.
    pub client_urls: Vec<String>,
    /// Non-voting learner.
    pub is_learner: bool,
}

/// What one member reports about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member's own ID.
    pub id: u64,
    /// Server version, e.g. `3.5.16`.
    pub version: String,
    /// Backend size in bytes.
    pub db_size: i64,
    /// Backend bytes in use (the rest is reclaimable by defragmentation).
    pub db_size_in_use: i64,
    /// ID of the leader this member follows.
    pub leader: u64,
    /// Raft index.
    pub raft_index: u64,
}

/// How long one member's defragmentation may take before the call gives up.
pub const DEFRAG_TIMEOUT: Duration = Duration::from_secs(120);

/// Formats a member ID the way etcdctl prints it.
pub fn hex_id(id: u64) -> String {
    format!("{id:x}")
}

/// A handle for talking to one cluster.
#[derive(Clone, Debug)]
pub struct EtcdApi {
    tls: Option<ClientTls>,
    timeout: Duration,
}

impl EtcdApi {
    /// Plain HTTP or, with `tls`, mutual TLS.
    pub fn new(tls: Option<ClientTls>, timeout: Duration) -> Self {
        Self { tls, timeout }
    }

    async fn connect(&self, endpoints: &[String]) -> Result<Client, EtcdError> {
        self.connect_with(endpoints, self.timeout).await
    }

    /// Connects with `request_timeout` for each request (the connection itself still has
    /// the handle's timeout). The backup engine uses it for its long snapshot stream.
    pub(crate) async fn connect_with(
        &self,
        endpoints: &[String],
        request_timeout: Duration,
    ) -> Result<Client, EtcdError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_timeout(request_timeout);
        if let Some(t) = &self.tls {
            opts = opts.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(&t.ca))
                    .identity(Identity::from_pem(&t.cert, &t.key)),
            );
        }
        let fut = Client::connect(endpoints, Some(opts));
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(source)) => Err(EtcdError::Connect {
                endpoints: endpoints.join(","),
                source,
            }),
            Err(_) => Err(EtcdError::Timeout("connect")),
        }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, EtcdError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(EtcdError::Request { op, source }),
            Err(_) => Err(EtcdError::Timeout(op)),
        }
    }

    /// Every member.
    pub async fn members(&self, endpoints: &[String]) -> Result<Vec<MemberInfo>, EtcdError> {
        let mut c = self.connect(endpoints).await?;
        let resp = self.timed("member list", c.member_list()).await?;
        Ok(resp.members().iter().map(member_info).collect())
    }

    /// Adds a learner with `peer_url`; returns its new ID.
    pub async fn add_learner(&self, endpoints: &[String], peer_url: &str) -> Result<u64, EtcdError> {
        let mut c = self.connect(endpoints).await?;
        let resp = self
            .timed(
                "member add",
                c.member_add([peer_url], Some(MemberAddOptions::new().with_is_learner())),
            )
            .await?;
        Ok(resp.member().map_or(0, |m| m.id()))
    }

    /// Promotes a learner to voter; fails while it is not caught up.
    pub async fn promote(&self, endpoints: &[String], id: u64) -> Result<(), EtcdError> {
        let mut c = self.connect(endpoints).await?;
        self.timed("member promote", c.member_promote(id))
            .await
            .map(|_| ())
    }

    /// Removes a member.
    pub async fn remove(&self, endpoints: &[String], id: u64) -> Result<(), EtcdError> {
        let mut c = self.connect(endpoints).await?;
        self.timed("member remove", c.member_remove(id)).await.map(|_| ())
    }

    /// Moves leadership to `target`; must be sent to the current leader's endpoint.
    pub async fn move_leader(&self, leader_endpoint: &str, target: u64) -> Result<(), EtcdError> {
        let mut c = self.connect(&[leader_endpoint.to_string()]).await?;
        self.timed("move leader", c.move_leader(target)).await.map(|_| ())
    }

    /// One member's own status.
    pub async fn status(&self, endpoint: &str) -> Result<MemberStatus, EtcdError> {
        let mut c = self.connect(&[endpoint.to_string()]).await?;
        let s = self.timed("status", c.status()).await?;
        Ok(MemberStatus {
            id: s.header().map_or(0, |h| h.member_id()),
            version: s.version().to_string(),
            db_size: s.db_size(),
            db_size_in_use: s.raft_used_db_size(),
            leader: s.leader(),
            raft_index: s.raft_index(),
        })
    }

    /// Defragments one member's backend, returning the space its deleted and compacted
    /// revisions left behind to the file system. The member serves neither reads nor writes
    /// while this runs, so callers go one member at a time. Requests get up to
    /// [`DEFRAG_TIMEOUT`] (a large database takes a while); if that passes, etcd still
    /// finishes the defragmentation on its own.
    pub async fn defragment(&self, endpoint: &str) -> Result<(), EtcdError> {
        let mut c = self.connect_with(&[endpoint.to_string()], DEFRAG_TIMEOUT).await?;
        match tokio::time::timeout(DEFRAG_TIMEOUT, c.defragment()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(EtcdError::Request {
                op: "defragment",
                source,
            }),
            Err(_) => Err(EtcdError::Timeout("defragment")),
        }
    }

    /// Whether a member serves a linearizable read, as `etcdctl endpoint health` checks.
    /// Learners do not serve linearizable reads; for them a status answer counts.
    pub async fn healthy(&self, endpoint: &str) -> bool {
        let Ok(mut c) = self.connect(&[endpoint.to_string()]).await else {
            return false;
        };
        match self.timed("status", c.status()).await {
            Ok(s) if s.is_learner() => s.errors().is_empty(),
            Ok(s) if !s.errors().is_empty() => false,
            Ok(_) => self.timed("get", c.get("health", None)).await.is_ok(),
            Err(_) => false,
        }
    }
}

fn member_info(m: &etcd_client::Member) -> MemberInfo {
    MemberInfo {
        id: m.id(),
        name: m.name().to_string(),
        peer_urls: m.peer_urls().to_vec(),
        client_urls: m.client_urls().to_vec(),
        is_learner: m.is_learner(),
    }
}
