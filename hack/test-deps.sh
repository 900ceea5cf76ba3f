#!/usr/bin/env bash
# hack/test-deps.sh — install the external tools the test suites need.
#
#   hack/test-deps.sh            # install what is missing (fast no-op when all present)
#   hack/test-deps.sh --refresh  # re-resolve the Debian suites (they move, sid above all)
#
# What it provides (all repo-relative, under the git-ignored .cache/):
#   protoc                       system packages protobuf-compiler + libprotobuf-dev (root if missing)
#   .cache/bin/etcd-<ver>/       etcd, etcdctl[, etcdutl]   bookworm (3.4), trixie, sid
#   .cache/bin/prometheus-<ver>/ prometheus, promtool       trixie (2.53), sid (3.5)
#   .cache/bin/alertmanager-<ver>/ alertmanager, amtool     trixie (0.28), sid (0.33)
#   .cache/bin/kubectl           trixie (1.32; has `kubectl kustomize` built in)
#   .cache/bin/promtool, .cache/bin/amtool  symlinks to the newest versions
#   .cache/bin/versions          shell-sourceable KEY=VALUE (upstream versions)
#   .cache/venv/                 python venv with kubernetes-validate
#   .cache/bin/s3s-fs            S3 server on a local directory for the backup tests
#                                (crates.io s3s-fs, built by `cargo install` into .cache/s3s)
#   .cache/bin/kubernetes-api.fds  protobuf descriptors of the Kubernetes API (trixie's
#                                golang-k8s-api-dev/apimachinery-dev .proto files, compiled
#                                by protoc): kubesim decodes protobuf request bodies with it
#
# The Debian binaries are fetched with `apt-get download` + `dpkg -x` through a
# PRIVATE apt configuration in .cache/apt/ (own apt.conf, sources.list, lists,
# cache and empty dpkg status file, and none of the machine's apt.conf.d,
# preferences or trusted keys), so the machine's apt sources/state are never
# read or changed. Nothing is installed system-wide except protoc.
# All fetched binaries are Go programs linked only against glibc (>= 2.34), so
# they run on bookworm (2.36) and newer without extra libraries.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$REPO_ROOT/.cache"
BIN="$CACHE/bin"
APTDIR="$CACHE/apt"
VENV="$CACHE/venv"
VERSIONS="$BIN/versions"
MIRROR="${TEST_DEPS_MIRROR:-http://deb.debian.org/debian}"
SYSTEM_KEYRING="${TEST_DEPS_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"

REFRESH=0
for arg in "$@"; do
    case "$arg" in
        --refresh) REFRESH=1 ;;
        -h|--help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test-deps: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { echo "test-deps: $*" >&2; }
