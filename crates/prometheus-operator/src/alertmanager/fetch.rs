//! Fetch and validate the configuration: the Secrets it reads, then the rendered (or the
//! user's) alertmanager.yaml through `config::check`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, SecretKeySelector};
use kube::Api;

use super::{Context, Error, config};
use crate::crd::{Alertmanager, AlertmanagerConfiguration, Receiver, Route};

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

/// The checked alertmanager.yaml, or every problem found (each with its place).
pub(super) async fn configuration(
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
