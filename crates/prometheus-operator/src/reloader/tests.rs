//! Unit tests of the reloader's parts; `e2e/tests/prometheus_reloader.rs` runs it against a
//! real Prometheus.

use std::path::Path;
use std::time::Instant;

use clap::Parser;

use super::reload::{
    REJECTED_FIRST_BACKOFF, REJECTED_MAX_BACKOFF, UNREACHABLE_MAX_BACKOFF, ready_url, sibling_url,
};
use super::testing::kubelet_write;
use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "POD_NAME" => Some("prom-0".into()),
        "POD_NAMESPACE" => Some("monitoring".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

#[test]
fn expands_known_variables() {
    let e = expand_env("pod: $(POD_NAME)\nns: $(POD_NAMESPACE)/$(POD_NAME)$(EMPTY)", env);
    assert_eq!(e.text, "pod: prom-0\nns: monitoring/prom-0");
    assert!(e.unknown.is_empty());
}

#[test]
fn unknown_variables_stay_and_are_reported() {
    let e = expand_env("a: $(NOPE) b: $(POD_NAME) c: $(NOPE) d: $(ALSO_NOT)", env);
    assert_eq!(e.text, "a: $(NOPE) b: prom-0 c: $(NOPE) d: $(ALSO_NOT)");
    assert_eq!(
        e.unknown.into_iter().collect::<Vec<_>>(),
        vec!["ALSO_NOT".to_string(), "NOPE".to_string()]
    );
}

#[test]
fn other_dollars_pass_through() {
    for s in [
        "replacement: $1",
        "replacement: ${1}:$2",
        "regex: (.+)$",
        "regex: a$(b|c)",
        "x: $(1ABC)",
        "x: $(POD_NAME",
        "x: $()",
        "trailing $",
        "x: $$1 $$",
        "ünïcödé $ (POD_NAME) ✓",
    ] {
        let e = expand_env(s, env);
        assert_eq!(e.text, s);
        assert!(e.unknown.is_empty(), "{s}");
    }
}

#[test]
fn double_dollar_escapes_a_reference() {
    let e = expand_env("$$(POD_NAME) $(POD_NAME) $$$(POD_NAME) $$(NOPE)", env);
    assert_eq!(e.text, "$(POD_NAME) prom-0 $$(POD_NAME) $(NOPE)");
    assert!(e.unknown.is_empty());
}

#[test]
fn decodes_plain_and_gzipped_configs() {
    let text = "global:\n  external_labels:\n    pod: $(POD_NAME)\n";
    let plain = decode_config(Path::new("/c/prometheus.yaml"), text.as_bytes()).unwrap();
    assert_eq!(plain, text);
    let gz = gzip(text.as_bytes()).unwrap();
    assert_ne!(gz, text.as_bytes());
    let unzipped = decode_config(Path::new("/c/prometheus.yaml.gz"), &gz).unwrap();
    assert_eq!(unzipped, text);
    let err = decode_config(Path::new("/c/prometheus.yaml.gz"), text.as_bytes()).unwrap_err();
    assert!(format!("{err:#}").contains("cannot gunzip"), "{err:#}");
    let err = decode_config(Path::new("/c/p.yaml"), &[0xff, 0xfe]).unwrap_err();
    assert!(format!("{err:#}").contains("not UTF-8"), "{err:#}");
}

#[test]
fn snapshots_follow_kubelet_symlink_swaps() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    kubelet_write(&rules, 0, &[("a.yaml", "groups: []\n")]).unwrap();
    let first = DirSnapshot::scan(std::slice::from_ref(&rules));
    assert_eq!(first.files.len(), 1, "{first:?}");
    assert!(
        first.files.contains_key(&rules.join("a.yaml")),
        "dotfiles skipped: {first:?}"
    );
    assert!(first.problems.is_empty());

    // Same content again: nothing changed, even though the target folder did.
    kubelet_write(&rules, 1, &[("a.yaml", "groups: []\n")]).unwrap();
    let same = DirSnapshot::scan(std::slice::from_ref(&rules));
    assert_eq!(same.digest(), first.digest());
    assert!(same.changes_since(&first).is_empty());

    // New content behind the same name, with the mtime of the visible link unchanged.
    kubelet_write(&rules, 2, &[("a.yaml", "groups: [{name: x, rules: []}]\n")]).unwrap();
    let changed = DirSnapshot::scan(std::slice::from_ref(&rules));
    assert_ne!(changed.digest(), first.digest());
    assert_eq!(
        changed.changes_since(&first),
        vec![format!("changed {}", rules.join("a.yaml").display())]
    );

    // A file added next to it, one removed.
    std::fs::write(rules.join("b.yaml"), "groups: []\n").unwrap();
    std::fs::remove_file(rules.join("a.yaml")).unwrap();
    let later = DirSnapshot::scan(std::slice::from_ref(&rules));
    assert_eq!(
        later.changes_since(&changed),
        vec![
            format!("added {}", rules.join("b.yaml").display()),
            format!("removed {}", rules.join("a.yaml").display()),
        ]
    );
}

