//! The watches: Alertmanagers (in `--namespace` scope), their StatefulSets, AlertmanagerConfigs
//! (cached for the merge), and Secrets (metadata only) that an Alertmanager's configuration or
//! an AlertmanagerConfig reads.

use std::collections::BTreeSet;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use steward_core::ControllerRuntime;

use super::config::receiver_secret_refs;
use super::fetch::secret_names;
use crate::OPERATOR_NAME;
use crate::crd::{Alertmanager, AlertmanagerConfig};

/// The Alertmanagers that may select an AlertmanagerConfig of `ns`: those with a config
/// selector, in `ns` or with a namespace selector. Waking a few too many costs one idle
/// reconcile; an exact match would miss the ones that selected the object before it changed.
fn may_select(store: &Store<Alertmanager>, ns: Option<&str>) -> Vec<ObjectRef<Alertmanager>> {
    store
        .state()
        .iter()
        .filter(|a| {
            a.spec.alertmanager_config_selector.is_some()
                && (a.spec.alertmanager_config_namespace_selector.is_some() || a.namespace().as_deref() == ns)
        })
        .map(|a| ObjectRef::from_obj(a.as_ref()))
        .collect()
}

/// The caches of Alertmanagers and AlertmanagerConfigs, and the controller wired to its
/// triggers.
pub(super) fn start(
    rt: &ControllerRuntime,
) -> (
    Store<Alertmanager>,
    Store<AlertmanagerConfig>,
    Controller<Alertmanager>,
) {
    let client = rt.client.clone();
    let scope: Option<BTreeSet<String>> =
        (!rt.namespaces.is_empty()).then(|| rt.namespaces.iter().cloned().collect());
    let (configs, config_writer) = reflector::store();
    // Cluster-wide whatever `--namespace` says: an Alertmanager in scope may select
    // AlertmanagerConfigs of any namespace, as a Prometheus may select monitors anywhere.
    let config_stream = watcher(
        Api::<AlertmanagerConfig>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|c: &mut AlertmanagerConfig| c.metadata.managed_fields = None)
    .reflect(config_writer)
    .touched_objects();
    let (store, writer) = reflector::store();
    let stream = watcher(
        Api::<Alertmanager>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .filter(move |ev| {
        let keep = match (ev, &scope) {
            (
                Ok(watcher::Event::Apply(a) | watcher::Event::Delete(a) | watcher::Event::InitApply(a)),
                Some(s),
            ) => a.namespace().is_some_and(|ns| s.contains(&ns)),
            _ => true,
        };
        std::future::ready(keep)
    })
    .modify(|a: &mut Alertmanager| a.metadata.managed_fields = None)
    .reflect(writer)
    .applied_objects();
    let ours = format!(
        "{}={OPERATOR_NAME},{}=alertmanager",
        steward_core::labels::MANAGED_BY,
        steward_core::labels::NAME
    );
    let by_secret = store.clone();
    let by_config = store.clone();
    let configs_for_secrets = configs.clone();
    let controller = Controller::for_stream(stream, store.clone())
        .owns(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default().labels(&ours),
        )
        .watches_stream(config_stream, move |c: AlertmanagerConfig| {
            may_select(&by_config, c.namespace().as_deref())
        })
        .watches_stream(
            watcher(
                Api::<PartialObjectMeta<Secret>>::all(client),
                watcher::Config::default().any_semantic(),
            )
            .default_backoff()
            .touched_objects(),
            move |s: PartialObjectMeta<Secret>| {
                let (ns, name) = (s.namespace(), s.name_any());
                let mut wake: Vec<ObjectRef<Alertmanager>> = by_secret
                    .state()
                    .iter()
                    .filter(|a| a.namespace() == ns && secret_names(a).contains(&name))
                    .map(|a| ObjectRef::from_obj(a.as_ref()))
                    .collect();
                let read_by_config = configs_for_secrets.state().iter().any(|c| {
                    c.namespace() == ns
                        && receiver_secret_refs(&c.spec.receivers)
                            .iter()
                            .any(|r| r.name == name)
                });
                if read_by_config {
                    wake.extend(may_select(&by_secret, ns.as_deref()));
                }
                wake
            },
        );
    (store, configs, controller)
}
