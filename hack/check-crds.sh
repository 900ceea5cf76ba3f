#!/usr/bin/env bash
# Fails when deploy/crds or deploy/crds-compat differs from what crdgen generates now.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$root/hack/gen-crds.sh" "$tmp/crds" "$tmp/crds-compat"
for d in crds crds-compat; do
    if ! diff -ru "$root/deploy/$d" "$tmp/$d" > "$tmp/diff"; then
        head -50 "$tmp/diff"
        echo "deploy/$d is out of date with the CRD types: run 'make crds' and commit the result" >&2
        exit 1
    fi
done
echo "deploy/crds and deploy/crds-compat match crdgen"
