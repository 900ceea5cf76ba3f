//! `prometheus-operator config-reloader` against a real Prometheus process: a gzipped config
//! with `$(POD_NAME)` is rendered for Prometheus, and config changes and rule files swapped the
//! way kubelet updates a ConfigMap volume reach the same Prometheus process through
//! `/-/reload`, or by SIGHUP (how the operator runs it: Prometheus then has no lifecycle API,
//! so `/-/quit` is refused). A broken config is counted and logged while Prometheus keeps its
//! last good config; fixing it is picked up. SIGTERM stops the reloader with exit code 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::bins::{self, Release};
use e2e::harness::wait_for;
use e2e::local_etcd::free_port;
use prometheus_operator::reloader::testing::kubelet_write;
use serde_json::Value;

const POD_NAME: &str = "reloader-test-0";
const TIMEOUT: Duration = Duration::from_secs(20);

/// A child process killed when the test ends, however it ends.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gzip(text: &str) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip on PATH");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn config(generation: &str, rules: &Path, reloader: &str, extra_job: bool) -> String {
    let mut c = format!(
        "global:\n  scrape_interval: 5s\n  external_labels:\n    pod: $(POD_NAME)\n    generation: {generation}\n\
         rule_files:\n  - {}/*.yaml\n\
         scrape_configs:\n  - job_name: reloader\n    static_configs:\n      - targets: ['{reloader}']\n",
        rules.display()
    );
    if extra_job {
        c.push_str("  - job_name: added-by-reload\n    static_configs:\n      - targets: ['127.0.0.1:1']\n");
    }
    c
}