#[test]
fn snapshots_report_missing_dirs_and_skip_dangling_links() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink("nowhere", dir.join("dangling.yaml")).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub").join("r.yaml"), "x").unwrap();
    std::fs::write(dir.join(".hidden.yaml"), "x").unwrap();
    let snap = DirSnapshot::scan(&[dir.clone(), tmp.path().join("missing")]);
    assert_eq!(
        snap.files.keys().cloned().collect::<Vec<_>>(),
        vec![dir.join("sub").join("r.yaml")]
    );
    assert_eq!(snap.problems.len(), 1, "{snap:?}");
    assert!(snap.problems[0].contains("missing"), "{snap:?}");
}

#[test]
fn reload_state_retries_slowly_and_new_content_at_once() {
    let interval = Duration::from_millis(200);
    let t0 = Instant::now();
    let mut s = ReloadState::default();
    assert!(s.due(1, t0), "first content is reloaded at start");

    // Prometheus not up yet: retry at the watch interval, doubling, capped.
    let w = s.failed(1, FailureKind::Unreachable, t0, interval);
    assert_eq!(w, interval);
    assert!(!s.due(1, t0));
    assert!(s.due(1, t0 + interval));
    assert_eq!(s.failed(1, FailureKind::Unreachable, t0, interval), interval * 2);
    assert_eq!(
        FailureKind::Unreachable.backoff(40, interval),
        UNREACHABLE_MAX_BACKOFF
    );

    s.succeeded(1);
    assert!(
        !s.due(1, t0 + Duration::from_secs(3600)),
        "accepted content is not resent"
    );
    assert!(s.ever_applied());

    // A bad config: the same content waits long; fixed content goes at once.
    let w = s.failed(2, FailureKind::Rejected, t0, interval);
    assert_eq!(w, REJECTED_FIRST_BACKOFF);
    assert!(!s.due(2, t0 + Duration::from_secs(1)));
    assert!(s.due(2, t0 + REJECTED_FIRST_BACKOFF));
    assert!(s.due(3, t0), "changed content is tried immediately");
    assert_eq!(
        s.failed(2, FailureKind::Rejected, t0, interval),
        REJECTED_FIRST_BACKOFF * 2
    );
    assert_eq!(FailureKind::Rejected.backoff(10, interval), REJECTED_MAX_BACKOFF);
    // Going back to what Prometheus runs needs no reload.
    assert!(!s.due(1, t0));
}

#[test]
fn reload_metrics_are_read_from_the_exposition() {
    let text = "# HELP prometheus_config_last_reload_successful Whether the last configuration reload attempt was successful.\n\
                # TYPE prometheus_config_last_reload_successful gauge\n\
                prometheus_config_last_reload_successful 0\n\
                prometheus_config_last_reload_success_timestamp_seconds 1.7335e+09\n\
                prometheus_config_last_reload_success_timestamp_seconds_other 3\n";
    assert_eq!(
        parse_reload_metrics(text),
        Some(ReloadMetrics {
            last_success: 1.7335e9,
            ok: false
        })
    );
    assert_eq!(parse_reload_metrics("up 1\n"), None);
    assert_eq!(
        sibling_url(
            &Url::parse("http://127.0.0.1:9090/prom/-/reload").unwrap(),
            "/metrics"
        )
        .map(|u| u.to_string()),
        Some("http://127.0.0.1:9090/prom/metrics".to_string())
    );
}