die() { echo "test-deps: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Wanted binaries: KEY  suite  package:binary-in-package[=name-in-cache] ...
# ---------------------------------------------------------------------------
# etcd: etcd-server holds etcd (+ etcdutl from 3.5 on), etcd-client holds etcdctl.
# prometheus holds prometheus, promtool is its own package (same source).
# prometheus-alertmanager holds prometheus-alertmanager (renamed alertmanager) + amtool.
# kubectl: package kubectl (kubernetes-client is a transitional package).
# Debian's Alertmanager reads its notification templates from /usr/share (upstream embeds
# them); an absolute path names a data file of the package (kept as-is, mode 0644).
AM_TEMPLATES="prometheus-alertmanager:/usr/share/prometheus/alertmanager/default.tmpl=default.tmpl prometheus-alertmanager:/usr/share/prometheus/alertmanager/email.tmpl=email.tmpl"
WANTED=(
    "ETCD_OLD             bookworm etcd           etcd-server:etcd etcd-server:etcdutl? etcd-client:etcdctl"
    "ETCD_CURRENT         trixie   etcd           etcd-server:etcd etcd-server:etcdutl? etcd-client:etcdctl"
    "ETCD_NEWEST          sid      etcd           etcd-server:etcd etcd-server:etcdutl? etcd-client:etcdctl"
    "PROMETHEUS_OLD       trixie   prometheus     prometheus:prometheus promtool:promtool"
    "PROMETHEUS_CURRENT   sid      prometheus     prometheus:prometheus promtool:promtool"
    "ALERTMANAGER_OLD     trixie   alertmanager   prometheus-alertmanager:prometheus-alertmanager=alertmanager prometheus-alertmanager:amtool $AM_TEMPLATES"
    "ALERTMANAGER_CURRENT sid      alertmanager   prometheus-alertmanager:prometheus-alertmanager=alertmanager prometheus-alertmanager:amtool $AM_TEMPLATES"
    "KUBECTL              trixie   kubectl        kubectl:kubectl"
)
# Expected upstream series per key (sanity check: a suite that moved to another
# series is reported loudly instead of silently changing what the tests run).
declare -A SERIES=(
    [ETCD_OLD]=3.4 [ETCD_CURRENT]=3.5 [ETCD_NEWEST]=3.
    [PROMETHEUS_OLD]=2.53 [PROMETHEUS_CURRENT]=3.5
    [ALERTMANAGER_OLD]=0.28 [ALERTMANAGER_CURRENT]=0.33
    [KUBECTL]=1.32
)
KEYS=(ETCD_OLD ETCD_CURRENT ETCD_NEWEST PROMETHEUS_OLD PROMETHEUS_CURRENT ALERTMANAGER_OLD ALERTMANAGER_CURRENT KUBECTL)

# Directory (under .cache/bin) that holds the binaries of KEY at version VER.
dest_dir() { # KEY VER
    case "$1" in
        KUBECTL) echo "$BIN/kubectl-$2" ;;
        *) local entry; entry="$(wanted_entry "$1")"; echo "$BIN/$(awk '{print $3}' <<<"$entry")-$2" ;;
    esac
}
wanted_entry() { local e; for e in "${WANTED[@]}"; do [[ "$(awk '{print $1}' <<<"$e")" == "$1" ]] && { echo "$e"; return; }; done; die "no entry $1"; }

# Debian version -> upstream version: drop epoch, Debian revision, +ds/+dfsg/~ suffixes.
upstream_version() {
    local v="$1"
    v="${v#*:}"                              # epoch
    [[ "$v" == *-* ]] && v="${v%-*}"         # Debian revision
    [[ "$v" == *+really* ]] && v="${v##*+really}"
    v="${v%%+*}"; v="${v%%~*}"
    echo "$v"
}

# ---------------------------------------------------------------------------
# 1. protoc (system package)
# ---------------------------------------------------------------------------
ensure_protoc() {
    # etcd-client's build compiles etcd's .proto files, which import Google's well-known
    # types (google/protobuf/descriptor.proto): protoc alone is not enough, the include
    # files from libprotobuf-dev are needed too.
    local include=/usr/include/google/protobuf/descriptor.proto
    command -v protoc >/dev/null 2>&1 && [[ -f "$include" ]] && return 0
    command -v apt-get >/dev/null 2>&1 || die "protoc or its include files are missing and apt-get is not available: install protoc with Google's well-known .proto files by hand"
    [[ "$(id -u)" == 0 ]] || die "protoc or $include is missing and we are not root: run 'sudo apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev' and re-run"
    log "installing protobuf-compiler and libprotobuf-dev from the machine's own apt sources"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev >&2; then
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev >&2
    fi
    command -v protoc >/dev/null 2>&1 || die "protoc still missing after installing protobuf-compiler"
    [[ -f "$include" ]] || die "$include still missing after installing libprotobuf-dev"
}

# ---------------------------------------------------------------------------
# 2. Debian binaries through a private apt state
# ---------------------------------------------------------------------------
# Everything present? (versions file with all keys + every recorded binary)
binaries_complete() {
    [[ -f "$VERSIONS" ]] || return 1
    local key ver entry spec name dir rest specs
    for key in "${KEYS[@]}"; do
        ver="$(sed -n "s/^$key=//p" "$VERSIONS")"
        [[ -n "$ver" ]] || return 1
        if [[ "$key" == KUBECTL ]]; then [[ -x "$BIN/kubectl" ]] || return 1; continue; fi
        entry="$(wanted_entry "$key")"; dir="$(dest_dir "$key" "$ver")"
        read -r _ _ _ rest <<<"$entry"; read -ra specs <<<"$rest"
        for spec in "${specs[@]}"; do
            [[ "$spec" == *\? ]] && continue            # optional binary
            name="${spec#*:}"; name="${name##*=}"
            [[ -x "$dir/$name" ]] || return 1
        done
    done
    [[ -L "$BIN/promtool" && -x "$BIN/promtool" && -L "$BIN/amtool" && -x "$BIN/amtool" ]]
}

