# Steward — common tasks. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
KIND ?= kind
KIND_CLUSTER ?= steward
IMAGE_TAG ?= dev
# kubectl for deploy targets: the cached one when present, else the one on PATH.
KUBECTL ?= $(shell [ -x .cache/bin/kubectl ] && echo .cache/bin/kubectl || echo kubectl)

.PHONY: build test test-deps lint unit e2e crds check-crds validate-manifests images kind-up deploy undeploy bench demo demo-up demo-down fmt help

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

build: ## Build every crate
	$(CARGO) build --workspace --locked

test: test-deps lint unit check-crds validate-manifests ## Everything CI checks
	@echo "make test: all checks passed"

test-deps: ## Fetch etcd, Prometheus, Alertmanager, promtool, kubectl, protoc, kubernetes-validate, s3s-fs
	hack/test-deps.sh

lint: ## Formatting and clippy (warnings are errors)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: ## Every test of the workspace (unit, golden, real-binary and kubesim e2e), two binaries at a time
	# The e2e tests run the operator binaries themselves: build them first.
	$(CARGO) build --workspace --bins --locked
	CARGO=$(CARGO) hack/run-tests.sh

e2e: test-deps ## Only the end-to-end tests (kubesim; E2E_KUBECONFIG=... runs them on another cluster)
	$(CARGO) build --locked -p etcd-operator -p prometheus-operator
	$(CARGO) test --locked -p e2e

demo: ## kubesim with both operators and the examples; stays up until Ctrl-C
	hack/demo.sh

demo-up: ## The demo in the background (kubeconfig: .demo/kubeconfig)
	hack/demo.sh up

demo-down: ## Stop the background demo
	hack/demo.sh down

crds: ## Regenerate deploy/crds and deploy/crds-compat from the CRD types
	hack/gen-crds.sh

check-crds: ## Fail when deploy/crds or deploy/crds-compat differs from crdgen's output
	hack/check-crds.sh

validate-manifests: ## kubernetes-validate --strict on deploy/default and deploy/examples
	hack/validate-manifests.sh

fmt: ## Format the code
	$(CARGO) fmt --all

images: ## Build steward/etcd-operator and steward/prometheus-operator images
	IMAGE_TAG=$(IMAGE_TAG) hack/build-images.sh

kind-up: ## Create the kind cluster (once)
	@$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || $(KIND) create cluster --name $(KIND_CLUSTER)

deploy: kind-up images ## Install CRDs and both operators on kind
	$(KIND) load docker-image --name $(KIND_CLUSTER) steward/etcd-operator:$(IMAGE_TAG) steward/prometheus-operator:$(IMAGE_TAG)
	$(KUBECTL) --context kind-$(KIND_CLUSTER) apply --server-side -k deploy/default
	$(KUBECTL) --context kind-$(KIND_CLUSTER) -n steward-system rollout status deployment/etcd-operator deployment/prometheus-operator --timeout=120s

undeploy: ## Remove both operators and the CRDs from kind
	$(KUBECTL) --context kind-$(KIND_CLUSTER) delete -k deploy/default --ignore-not-found

bench: test-deps ## Benchmarks (figures go into the issue notes; the etcd one needs root)
	$(CARGO) build --release --locked -p etcd-operator -p prometheus-operator
	$(CARGO) bench --workspace --locked
