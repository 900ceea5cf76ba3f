//! Turns a container spec into a launch script: a private root assembled from the host's
//! system folders, the image's binaries at their image paths, the pod's volumes at their
//! mountPaths and its /etc/hosts, then `chroot` into it as the container's user.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::images::ResolvedImage;

/// Single-quotes a string for sh.
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Expands `$(VAR)` references from `env`; `$$(VAR)` escapes; unknown references stay.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$(") {
            out.push_str("$(");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("$(")
            && let Some(end) = after.find(')')
        {
            let name = &after[..end];
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The argv a container runs, from its spec and its image (Kubernetes' rules).
pub fn argv(container: &Value, image: &ResolvedImage, env: &BTreeMap<String, String>) -> Vec<String> {
    let strs = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .map(|s| expand(s.as_str().unwrap_or_default(), env))
                .collect()
        })
    };
    match (strs(&container["command"]), strs(&container["args"])) {
        (Some(cmd), Some(args)) => cmd.into_iter().chain(args).collect(),
        (Some(cmd), None) => cmd,
        (None, Some(args)) => image.entrypoint.iter().cloned().chain(args).collect(),
        (None, None) => image.entrypoint.iter().chain(&image.args).cloned().collect(),
    }
}

/// Everything the script needs.
#[derive(Debug)]
pub struct Launch<'a> {
    /// Folder to build the root in.
    pub rootfs: &'a Path,
    /// Hostname inside the pod.
    pub hostname: &'a str,
    /// The pod's hosts file.
    pub hosts_file: &'a Path,
    /// Image files.
    pub image: &'a ResolvedImage,
    /// (host path, mount path, read-only).
    pub mounts: Vec<(String, String, bool)>,
    /// Environment.
    pub env: &'a BTreeMap<String, String>,
    /// Working directory.
    pub working_dir: String,
    /// uid:gid, if not root.
    pub user: Option<(u64, u64)>,
    /// Supplementary groups (fsGroup and supplementalGroups).
    pub groups: Vec<u64>,
    /// securityContext.readOnlyRootFilesystem: the root is mounted read-only (volumes keep
    /// their own modes, and there is no writable /tmp unless a volume provides one).
    pub read_only_root: bool,
    /// What to run.
    pub argv: Vec<String>,
}

const SYSTEM_DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/share",
];
const ETC_ENTRIES: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/ld.so.cache",
];