APT_READY=0
setup_private_apt() {
    [[ $APT_READY == 1 ]] && return 0
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script needs a Debian-like machine (apt-get + dpkg) to fetch etcd/prometheus/alertmanager/kubectl"
    if ! command -v dpkg >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        die "dpkg/dpkg-deb not found: this script needs a Debian-like machine"
    fi
    mkdir -p "$APTDIR"/{empty,lists/partial,cache/archives/partial,state,debs,keyring}
    : > "$APTDIR/status"
    local keyring="$SYSTEM_KEYRING"
    [[ -f "$APTDIR/keyring/keyring-path" ]] && keyring="$(cat "$APTDIR/keyring/keyring-path")"
    [[ -r "$keyring" ]] || die "Debian archive keyring $keyring not found: install the debian-archive-keyring package"
    write_sources "$keyring"
    # APT_CONFIG is read first; it points Dir::Etc::Parts at an empty dir so the
    # machine's /etc/apt/apt.conf.d (hooks, proxies of the image, ...) is not used.
    cat > "$APTDIR/apt.conf" <<EOF
Dir::Etc::Parts "$APTDIR/empty";
Dir::Etc::Main "/dev/null";
Dir::Etc::SourceList "$APTDIR/sources.list";
Dir::Etc::SourceParts "$APTDIR/empty";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$APTDIR/empty";
Dir::Etc::Trusted "/dev/null";
Dir::Etc::TrustedParts "$APTDIR/empty";
Dir::Etc::netrc "/dev/null";
Dir::Etc::netrcparts "$APTDIR/empty";
Dir::State "$APTDIR/state";
Dir::State::Lists "$APTDIR/lists";
Dir::State::status "$APTDIR/status";
Dir::Cache "$APTDIR/cache";
Dir::Cache::Archives "$APTDIR/cache/archives";
APT::Architecture "$(dpkg --print-architecture)";
APT::Architectures { "$(dpkg --print-architecture)"; };
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
// The mirror this project reaches may be a frozen snapshot whose Release
// files are past their Valid-Until date; signatures are still verified.
Acquire::Check-Valid-Until "false";
EOF
    # When run as root, apt downloads as user _apt; let it write where it must.
    if [[ "$(id -u)" == 0 ]] && id _apt >/dev/null 2>&1; then
        chown _apt "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/debs" "$APTDIR/keyring" 2>/dev/null || true
    fi
    APT_READY=1
}
write_sources() { # KEYRING
    local s
    : > "$APTDIR/sources.list"
    for s in bookworm trixie sid; do
        echo "deb [signed-by=$1] $MIRROR $s main" >> "$APTDIR/sources.list"
    done
}
papt() { APT_CONFIG="$APTDIR/apt.conf" "$@"; }

