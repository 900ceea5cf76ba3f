//! Day-2 operations of the etcd-operator in kubesim process mode: scheduled defragmentation
//! (one member at a time, followers first, the leader last, once per schedule window), the
//! operator's etcd metrics as scraped from its pods, and what deleting an EtcdCluster leaves
//! behind under each `storage.reclaimPolicy`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::bins::{self, Release};
use e2e::etcd::{Etcdctl, cluster_yaml, clusters_api};
use e2e::harness::{Env, wait_for};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

/// Waits until cluster `name` has `size` healthy voters and is Available.
async fn wait_ready(env: &Env, name: &str, size: i64) {
    let clusters = clusters_api(&env.client, "default");
    let ready = wait_for(
        &format!("{name}: {size} ready members"),
        Duration::from_secs(180),
        || async {
            let Ok(c) = clusters.get(name).await else {
                return false;
            };
            let st = &c.data["status"];
            st["readyMembers"] == size
                && st["members"]
                    .as_array()
                    .is_some_and(|ms| ms.len() as i64 == size && ms.iter().all(|m| m["isLearner"] == false))
                && st["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Available" && c["status"] == "True")
                })
        },
    )
    .await;
    env.or_diagnose(ready, "default", "etcdclusters,events").await;
}

async fn status(env: &Env, name: &str) -> serde_json::Value {
    e2e::etcd::status(&clusters_api(&env.client, "default"), name).await
}

fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    let mut all = vec!["--endpoints", endpoints, "--command-timeout=30s"];
    all.extend_from_slice(args);
    let (ok, out) = e2e::local_etcd::etcdctl(Release::Current, &all);
    assert!(ok, "etcdctl {args:?}: {out}");
    out
}

/// `dbSize` of every member by hex member ID, from `etcdctl endpoint status`.
fn db_sizes(endpoints: &str) -> BTreeMap<String, i64> {
    let out = etcdctl(endpoints, &["endpoint", "status", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                format!("{:x}", e["Status"]["header"]["member_id"].as_u64().unwrap()),
                e["Status"]["dbSize"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// One sample of the text exposition: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some((name.to_string(), labels, value.parse().ok()?))
        })
        .collect()
}

/// Every sample of both operator replicas' /metrics (pod IP, port 8080 as in
/// deploy/etcd-operator), per pod.
async fn scrape_operators(env: &Env) -> Vec<(String, Vec<Sample>)> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "steward-system");
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=etcd-operator"))
        .await
        .unwrap()
        .items;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut out = Vec::new();
    for p in list {
        let name = p.metadata.name.clone().unwrap_or_default();
        let Some(ip) = p.status.and_then(|s| s.pod_ip) else {
            continue;
        };
        let Ok(resp) = http.get(format!("http://{ip}:8080/metrics")).send().await else {
            continue;
        };
        let Ok(text) = resp.text().await else { continue };
        out.push((name, parse_metrics(&text)));
    }
    out
}

