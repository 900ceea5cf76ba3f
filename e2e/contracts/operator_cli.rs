// The command-line contract every operator binary keeps. Included by each operator crate's
// `tests/cli.rs`, so both binaries are held to the same test.

use std::process::Command;

const NAME: &str = env!("CARGO_PKG_NAME");

/// Cargo builds the package's binary next to the test executable's `deps/` folder.
fn bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|deps| deps.parent()).unwrap().join(NAME)
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(bin()).args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--metrics-addr",
        "--namespace",
        "--leader-elect",
        "--lease-namespace",
        "--lease-duration-seconds",
        "--log-format",
        "--log-level",
        "--concurrency",
        "--shutdown-timeout-seconds",
    ] {
        let line = help
            .lines()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        let doc = help.lines().nth(line + 1).unwrap_or_default().trim();
        assert!(!doc.is_empty() && !doc.starts_with("--"), "{flag} has no description:\n{help}");
    }
    assert!(help.contains("[default: 0.0.0.0:8080]"), "{help}");
}

#[test]
fn version_flag() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), format!("{NAME} {}", env!("CARGO_PKG_VERSION")));
}

fn run_without_cluster(kubeconfig: &str) -> (bool, String) {
    let out = Command::new(bin())
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

fn error_lines(stderr: &str) -> Vec<&str> {
    let prefix = format!("{NAME}: error:");
    stderr.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn no_kubeconfig_fails_with_one_line() {
    let (ok, stderr) = run_without_cluster("/nonexistent/kubeconfig");
    assert!(!ok);
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("no Kubernetes cluster configured"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unreachable_server_fails_fast_with_one_line() {
    // A server address nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\nusers: [{{name: u, user: {{token: t}}}}]\n"
        ),
    )
    .unwrap();
    let (ok, stderr) = run_without_cluster(path.to_str().unwrap());
    assert!(!ok);
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("cannot reach the Kubernetes API server at https://127.0.0.1:"), "{stderr}");
}
