#!/usr/bin/env bash
# Fails when deploy/crds differs from what crdgen generates now.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$root/hack/gen-crds.sh" "$tmp"
if ! diff -ru "$root/deploy/crds" "$tmp" > "$tmp.diff"; then
    cat "$tmp.diff" | head -50
    rm -f "$tmp.diff"
    echo "deploy/crds is out of date with the CRD types: run 'make crds' and commit the result" >&2
    exit 1
fi
rm -f "$tmp.diff"
echo "deploy/crds matches crdgen"
