//! Pieces every StatefulSet this operator builds (Prometheus, Alertmanager) is made of: volume
//! mounts, HTTP probes, resource requests, downward-API variables, and the data volume (a
//! claim template or an emptyDir).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, Probe, ResourceRequirements, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::PrometheusStorage;

/// Name of the data volume (and of its claim template).
pub const DATA_VOLUME: &str = "data";

/// A mount of volume `name` at `path`.
pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// An HTTP GET probe of `path` on `port`.
pub fn http_probe(path: &str, port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// Resource requests only (no limits): what the scheduler reserves for a container.
pub fn requests(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        ..Default::default()
    }
}

/// The variable `name` filled from the pod's field `path` (e.g. `metadata.name`).
pub fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where the data lives: a claim template [`DATA_VOLUME`] of `default_size` unless the
/// template says otherwise, or, without a template, an emptyDir volume of that name.
pub fn data_storage(
    storage: Option<&PrometheusStorage>,
    labels: BTreeMap<String, String>,
    default_size: &str,
) -> (Option<PersistentVolumeClaim>, Option<Volume>) {
    let storage = storage.cloned().unwrap_or_default();
    if let Some(t) = &storage.volume_claim_template {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(DATA_VOLUME.into()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: t.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(t.size.clone().unwrap_or_else(|| default_size.into())),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        return (Some(claim), None);
    }
    let e = storage.empty_dir.unwrap_or_default();
    let volume = Volume {
        name: DATA_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: e.medium,
            size_limit: e.size_limit.map(Quantity),
            ..Default::default()
        }),
        ..Default::default()
    };
    (None, Some(volume))
}
