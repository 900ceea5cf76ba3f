//! Pod Security admission in kubesim, driven by the real kubectl: refusals and warnings with
//! the upstream wording, per namespace label.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use e2e::bins;
use e2e::harness::wait_until;
use e2e::kubesim::Cluster;

fn kubectl(c: &Cluster, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(bins::kubectl().unwrap())
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const HARDENED_POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: hardened, namespace: strict}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: busybox:1.36
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
"#;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: strict}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx:1.27}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_labels_refuse_and_warn_like_upstream() {
    let c = Cluster::start_temp().await.unwrap();
    let run = |args: &[&str]| kubectl(&c, args, None);

    run(&["create", "namespace", "strict"]);
    let (ok, _, err) = run(&[
        "label",
        "namespace",
        "strict",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    assert!(ok, "{err}");

    // kubectl run's pod has no securityContext: refused with the upstream message.
    let (ok, _, err) = run(&["run", "bare", "-n", "strict", "--image=nginx", "--restart=Never"]);
    assert!(!ok);
    assert!(
        err.contains(
            "pods \"bare\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"bare\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"bare\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"bare\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"bare\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        ),
        "{err}"
    );
    let (ok, _, _) = run(&["get", "pod", "bare", "-n", "strict"]);
    assert!(!ok, "a refused pod is not stored");

    // A hardened pod passes, also through server-side apply.
    let (ok, _, err) = kubectl(&c, &["apply", "--server-side", "-f", "-"], Some(HARDENED_POD));
    assert!(ok, "{err}");

    // Workload templates are admitted with a warning naming the enforce level.
    let (ok, _, err) = kubectl(&c, &["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT));
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning: would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"nginx\" must set securityContext.allowPrivilegeEscalation=false)"),
        "{err}"
    );
    // ... and the pods its ReplicaSet tries to create are refused: the ReplicaSet says so in
    // its ReplicaFailure condition, and no pod exists.
    let failure = wait_until(
        "the ReplicaSet's ReplicaFailure condition",
        Duration::from_secs(30),
        || {
            let (_, out, _) = run(&[
                "get",
                "replicasets",
                "-n",
                "strict",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"ReplicaFailure\")].message}",
            ]);
            async move { (!out.is_empty()).then_some(out) }
        },
    )
    .await
    .unwrap();
    assert!(
        failure.contains("violates PodSecurity \"restricted:latest\""),
        "{failure:?}"
    );
    let (_, pods, _) = run(&["get", "pods", "-n", "strict", "-l", "app=web", "-o", "name"]);
    assert_eq!(pods.trim(), "", "pods of a violating template must be refused");

    // warn mode: admitted with a warning; baseline enforce refuses only baseline violations.
    run(&["create", "namespace", "lenient"]);
    run(&[
        "label",
        "namespace",
        "lenient",
        "pod-security.kubernetes.io/enforce=baseline",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/warn-version=v1.32",
    ]);
    let (ok, _, err) = run(&[
        "run",
        "plain",
        "-n",
        "lenient",
        "--image=nginx",
        "--restart=Never",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "Warning: would violate PodSecurity \"restricted:v1.32\": allowPrivilegeEscalation != false"
        ),
        "{err}"
    );
    let privileged = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"priv","namespace":"lenient"},"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"busybox:1.36","securityContext":{"privileged":true}}]}}"#;
    let (ok, _, err) = kubectl(&c, &["create", "-f", "-"], Some(privileged));
    assert!(!ok);
    assert!(
        err.contains("pods \"priv\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), privileged (container \"c\" must not set securityContext.privileged=true)"),
        "{err}"
    );

    // An unlabelled namespace is privileged.
    let (ok, _, err) = kubectl(
        &c,
        &["create", "-f", "-"],
        Some(&privileged.replace("lenient", "default")),
    );
    assert!(ok, "{err}");
}
