//! Observe: what the reconcile starts from. The TLS material (our Secrets or the user's),
//! the member pods and claims (watch caches when they can be trusted, else the API), and the
//! membership, health, versions and backend sizes etcd reports. Plus the two inputs from
//! outside the cluster: the clock and a fresh member name.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use steward_core::conditions;

use super::status::Blocked;
use super::{Context, Error, Target, build, rfc3339};
use crate::crd::{EtcdCluster, TlsMode};
use crate::etcd::{ClientTls, EtcdApi};
use crate::resources;
use crate::version::Version;

/// How long the user's TLS Secrets (mode secrets) are trusted without reading them again.
/// Members read the files themselves; the operator only needs its client material, so an idle
/// cluster does not have to cost three reads every few seconds.
const USER_SECRETS_TTL: Duration = Duration::from_secs(300);

/// One member as the controller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Member ID.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Started (etcd knows its name).
    pub started: bool,
    /// Learner.
    pub is_learner: bool,
    /// Healthy now.
    pub healthy: bool,
    /// Version it reports.
    pub version: Option<Version>,
    /// Client URL.
    pub client_url: String,
    /// RFC 3339 time it became unhealthy.
    pub unhealthy_since: Option<String>,
    /// Backend size and the part in use, in bytes, when it answered.
    pub db_size: Option<(i64, i64)>,
    /// Raft index the member reports (how far its log has come), when reachable.
    pub raft_index: Option<u64>,
    /// RFC 3339 time the operator last defragmented it.
    pub last_defrag: Option<String>,
}

/// What the cluster looks like now, from the API and from etcd.
pub(super) struct Observation {
    /// Member pods.
    pub pods: Vec<Pod>,
    /// Member data claims.
    pub pvcs: Vec<PersistentVolumeClaim>,
    /// The membership, or `None` when no member answered (or there is no pod to ask).
    pub members: Option<Vec<MemberView>>,
    /// The leader's member ID, when a member named one.
    pub leader: Option<u64>,
    /// Why etcd could not be asked, when it could not.
    pub unreachable: Option<String>,
}

/// The member pods and claims, then what etcd says about them.
pub(super) async fn cluster(
    ctx: &Context,
    target: &Target<'_>,
    etcd: &EtcdApi,
) -> Result<Observation, Error> {
    let (pods, pvcs) = pods_and_claims(ctx, target).await?;
    let (members, leader, unreachable) = membership(etcd, target.obj, &pods).await;
    Ok(Observation {
        pods,
        pvcs,
        members,
        leader,
        unreachable,
    })
}

