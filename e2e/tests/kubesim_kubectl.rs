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
    // The example brings its own (restricted) namespace.
    k.ok(&["config", "set-context", "--current", "--namespace=etcd-example"]);
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

impl Kubectl<'_> {
    /// `kubectl get <what> -o json`, parsed.
    fn json(&self, what: &[&str]) -> serde_json::Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

/// Every typed `kubectl create` subcommand of kubectl 1.32, plus `run`, `expose` and
/// `create token`: kubectl sends these bodies as protobuf, and each object must arrive as the
/// command meant it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_typed_create_commands_send_protobuf_and_work() {
    let c = Cluster::start_temp().await.unwrap();
    let k = Kubectl {
        kubeconfig: c.kubeconfig(),
    };
    let dir = c.kubeconfig().parent().unwrap().to_path_buf();

    assert_eq!(
        k.ok(&["create", "namespace", "team-b"]).trim(),
        "namespace/team-b created"
    );
    let ns = k.json(&["namespace", "team-b"]);
    assert_eq!(ns["status"]["phase"], "Active");

    k.ok(&["create", "serviceaccount", "robot", "-n", "team-b"]);
    assert_eq!(
        k.json(&["sa", "robot", "-n", "team-b"])["metadata"]["namespace"],
        "team-b"
    );

    k.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team-b",
        "--from-literal=user=admin",
        "--from-literal=empty=",
    ]);
    let s = k.json(&["secret", "creds", "-n", "team-b"]);
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"]["user"], "YWRtaW4=");
    assert_eq!(s["data"]["empty"], "");
    assert!(s["metadata"].get("generation").is_none(), "{s}");

    k.ok(&[
        "create",
        "secret",
        "docker-registry",
        "reg",
        "--docker-server=r.example",
        "--docker-username=u",
        "--docker-password=p",
    ]);
    let s = k.json(&["secret", "reg"]);
    assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
    assert!(s["data"][".dockerconfigjson"].is_string(), "{s}");

    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let ck = rcgen::generate_simple_self_signed(vec!["x.example".to_string()]).unwrap();
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    k.ok(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        &format!("--cert={}", cert.display()),
        &format!("--key={}", key.display()),
    ]);
    let s = k.json(&["secret", "web-tls"]);
    assert_eq!(s["type"], "kubernetes.io/tls");
    assert!(
        s["data"]["tls.crt"].as_str().is_some_and(|v| !v.is_empty()),
        "{s}"
    );

    k.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=a=1",
        "--from-literal=empty=",
    ]);
    let cm = k.json(&["configmap", "settings"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "empty": ""}));

    k.ok(&[
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=secrets",
        "--resource-name=creds",
        "-n",
        "team-b",
    ]);
    let r = k.json(&["role", "reader", "-n", "team-b"]);
    assert_eq!(r["rules"][0]["verbs"], serde_json::json!(["get", "list"]));
    assert_eq!(r["rules"][0]["resourceNames"], serde_json::json!(["creds"]));
    k.ok(&[
        "create",
        "rolebinding",
        "reader",
        "--role=reader",
        "--serviceaccount=team-b:robot",
        "-n",
        "team-b",
    ]);
    let rb = k.json(&["rolebinding", "reader", "-n", "team-b"]);
    assert_eq!(rb["roleRef"]["kind"], "Role");
    assert_eq!(rb["subjects"][0]["name"], "robot");
    k.ok(&[
        "create",
        "clusterrole",
        "pod-reader",
        "--verb=get",
        "--resource=pods",
    ]);
    assert_eq!(
        k.json(&["clusterrole", "pod-reader"])["rules"][0]["resources"],
        serde_json::json!(["pods"])
    );
    k.ok(&[
        "create",
        "clusterrolebinding",
        "pod-reader",
        "--clusterrole=pod-reader",
        "--user=alice",
        "--group=devs",
    ]);
    let crb = k.json(&["clusterrolebinding", "pod-reader"]);
    assert_eq!(crb["subjects"].as_array().unwrap().len(), 2, "{crb}");

    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
        "--port=8080",
    ]);
    let d = k.json(&["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let c0 = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c0["image"], "nginx:1.27");
    assert_eq!(c0["ports"][0]["containerPort"], 8080);
    assert!(
        d["spec"]["template"]["metadata"]
            .get("creationTimestamp")
            .is_none(),
        "{d}"
    );

    k.ok(&[
        "create",
        "job",
        "once",
        "--image=busybox:1.36",
        "--",
        "echo",
        "hi",
    ]);
    let j = k.json(&["job", "once"]);
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    k.ok(&[
        "create",
        "cronjob",
        "nightly",
        "--image=busybox:1.36",
        "--schedule=0 3 * * *",
        "--",
        "date",
    ]);
    let cj = k.json(&["cronjob", "nightly"]);
    assert_eq!(cj["spec"]["schedule"], "0 3 * * *");
    k.ok(&["create", "job", "from-cron", "--from=cronjob/nightly"]);
    let j = k.json(&["job", "from-cron"]);
    assert_eq!(
        j["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["date"])
    );

    k.ok(&[
        "create",
        "poddisruptionbudget",
        "web",
        "--selector=app=web",
        "--min-available=1",
    ]);
    assert_eq!(k.json(&["pdb", "web"])["spec"]["minAvailable"], 1);
    k.ok(&[
        "create",
        "poddisruptionbudget",
        "web-pct",
        "--selector=app=web",
        "--max-unavailable=50%",
    ]);
    assert_eq!(k.json(&["pdb", "web-pct"])["spec"]["maxUnavailable"], "50%");
    k.ok(&[
        "create",
        "priorityclass",
        "high",
        "--value=1000",
        "--description=urgent",
    ]);
    let pc = k.json(&["priorityclass", "high"]);
    assert_eq!(
        (pc["value"].clone(), pc["description"].clone()),
        (serde_json::json!(1000), serde_json::json!("urgent"))
    );
    k.ok(&["create", "quota", "small", "--hard=pods=10,requests.cpu=2"]);
    assert_eq!(
        k.json(&["quota", "small"])["spec"]["hard"],
        serde_json::json!({"pods": "10", "requests.cpu": "2"})
    );
    k.ok(&["create", "ingress", "web", "--rule=web.example/app=web:8080"]);
    let ing = k.json(&["ingress", "web"]);
    let rule = &ing["spec"]["rules"][0];
    assert_eq!(rule["host"], "web.example");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["port"]["number"], 8080,
        "{ing}"
    );

    k.ok(&["create", "service", "clusterip", "cip", "--tcp=80:8080"]);
    let svc = k.json(&["service", "cip"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.")),
        "{svc}"
    );
    k.ok(&[
        "create",
        "service",
        "nodeport",
        "np",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
    assert_eq!(k.json(&["service", "np"])["spec"]["ports"][0]["nodePort"], 30080);
    k.ok(&["create", "service", "loadbalancer", "lb", "--tcp=443:8443"]);
    assert_eq!(k.json(&["service", "lb"])["spec"]["type"], "LoadBalancer");
    k.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=db.example",
    ]);
    assert_eq!(k.json(&["service", "ext"])["spec"]["externalName"], "db.example");
    k.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
        "--name=web-svc",
    ]);
    let svc = k.json(&["service", "web-svc"]);
    assert_eq!(svc["spec"]["selector"]["app"], "web");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);

    k.ok(&[
        "run",
        "shell",
        "--image=busybox:1.36",
        "--restart=Never",
        "--env=A=1",
        "--labels=tier=debug",
        "--",
        "sleep",
        "60",
    ]);
    let pod = k.json(&["pod", "shell"]);
    assert_eq!(pod["metadata"]["labels"]["tier"], "debug");
    let c0 = &pod["spec"]["containers"][0];
    assert_eq!(c0["args"], serde_json::json!(["sleep", "60"]));
    assert_eq!(c0["env"], serde_json::json!([{"name": "A", "value": "1"}]));
    assert_eq!(pod["spec"]["restartPolicy"], "Never");

    // TokenRequest: a token kubesim accepts for that ServiceAccount.
    let token = k.ok(&["create", "token", "robot", "-n", "team-b", "--duration=10m"]);
    let token = token.trim();
    assert!(!token.is_empty());
    let (ok, _, err) = k.run(&["--token", token, "get", "secret", "creds", "-n", "team-b"]);
    assert!(ok, "the token should read the secret its Role allows: {err}");
    let (ok, _, err) = k.run(&["--token", token, "get", "secrets", "-n", "default"]);
    assert!(!ok && err.contains("forbidden"), "{err}");

    // A typed create still gets the API server's validation.
    let err = k.fails(&["create", "namespace", "Bad_Name"]);
    assert!(
        err.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{err}"
    );
}