fn rules(record: &str) -> Vec<u8> {
    format!("groups:\n  - name: steward-test\n    rules:\n      - record: {record}\n        expr: sum(up)\n")
        .into_bytes()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

async fn config_yaml(http: &reqwest::Client, base: &str) -> String {
    get_json(http, &format!("{base}/api/v1/status/config"))
        .await
        .and_then(|v| v["data"]["yaml"].as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn rule_names(http: &reqwest::Client, base: &str) -> Vec<String> {
    let Some(v) = get_json(http, &format!("{base}/api/v1/rules")).await else {
        return Vec::new();
    };
    v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect()
}

async fn runtime_info(http: &reqwest::Client, base: &str) -> Value {
    get_json(http, &format!("{base}/api/v1/status/runtimeinfo"))
        .await
        .map(|v| v["data"].clone())
        .unwrap_or_default()
}

/// The value of one sample on the reloader's /metrics, e.g. `steward_reloader_reloads_total`.
async fn metric(http: &reqwest::Client, url: &str, series: &str) -> Option<f64> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// How the reloader makes Prometheus reload.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    Http,
    Signal,
}

async fn reloader_against(release: Release, method: Method) {
    let prometheus = bins::prometheus(release).unwrap();
    let operator = bins::own_binary("prometheus-operator").unwrap();
    // A binary from before the reloader existed would fail confusingly later.
    let help = Command::new(&operator)
        .args(["config-reloader", "--help"])
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "{} has no config-reloader subcommand: rebuild it with `cargo build -p prometheus-operator`",
        operator.display()
    );

    let tmp = tempfile::tempdir().unwrap();
    let config_dir = tmp.path().join("config");
    let out_dir = tmp.path().join("config_out");
    let rules_dir = tmp.path().join("rules");
    for d in [&config_dir, &out_dir, &rules_dir] {
        std::fs::create_dir(d).unwrap();
    }
    let config_file = config_dir.join("prometheus.yaml.gz");
    let rendered = out_dir.join("prometheus.env.yaml");
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let reloader_addr = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{prom_addr}");
    let reloader_metrics = format!("http://{reloader_addr}/metrics");
    // Signals go to a process found by name: a name of its own (what /proc/PID/comm shows,
    // at most 15 characters) keeps other tests' Prometheus processes out of reach.
    let process_name = format!("prom{}", &prom_addr.rsplit(':').next().unwrap_or_default());
    let prometheus = if method == Method::Signal {
        let link = tmp.path().join(&process_name);
        std::os::unix::fs::symlink(&prometheus, &link).unwrap();
        link
    } else {
        prometheus
    };

    kubelet_write(
        &config_dir,
        0,
        &[(
            "prometheus.yaml.gz",
            gzip(&config("one", &rules_dir, &reloader_addr, false)),
        )],
    )
    .unwrap();
    kubelet_write(&rules_dir, 0, &[("rules.yaml", rules("steward:test_one:sum"))]).unwrap();

    let reloader_cmd = |once: bool| {
        let mut cmd = Command::new(&operator);
        cmd.arg("config-reloader")
            .arg(format!("--config-file={}", config_file.display()))
            .arg(format!("--config-envsubst-file={}", rendered.display()))
            .arg(format!("--watched-dir={}", rules_dir.display()))
            .arg(format!("--reload-url={base}/-/reload"))
            .arg("--watch-interval=200ms")
            .arg(format!("--listen-address={reloader_addr}"))
            .arg("--log-level=debug")
            .env("POD_NAME", POD_NAME);
        if method == Method::Signal {
            cmd.arg("--reload-method=signal")
                .arg(format!("--process-name={process_name}"));
        }
        if once {
            cmd.arg("--once");
        }
        cmd
    };

    // As an init container: render once so Prometheus finds its config at start.
    let init = reloader_cmd(true).output().unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let text = std::fs::read_to_string(&rendered).unwrap();
    assert!(text.contains(&format!("pod: {POD_NAME}")), "{text}");

    let mut prom_cmd = Command::new(&prometheus);
    prom_cmd
        .arg(format!("--config.file={}", rendered.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            tmp.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"));
    if method == Method::Http {
        prom_cmd.arg("--web.enable-lifecycle");
    }
    let mut prom = Proc::spawn(prom_cmd, tmp.path().join("prometheus.log"));
    let mut reloader = Proc::spawn(reloader_cmd(false), tmp.path().join("reloader.log"));
    let http = reqwest::Client::new();
    let started = Instant::now();

    macro_rules! wait {
        ($what:expr, $check:expr) => {
            if let Err(e) = wait_for($what, TIMEOUT, || $check).await {
                panic!(
                    "{e}\n--- reloader log:\n{}\n--- prometheus log:\n{}",
                    reloader.log(),
                    prom.log()
                );
            }
        };
    }

    // Start: the expanded label and the first rule, and one reload once Prometheus answered.
    wait!("the initial config and rule", async {
        config_yaml(&http, &base)
            .await
            .contains(&format!("pod: {POD_NAME}"))
            && rule_names(&http, &base).await == ["steward:test_one:sum"]
    });
    wait!("the reloader's first reload", async {
        metric(&http, &reloader_metrics, "steward_reloader_reloads_total")
            .await
            .is_some_and(|v| v >= 1.0)
    });
    let yaml = config_yaml(&http, &base).await;
    assert!(!yaml.contains("$(POD_NAME)"), "{yaml}");
    let start_time = runtime_info(&http, &base).await["startTime"].clone();
    assert!(start_time.is_string(), "{start_time}");
    let reloads_before = metric(&http, &reloader_metrics, "steward_reloader_reloads_total")
        .await
        .unwrap();

    // Change the config (a label and a new job) and swap the rule file like kubelet does.
    kubelet_write(
        &config_dir,
        1,
        &[(
            "prometheus.yaml.gz",
            gzip(&config("two", &rules_dir, &reloader_addr, true)),
        )],
    )
    .unwrap();
    kubelet_write(&rules_dir, 1, &[("rules.yaml", rules("steward:test_two:sum"))]).unwrap();
    wait!("the changed config and rule", async {
        let yaml = config_yaml(&http, &base).await;
        yaml.contains("generation: two")
            && yaml.contains("job_name: added-by-reload")
            && rule_names(&http, &base).await == ["steward:test_two:sum"]
    });
    let info = runtime_info(&http, &base).await;
    assert_eq!(info["startTime"], start_time, "Prometheus restarted: {info}");
    assert_eq!(info["reloadConfigSuccess"], true, "{info}");
    assert!(prom.still_running(), "the same Prometheus process keeps running");
    // With a signal, Prometheus may show the new config a moment before the reloader, which
    // polls Prometheus' reload metrics, has seen the outcome and counted it.
    wait!("the reload counted", async {
        metric(&http, &reloader_metrics, "steward_reloader_reloads_total")
            .await
            .is_some_and(|v| v > reloads_before)
    });

    // A broken config: counted as rejected, and Prometheus keeps serving the last good one.
    let rejected = r#"steward_reloader_reload_failures_total{reason="rejected"}"#;
    assert_eq!(metric(&http, &reloader_metrics, rejected).await, Some(0.0));
    let broken = config("three", &rules_dir, &reloader_addr, true).replace("5s", "banana");
    kubelet_write(&config_dir, 2, &[("prometheus.yaml.gz", gzip(&broken))]).unwrap();
    wait!("the rejected reload counted", async {
        metric(&http, &reloader_metrics, rejected)
            .await
            .is_some_and(|v| v >= 1.0)
    });
    let yaml = config_yaml(&http, &base).await;
    assert!(
        yaml.contains("generation: two") && !yaml.contains("banana"),
        "{yaml}"
    );
    assert_eq!(runtime_info(&http, &base).await["reloadConfigSuccess"], false);
    assert_eq!(
        metric(
            &http,
            &reloader_metrics,
            "steward_reloader_last_reload_successful"
        )
        .await,
        Some(0.0)
    );
    let log = reloader.log();
    assert!(
        log.contains("Prometheus rejected the reload"),
        "the error is logged:\n{log}"
    );
    if method == Method::Http {
        assert!(log.contains("banana"), "Prometheus' answer is logged:\n{log}");
    }

    // Fixed: picked up by the same process.
    kubelet_write(
        &config_dir,
        3,
        &[(
            "prometheus.yaml.gz",
            gzip(&config("four", &rules_dir, &reloader_addr, true)),
        )],
    )
    .unwrap();
    wait!("the fixed config", async {
        config_yaml(&http, &base).await.contains("generation: four")
            && runtime_info(&http, &base).await["reloadConfigSuccess"] == true
    });
    assert_eq!(runtime_info(&http, &base).await["startTime"], start_time);
    assert!(prom.still_running());
    wait!("the reloader reporting success again", async {
        metric(
            &http,
            &reloader_metrics,
            "steward_reloader_last_reload_successful",
        )
        .await
            == Some(1.0)
    });
    let ts = metric(
        &http,
        &reloader_metrics,
        "steward_reloader_last_reload_success_timestamp_seconds",
    )
    .await
    .unwrap();
    assert!(ts > 1.0e9, "{ts}");

    if method == Method::Signal {
        // Without the lifecycle API nobody can stop Prometheus over HTTP.
        let quit = http.post(format!("{base}/-/quit")).send().await.unwrap();
        assert!(!quit.status().is_success(), "/-/quit answered {}", quit.status());
        assert!(prom.still_running());
    }

    // SIGTERM: the reloader exits 0 promptly.
    let pid = reloader.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = reloader.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the reloader ignored SIGTERM:\n{}",
            reloader.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}\n{}", reloader.log());
    eprintln!("{release:?} {method:?}: took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_reloads_prometheus_current_over_http() {
    reloader_against(Release::Current, Method::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_reloads_prometheus_current_by_signal() {
    reloader_against(Release::Current, Method::Signal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_reloads_prometheus_old_by_signal() {
    reloader_against(Release::Old, Method::Signal).await;
}
