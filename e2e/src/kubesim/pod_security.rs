//! Pod Security admission, as built into kube-apiserver since 1.25 (and on in kind).
//!
//! A namespace chooses levels with the labels `pod-security.kubernetes.io/<mode>` (`enforce`,
//! `warn`, `audit`; values `privileged`, `baseline`, `restricted`) and
//! `pod-security.kubernetes.io/<mode>-version` (`latest` or `v1.N`). An unlabelled namespace is
//! privileged. Pods that violate the enforce level are refused (403 with the upstream
//! message); pods that violate the warn level are admitted with a `Warning` header; workload
//! templates (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs) are never
//! refused but get warnings for the enforce and warn levels. Audit annotations have no audit
//! log to go to here and are not recorded.
//!
//! The checks follow the Pod Security Standards at their latest version; a `-version` label
//! only changes the policy name in messages (the older versions' differences are not
//! modelled: see docs/kubesim.md).

use std::collections::BTreeSet;

use serde_json::Value;

/// The three Pod Security Standards levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Unrestricted.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Hardened, current best practice.
    Restricted,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A level at a version, as a namespace label pair selects it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The level.
    pub level: Level,
    /// `latest` or `v1.N`.
    pub version: String,
}

impl Policy {
    /// `restricted:latest`, as upstream names a policy in messages.
    pub fn label(&self) -> String {
        format!("{}:{}", self.level.name(), self.version)
    }
}

/// The policy of `mode` (`enforce`, `warn`, `audit`) from a namespace's labels. An invalid
/// level is evaluated as restricted and an invalid version as latest, as upstream does.
pub fn policy(namespace: &Value, mode: &str) -> Policy {
    let labels = namespace.pointer("/metadata/labels");
    let label = |key: String| {
        labels
            .and_then(|l| l.get(&key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let level = match label(format!("pod-security.kubernetes.io/{mode}")).as_deref() {
        None | Some("privileged") => Level::Privileged,
        Some("baseline") => Level::Baseline,
        Some(_) => Level::Restricted,
    };
    let version = label(format!("pod-security.kubernetes.io/{mode}-version"))
        .filter(|v| valid_version(v))
        .unwrap_or_else(|| "latest".into());
    Policy { level, version }
}

fn valid_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.")
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}

/// The pod template of a workload object, with the path kinds use.
pub fn template_of<'a>(plural: &str, obj: &'a Value) -> Option<&'a Value> {
    match plural {
        "deployments" | "replicasets" | "statefulsets" | "daemonsets" | "jobs" | "replicationcontrollers" => {
            obj.pointer("/spec/template")
        }
        "cronjobs" => obj.pointer("/spec/jobTemplate/spec/template"),
        "podtemplates" => obj.get("template"),
        _ => None,
    }
}

/// `"restricted:latest": allowPrivilegeEscalation != false (...), ...` (what follows
/// `violates PodSecurity ` in a refusal and `would violate PodSecurity ` in a warning), or
/// `None` when the pod (metadata + spec) meets `policy`.
pub fn violations(policy: &Policy, pod: &Value) -> Option<String> {
    if policy.level == Level::Privileged {
        return None;
    }
    let found = evaluate(policy.level, pod);
    if found.is_empty() {
        return None;
    }
    let parts: Vec<String> = found
        .iter()
        .map(|(reason, detail)| {
            if detail.is_empty() {
                reason.clone()
            } else {
                format!("{reason} ({detail})")
            }
        })
        .collect();
    Some(format!("\"{}\": {}", policy.label(), parts.join(", ")))
}

/// A container with its securityContext, in upstream's visiting order (init containers,
/// containers, ephemeral containers).
struct Container<'a> {
    name: &'a str,
    sc: &'a Value,
    spec: &'a Value,
}

fn containers(spec: &Value) -> Vec<Container<'_>> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| spec.get(*list).and_then(Value::as_array).into_iter().flatten())
        .map(|c| Container {
            name: c["name"].as_str().unwrap_or_default(),
            sc: c.get("securityContext").unwrap_or(&Value::Null),
            spec: c,
        })
        .collect()
}

fn quote_join<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 { one } else { many }
}