#[test]
fn ready_url_sits_next_to_the_reload_url() {
    let u = |s: &str| Url::parse(s).unwrap();
    assert_eq!(
        ready_url(&u("http://127.0.0.1:9090/-/reload")),
        Some(u("http://127.0.0.1:9090/-/ready"))
    );
    assert_eq!(
        ready_url(&u("http://localhost:9090/prom/-/reload")),
        Some(u("http://localhost:9090/prom/-/ready"))
    );
    assert_eq!(ready_url(&u("http://localhost:9090/reload")), None);
}

#[test]
fn writes_atomically_without_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("prometheus.env.yaml");
    write_atomic(&out, b"one").unwrap();
    write_atomic(&out, b"two").unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), b"two");
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("prometheus.env.yaml")]);
}

#[test]
fn metrics_use_conventional_names() {
    let m = ReloaderMetrics::new();
    m.reload_succeeded();
    m.reload_failed(FailureKind::Rejected);
    m.config_writes.inc();
    let text = m.encode().unwrap();
    for want in [
        "steward_reloader_reloads_total 1",
        r#"steward_reloader_reload_failures_total{reason="rejected"} 1"#,
        r#"steward_reloader_reload_failures_total{reason="unreachable"} 0"#,
        "# TYPE steward_reloader_last_reload_success_timestamp_seconds gauge",
        "steward_reloader_last_reload_successful 0",
        "steward_reloader_config_apply_total 1",
        "steward_reloader_config_apply_errors_total 0",
        "steward_reloader_watched_files 0",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

#[test]
fn flags_and_defaults() {
    let cli = Cli::try_parse_from(["r", "--config-file", "/c/p.yaml.gz"]).unwrap();
    let a = cli.args;
    assert_eq!(a.reload_url.as_str(), "http://127.0.0.1:9090/-/reload");
    assert_eq!(a.watch_interval, Duration::from_secs(3));
    assert_eq!(a.listen_address.to_string(), "0.0.0.0:8080");
    assert_eq!(a.log_format, LogFormat::Text);
    assert!(!a.once);

    let cli = Cli::try_parse_from([
        "r",
        "--config-file=/c/p.yaml.gz",
        "--config-envsubst-file=/o/p.env.yaml",
        "--watched-dir=/r/0",
        "--watched-dir",
        "/r/1",
        "--reload-url=http://localhost:9091/-/reload",
        "--watch-interval=200ms",
        "--listen-address=127.0.0.1:0",
        "--log-format=json",
    ])
    .unwrap();
    assert_eq!(
        cli.args.watched_dirs,
        vec![PathBuf::from("/r/0"), PathBuf::from("/r/1")]
    );
    assert_eq!(cli.args.watch_interval, Duration::from_millis(200));
    assert_eq!(cli.args.listen_address.to_string(), "127.0.0.1:0");

    assert!(
        Cli::try_parse_from(["r"]).is_err(),
        "needs a config file or a watched dir"
    );
    assert!(Cli::try_parse_from(["r", "--watched-dir=/r"]).is_ok());
    assert!(Cli::try_parse_from(["r", "--config-envsubst-file=/o", "--watched-dir=/r"]).is_err());
    assert!(Cli::try_parse_from(["r", "--watched-dir=/r", "--watch-interval=0s"]).is_err());
    assert!(Cli::try_parse_from(["r", "--watched-dir=/r", "--listen-address=8080"]).is_err());
    assert!(Cli::try_parse_from(["r", "--watched-dir=/r", "--reload-url=not a url"]).is_err());
}

#[test]
fn a_missing_shard_is_shard_zero() {
    use super::render::lookup;
    let env = |n: &str| (n == "POD_NAME").then(|| "p-0".to_string());
    let e = expand_env("regex: $(SHARD) pod: $(POD_NAME) x: $(NOPE)", |n| lookup(n, env));
    assert_eq!(e.text, "regex: 0 pod: p-0 x: $(NOPE)");
    assert_eq!(e.unknown, ["NOPE".to_string()].into());
    let sharded = |n: &str| (n == "SHARD").then(|| "2".to_string());
    assert_eq!(expand_env("$(SHARD)", |n| lookup(n, sharded)).text, "2");
}
