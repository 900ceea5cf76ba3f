//! EtcdBackup helpers shared by the backup and restore tests (`mod support` in each).

use std::time::Duration;

use e2e::etcd::{clusters_api, condition, healthy_voters, status};
use e2e::harness::{Env, wait_for, wait_until};
use etcd_operator::crd::{BackupPhase, EtcdBackup, EtcdBackupStatus};
use kube::Api;

/// EtcdBackups in namespace `default`.
pub fn backups(env: &Env) -> Api<EtcdBackup> {
    Api::namespaced(env.client.clone(), "default")
}

/// Waits until backup `name` (namespace `default`) succeeded or failed and returns its
/// status; on timeout, panics with the namespace's backups and Events.
pub async fn backup_finished(env: &Env, name: &str) -> EtcdBackupStatus {
    let api = backups(env);
    let done = wait_until(
        &format!("EtcdBackup {name} finished"),
        Duration::from_secs(120),
        || async {
            let st = api.get(name).await.ok()?.status?;
            matches!(st.phase, Some(BackupPhase::Succeeded | BackupPhase::Failed)).then_some(st)
        },
    )
    .await;
    env.or_diagnose(done, "default", "etcdbackups,events").await
}

/// Waits until EtcdCluster `name` (namespace `default`) has `size` healthy voting members and
/// is Available; on timeout, panics with the namespace's clusters, backups, pods and Events.
pub async fn wait_available(env: &Env, name: &str, size: i64, timeout: Duration) {
    let clusters = clusters_api(&env.client, "default");
    let ready = wait_for(
        &format!("{name}: {size} healthy voters, Available"),
        timeout,
        || async {
            let st = status(&clusters, name).await;
            st["size"] == size
                && healthy_voters(&st, size)
                && condition(&st, "Available").is_some_and(|c| c["status"] == "True")
        },
    )
    .await;
    env.or_diagnose(ready, "default", "etcdclusters,etcdbackups,pods,events")
        .await;
}