/// A fresh member name: the cluster name and five random characters.
pub(super) fn fresh_member_name(cluster: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| ALPHABET[(rand::random::<u32>() as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{cluster}-{suffix}")
}

/// The membership as etcd reports it, its leader, and why etcd could not be asked if it could not.
async fn membership(
    etcd: &EtcdApi,
    obj: &EtcdCluster,
    pods: &[Pod],
) -> (Option<Vec<MemberView>>, Option<u64>, Option<String>) {
    let endpoints: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| resources::client_url(obj, &p.name_any()))
        .collect();
    if endpoints.is_empty() {
        return (None, None, None);
    }
    let list = match etcd.members(&endpoints).await {
        Ok(list) => list,
        Err(e) => return (None, None, Some(e.describe())),
    };
    let previous = obj.status.as_ref().map(|s| s.members.clone()).unwrap_or_default();
    let now = conditions::now();
    let checks = list.iter().map(|m| {
        let name = if m.name.is_empty() {
            m.peer_urls
                .first()
                .and_then(|u| resources::member_of_peer_url(u))
                .unwrap_or_default()
        } else {
            m.name.clone()
        };
        let url = m
            .client_urls
            .first()
            .cloned()
            .unwrap_or_else(|| resources::client_url(obj, &name));
        async move {
            let healthy = etcd.healthy(&url).await;
            let status = if healthy || m.is_learner {
                etcd.status(&url).await.ok()
            } else {
                None
            };
            (m.clone(), name, url, healthy, status)
        }
    });
    let mut leader = None;
    let mut views = Vec::new();
    for (m, name, url, healthy, status) in futures::future::join_all(checks).await {
        if let Some(s) = &status
            && s.leader != 0
        {
            leader = Some(s.leader);
        }
        let before = previous.iter().find(|p| p.name == name);
        let since = if healthy {
            None
        } else {
            before
                .and_then(|p| p.unhealthy_since.clone())
                .or_else(|| Some(rfc3339(&now)))
        };
        views.push(MemberView {
            id: m.id,
            name,
            started: !m.name.is_empty(),
            is_learner: m.is_learner,
            healthy,
            version: status.as_ref().and_then(|s| Version::parse(&s.version)),
            client_url: url,
            unhealthy_since: since,
            db_size: status.as_ref().map(|s| (s.db_size, s.db_size_in_use)),
            raft_index: status.as_ref().map(|s| s.raft_index),
            last_defrag: before.and_then(|p| p.last_defrag_time.clone()),
        });
    }
    (Some(views), leader, None)
}

/// The cluster's member pods and claims: from the watch caches when they can be trusted,
/// else from the API.
async fn pods_and_claims(
    ctx: &Context,
    target: &Target<'_>,
) -> Result<(Vec<Pod>, Vec<PersistentVolumeClaim>), Error> {
    let ns = target.ns.as_str();
    if target.cached {
        let labels = resources::member_selector(target.obj);
        if let (Some(pods), Some(pvcs)) = (
            ctx.children.list_as::<Pod>(Some(ns), &labels),
            ctx.children.list_as::<PersistentVolumeClaim>(Some(ns), &labels),
        ) {
            return Ok((pods, pvcs));
        }
    }
    let lp = ListParams::default().labels(&super::member_selector(&target.name));
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&lp)
        .await
        .map_err(Error::kube("list", "Pod", ns.to_string()))?
        .items;
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
        .list(&lp)
        .await
        .map_err(Error::kube("list", "PersistentVolumeClaim", ns.to_string()))?
        .items;
    Ok((pods, pvcs))
}

/// TLS Secrets to apply, the operator's client material, and the Secrets just issued.
pub(super) struct TlsMaterial {
    pub secrets: Vec<Secret>,
    pub client: Option<ClientTls>,
    pub issued: Vec<String>,
}

/// Mode auto: the Secrets as they should be now (issuing or renewing certificates). Mode
/// secrets: the user's client Secret, after checking that every named Secret exists; a
/// missing one blocks the reconcile until the user fixes it.
pub(super) async fn tls_material(
    ctx: &Context,
    target: &Target<'_>,
) -> Result<Result<TlsMaterial, Blocked>, Error> {
    match target.obj.spec.tls.mode {
        TlsMode::Disabled => Ok(Ok(TlsMaterial {
            secrets: Vec::new(),
            client: None,
            issued: Vec::new(),
        })),
        TlsMode::Auto => auto_tls(ctx, target).await.map(Ok),
        TlsMode::Secrets => Ok(user_tls(ctx, target).await?.map(|client| TlsMaterial {
            secrets: Vec::new(),
            client,
            issued: Vec::new(),
        })),
    }
}

/// Mode auto. The cache serves the steady case only: whatever would be issued or rotated is
/// decided on the API's own copy (a cache a step behind would mint a second CA).
async fn auto_tls(ctx: &Context, target: &Target<'_>) -> Result<TlsMaterial, Error> {
    let now = conditions::now().0.as_second();
    let obj = target.obj;
    let names: Vec<String> = std::iter::once(crate::tls::ca_secret_name(obj))
        .chain(crate::tls::Role::ALL.map(|r| crate::tls::secret_name(obj, r)))
        .collect();
    let existing = |use_cache: bool| {
        let names = names.clone();
        async move {
            let mut existing = BTreeMap::new();
            for name in names {
                if let Some(secret) = secret(ctx, target, &name, use_cache).await? {
                    existing.insert(name, secret);
                }
            }
            Ok::<_, Error>(existing)
        }
    };
    let mut t = build::tls_secrets(obj, &existing(target.cached).await?, now)?;
    if target.cached && !t.issued.is_empty() {
        t = build::tls_secrets(obj, &existing(false).await?, now)?;
    }
    Ok(TlsMaterial {
        secrets: t.secrets,
        client: Some(t.client),
        issued: t.issued,
    })
}

