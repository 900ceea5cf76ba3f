//! The real kubectl against kubesim: server-side apply of our CRDs, custom resources,
//! printer columns, short names, the scale subresource, describe, delete and logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use e2e::bins;
use e2e::kubesim::Cluster;

struct Kubectl<'a> {
    kubeconfig: &'a Path,
}

impl Kubectl<'_> {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(bins::kubectl().unwrap())
            .args(args)
            .env("KUBECONFIG", self.kubeconfig)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "kubectl {args:?} failed:\n{stderr}");
        stdout
    }

    fn fails(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(!ok, "kubectl {args:?} should fail:\n{stdout}");
        stderr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_custom_resources() {
    let c = Cluster::start_temp().await.unwrap();
    let k = Kubectl {
        kubeconfig: c.kubeconfig(),
    };
    let root = bins::repo_root();
    let crds = root.join("deploy/crds");
    let out = k.ok(&["apply", "--server-side", "-k", crds.to_str().unwrap()]);
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/etcdclusters.etcd.steward.dev serverside-applied"
        ),
        "{out}"
    );
    // Re-applying is a no-op that still succeeds.
    k.ok(&["apply", "--server-side", "-k", crds.to_str().unwrap()]);

    let example = root.join("deploy/examples/etcd-cluster.yaml");
    k.ok(&["apply", "--server-side", "-f", example.to_str().unwrap()]);
    let table = k.ok(&["get", "etcdclusters"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SIZE", "READY", "VERSION", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap().starts_with("example   3"),
        "{table}"
    );
    // Short name and category.
    assert!(k.ok(&["get", "etcd"]).contains("example"));
    assert!(
        k.ok(&["get", "steward"])
            .contains("etcdcluster.etcd.steward.dev/example")
    );

    // Scale subresource.
    let out = k.ok(&["scale", "etcdcluster", "example", "--replicas=5"]);
    assert!(
        out.contains("etcdcluster.etcd.steward.dev/example scaled"),
        "{out}"
    );
    assert_eq!(
        k.ok(&["get", "etcd", "example", "-o", "jsonpath={.spec.size}"]),
        "5"
    );
    let described = k.ok(&["describe", "etcd", "example"]);
    assert!(
        described.contains("Size:") && described.contains("Kind:         EtcdCluster"),
        "{described}"
    );

    // Strict field validation (kubectl's default) rejects unknown fields.
    let bad = c.kubeconfig().with_file_name("bad.yaml");
    std::fs::write(&bad, "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: bad\nspec:\n  size: 3\n  version: 3.5.16\n  sise: 4\n").unwrap();
    let err = k.fails(&["create", "-f", bad.to_str().unwrap()]);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.sise\""),
        "{err}"
    );
    // --validate=warn: created, pruned, and kubectl shows the server's warning.
    let (ok, _, stderr) = k.run(&["create", "--validate=warn", "-f", bad.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("Warning: unknown field \"spec.sise\""),
        "{stderr}"
    );
    k.ok(&["delete", "etcd", "bad"]);
    // Schema validation at admission.
    std::fs::write(&bad, "apiVersion: etcd.steward.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: bad\nspec:\n  size: 12\n  version: 3.5.16\n").unwrap();
    let err = k.fails(&["create", "-f", bad.to_str().unwrap()]);
    assert!(
        err.contains("spec.size: Invalid value: 12: spec.size in body should be less than or equal to 9"),
        "{err}"
    );

    let out = k.ok(&["delete", "etcdcluster", "example"]);
    assert!(
        out.contains("etcdcluster.etcd.steward.dev \"example\" deleted"),
        "{out}"
    );
    let err = k.fails(&["get", "etcd", "example"]);
    assert!(
        err.contains("etcdclusters.etcd.steward.dev \"example\" not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_explains_instant_mode() {
    let c = Cluster::start_temp().await.unwrap();
    let k = Kubectl {
        kubeconfig: c.kubeconfig(),
    };
    let pod = c.kubeconfig().with_file_name("pod.yaml");
    std::fs::write(&pod, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: app\n    image: busybox:1.36\n").unwrap();
    k.ok(&["apply", "--server-side", "-f", pod.to_str().unwrap()]);
    k.ok(&["wait", "--for=condition=Ready", "pod/p", "--timeout=20s"]);
    let pods = k.ok(&["get", "pods"]);
    assert!(pods.contains("p      1/1     Running"), "{pods}");
    let err = k.fails(&["logs", "p"]);
    assert!(err.contains("instant mode"), "{err}");
}