fn containers_phrase(names: &[&str]) -> String {
    format!(
        "{} {}",
        plural("container", "containers", names.len()),
        quote_join(names)
    )
}

/// Every failed check of `level` as (reason, detail), ordered by upstream check ID.
fn evaluate(level: Level, pod: &Value) -> Vec<(String, String)> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let psc = spec.get("securityContext").unwrap_or(&Value::Null);
    let cs = containers(spec);
    let restricted = level == Level::Restricted;
    // (check id, reason, detail), sorted by id at the end as upstream orders its checks.
    let mut out: Vec<(&str, String, String)> = Vec::new();
    let mut fail = |id: &'static str, reason: &str, detail: String| out.push((id, reason.into(), detail));

    // --- baseline ---
    let apparmor_bad: Vec<String> = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("container.apparmor.security.beta.kubernetes.io/"))
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or_default();
            (v != "runtime/default" && !v.starts_with("localhost/")).then(|| format!("{k}={v:?}"))
        })
        .chain(
            std::iter::once(("pod", psc))
                .chain(cs.iter().map(|c| (c.name, c.sc)))
                .filter(|(_, sc)| {
                    sc.pointer("/appArmorProfile/type").and_then(Value::as_str) == Some("Unconfined")
                })
                .map(|(who, _)| {
                    let who = if who == "pod" {
                        "pod".to_string()
                    } else {
                        format!("container {who:?}")
                    };
                    format!("{who} must not set securityContext.appArmorProfile.type to \"Unconfined\"")
                }),
        )
        .collect();
    if !apparmor_bad.is_empty() {
        fail(
            "appArmor",
            plural(
                "forbidden AppArmor profile",
                "forbidden AppArmor profiles",
                apparmor_bad.len(),
            ),
            apparmor_bad.join(", "),
        );
    }

    const BASELINE_CAPS: &[&str] = &[
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    let added = |c: &Container<'_>| -> Vec<String> {
        c.sc.pointer("/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    if !restricted {
        let mut bad_containers = Vec::new();
        let mut bad_caps = BTreeSet::new();
        for c in &cs {
            let bad: Vec<String> = added(c)
                .into_iter()
                .filter(|cap| !BASELINE_CAPS.contains(&cap.as_str()))
                .collect();
            if !bad.is_empty() {
                bad_containers.push(c.name);
                bad_caps.extend(bad);
            }
        }
        if !bad_containers.is_empty() {
            let caps: Vec<String> = bad_caps.into_iter().collect();
            fail(
                "capabilities_baseline",
                "non-default capabilities",
                format!(
                    "{} must not include {} in securityContext.capabilities.add",
                    containers_phrase(&bad_containers),
                    quote_join(&caps)
                ),
            );
        }
    }

    let host_ns: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .iter()
    .filter(|(f, _)| spec.get(*f) == Some(&Value::Bool(true)))
    .map(|(_, d)| *d)
    .collect();
    if !host_ns.is_empty() {
        fail("hostNamespaces", "host namespaces", host_ns.join(", "));
    }

    let volumes: Vec<&Value> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let vol_name = |v: &Value| v["name"].as_str().unwrap_or_default().to_string();
    let host_paths: Vec<String> = volumes
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| vol_name(v))
        .collect();
    if !host_paths.is_empty() {
        fail(
            "hostPathVolumes",
            "hostPath volumes",
            format!(
                "{} {}",
                plural("volume", "volumes", host_paths.len()),
                quote_join(&host_paths)
            ),
        );
    }

    let mut port_containers = Vec::new();
    let mut host_ports = Vec::new();
    for c in &cs {
        let ports: Vec<String> = c.spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["hostPort"].as_i64())
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !ports.is_empty() {
            port_containers.push(c.name);
            host_ports.extend(ports);
        }
    }
    if !port_containers.is_empty() {
        fail(
            "hostPorts",
            "hostPort",
            format!(
                "{} {} {} {}",
                containers_phrase(&port_containers),
                plural("uses", "use", port_containers.len()),
                plural("hostPort", "hostPorts", host_ports.len()),
                host_ports.join(", ")
            ),
        );
    }

    let privileged: Vec<&str> = cs
        .iter()
        .filter(|c| c.sc["privileged"] == Value::Bool(true))
        .map(|c| c.name)
        .collect();
    if !privileged.is_empty() {
        fail(
            "privileged",
            "privileged",
            format!(
                "{} must not set securityContext.privileged=true",
                containers_phrase(&privileged)
            ),
        );
    }

    let mut proc_containers = Vec::new();
    let mut proc_values = BTreeSet::new();
    for c in &cs {
        if let Some(m) = c.sc["procMount"].as_str().filter(|m| *m != "Default") {
            proc_containers.push(c.name);
            proc_values.insert(m.to_string());
        }
    }
    if !proc_containers.is_empty() {
        let values: Vec<String> = proc_values.into_iter().collect();
        fail(
            "procMount",
            "procMount",
            format!(
                "{} must not set securityContext.procMount to {}",
                containers_phrase(&proc_containers),
                quote_join(&values)
            ),
        );
    }

    let selinux_bad: Vec<String> = std::iter::once(("pod".to_string(), psc))
        .chain(cs.iter().map(|c| (format!("container {:?}", c.name), c.sc)))
        .filter_map(|(who, sc)| {
            let o = sc.get("seLinuxOptions")?;
            let mut bad = Vec::new();
            let ty = o["type"].as_str().unwrap_or_default();
            if ![
                "",
                "container_t",
                "container_init_t",
                "container_kvm_t",
                "container_engine_t",
            ]
            .contains(&ty)
            {
                bad.push(format!("type {ty:?}"));
            }
            for f in ["user", "role"] {
                if let Some(v) = o[f].as_str().filter(|v| !v.is_empty()) {
                    bad.push(format!("{f} {v:?}"));
                }
            }
            (!bad.is_empty()).then(|| {
                format!(
                    "{who} set forbidden securityContext.seLinuxOptions: {}",
                    bad.join(", ")
                )
            })
        })
        .collect();
    if !selinux_bad.is_empty() {
        fail("seLinuxOptions", "seLinuxOptions", selinux_bad.join("; "));
    }

    let seccomp = |sc: &Value| {
        sc.pointer("/seccompProfile/type")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let pod_seccomp = seccomp(psc);
    if !restricted {
        let mut details = Vec::new();
        if pod_seccomp.as_deref() == Some("Unconfined") {
            details
                .push("pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_string());
        }
        let bad: Vec<&str> = cs
            .iter()
            .filter(|c| seccomp(c.sc).as_deref() == Some("Unconfined"))
            .map(|c| c.name)
            .collect();
        if !bad.is_empty() {
            details.push(format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                containers_phrase(&bad)
            ));
        }
        if !details.is_empty() {
            fail("seccompProfile_baseline", "seccompProfile", details.join("; "));
        }
    }

    const SAFE_SYSCTLS: &[&str] = &[
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    let sysctls: Vec<String> = psc["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .map(str::to_string)
        .collect();
    if !sysctls.is_empty() {
        fail("sysctls", "forbidden sysctls", sysctls.join(", "));
    }

    let host_process = |sc: &Value| sc.pointer("/windowsOptions/hostProcess") == Some(&Value::Bool(true));
    let hp: Vec<&str> = cs.iter().filter(|c| host_process(c.sc)).map(|c| c.name).collect();
    if host_process(psc) || !hp.is_empty() {
        let who = if host_process(psc) && hp.is_empty() {
            "pod".to_string()
        } else if host_process(psc) {
            format!("pod and {}", containers_phrase(&hp))
        } else {
            containers_phrase(&hp)
        };
        fail(
            "windowsHostProcess",
            "hostProcess",
            format!("{who} must not set securityContext.windowsOptions.hostProcess=true"),
        );
    }

    // --- restricted ---
    if restricted {
        let ape: Vec<&str> = cs
            .iter()
            .filter(|c| c.sc["allowPrivilegeEscalation"] != Value::Bool(false))
            .map(|c| c.name)
            .collect();
        if !ape.is_empty() {
            fail(
                "allowPrivilegeEscalation",
                "allowPrivilegeEscalation != false",
                format!(
                    "{} must set securityContext.allowPrivilegeEscalation=false",
                    containers_phrase(&ape)
                ),
            );
        }

        let no_drop: Vec<&str> = cs
            .iter()
            .filter(|c| {
                !c.sc
                    .pointer("/capabilities/drop")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|x| x == "ALL"))
            })
            .map(|c| c.name)
            .collect();
        let mut add_containers = Vec::new();
        let mut add_caps = BTreeSet::new();
        for c in &cs {
            let bad: Vec<String> = added(c)
                .into_iter()
                .filter(|cap| cap != "NET_BIND_SERVICE")
                .collect();
            if !bad.is_empty() {
                add_containers.push(c.name);
                add_caps.extend(bad);
            }
        }
        let mut details = Vec::new();
        if !no_drop.is_empty() {
            details.push(format!(
                "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                containers_phrase(&no_drop)
            ));
        }
        if !add_containers.is_empty() {
            let caps: Vec<String> = add_caps.into_iter().collect();
            details.push(format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers_phrase(&add_containers),
                quote_join(&caps)
            ));
        }
        if !details.is_empty() {
            fail(
                "capabilities_restricted",
                "unrestricted capabilities",
                details.join("; "),
            );
        }

        const ALLOWED_VOLUMES: &[&str] = &[
            "configMap",
            "csi",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
        ];
        let mut bad_vols = Vec::new();
        let mut bad_types = BTreeSet::new();
        for v in &volumes {
            let types: Vec<String> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, val)| *k != "name" && !val.is_null() && !ALLOWED_VOLUMES.contains(&k.as_str()))
                .map(|(k, _)| k.clone())
                .collect();
            if !types.is_empty() {
                bad_vols.push(vol_name(v));
                bad_types.extend(types);
            }
        }
        if !bad_vols.is_empty() {
            let types: Vec<String> = bad_types.into_iter().collect();
            fail(
                "restrictedVolumes",
                "restricted volume types",
                format!(
                    "{} {} {} {}",
                    format_args!(
                        "{} {}",
                        plural("volume", "volumes", bad_vols.len()),
                        quote_join(&bad_vols)
                    ),
                    plural("uses", "use", bad_vols.len()),
                    plural("restricted volume type", "restricted volume types", types.len()),
                    quote_join(&types)
                ),
            );
        }

        let pod_non_root = psc["runAsNonRoot"].as_bool();
        let mut details = Vec::new();
        if pod_non_root == Some(false) {
            details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
        }
        let explicit: Vec<&str> = cs
            .iter()
            .filter(|c| c.sc["runAsNonRoot"] == Value::Bool(false))
            .map(|c| c.name)
            .collect();
        if !explicit.is_empty() {
            details.push(format!(
                "{} must not set securityContext.runAsNonRoot=false",
                containers_phrase(&explicit)
            ));
        }
        let implicit: Vec<&str> = cs
            .iter()
            .filter(|c| c.sc["runAsNonRoot"].is_null() && pod_non_root != Some(true))
            .map(|c| c.name)
            .collect();
        if !implicit.is_empty() {
            details.push(format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ));
        }
        if !details.is_empty() {
            fail("runAsNonRoot", "runAsNonRoot != true", details.join("; "));
        }

        let mut details = Vec::new();
        if psc["runAsUser"].as_i64() == Some(0) {
            details.push("pod must not set runAsUser=0".to_string());
        }
        let root: Vec<&str> = cs
            .iter()
            .filter(|c| c.sc["runAsUser"].as_i64() == Some(0))
            .map(|c| c.name)
            .collect();
        if !root.is_empty() {
            details.push(format!("{} must not set runAsUser=0", containers_phrase(&root)));
        }
        if !details.is_empty() {
            fail("runAsUser", "runAsUser=0", details.join("; "));
        }

        let valid = |t: &Option<String>| matches!(t.as_deref(), Some("RuntimeDefault" | "Localhost"));
        let mut details = Vec::new();
        if let Some(t) = pod_seccomp.as_deref().filter(|_| !valid(&pod_seccomp)) {
            details.push(format!(
                "pod must not set securityContext.seccompProfile.type to {t:?}"
            ));
        }
        let mut explicit_types = BTreeSet::new();
        let explicit: Vec<&str> = cs
            .iter()
            .filter(|c| {
                let t = seccomp(c.sc);
                let bad = t.is_some() && !valid(&t);
                if bad {
                    explicit_types.extend(t);
                }
                bad
            })
            .map(|c| c.name)
            .collect();
        if !explicit.is_empty() {
            let types: Vec<String> = explicit_types.into_iter().collect();
            details.push(format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                containers_phrase(&explicit),
                quote_join(&types)
            ));
        }
        let implicit: Vec<&str> = cs
            .iter()
            .filter(|c| seccomp(c.sc).is_none() && !valid(&pod_seccomp))
            .map(|c| c.name)
            .collect();
        if !implicit.is_empty() {
            details.push(format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ));
        }
        if !details.is_empty() {
            fail("seccompProfile_restricted", "seccompProfile", details.join("; "));
        }
    }

    out.sort_by(|a, b| a.0.cmp(b.0));
    out.into_iter().map(|(_, r, d)| (r, d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn restricted() -> Policy {
        Policy {
            level: Level::Restricted,
            version: "latest".into(),
        }
    }

    #[test]
    fn a_bare_pod_fails_restricted_with_the_upstream_message() {
        let pod =
            json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}});
        assert_eq!(
            violations(&restricted(), &pod).as_deref(),
            Some(
                "\"restricted:latest\": allowPrivilegeEscalation != false (container \"nginx\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"nginx\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"nginx\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"nginx\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
            )
        );
        // Baseline allows it.
        let baseline = Policy {
            level: Level::Baseline,
            version: "v1.30".into(),
        };
        assert_eq!(violations(&baseline, &pod), None);
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        let pod = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}, {"name": "tmp", "emptyDir": {}}],
            "containers": [{"name": "app", "image": "x", "ports": [{"containerPort": 80, "hostPort": 0}],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]
        }});
        assert_eq!(violations(&restricted(), &pod), None);
    }

    #[test]
    fn baseline_checks_name_what_they_found() {
        let pod = json!({"spec": {
            "hostNetwork": true, "hostPID": true,
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [
                {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}],
                 "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}},
                {"name": "b", "image": "x", "securityContext": {"privileged": true}}
            ]
        }});
        let baseline = Policy {
            level: Level::Baseline,
            version: "latest".into(),
        };
        assert_eq!(
            violations(&baseline, &pod).as_deref(),
            Some(
                "\"baseline:latest\": non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume \"root\"), hostPort (container \"a\" uses hostPort 8080), privileged (containers \"a\", \"b\" must not set securityContext.privileged=true)"
            )
        );
        let restricted = violations(&restricted(), &pod).unwrap_or_default();
        assert!(
            restricted.contains(
                "restricted volume types (volume \"root\" uses restricted volume type \"hostPath\")"
            ),
            "{restricted}"
        );
        assert!(
            restricted.contains("must not include \"CHOWN\", \"NET_ADMIN\" in"),
            "{restricted}"
        );
    }

    #[test]
    fn explicit_settings_at_pod_and_container_level() {
        let pod = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [{"name": "init", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": false, "seccompProfile": {"type": "Unconfined"}}}],
            "containers": [{"name": "app", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        }});
        assert_eq!(
            violations(&restricted(), &pod).as_deref(),
            Some(
                "\"restricted:latest\": runAsNonRoot != true (container \"init\" must not set securityContext.runAsNonRoot=false), runAsUser=0 (pod must not set runAsUser=0), seccompProfile (container \"init\" must not set securityContext.seccompProfile.type to \"Unconfined\")"
            )
        );
    }

    #[test]
    fn namespace_labels_select_levels_and_versions() {
        let ns = json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "v1.30",
            "pod-security.kubernetes.io/warn": "bogus",
            "pod-security.kubernetes.io/warn-version": "1.30",
        }}});
        assert_eq!(policy(&ns, "enforce").label(), "restricted:v1.30");
        assert_eq!(policy(&ns, "warn").label(), "restricted:latest");
        assert_eq!(policy(&ns, "audit").level, Level::Privileged);
        assert_eq!(policy(&json!({}), "enforce").level, Level::Privileged);
    }
}
