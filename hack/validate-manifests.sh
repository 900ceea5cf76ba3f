#!/usr/bin/env bash
# Validates what we ship:
#   - `kubectl kustomize deploy/default` (namespace, CRDs, both operators), `kubectl kustomize
#     deploy/monitoring` and every file in deploy/examples against the Kubernetes schemas with
#     `kubernetes-validate --strict`;
#   - the custom resources in deploy/examples and deploy/monitoring against our own CRDs
#     (hack/validate-crs.py),
#     since kubernetes-validate has no schema for them.
# Needs `make test-deps` (kubectl and the kubernetes-validate venv under .cache/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kubectl="$root/.cache/bin/kubectl"
validate="$root/.cache/venv/bin/kubernetes-validate"
python="$root/.cache/venv/bin/python"
k8s_version="${K8S_SCHEMA_VERSION:-1.32}"
for tool in "$kubectl" "$validate" "$python"; do
    [[ -x "$tool" ]] || { echo "validate-manifests: $tool missing: run 'make test-deps'" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Fails on invalid documents, and on documents kubernetes-validate has no schema for unless
# they are custom resources of our CRDs (checked next).
run_validate() {
    local label="$1"; shift
    local out rc=0
    out="$("$validate" --strict -k "$k8s_version" --quiet "$@" 2>&1)" || rc=$?
    local unknown
    unknown="$(grep "Couldn't find schema" <<<"$out" | grep -v -E 'steward\.dev/' || true)"
    if [[ $rc -ne 0 || -n "$unknown" ]]; then
        echo "$out" >&2
        echo "validate-manifests: $label is not valid" >&2
        return 1
    fi
    echo "$label: valid (kubernetes-validate --strict -k $k8s_version)"
}

"$kubectl" kustomize "$root/deploy/default" > "$tmp/default.yaml"
run_validate "deploy/default" "$tmp/default.yaml"

shopt -s nullglob
examples=("$root"/deploy/examples/*.yaml)
[[ ${#examples[@]} -gt 0 ]] || { echo "validate-manifests: deploy/examples is empty" >&2; exit 1; }
for f in "${examples[@]}"; do
    run_validate "deploy/examples/$(basename "$f")" "$f"
done
"$kubectl" kustomize "$root/deploy/monitoring" > "$tmp/monitoring.yaml"
run_validate "deploy/monitoring" "$tmp/monitoring.yaml"
"$python" "$root/hack/validate-crs.py" "$root/deploy/crds" "${examples[@]}" "$tmp/monitoring.yaml"
