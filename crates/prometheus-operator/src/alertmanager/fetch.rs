//! Fetch and validate the configuration: the Secrets it reads, then the rendered (or the
//! user's) alertmanager.yaml through `config::check`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret, SecretKeySelector};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::merge::{self, Team};
use super::{Context, Error, config};
use crate::crd::{Alertmanager, AlertmanagerConfig, AlertmanagerConfiguration, Receiver, Route};

/// How long a reconcile waits for the AlertmanagerConfig cache before it tries again later.
const CACHE_SYNC: std::time::Duration = std::time::Duration::from_secs(10);

/// Labels of every namespace, by name.
pub(super) type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// The configuration to write, and the verdict on each selected AlertmanagerConfig.
pub(super) struct Fetched {
    /// The checked alertmanager.yaml, or every problem found (each with its place).
    pub yaml: Result<String, Vec<String>>,
    /// Each selected AlertmanagerConfig and its problems (`None`: merged).
    pub verdicts: Vec<(Arc<AlertmanagerConfig>, Option<Vec<String>>)>,
    /// Namespace labels, when the Alertmanager has a namespace selector (else empty).
    pub namespace_labels: NamespaceLabels,
}

/// The configuration used when the spec has none: every alert goes to a receiver that
/// notifies nobody (as upstream's operator does).
pub fn default_configuration() -> AlertmanagerConfiguration {
    AlertmanagerConfiguration {
        route: Route {
            receiver: Some("null".into()),
            ..Default::default()
        },
        receivers: vec![Receiver {
            name: "null".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The Secrets of `ns` named in `names`, `None` for those that do not exist.
async fn secrets(
    ctx: &Context,
    ns: &str,
    names: Vec<String>,
) -> Result<BTreeMap<String, Option<Secret>>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut out = BTreeMap::new();
    for name in names {
        if out.contains_key(&name) {
            continue;
        }
        let s = api.get_opt(&name).await.map_err(|e| Error::Read {
            what: format!("get secret {ns}/{name}"),
            source: Box::new(e),
        })?;
        out.insert(name, s);
    }
    Ok(out)
}

/// The value of `key` in `secret` (named `name`), or why there is none.
fn value_of(name: &str, secret: Option<&Secret>, key: &str) -> Result<String, String> {
    let secret = secret.ok_or_else(|| format!("Secret \"{name}\" not found"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| format!("Secret \"{name}\" has no key \"{key}\""))?;
    String::from_utf8(bytes).map_err(|_| format!("key \"{key}\" of Secret \"{name}\" is not UTF-8"))
}

/// The base configuration (`configSecret`, `config` or the default) with every selected
/// AlertmanagerConfig merged in that passes its check.
pub(super) async fn configuration(ctx: &Context, am: &Alertmanager, ns: &str) -> Result<Fetched, Error> {
    let base = base_configuration(ctx, am, ns).await?;
    let mut fetched = Fetched {
        yaml: base,
        verdicts: Vec::new(),
        namespace_labels: BTreeMap::new(),
    };
    let Ok(base) = &fetched.yaml else {
        return Ok(fetched);
    };
    if am.spec.alertmanager_config_selector.is_none() {
        return Ok(fetched);
    }
    // Until the cache has listed every AlertmanagerConfig, a merge would drop teams.
    let synced = tokio::time::timeout(CACHE_SYNC, ctx.configs.wait_until_ready()).await;
    if !matches!(synced, Ok(Ok(()))) {
        return Err(Error::CacheSyncing);
    }
    if am.spec.alertmanager_config_namespace_selector.is_some() {
        let list = Api::<Namespace>::all(ctx.client.clone())
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| Error::Read {
                what: "list namespaces".into(),
                source: Box::new(e),
            })?;
        fetched.namespace_labels = list
            .items
            .into_iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
    }
    let mut selected: Vec<Arc<AlertmanagerConfig>> = ctx
        .configs
        .state()
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| {
            let cns = c.namespace().unwrap_or_default();
            merge::selects(am, &cns, c.labels(), fetched.namespace_labels.get(&cns))
        })
        .collect();
    selected.sort_by_key(|c| (c.namespace(), c.name_any()));
    // The Secrets each object reads, from its own namespace.
    let mut found: BTreeMap<String, BTreeMap<String, Option<Secret>>> = BTreeMap::new();
    for c in &selected {
        let cns = c.namespace().unwrap_or_default();
        let names: Vec<String> = config::receiver_secret_refs(&c.spec.receivers)
            .into_iter()
            .map(|r| r.name)
            .filter(|n| !found.get(&cns).is_some_and(|f| f.contains_key(n)))
            .collect();
        let got = secrets(ctx, &cns, names).await?;
        found.entry(cns).or_default().extend(got);
    }
    let lookup = |cns: &str, sel: &SecretKeySelector| {
        let secret = found
            .get(cns)
            .and_then(|f| f.get(&sel.name))
            .and_then(Option::as_ref);
        value_of(&sel.name, secret, &sel.key)
    };
    let names: Vec<(String, String)> = selected
        .iter()
        .map(|c| (c.namespace().unwrap_or_default(), c.name_any()))
        .collect();
    let teams: Vec<Team<'_>> = selected
        .iter()
        .zip(&names)
        .map(|(c, (cns, name))| Team {
            namespace: cns,
            name,
            spec: &c.spec,
        })
        .collect();
    match merge::merge(base, &teams, &lookup) {
        Ok(merged) => {
            fetched.verdicts = selected
                .iter()
                .map(|c| {
                    let (cns, name) = (c.namespace().unwrap_or_default(), c.name_any());
                    let problems = merged
                        .rejected
                        .iter()
                        .find(|r| r.namespace == cns && r.name == name)
                        .map(|r| r.problems.clone());
                    (c.clone(), problems)
                })
                .collect();
            fetched.yaml = Ok(merged.yaml);
        }
        Err(p) => fetched.yaml = Err(p),
    }
    Ok(fetched)
}

/// The checked base alertmanager.yaml, or every problem found (each with its place).
async fn base_configuration(
    ctx: &Context,
    am: &Alertmanager,
    ns: &str,
) -> Result<Result<String, Vec<String>>, Error> {
    if let Some(r) = &am.spec.config_secret {
        let found = secrets(ctx, ns, vec![r.name.clone()]).await?;
        let yaml = match value_of(&r.name, found.get(&r.name).and_then(Option::as_ref), &r.key) {
            Ok(y) => y,
            Err(why) => return Ok(Err(vec![format!("configSecret: {why}")])),
        };
        return Ok(config::check(&yaml).map(|()| yaml).map_err(|p| {
            p.into_iter()
                .map(|p| format!("configSecret {}: {p}", r.name))
                .collect()
        }));
    }
    let cfg = am.spec.config.clone().unwrap_or_else(default_configuration);
    let refs = config::secret_refs(&cfg);
    let names: Vec<String> = refs.iter().map(|r| r.name.clone()).collect();
    let found = secrets(ctx, ns, names).await?;
    let lookup = |sel: &SecretKeySelector| {
        value_of(&sel.name, found.get(&sel.name).and_then(Option::as_ref), &sel.key)
    };
    Ok(config::render(&cfg, &lookup).map_err(|p| p.into_iter().map(|p| format!("config.{p}")).collect()))
}

/// Names of every Secret `am` reads, for waking it when one changes.
pub fn secret_names(am: &Alertmanager) -> Vec<String> {
    let mut names: Vec<String> = am.spec.config_secret.iter().map(|r| r.name.clone()).collect();
    if let Some(cfg) = &am.spec.config {
        names.extend(config::secret_refs(cfg).into_iter().map(|r| r.name));
    }
    names
}
