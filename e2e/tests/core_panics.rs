//! The shared controller runner survives a panicking reconcile.
//!
//! Its own test binary: in core_runtime.rs, run beside the other tests of that file, the good
//! object was sometimes never reconciled (not understood yet; alone it passes every time).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e::harness::wait_for;
use e2e::kubesim::Cluster;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn child(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": value}})).unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("test reconcile failed")]
struct TestError;

impl steward_core::ReconcileError for TestError {
    fn reason(&self) -> &'static str {
        "test"
    }
}

/// A reconcile that panics on one object is caught by the runner: counted as
/// `reason="panic"`, backed off, and the other objects keep being reconciled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_reconcile_does_not_stop_the_others() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &child("bomb", "1"))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &child("ok", "1"))
        .await
        .unwrap();
    let (trigger, shutdown) = steward_core::controller::Shutdown::new();
    let metrics = steward_core::MetricsBuilder::new("test", "0").build();
    let rt = steward_core::ControllerRuntime {
        client: client.clone(),
        metrics: metrics.clone(),
        readiness: steward_core::server::Readiness::new(),
        namespaces: vec!["default".into()],
        concurrency: 2,
        shutdown,
    };
    // (seen `data.v` of "ok", panics of "bomb")
    let seen = Arc::new((std::sync::Mutex::new(String::new()), AtomicUsize::new(0)));
    let runner = {
        let seen = seen.clone();
        tokio::spawn(async move {
            steward_core::controller::run_namespaced::<ConfigMap, _, _, _, TestError>(
                &rt,
                "test",
                seen,
                |cm: Arc<ConfigMap>, seen: Arc<(std::sync::Mutex<String>, AtomicUsize)>| async move {
                    if cm.metadata.name.as_deref() == Some("bomb") {
                        seen.1.fetch_add(1, Ordering::SeqCst);
                        panic!("a bad object");
                    }
                    let v = cm
                        .data
                        .as_ref()
                        .and_then(|d| d.get("v"))
                        .cloned()
                        .unwrap_or_default();
                    if let Ok(mut s) = seen.0.lock() {
                        *s = v;
                    }
                    Ok(kube::runtime::controller::Action::await_change())
                },
            )
            .await;
        })
    };
    wait_for(
        "the panic and the first reconcile",
        Duration::from_secs(60),
        || async { seen.1.load(Ordering::SeqCst) >= 1 && *seen.0.lock().unwrap() == "1" },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: panics {}, ok saw {:?}",
            seen.1.load(Ordering::SeqCst),
            seen.0.lock().map(|s| s.clone())
        )
    });
    // After the panic, a change to the good object is still reconciled.
    cms.patch(
        "ok",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    wait_for("the change reconciled", Duration::from_secs(60), || async {
        *seen.0.lock().unwrap() == "2"
    })
    .await
    .unwrap();
    let text = metrics.encode().unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("steward_reconcile_errors_total{")
                && l.contains("reason=\"panic\"")
                && l.contains("controller=\"test\"")),
        "{text}"
    );
    assert!(!runner.is_finished(), "the runner survives the panic");
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
}
