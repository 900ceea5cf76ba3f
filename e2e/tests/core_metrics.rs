//! A real Prometheus scrapes steward-core's live `/metrics` endpoint: the scrape must be
//! healthy and every shared family must arrive with its type, for both supported Prometheus
//! lines. This is the check `promtool check metrics` cannot do for OpenMetrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use e2e::bins::{self, Release};
use e2e::harness::{listening_port, wait_until};
use serde_json::Value;
use steward_core::MetricsBuilder;
use steward_core::server::{Readiness, Server};

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let resp = client.get(url).send().await.ok()?;
    resp.json().await.ok()
}

async fn scrape_with(release: Release) {
    let prometheus = bins::prometheus(release).unwrap();

    // The endpoint under test, with every shared family populated.
    let metrics = MetricsBuilder::new("test-operator", "0.0.0-test").build();
    metrics.observe_reconcile("widget", Duration::from_millis(12), None);
    metrics.observe_reconcile("widget", Duration::from_millis(40), Some("api"));
    metrics.set_leader(true);
    let readiness = Readiness::new();
    readiness.set_standby(true);
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), metrics, readiness)
        .await
        .unwrap();
    let target: SocketAddr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: steward\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    // Port 0: Prometheus takes a free port itself, and /proc says which.
    let mut child = tokio::process::Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let pid = child.id().unwrap();
    let port = wait_until("Prometheus listening", Duration::from_secs(60), || async {
        listening_port(pid)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; its log:\n{}", log()));
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let target_up = wait_until("a healthy scrape", Duration::from_secs(60), || async {
        let v = get_json(&http, &format!("{base}/targets")).await?;
        let t = &v["data"]["activeTargets"][0];
        assert_ne!(t["health"], "down", "scrape failed: {t}");
        (t["health"] == "up").then(|| t.clone())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: Prometheus never scraped the endpoint healthily; its log:\n{}",
            log()
        )
    });
    assert_eq!(target_up["lastError"], "", "{target_up}");

    // Metadata arrives per family, with its type, once a scrape has been ingested.
    let expected = [
        ("steward_reconcile", "counter"),
        ("steward_reconcile_errors", "counter"),
        ("steward_reconcile_duration_seconds", "histogram"),
        ("steward_leader", "gauge"),
        ("steward_build", "info"),
    ];
    let metadata = wait_until("metadata for every family", Duration::from_secs(30), || async {
        let v = get_json(
            &http,
            &format!("{base}/targets/metadata?match_target={{job=\"steward\"}}"),
        )
        .await?;
        let entries = v["data"].as_array().cloned().unwrap_or_default();
        expected
            .iter()
            .all(|(name, _)| entries.iter().any(|e| e["metric"] == *name))
            .then_some(entries)
    })
    .await
    .unwrap();
    for (name, type_) in expected {
        let entry = metadata.iter().find(|e| e["metric"] == name).unwrap();
        assert_eq!(entry["type"], type_, "{name}: {entry}");
        assert!(
            !entry["help"].as_str().unwrap_or_default().is_empty(),
            "{name} has help text"
        );
    }

    // And the samples are queryable under their conventional names.
    for (query, labels) in [
        (
            "steward_reconcile_total",
            r#"{controller="widget",result="success"}"#,
        ),
        (
            "steward_reconcile_errors_total",
            r#"{controller="widget",reason="api"}"#,
        ),
        (
            "steward_reconcile_duration_seconds_count",
            r#"{controller="widget"}"#,
        ),
        ("steward_leader", r#"{operator="test-operator"}"#),
        ("steward_build_info", r#"{operator="test-operator"}"#),
    ] {
        let url = format!("{base}/query?query={query}{labels}");
        let v = get_json(&http, &url).await.unwrap();
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        assert_eq!(result.len(), 1, "{query}{labels}: {v}");
    }
    child.kill().await.ok();
}

#[tokio::test]
async fn prometheus_current_scrapes_core_metrics() {
    scrape_with(Release::Current).await;
}

#[tokio::test]
async fn prometheus_old_scrapes_core_metrics() {
    scrape_with(Release::Old).await;
}