/// The launch script.
pub fn script(l: &Launch<'_>) -> String {
    let r = l.rootfs.display().to_string();
    let mut s = String::from("#!/bin/sh\nset -e\n");
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line(format!("R={}", q(&r)));
    line(format!("hostname {}", q(l.hostname)));
    // The root becomes a mount of its own so that it can be made read-only at the end.
    line("mount --bind \"$R\" \"$R\"".into());
    line("mkdir -p \"$R/etc\" \"$R/bin\" \"$R/usr/local/bin\" \"$R/proc\" \"$R/dev\" \"$R/sys\" \"$R/tmp\" \"$R/var/run\" \"$R/root\"".into());
    // An image file inside a system folder (a distribution's data file such as Debian
    // Alertmanager's /usr/share/prometheus/alertmanager/default.tmpl) cannot be bind-mounted
    // into the read-only host folder: that folder becomes a read-only overlay of a copy of the
    // image's files over the host's.
    let under = |d: &str, path: &str| path.strip_prefix(d).is_some_and(|rest| rest.starts_with('/'));
    for d in SYSTEM_DIRS.iter().filter(|d| Path::new(d).is_dir()) {
        let layered: Vec<_> = l.image.files.iter().filter(|(path, _)| under(d, path)).collect();
        if layered.is_empty() {
            line(format!(
                "mkdir -p \"$R{d}\"; mount --bind {d} \"$R{d}\"; mount -o remount,bind,ro \"$R{d}\""
            ));
            continue;
        }
        let layer = q(&format!("{r}.layer{d}"));
        line(format!("rm -rf {layer}; mkdir -p {layer}"));
        for (path, host) in layered {
            let dst = q(&format!("{r}.layer{path}"));
            line(format!(
                "mkdir -p \"$(dirname {dst})\"; cp {} {dst}",
                q(&host.display().to_string())
            ));
        }
        line(format!(
            "mkdir -p \"$R{d}\"; mount -t overlay overlay -o ro,lowerdir={layer}:{d} \"$R{d}\""
        ));
    }
    // Merged-/usr layout: /lib and friends point into /usr; /bin is the image's own.
    line("[ -e \"$R/lib\" ] || ln -s usr/lib \"$R/lib\"; [ -e \"$R/lib64\" ] || ln -s usr/lib64 \"$R/lib64\"; [ -e \"$R/sbin\" ] || ln -s usr/sbin \"$R/sbin\"".into());
    line("touch \"$R/bin/sh\"; mount --bind /bin/sh \"$R/bin/sh\"".into());
    for e in ETC_ENTRIES.iter().filter(|e| Path::new(e).exists()) {
        if Path::new(e).is_dir() {
            line(format!("mkdir -p \"$R{e}\"; mount --bind {e} \"$R{e}\""));
        } else {
            line(format!("touch \"$R{e}\"; mount --bind {e} \"$R{e}\""));
        }
    }
    line(format!(
        "touch \"$R/etc/hosts\"; mount --bind {} \"$R/etc/hosts\"",
        q(&l.hosts_file.display().to_string())
    ));
    line(
        "mount -t proc proc \"$R/proc\"; mount --rbind /dev \"$R/dev\"; mount --rbind /sys \"$R/sys\"".into(),
    );
    if !l.read_only_root {
        line("mount -t tmpfs -o mode=1777 tmpfs \"$R/tmp\"".into());
    }
    for (path, host) in &l.image.files {
        if SYSTEM_DIRS
            .iter()
            .any(|d| under(d, path) && Path::new(d).is_dir())
        {
            continue;
        }
        let dst = q(&format!("{r}{path}"));
        line(format!(
            "mkdir -p \"$(dirname {dst})\"; touch {dst}; mount --bind {} {dst}",
            q(&host.display().to_string())
        ));
    }
    for (host, path, ro) in &l.mounts {
        let dst = q(&format!("{r}{path}"));
        if Path::new(host).is_file() {
            line(format!("mkdir -p \"$(dirname {dst})\"; touch {dst}"));
        } else {
            line(format!("mkdir -p {dst}"));
        }
        line(format!("mount --bind {} {dst}", q(host)));
        if *ro {
            line(format!("mount -o remount,bind,ro {dst}"));
        }
    }
    line(format!("mkdir -p {}", q(&format!("{r}{}", l.working_dir))));
    if l.read_only_root {
        line("mount -o remount,bind,ro \"$R\"".into());
    }
    let mut user = l
        .user
        .map(|(u, g)| format!("--userspec={u}:{g} "))
        .unwrap_or_default();
    if !l.groups.is_empty() {
        let groups: Vec<String> = l.groups.iter().map(u64::to_string).collect();
        user.push_str(&format!("--groups={} ", groups.join(",")));
    }
    let env: Vec<String> = l.env.iter().map(|(k, v)| q(&format!("{k}={v}"))).collect();
    let argv: Vec<String> = l.argv.iter().map(|a| q(a)).collect();
    line(format!(
        "exec chroot {user}\"$R\" /usr/bin/env -i {} /bin/sh -c 'cd \"$0\" && exec \"$@\"' {} {}",
        env.join(" "),
        q(&l.working_dir),
        argv.join(" ")
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion() {
        let e = env(&[("POD_NAME", "db-0"), ("NS", "x")]);
        assert_eq!(expand("--name=$(POD_NAME).$(NS)", &e), "--name=db-0.x");
        assert_eq!(
            expand("$$(POD_NAME) $(MISSING) $5", &e),
            "$(POD_NAME) $(MISSING) $5"
        );
    }

    #[test]
    fn command_and_args_rules() {
        let image = ResolvedImage {
            files: vec![],
            entrypoint: vec!["/bin/prometheus".into()],
            args: vec!["--config.file=x".into()],
            working_dir: "/prometheus".into(),
            user: (65534, 65534),
        };
        let e = env(&[]);
        assert_eq!(
            argv(&json!({}), &image, &e),
            ["/bin/prometheus", "--config.file=x"]
        );
        assert_eq!(
            argv(&json!({"args": ["--a"]}), &image, &e),
            ["/bin/prometheus", "--a"]
        );
        assert_eq!(argv(&json!({"command": ["sh"]}), &image, &e), ["sh"]);
        assert_eq!(
            argv(&json!({"command": ["sh"], "args": ["-c", "x"]}), &image, &e),
            ["sh", "-c", "x"]
        );
    }

    #[test]
    fn image_files_inside_system_folders_come_through_an_overlay() {
        let image = ResolvedImage {
            files: vec![
                ("/bin/alertmanager".into(), "/cache/am".into()),
                (
                    "/usr/share/prometheus/alertmanager/default.tmpl".into(),
                    "/cache/default.tmpl".into(),
                ),
            ],
            entrypoint: vec!["/bin/alertmanager".into()],
            args: vec![],
            working_dir: "/alertmanager".into(),
            user: (65534, 65534),
        };
        let e = env(&[]);
        let script = script(&Launch {
            rootfs: Path::new("/run/pod/c/rootfs"),
            hostname: "am-0",
            hosts_file: Path::new("/run/pod/hosts"),
            image: &image,
            mounts: vec![],
            env: &e,
            working_dir: "/alertmanager".into(),
            user: Some((65534, 65534)),
            groups: vec![],
            read_only_root: true,
            argv: vec!["/bin/alertmanager".into()],
        });
        assert!(script.contains(
            "cp '/cache/default.tmpl' '/run/pod/c/rootfs.layer/usr/share/prometheus/alertmanager/default.tmpl'"
        ));
        assert!(script.contains(
            "mount -t overlay overlay -o ro,lowerdir='/run/pod/c/rootfs.layer/usr/share':/usr/share \"$R/usr/share\""
        ));
        assert!(!script.contains("mount --bind /usr/share "));
        assert!(!script.contains("mount --bind '/cache/default.tmpl'"));
        assert!(script.contains("mount --bind '/cache/am' '/run/pod/c/rootfs/bin/alertmanager'"));
    }

    #[test]
    fn quoting() {
        assert_eq!(q("it's"), "'it'\\''s'");
    }
}