/// Mode secrets: the client material of the user's client Secret, or what is missing.
async fn user_tls(ctx: &Context, target: &Target<'_>) -> Result<Result<Option<ClientTls>, Blocked>, Error> {
    let Some(names) = &target.obj.spec.tls.secrets else {
        return Ok(Err(Blocked::tls(
            "spec.tls.secrets is required when spec.tls.mode is secrets".into(),
        )));
    };
    let mut missing = Vec::new();
    let mut client = None;
    for (role, name) in [
        ("server", &names.server),
        ("peer", &names.peer),
        ("client", &names.client),
    ] {
        match secret(ctx, target, name, target.cached).await? {
            None => missing.push(format!("Secret {name} ({role}) not found")),
            Some(secret) => match crate::tls::client_from_secret(&secret) {
                None => missing.push(format!("Secret {name} ({role}) lacks tls.crt, tls.key or ca.crt")),
                Some(c) if role == "client" => client = Some(c),
                Some(_) => {}
            },
        }
    }
    if !missing.is_empty() {
        return Ok(Err(Blocked::tls(missing.join("; "))));
    }
    Ok(Ok(client))
}

/// A TLS Secret of the cluster. Our own (mode auto) come from the cache when `use_cache`; the
/// user's (mode secrets) from a short-lived memory of the last read; the rest from the API.
async fn secret(
    ctx: &Context,
    target: &Target<'_>,
    name: &str,
    use_cache: bool,
) -> Result<Option<Secret>, Error> {
    let ns = target.ns.as_str();
    let mode = target.obj.spec.tls.mode;
    let from_cache = match mode {
        TlsMode::Auto if use_cache => ctx.children.get_as::<Secret>(Some(ns), name),
        _ => None,
    };
    let remembered = match mode {
        TlsMode::Secrets => ctx.user_secrets.lock().ok().and_then(|m| {
            m.get(&(ns.to_string(), name.to_string()))
                .filter(|(at, _)| at.elapsed() < USER_SECRETS_TTL)
                .map(|(_, s)| s.clone())
        }),
        _ => None,
    };
    if let Some(secret) = from_cache.or(remembered) {
        return Ok(secret);
    }
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(Error::kube("get", "Secret", format!("{ns}/{name}")))?;
    if mode == TlsMode::Secrets
        && let Ok(mut m) = ctx.user_secrets.lock()
    {
        m.insert(
            (ns.to_string(), name.to_string()),
            (Instant::now(), secret.clone()),
        );
    }
    Ok(secret)
}

/// What a backup needs from a cluster: every member etcd reports (with health and raft
/// index, as the EtcdCluster controller sees them) and the operator's client TLS material.
/// Read from the API (never a cache), so the backup controller needs no EtcdCluster context.
/// `Err` says, in one line, why the members could not be observed.
pub async fn members_for_backup(
    client: &kube::Client,
    obj: &EtcdCluster,
) -> Result<(Vec<MemberView>, Option<ClientTls>), String> {
    let ns = obj.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let client_secret = crate::tls::client_secret(obj);
    let tls =
        match client_secret {
            None => None,
            Some(name) => {
                let secret = secrets
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("reading client TLS Secret {ns}/{name}: {e}"))?
                    .ok_or_else(|| format!("client TLS Secret {ns}/{name} not found"))?;
                Some(crate::tls::client_from_secret(&secret).ok_or_else(|| {
                    format!("client TLS Secret {ns}/{name} lacks tls.crt, tls.key or ca.crt")
                })?)
            }
        };
    let lp = ListParams::default().labels(&super::member_selector(&obj.name_any()));
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(|e| format!("listing member pods of {ns}/{}: {e}", obj.name_any()))?
        .items;
    let etcd = EtcdApi::new(tls.clone(), super::ETCD_TIMEOUT);
    match membership(&etcd, obj, &pods).await {
        (Some(members), _, _) => Ok((members, tls)),
        (None, _, Some(unreachable)) => Err(unreachable),
        (None, _, None) => Err("the cluster has no member pods".to_string()),
    }
}
