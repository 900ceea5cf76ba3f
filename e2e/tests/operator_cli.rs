//! The command-line contract every operator binary keeps: every flag documented, the version
//! printed, and a clear one-line error (not a hang, not a panic) when no cluster is reachable.
//! Each test runs against both operators.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use e2e::bins;

const OPERATORS: [&str; 2] = ["etcd-operator", "prometheus-operator"];

fn bin(name: &str) -> std::path::PathBuf {
    bins::own_binary(name).unwrap_or_else(|e| panic!("{e}: build it with `cargo build -p {name}`"))
}

#[test]
fn help_documents_every_flag() {
    for name in OPERATORS {
        let out = Command::new(bin(name)).args(["run", "--help"]).output().unwrap();
        assert!(out.status.success(), "{name}");
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in [
            "--metrics-addr",
            "--namespace",
            "--leader-elect",
            "--lease-namespace",
            "--lease-duration-seconds",
            "--lease-renew-deadline-seconds",
            "--lease-retry-period-seconds",
            "--log-format",
            "--log-level",
            "--concurrency",
            "--shutdown-timeout-seconds",
        ] {
            let line = help
                .lines()
                .position(|l| l.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("{name}: {flag} missing:\n{help}"));
            let doc = help.lines().nth(line + 1).unwrap_or_default().trim();
            assert!(
                !doc.is_empty() && !doc.starts_with("--"),
                "{name}: {flag} has no description:\n{help}"
            );
        }
        assert!(help.contains("[default: 0.0.0.0:8080]"), "{name}: {help}");
    }
}

#[test]
fn version_flag() {
    for name in OPERATORS {
        let out = Command::new(bin(name)).arg("--version").output().unwrap();
        assert!(out.status.success(), "{name}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

fn run_without_cluster(name: &str, kubeconfig: &str) -> (bool, String) {
    let out = Command::new(bin(name))
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

fn error_lines<'a>(name: &str, stderr: &'a str) -> Vec<&'a str> {
    let prefix = format!("{name}: error:");
    stderr.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn no_kubeconfig_fails_with_one_line() {
    for name in OPERATORS {
        let (ok, stderr) = run_without_cluster(name, "/nonexistent/kubeconfig");
        assert!(!ok, "{name}");
        let errors = error_lines(name, &stderr);
        assert_eq!(errors.len(), 1, "{name}: {stderr}");
        assert!(errors[0].contains("no Kubernetes cluster configured"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn unreachable_server_fails_fast_with_one_line() {
    // A server address nothing listens on.
    let port = e2e::local_etcd::free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\nusers: [{{name: u, user: {{token: t}}}}]\n"
        ),
    )
    .unwrap();
    for name in OPERATORS {
        let (ok, stderr) = run_without_cluster(name, path.to_str().unwrap());
        assert!(!ok, "{name}");
        let errors = error_lines(name, &stderr);
        assert_eq!(errors.len(), 1, "{name}: {stderr}");
        assert!(
            errors[0].contains("cannot reach the Kubernetes API server at https://127.0.0.1:"),
            "{stderr}"
        );
    }
}
