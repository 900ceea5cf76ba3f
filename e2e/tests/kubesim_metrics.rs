//! kubesim's `/metrics`: `apiserver_request_total` counts requests by verb, resource and code
//! (benchmarks use it to count an operator's API calls).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::kubesim::Cluster;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

fn counter(text: &str, verb: &str, resource: &str, code: u16) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            l.contains(&format!("verb=\"{verb}\""))
                && l.contains(&format!("resource=\"{resource}\""))
                && l.contains(&format!("code=\"{code}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counter_by_verb_resource_and_code() {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(cms.create(&PostParams::default(), &cm).await.is_err());
    for _ in 0..3 {
        cms.list(&ListParams::default()).await.unwrap();
    }
    cms.get("a").await.unwrap();
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    assert!(text.contains("# TYPE apiserver_request_total counter"), "{text}");
    assert_eq!(counter(&text, "POST", "configmaps", 201), 1, "{text}");
    assert_eq!(counter(&text, "POST", "configmaps", 409), 1, "{text}");
    assert_eq!(counter(&text, "LIST", "configmaps", 200), 3, "{text}");
    assert_eq!(counter(&text, "GET", "configmaps", 200), 1, "{text}");
    // A real promtool accepts the exposition.
    use std::io::Write;
    let mut check = std::process::Command::new(e2e::bins::promtool().unwrap())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
