//! Leader election fencing with the real etcd-operator pods from deploy/ in kubesim process
//! mode: a leader frozen (SIGSTOP) in the middle of a reconcile and past its Lease is replaced
//! by the standby, and once it thaws (SIGCONT) it writes nothing — kubesim's audit log, which
//! names the pod behind every pod-bound ServiceAccount token, shows every request it makes.
//! It steps down and exits, and the kubelet restarts it as a standby.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::harness::{Env, lease_holder, pod_ready, process_state, wait_for};
use e2e::kubesim::audit::AuditEvent;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "steward-system";
const LEASE: &str = "etcd-operator-leader";

async fn holder(env: &Env) -> Option<String> {
    lease_holder(&env.client, NS, LEASE).await
}

fn pod_of(identity: &str) -> String {
    identity
        .rsplit_once('_')
        .map(|(pod, _)| pod.to_string())
        .unwrap_or_else(|| panic!("identity {identity} is not <pod>_<suffix>"))
}

fn is_lease_write(e: &AuditEvent) -> bool {
    e.is_mutation() && e.resource == "leases" && e.namespace == NS && e.name == LEASE
}

fn describe(events: &[&AuditEvent]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "#{} {} {}/{}/{} {}/{} -> {}",
                e.seq, e.verb, e.api_group, e.resource, e.subresource, e.namespace, e.name, e.code
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_writes_nothing_after_the_standby_takes_over() {
    let env = Env::start().await.unwrap();
    let Some(cluster) =
        env.require_kubesim("freezes a process (kubesim's kubelet) and reads kubesim's audit log")
    else {
        return;
    };
    env.deploy_default().await.unwrap();
    // The freeze outlasts the Lease (15 s); the liveness probe (3 failures 10 s apart) could
    // kill the frozen process first. Give it more patience, so only our SIGCONT ends the freeze.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    let patient = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "operator", "livenessProbe": {"failureThreshold": 12}}
    ]}}}});
    deployments
        .patch(
            "etcd-operator",
            &PatchParams::default(),
            &Patch::Strategic(patient),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    wait_for(
        "two patient etcd-operator replicas ready",
        Duration::from_secs(180),
        || async {
            let mine = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=etcd-operator"))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let patient = |p: &Pod| {
                p.spec.as_ref().is_some_and(|s| {
                    s.containers[0]
                        .liveness_probe
                        .as_ref()
                        .is_some_and(|l| l.failure_threshold == Some(12))
                })
            };
            mine.len() == 2
                && mine
                    .iter()
                    .all(|p| patient(p) && pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        },
    )
    .await
    .unwrap();

    // A leader among the current pods (not one the rollout replaced).
    wait_for("a leader", Duration::from_secs(60), || async {
        match holder(&env).await {
            Some(h) => pods
                .get_opt(&pod_of(&h))
                .await
                .ok()
                .flatten()
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
            None => false,
        }
    })
    .await
    .unwrap();
    let old = holder(&env).await.unwrap();
    let old_pod = pod_of(&old);
    // The log can tell the leader's writes apart: it has renewed the Lease under its pod's name.
    wait_for(
        "the leader's Lease writes in the audit log",
        Duration::from_secs(60),
        || async {
            cluster
                .audit_events()
                .iter()
                .any(|e| e.pod.as_deref() == Some(&old_pod) && is_lease_write(e) && e.succeeded())
        },
    )
    .await
    .unwrap();

    // Catch the leader with a reconcile in flight: its answers come back 2 s late, so the
    // reconcile of a new object is still waiting on its first write's answer when we freeze
    // it. Without fencing, that reconcile goes on to write the object's status on waking.
    let clusters = e2e::etcd::clusters_api(&env.client, "default");
    let before = cluster.audit_events().last().map_or(0, |e| e.seq);
    cluster.delay_responses_to_pod(&old_pod, Some(Duration::from_secs(2)));
    // An unsupported version: the reconcile records a warning Event, then writes a status.
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "etcd.steward.dev/v1alpha1", "kind": "EtcdCluster",
        "metadata": {"name": "fenced"},
        "spec": {"size": 1, "version": "3.3.9"}
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &obj).await.unwrap();
    wait_for(
        "the leader's first write for the new object",
        Duration::from_secs(30),
        || async {
            cluster.audit_events().iter().any(|e| {
                e.seq > before && e.pod.as_deref() == Some(&old_pod) && e.is_mutation() && !is_lease_write(e)
            })
        },
    )
    .await
    .unwrap();
    // Freeze the leader, as a long pause or a starved node would.
    let pid = cluster
        .signal_container(NS, &old_pod, "operator", "STOP")
        .unwrap();
    cluster.delay_responses_to_pod(&old_pod, None);
    wait_for("the leader stopped", Duration::from_secs(10), || async {
        process_state(pid) == Some('T')
    })
    .await
    .unwrap();
    let frozen_at = Instant::now();

    // The standby takes the Lease once it has gone unrenewed for its duration.
    wait_for("the standby to take over", Duration::from_secs(60), || async {
        holder(&env).await.is_some_and(|h| h != old)
    })
    .await
    .unwrap();
    let new = holder(&env).await.unwrap();
    let new_pod = pod_of(&new);
    assert_ne!(
        new_pod, old_pod,
        "the standby, not the frozen pod, holds the Lease"
    );
    eprintln!("standby took over {:?} after the freeze", frozen_at.elapsed());
    // The takeover as the API server saw it: the new holder's first successful Lease write.
    let takeover = cluster
        .audit_events()
        .into_iter()
        .find(|e| e.pod.as_deref() == Some(&new_pod) && is_lease_write(e) && e.succeeded())
        .expect("the new leader's Lease write is in the audit log");
    // The new leader works: the object gets its status.
    wait_for("the new leader reconciles", Duration::from_secs(60), || async {
        clusters
            .get("fenced")
            .await
            .is_ok_and(|c| c.data["status"]["observedGeneration"] == 1)
    })
    .await
    .unwrap();

    // Thaw the old leader. It must still be the same, stopped process (the liveness probe
    // could have killed it if the takeover had been slow).
    assert_eq!(process_state(pid), Some('T'), "the old leader is still frozen");
    assert_eq!(
        cluster.container_pid(NS, &old_pod, "operator").unwrap(),
        pid,
        "the frozen process was not replaced"
    );
    cluster
        .signal_container(NS, &old_pod, "operator", "CONT")
        .unwrap();
    eprintln!("old leader thawed after {:?}", frozen_at.elapsed());

    // It notices its Lease is gone, steps down and exits; the kubelet restarts it as a
    // standby, which only reads the Lease.
    wait_for(
        "the old leader exits and comes back",
        Duration::from_secs(90),
        || async {
            pods.get(&old_pod).await.ok().is_some_and(|p| {
                p.status
                    .and_then(|s| s.container_statuses)
                    .and_then(|cs| cs.into_iter().next())
                    .is_some_and(|c| {
                        let exited_with_error = c
                            .last_state
                            .and_then(|s| s.terminated)
                            .is_some_and(|t| t.exit_code != 0);
                        c.restart_count >= 1 && exited_with_error && c.ready
                    })
            })
        },
    )
    .await
    .unwrap();
    let restarted_pid = cluster.container_pid(NS, &old_pod, "operator").unwrap();
    assert_ne!(restarted_pid, pid);
    // The restarted standby has looked at the Lease at least twice, so the old process had
    // ample time for anything it would have written.
    wait_for(
        "the restarted standby polls the Lease",
        Duration::from_secs(60),
        || async {
            cluster
                .audit_events()
                .iter()
                .filter(|e| {
                    e.seq > takeover.seq
                        && e.pod.as_deref() == Some(&old_pod)
                        && e.verb == "get"
                        && e.resource == "leases"
                })
                .count()
                >= 2
        },
    )
    .await
    .unwrap();

    let events = cluster.audit_events();
    let after: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.seq > takeover.seq && e.pod.as_deref() == Some(&old_pod))
        .collect();
    eprintln!(
        "the old leader's pod after the takeover (#{}):\n{}",
        takeover.seq,
        describe(&after)
    );
    // "Wrote" means any mutation attempt, whatever its answer, except a Lease write the API
    // server refused (a lost race for the Lease changes nothing).
    let writes: Vec<&AuditEvent> = after
        .iter()
        .copied()
        .filter(|e| e.is_mutation() && (e.succeeded() || !is_lease_write(e)))
        .collect();
    assert!(
        writes.is_empty(),
        "the deposed leader's pod wrote after the takeover (#{}):\n{}\n\nall its requests since:\n{}",
        takeover.seq,
        describe(&writes),
        describe(&after)
    );
    assert_eq!(
        holder(&env).await.as_deref(),
        Some(new.as_str()),
        "the new leader kept the Lease"
    );
}
