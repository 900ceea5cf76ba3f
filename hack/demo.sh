#!/usr/bin/env bash
# make demo / demo-up / demo-down: kubesim in process mode with both operators deployed
# from deploy/, the examples and deploy/monitoring applied. The kubeconfig is .demo/kubeconfig.
#   hack/demo.sh up     start in the background and return
#   hack/demo.sh down   stop it
#   hack/demo.sh        start, show what runs, stay up until Ctrl-C
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.demo"
pidfile="$state/kubesim.pid"
kubectl="$root/.cache/bin/kubectl"
export KUBECONFIG="$state/kubeconfig"
cd "$root"

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

down() {
    if running; then
        local pid
        pid="$(cat "$pidfile")"
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "demo: kubesim stopped"
    else
        echo "demo: not running"
    fi
    rm -f "$pidfile"
}

up() {
    if running; then
        echo "demo: already running (pid $(cat "$pidfile")); export KUBECONFIG=$KUBECONFIG"
        return 0
    fi
    hack/test-deps.sh
    cargo build --locked -p e2e --bin kubesim -p etcd-operator -p prometheus-operator
    mkdir -p "$state"
    rm -f "$state/kubeconfig"
    nohup target/debug/kubesim up --state-dir "$state" --node-mode process > "$state/kubesim.log" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do [[ -f "$state/kubeconfig" ]] && break; sleep 0.1; done
    [[ -f "$state/kubeconfig" ]] || { cat "$state/kubesim.log" >&2; echo "demo: kubesim did not start" >&2; exit 1; }
    "$kubectl" kustomize deploy/default | "$kubectl" apply --server-side -f - > /dev/null
    "$kubectl" -n steward-system rollout status deployment/etcd-operator deployment/prometheus-operator --timeout=120s
    "$kubectl" apply --server-side -f deploy/examples/ > /dev/null
    "$kubectl" kustomize deploy/monitoring | "$kubectl" apply --server-side -f - > /dev/null
    # The examples really run: etcd members, the team and global Prometheus and the HA
    # Alertmanager Available, the team's alert routing accepted, the example backup stored.
    "$kubectl" -n etcd-example wait --for=condition=Available etcdcluster/example --timeout=240s > /dev/null
    "$kubectl" -n etcd-example wait --for=jsonpath='{.status.readyMembers}'=3 etcdcluster/example --timeout=240s > /dev/null
    "$kubectl" -n steward-system wait --for=condition=Available prometheus/platform prometheus/global alertmanager/platform --timeout=180s > /dev/null
    "$kubectl" -n etcd-example wait --for=condition=Accepted alertmanagerconfig/etcd-team --timeout=60s > /dev/null
    "$kubectl" -n etcd-example wait --for=jsonpath='{.status.phase}'=Succeeded etcdbackup/example-before-migration --timeout=180s > /dev/null
    echo
    echo "export KUBECONFIG=$KUBECONFIG"
    echo
    "$kubectl" get pods,svc -n steward-system
    echo
    "$kubectl" get etcdclusters,prometheuses,etcdbackups,alertmanagers,alertmanagerconfigs,servicemonitors,podmonitors,prometheusrules -A
}

case "${1:-fg}" in
    up) up ;;
    down) down ;;
    fg)
        up
        trap down INT TERM
        echo
        echo "demo: running; Ctrl-C stops it"
        while running; do sleep 1; done
        ;;
    *) echo "usage: hack/demo.sh [up|down]" >&2; exit 2 ;;
esac
