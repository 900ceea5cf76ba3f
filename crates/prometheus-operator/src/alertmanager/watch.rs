//! The watches: Alertmanagers (in `--namespace` scope), their StatefulSets, and Secrets
//! (metadata only) that an Alertmanager's configuration reads.

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

use super::fetch::secret_names;
use crate::OPERATOR_NAME;
use crate::crd::Alertmanager;

/// The Alertmanager cache and the controller wired to its triggers.
pub(super) fn start(rt: &ControllerRuntime) -> (Store<Alertmanager>, Controller<Alertmanager>) {
    let client = rt.client.clone();
    let scope: Option<BTreeSet<String>> =
        (!rt.namespaces.is_empty()).then(|| rt.namespaces.iter().cloned().collect());
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
    let controller = Controller::for_stream(stream, store.clone())
        .owns(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default().labels(&ours),
        )
        .watches_stream(
            watcher(
                Api::<PartialObjectMeta<Secret>>::all(client),
                watcher::Config::default().any_semantic(),
            )
            .default_backoff()
            .touched_objects(),
            move |s: PartialObjectMeta<Secret>| {
                let (ns, name) = (s.namespace(), s.name_any());
                by_secret
                    .state()
                    .iter()
                    .filter(|a| a.namespace() == ns && secret_names(a).contains(&name))
                    .map(|a| ObjectRef::from_obj(a.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    (store, controller)
}