private_update() {
    log "apt-get update (private state in .cache/apt: bookworm, trixie, sid)"
    local out
    if out="$(papt apt-get update -q 2>&1)" && ! grep -qE '^(W|E): .*(NO_PUBKEY|not signed|EXPKEYSIG|invalid signature|Failed to fetch)' <<<"$out"; then
        return 0
    fi
    echo "$out" >&2
    if grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG|invalid signature' <<<"$out" && [[ ! -f "$APTDIR/keyring/keyring-path" ]]; then
        # The machine's keyring is too old for a newer suite: take the newest
        # debian-archive-keyring package from the suites that did verify
        # (stable point releases carry the next release's keys), and use that
        # keyring via signed-by. No trusted=yes.
        log "machine keyring cannot verify every suite; fetching debian-archive-keyring from a verified suite"
        local deb kr
        rm -f "$APTDIR"/keyring/*.deb
        (cd "$APTDIR/keyring" && papt apt-get download -q debian-archive-keyring >&2) \
            || die "could not fetch debian-archive-keyring with the machine's keyring; update the debian-archive-keyring package"
        deb="$(ls "$APTDIR"/keyring/debian-archive-keyring_*.deb | head -n1)"
        rm -rf "$APTDIR/keyring/x"; dpkg -x "$deb" "$APTDIR/keyring/x"
        kr="$APTDIR/keyring/x/usr/share/keyrings/debian-archive-keyring.gpg"
        [[ -f "$kr" ]] || kr="$(ls "$APTDIR"/keyring/x/usr/share/keyrings/debian-archive-keyring.pgp 2>/dev/null | head -n1)"
        [[ -f "$kr" ]] || die "debian-archive-keyring package has no keyring file"
        echo "$kr" > "$APTDIR/keyring/keyring-path"
        write_sources "$kr"
        if out="$(papt apt-get update -q 2>&1)" && ! grep -qE '^(W|E): .*(NO_PUBKEY|not signed|EXPKEYSIG|invalid signature|Failed to fetch)' <<<"$out"; then
            return 0
        fi
        echo "$out" >&2
        die "apt-get update failed even with keyring $kr"
    fi
    die "private apt-get update failed (see above)"
}

# Newest version of PACKAGE in SUITE according to the private lists.
suite_version() { # PACKAGE SUITE
    papt apt-cache madison "$1" | awk -F'|' -v s=" $2/" '
        index($3, s) { gsub(/ /, "", $2); print $2; exit }'
}

# Download PACKAGE=VERSION (once) and extract it; prints the extraction dir.
fetch_pkg() { # PACKAGE DEBVERSION
    local pkg="$1" dver="$2" deb x
    local fname; fname="${pkg}_${dver#*:}_$(dpkg --print-architecture).deb"
    deb="$APTDIR/debs/$fname"
    if [[ ! -s "$deb" ]]; then
        log "downloading $pkg $dver"
        (cd "$APTDIR/debs" && papt apt-get download -q "$pkg=$dver" >&2)
        # apt escapes ':' (epoch) as %3a in file names
        [[ -s "$deb" ]] || deb="$(ls "$APTDIR"/debs/"${pkg}"_*"${dver#*:}"_*.deb | head -n1)"
        [[ -s "$deb" ]] || die "download of $pkg $dver produced no .deb"
    fi
    x="$APTDIR/x/${pkg}_${dver#*:}"
    if [[ ! -d "$x" ]]; then
        rm -rf "$x.tmp"; mkdir -p "$x.tmp"; dpkg -x "$deb" "$x.tmp"; mv "$x.tmp" "$x"
    fi
    echo "$x"
}

# Run a binary's version command; prints its first line.
bin_version() { # PATH
    local b="$1" name out rc=0; name="$(basename "$b")"
    case "$name" in
        etcdctl|etcdutl) out="$("$b" version 2>&1)" || rc=$? ;;
        kubectl) out="$("$b" version --client 2>&1)" || rc=$? ;;
        *) out="$("$b" --version 2>&1)" || rc=$? ;;
    esac
    echo "${out%%$'\n'*}"
    return "$rc"
}

fetch_debian_binaries() {
    setup_private_apt
    private_update
    local tmpv; tmpv="$(mktemp)"
    local entry key suite rest specs spec pkg inner name dver uver dir x optional src
    for entry in "${WANTED[@]}"; do
        read -r key suite _ rest <<<"$entry"; read -ra specs <<<"$rest"
        # version from the first package of the entry (all come from one source package)
        pkg="${specs[0]%%:*}"
        dver="$(suite_version "$pkg" "$suite")"
        [[ -n "$dver" ]] || die "package $pkg not found in Debian $suite"
        uver="$(upstream_version "$dver")"
        if [[ "$uver" != "${SERIES[$key]}"* ]]; then
            log "WARNING: $key: $pkg in $suite is now $uver (expected ${SERIES[$key]}.x); using it anyway"
        fi
        dir="$(dest_dir "$key" "$uver")"
        mkdir -p "$dir"
        # .complete: every binary of this version is in place (optional ones included), as
        # long as no file was added to the entry since
        if [[ -f "$dir/.complete" ]]; then
            local all=1 s n
            for s in "${specs[@]}"; do
                [[ "$s" == *\? ]] && continue
                n="${s#*:}"; n="${n##*=}"
                [[ -e "$dir/$n" ]] || all=0
            done
            [[ $all == 1 ]] && specs=()
        fi
        for spec in "${specs[@]}"; do
            optional=0; [[ "$spec" == *\? ]] && { optional=1; spec="${spec%\?}"; }
            pkg="${spec%%:*}"; inner="${spec#*:}"; name="${inner##*=}"; inner="${inner%%=*}"
            [[ -e "$dir/$name" ]] && continue
            local pver; pver="$(suite_version "$pkg" "$suite")"
            [[ -n "$pver" ]] || die "package $pkg not found in Debian $suite"
            x="$(fetch_pkg "$pkg" "$pver")"
            local mode=0755
            src="$x/usr/bin/$inner"
            [[ "$inner" == /* ]] && { src="$x$inner"; mode=0644; }
            if [[ ! -f "$src" ]]; then
                [[ $optional == 1 ]] && continue
                die "$pkg $pver ($suite) has no ${src#"$x"}"
            fi
            install -m "$mode" "$src" "$dir/$name.tmp" && mv "$dir/$name.tmp" "$dir/$name"
        done
        touch "$dir/.complete"
        echo "$key=$uver" >> "$tmpv"
    done
    # kubectl: also a plain .cache/bin/kubectl
    local kver; kver="$(sed -n 's/^KUBECTL=//p' "$tmpv")"
    ln -sfn "kubectl-$kver/kubectl" "$BIN/kubectl"
    # promtool / amtool symlinks to the newest
    local pnew anew
    pnew="$(sed -n 's/^PROMETHEUS_\(OLD\|CURRENT\)=//p' "$tmpv" | sort -V | tail -n1)"
    anew="$(sed -n 's/^ALERTMANAGER_\(OLD\|CURRENT\)=//p' "$tmpv" | sort -V | tail -n1)"
    ln -sfn "prometheus-$pnew/promtool" "$BIN/promtool"
    ln -sfn "alertmanager-$anew/amtool" "$BIN/amtool"
    # every binary must run here
    local b
    for b in "$BIN"/*/*; do
        [[ -x "$b" && -f "$b" ]] || continue
        bin_version "$b" >/dev/null 2>&1 || die "$b does not run on this machine: $(bin_version "$b" 2>&1 || true)"
    done
    "$BIN/kubectl" kustomize --help >/dev/null 2>&1 || die "kubectl kustomize does not work"
    {
        echo "# written by hack/test-deps.sh — upstream versions of the binaries in .cache/bin"
        cat "$tmpv"
    } > "$VERSIONS.tmp"
    mv "$VERSIONS.tmp" "$VERSIONS"
    rm -f "$tmpv"
    # Only the binaries are kept: extracted trees, .debs and apt's binary caches
    # go (the package lists stay, so a later --refresh only fetches changes).
    rm -rf "$APTDIR/x" "$APTDIR"/debs/*.deb "$APTDIR"/cache/*.bin
}

# ---------------------------------------------------------------------------
# 2b. Kubernetes API protobuf descriptors (kubectl sends typed objects as protobuf)
# ---------------------------------------------------------------------------
# The .proto files ship in Debian's Go source packages of k8s.io/api and
# k8s.io/apimachinery; trixie's match the kubectl we fetch (1.32). protoc turns
# them into one FileDescriptorSet that kubesim reads at start.
FDS="$BIN/kubernetes-api.fds"
fetch_kube_protos() {
    [[ $REFRESH == 0 && -s "$FDS" ]] && return 0
    setup_private_apt
    compgen -G "$APTDIR/lists/*_dists_trixie_InRelease" >/dev/null || private_update
    local pkg ver x src protos=() f
    local tree; tree="$(mktemp -d)"
    for pkg in golang-k8s-api-dev golang-k8s-apimachinery-dev; do
        ver="$(suite_version "$pkg" trixie)"
        [[ -n "$ver" ]] || die "package $pkg not found in Debian trixie"
        x="$(fetch_pkg "$pkg" "$ver")"
        src="$x/usr/share/gocode/src"
        [[ -d "$src/k8s.io" ]] || die "$pkg $ver has no usr/share/gocode/src/k8s.io"
        cp -a "$src/k8s.io" "$tree/"
    done
    while IFS= read -r f; do protos+=("${f#"$tree"/}"); done < <(find "$tree/k8s.io" -name generated.proto -not -path '*testapigroup*' | sort)
    [[ ${#protos[@]} -gt 20 ]] || die "only ${#protos[@]} Kubernetes .proto files found"
    log "compiling ${#protos[@]} Kubernetes .proto files into ${FDS#"$REPO_ROOT"/}"
    local out
    out="$(cd "$tree" && protoc --include_imports --descriptor_set_out="$FDS.tmp" -I . "${protos[@]}" 2>&1)" \
        || die "protoc could not compile the Kubernetes .proto files: $(grep -v ': warning: ' <<<"$out")"
    mv "$FDS.tmp" "$FDS"
    rm -rf "$tree" "$APTDIR/x" "$APTDIR"/debs/*.deb
}

# ---------------------------------------------------------------------------
# 3. kubernetes-validate in .cache/venv
# ---------------------------------------------------------------------------
ensure_kubernetes_validate() {
    if [[ -x "$VENV/bin/kubernetes-validate" ]] && "$VENV/bin/kubernetes-validate" --help >/dev/null 2>&1; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for the kubernetes-validate venv)"
    log "creating $VENV with kubernetes-validate"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install -q --disable-pip-version-check kubernetes-validate >&2
    "$VENV/bin/kubernetes-validate" --help >/dev/null 2>&1 || die "kubernetes-validate --help fails"
}

# ---------------------------------------------------------------------------
# 4. s3s-fs (S3-compatible server on a directory) from crates.io
# ---------------------------------------------------------------------------
# 0.14.1 is the newest release that builds with our toolchain (0.17 needs a newer rustc);
# --locked builds it with the dependency versions it was released with.
S3S_FS_VERSION=0.14.1
S3S_ROOT="$CACHE/s3s"
ensure_s3s_fs() {
    local bin="$S3S_ROOT/bin/s3s-fs"
    if [[ "$("$bin" --version 2>/dev/null)" != "s3s-fs $S3S_FS_VERSION" ]]; then
        command -v cargo >/dev/null 2>&1 || die "cargo not found (needed to build s3s-fs)"
        log "building s3s-fs $S3S_FS_VERSION with cargo install (a few minutes, once)"
        cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --force \
            --root "$S3S_ROOT" >&2 || die "cargo install s3s-fs $S3S_FS_VERSION failed (see above)"
        [[ "$("$bin" --version 2>/dev/null)" == "s3s-fs $S3S_FS_VERSION" ]] \
            || die "$bin does not report version $S3S_FS_VERSION"
    fi
    ln -sfn "../s3s/bin/s3s-fs" "$BIN/s3s-fs"
}

# ---------------------------------------------------------------------------
main() {
    mkdir -p "$BIN"
    ensure_protoc
    if [[ $REFRESH == 1 ]] || ! binaries_complete; then
        fetch_debian_binaries
    fi
    fetch_kube_protos
    ensure_kubernetes_validate
    ensure_s3s_fs

    echo "== test dependencies (repo: $REPO_ROOT)"
    printf '%-50s %s\n' "$(command -v protoc)" "$(protoc --version 2>&1)"
    local b
    for b in "$BIN"/*/* "$BIN/kubectl" "$BIN/promtool" "$BIN/amtool"; do
        [[ -f "$b" && -x "$b" ]] || continue
        local shown="${b#"$REPO_ROOT"/}"
        [[ -L "$b" ]] && shown="$shown -> $(readlink "$b")"
        printf '%-50s %s\n' "$shown" "$(bin_version "$b")"
    done
    printf '%-50s %s\n' ".cache/venv/bin/kubernetes-validate" \
        "$("$VENV/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')"
    printf '%-50s %s\n' "${FDS#"$REPO_ROOT"/}" "$(stat -c %s "$FDS") bytes"
    printf '%-50s %s\n' ".cache/bin/s3s-fs -> $(readlink "$BIN/s3s-fs")" "$("$BIN/s3s-fs" --version)"
    echo "== ${VERSIONS#"$REPO_ROOT"/}"
    grep -v '^#' "$VERSIONS"
}

main
