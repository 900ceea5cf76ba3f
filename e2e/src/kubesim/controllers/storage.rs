//! Binds PersistentVolumeClaims to PersistentVolumes created on demand (a local
//! provisioner): each claim gets a volume backed by a directory under the state folder.

use serde_json::{Value, json};

use super::{Key, Reconciler, is, key_of, opts, rt};
use crate::kubesim::objects::Part;
use crate::kubesim::server::ApiServer;
use crate::kubesim::store::{EventType, WatchEvent};

/// The volume binder.
pub struct VolumeBinder;

impl Reconciler for VolumeBinder {
    fn name(&self) -> &'static str {
        "volume-binder"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("", "persistentvolumeclaims")
    }
    fn keys_for(&self, _s: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if is(ev, "", "persistentvolumeclaims") && ev.type_ != EventType::Deleted {
            return vec![key_of(&ev.object)];
        }
        if is(ev, "", "persistentvolumeclaims") && ev.type_ == EventType::Deleted {
            // Reclaim: the volume goes with its claim (reclaimPolicy Delete).
            return vec![(
                String::from("\u{0}pv"),
                ev.object
                    .pointer("/spec/volumeName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )];
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (ns, name): &Key) {
        let (Some(pvcs), Some(pvs)) = (
            rt(server, "", "persistentvolumeclaims"),
            rt(server, "", "persistentvolumes"),
        ) else {
            return;
        };
        if ns == "\u{0}pv" {
            if !name.is_empty() {
                let _ = server.delete(&pvs, "", name, &Default::default());
            }
            return;
        }
        let Ok(pvc) = server.get(&pvcs, ns, name) else {
            return;
        };
        if pvc.pointer("/status/phase").and_then(Value::as_str) == Some("Bound")
            || pvc.pointer("/metadata/deletionTimestamp").is_some()
        {
            return;
        }
        let uid = pvc
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let pv_name = format!("pvc-{uid}");
        let size = pvc
            .pointer("/spec/resources/requests/storage")
            .cloned()
            .unwrap_or(json!("1Gi"));
        let modes = pvc
            .pointer("/spec/accessModes")
            .cloned()
            .unwrap_or(json!(["ReadWriteOnce"]));
        let class = pvc
            .pointer("/spec/storageClassName")
            .cloned()
            .unwrap_or(json!("standard"));
        if server.get(&pvs, "", &pv_name).is_err() {
            let pv = json!({
                "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": "kubesim.local/hostpath"}},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": modes,
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": class,
                    "volumeMode": "Filesystem",
                    "hostPath": {"path": format!("/kubesim/pvs/{pv_name}"), "type": "DirectoryOrCreate"},
                    "claimRef": {"kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": uid, "apiVersion": "v1"},
                },
            });
            if server.create(&pvs, "", pv, &opts()).is_err() {
                return;
            }
            if let Ok(created) = server.get(&pvs, "", &pv_name) {
                let mut bound = (*created).clone();
                bound["status"] = json!({"phase": "Bound"});
                let _ = server.update(&pvs, "", &pv_name, bound, Part::Status, &opts());
            }
        }
        let mut claimed = (*pvc).clone();
        claimed["spec"]["volumeName"] = json!(pv_name);
        if claimed.pointer("/spec/storageClassName").is_none() {
            claimed["spec"]["storageClassName"] = class.clone();
        }
        let Ok(w) = server.update(&pvcs, ns, name, claimed, Part::Main, &opts()) else {
            return;
        };
        let mut status = (*w.object).clone();
        status["status"] = json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}});
        let _ = server.update(&pvcs, ns, name, status, Part::Status, &opts());
    }
}
