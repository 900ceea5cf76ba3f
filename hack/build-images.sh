#!/usr/bin/env bash
# Builds steward/etcd-operator:$IMAGE_TAG and steward/prometheus-operator:$IMAGE_TAG.
#
# With a working Docker engine: the multi-stage Dockerfiles in crates/<operator>/.
# Without one (our own machines): buildah, offline — a release build here, then an image
# FROM scratch holding the binary, the shared libraries it links and CA certificates.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${IMAGE_TAG:-dev}"
operators=(etcd-operator prometheus-operator)
cd "$root"

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    for op in "${operators[@]}"; do
        docker build -f "crates/$op/Dockerfile" -t "steward/$op:$tag" .
    done
    exit 0
fi

command -v buildah >/dev/null 2>&1 || {
    echo "build-images: no Docker engine and no buildah: install one (apt-get install buildah)" >&2
    exit 1
}
cargo build --release --locked -p etcd-operator -p prometheus-operator
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
for op in "${operators[@]}"; do
    bin="target/release/$op"
    ctr="$(buildah from scratch)"
    mnt="$(buildah mount "$ctr")"
    install -D -m 0755 "$bin" "$mnt/usr/local/bin/$op"
    # The dynamic loader and every library the binary links, at their own paths.
    for lib in $(ldd "$bin" | grep -oE '/[^ ]+'); do
        install -D -m 0644 "$lib" "$mnt$lib"
    done
    chmod 0755 "$mnt"/lib*/ld-linux* 2>/dev/null || true
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > "$mnt/etc/passwd"
    buildah umount "$ctr" >/dev/null
    buildah config --user 65532:65532 --port 8080 \
        --entrypoint "[\"/usr/local/bin/$op\"]" --cmd run \
        --label org.opencontainers.image.source=https://github.com/steward-dev/steward "$ctr"
    buildah commit --rm "$ctr" "steward/$op:$tag" >/dev/null
    echo "built steward/$op:$tag ($(buildah inspect --format '{{.FromImageID}}' "steward/$op:$tag" 2>/dev/null | head -c 12))"
done
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep steward/ || true