/// The sum over both replicas of `name` samples whose labels include `want`.
fn metric(scrapes: &[(String, Vec<Sample>)], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = scrapes
        .iter()
        .flat_map(|(_, samples)| samples)
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Defragmentation events of `cluster`: (event time in microseconds, member).
async fn defrag_events(env: &Env, cluster: &str) -> Vec<(i64, String)> {
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    let mut out: Vec<(i64, String)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("MemberDefragmented")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(cluster)
        })
        .filter_map(|e| {
            let at = e.event_time?.0.as_microsecond();
            // One Event per member: related to the member's pod, named in the note.
            let member = e.related?.name?;
            assert!(
                e.note?.starts_with(&format!("defragmented member {member};")),
                "{member}"
            );
            Some((at, member))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragments_one_member_at_a_time_and_reports_metrics() {
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    env.apply(&cluster_yaml(
        "maint",
        3,
        &version,
        "  tls: {mode: disabled}\n  storage: {emptyDir: {}}\n  maintenance: {defrag: {schedule: \"* * * * *\", dbSizeThresholdPercent: 10}}\n",
    ))
    .await
    .unwrap();
    wait_ready(&env, "maint", 3).await;

    // Metrics: only the leader reconciles, so its replica has the samples; summing both
    // replicas also covers a leadership change.
    let cluster = [("namespace", "default"), ("cluster", "maint")];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = cluster.to_vec();
        l.push(extra);
        l
    };
    let scraped = wait_for("the operator's etcd metrics", Duration::from_secs(30), || async {
        let s = scrape_operators(&env).await;
        metric(&s, "steward_etcd_members", &with(("state", "healthy"))) == Some(3.0)
            && metric(&s, "steward_etcd_cluster_available", &cluster) == Some(1.0)
    })
    .await;
    let scrapes = scrape_operators(&env).await;
    if let Err(e) = scraped {
        panic!("{e}: {scrapes:?}");
    }
    assert_eq!(scrapes.len(), 2, "both replicas serve /metrics");
    let with_samples: Vec<&str> = scrapes
        .iter()
        .filter(|(_, s)| s.iter().any(|(n, _, _)| n == "steward_etcd_members"))
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(
        with_samples.len(),
        1,
        "only the leader has cluster samples: {with_samples:?}"
    );
    assert_eq!(
        metric(&scrapes, "steward_etcd_members", &with(("state", "unhealthy"))),
        Some(0.0)
    );
    assert_eq!(
        metric(&scrapes, "steward_etcd_members", &with(("state", "learner"))),
        Some(0.0)
    );
    let changes = |op| metric(&scrapes, "steward_etcd_member_changes_total", &with(("op", op)));
    assert_eq!(changes("bootstrap"), Some(1.0));
    // Two learners added and promoted; a call that etcd carried out but whose answer timed
    // out is not counted (the next plan sees it done), hence at least one.
    for op in ["add", "promote"] {
        assert!(
            changes(op).is_some_and(|n| (1.0..=2.0).contains(&n)),
            "{op}: {:?}",
            changes(op)
        );
    }

    // Garbage for defragmentation: ~6 MB written, deleted and compacted away. Compaction
    // frees the pages inside each member's file; only defragmentation gives them back.
    let eps = Etcdctl::connect(&env, "maint").await.unwrap().members();
    let value = "x".repeat(100 * 1024);
    for i in 0..60 {
        etcdctl(&eps, &["put", &format!("big-{i:03}"), &value]);
    }
    etcdctl(&eps, &["del", "big-", "--prefix"]);
    let out = etcdctl(&eps, &["endpoint", "status", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let revision = json[0]["Status"]["header"]["revision"].as_i64().unwrap();
    etcdctl(&eps, &["compaction", "--physical", &revision.to_string()]);
    let t0 = Timestamp::now();
    let t0_text = t0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let before = db_sizes(&eps);
    assert_eq!(before.len(), 3);
    assert!(before.values().all(|s| *s > 3_000_000), "{before:?}");
    let leader = status(&env, "maint").await["leader"]
        .as_str()
        .unwrap()
        .to_string();

    // The "* * * * *" window opens within a minute; every member is defragmented and its
    // file shrinks.
    let defragged = wait_for(
        "every member defragmented and smaller",
        Duration::from_secs(150),
        || async {
            // bbolt hands freed pages back only at a later write transaction; without writes
            // a member can keep reporting the compacted space as in use (seen on a leader
            // under load), so keep a trickle of writes going like a live cluster has.
            etcdctl(&eps, &["put", "tick", "x"]);
            let st = status(&env, "maint").await;
            let members = st["members"].as_array().cloned().unwrap_or_default();
            let all_recorded = members.len() == 3
                && members.iter().all(|m| {
                    m["lastDefragTime"]
                        .as_str()
                        .is_some_and(|t| t >= t0_text.as_str())
                });
            all_recorded
                && db_sizes(&eps)
                    .iter()
                    .all(|(id, size)| before.get(id).is_some_and(|b| *size < b / 2))
        },
    )
    .await;
    if let Err(e) = defragged {
        panic!(
            "{e}\nbefore: {before:?}\nnow: {:?}\nevents: {:?}\n{}",
            db_sizes(&eps),
            defrag_events(&env, "maint").await,
            env.diagnostics("default", "etcdclusters").await
        );
    }
    let after = db_sizes(&eps);
    let st = status(&env, "maint").await;
    assert!(
        st["lastDefragTime"]
            .as_str()
            .is_some_and(|t| t >= t0_text.as_str()),
        "{st}"
    );

    // One Event per member per window, followers first, the leader last. Events are grouped
    // by the minute they happened in (one window each with "* * * * *").
    let events: Vec<(i64, String)> = defrag_events(&env, "maint")
        .await
        .into_iter()
        .filter(|(at, _)| *at >= t0.as_microsecond() - 1_000_000)
        .collect();
    let mut windows: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (at, member) in &events {
        windows.entry(at / 60_000_000).or_default().push(member.clone());
    }
    for members in windows.values() {
        let mut unique = members.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), members.len(), "once per window: {events:?}");
        if members.contains(&leader) {
            assert_eq!(members.last(), Some(&leader), "leader {leader} last: {events:?}");
        }
    }
    let names: Vec<String> = st["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    for name in &names {
        assert!(
            events.iter().any(|(_, m)| m == name),
            "an Event for {name}: {events:?}"
        );
    }
    let runs = metric(
        &scrape_operators(&env).await,
        "steward_etcd_member_changes_total",
        &with(("op", "defrag")),
    )
    .unwrap_or_default();
    assert!(runs >= 3.0, "defragmentations counted: {runs}");
    println!("dbSize before {before:?}, after {after:?}; events {events:?}");

    // Nothing is left to reclaim: the next window (and the reconciles up to 10 s after it)
    // pass without defragmenting anyone.
    let quiet_since = Timestamp::now().as_microsecond();
    let now = Timestamp::now().as_second();
    let next_window = (now / 60 + 1) * 60;
    tokio::time::sleep(Duration::from_secs((next_window + 15 - now) as u64)).await;
    let later: Vec<(i64, String)> = defrag_events(&env, "maint")
        .await
        .into_iter()
        .filter(|(at, _)| *at > quiet_since)
        .collect();
    assert!(later.is_empty(), "compact members are left alone: {later:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_removes_its_children_and_claims_per_reclaim_policy() {
    let env = Env::with_operators(&["etcd-operator"]).await.unwrap();
    let version = bins::version("ETCD_CURRENT").unwrap();
    // TLS stays at its default (auto), so the operator's Secrets are children too.
    for (name, policy) in [("kept", "Retain"), ("gone", "Delete")] {
        env.apply(&cluster_yaml(
            name,
            1,
            &version,
            &format!("  storage: {{volumeClaimTemplate: {{size: 1Gi}}, reclaimPolicy: {policy}}}\n"),
        ))
        .await
        .unwrap();
    }
    wait_ready(&env, "kept", 1).await;
    wait_ready(&env, "gone", 1).await;

    let children = |name: &'static str| {
        let client = env.client.clone();
        async move {
            let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            let services: Api<Service> = Api::namespaced(client.clone(), "default");
            let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
            let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
            let count = [
                pods.list(&lp)
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .filter(|o| o.metadata.deletion_timestamp.is_none())
                    .count(),
                services.list(&lp).await.unwrap().items.len(),
                secrets.list(&lp).await.unwrap().items.len(),
                pdbs.list(&lp).await.unwrap().items.len(),
                claims
                    .list(&lp)
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .filter(|o| o.metadata.deletion_timestamp.is_none())
                    .count(),
            ];
            // [pods, services, secrets, PDBs, claims]
            count
        }
    };
    // Member pod, client and peer Services, CA + server + peer + client Secrets, PDB, claim.
    assert_eq!(children("kept").await, [1, 2, 4, 1, 1]);
    assert_eq!(children("gone").await, [1, 2, 4, 1, 1]);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), "default");
    let retained = claims
        .list(&ListParams::default().labels("app.kubernetes.io/instance=kept"))
        .await
        .unwrap()
        .items;
    assert!(
        retained[0].metadata.owner_references.is_none(),
        "a retained claim has no owner to be collected with"
    );

    env.kubectl(&["delete", "etcdcluster", "kept", "gone", "-n", "default"])
        .await
        .unwrap();
    let cleaned = wait_for("children collected", Duration::from_secs(90), || async {
        children("gone").await == [0; 5] && children("kept").await == [0, 0, 0, 0, 1]
    })
    .await;
    if let Err(e) = cleaned {
        panic!(
            "{e}: kept {:?}, gone {:?}\n{}",
            children("kept").await,
            children("gone").await,
            env.diagnostics("default", "pods,services,secrets,pvc,pdb").await
        );
    }
    // The retained claim stays (with its data) after the collector is done.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(children("kept").await, [0, 0, 0, 0, 1]);
    let left = claims
        .list(&ListParams::default().labels("app.kubernetes.io/instance=kept"))
        .await
        .unwrap()
        .items;
    assert_eq!(left[0].metadata.uid, retained[0].metadata.uid, "the same claim");
}
