#!/usr/bin/env bash
# Builds the binaries of the offline single-node cluster from the Go module proxy, into
# $GANTRY_CLUSTER/bin (default ~/.cache/gantry/cluster/bin); idempotent per version.
#   Kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl)
#   Argo Workflows (workflow-controller, argoexec, the argo CLI)
#   etcd (a version that supports watch progress requests)
#   Tekton Pipelines (controller, webhook, resolvers, entrypoint, nop, workingdirinit, sidecarlogresults)
#   CoreDNS (Service names for pods: the pipeline addresses MinIO and model servers by name)
# Build-only Go modules live in temp dirs: nothing here enters gantry's go.mod.
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-v1.32.2}"
ARGO_VERSION="${ARGO_VERSION:-v3.7.18}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"
# etcd ≥ 3.5.13 answers progress requests; without them (Debian's 3.4.23) the apiserver refuses
# the watch-list streams that client-go v0.33 informers (Argo, controller-manager) open.
ETCD_VERSION="${ETCD_VERSION:-v3.5.16}"
# Tekton Pipelines (controller, webhook, the images it injects into every TaskRun pod, the remote
# resolvers): v1.9.1 is an LTS release whose client-go (v0.32) matches the cluster's Kubernetes.
TEKTON_VERSION="${TEKTON_VERSION:-v1.9.1}"
# The Docker distribution registry (push notifications): the e2e's push-trigger registry.
DISTRIBUTION_VERSION="${DISTRIBUTION_VERSION:-v3.1.2}"
root="${GANTRY_CLUSTER:-${HOME}/.cache/gantry/cluster}"
bin="${root}/bin"
mkdir -p "${bin}"

build_k8s() {
  local stamp="${bin}/.k8s-${K8S_VERSION}"
  [[ -f "${stamp}" ]] && return 0
  local mod t0=${SECONDS}; mod=$(mktemp -d)
  local staging="v0.${K8S_VERSION#v1.}"
  echo "cluster/build: kubernetes ${K8S_VERSION} (staging ${staging}); ≈16 min cold on 2 cores" >&2
  (
    cd "${mod}"
    go mod init gantry.local/k8s-build >/dev/null 2>&1
    go mod edit -require="k8s.io/kubernetes@${K8S_VERSION}"
    # kubernetes' go.mod replaces its staging modules with ./staging/...: pin them to the release instead.
    go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" >/dev/null
    local gomod; gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${K8S_VERSION}.mod"
    grep -oE '^\s*k8s.io/[a-z0-9-]+ => ./staging' "${gomod}" | awk '{print $1}' | grep -v sample- | while read -r m; do
      go mod edit -replace="${m}=${m}@${staging}"
    done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
      CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}" \
        -o "${bin}/${c}" "k8s.io/kubernetes/cmd/${c}"
      echo "cluster/build: built ${c} ($((SECONDS - t0))s since this component started)" >&2
    done
  )
  rm -rf "${mod}"
  touch "${stamp}"
}

build_argo() {
  local stamp="${bin}/.argo-${ARGO_VERSION}"
  [[ -f "${stamp}" ]] && return 0
  local mod t0=${SECONDS}; mod=$(mktemp -d)
  echo "cluster/build: argo workflows ${ARGO_VERSION}" >&2
  (
    cd "${mod}"
    go mod init gantry.local/argo-build >/dev/null 2>&1
    go mod edit -require="github.com/argoproj/argo-workflows/v3@${ARGO_VERSION}"
    go mod edit -replace=github.com/olekukonko/tablewriter=github.com/olekukonko/tablewriter@v0.0.5
    # The module zip lacks workflow/executor/osspecific's Linux signal file (argoexec then fails with
    # "undefined: Setpgid"); build from a local copy where the Darwin one, which is plain POSIX, stands in.
    go mod download -json "github.com/argoproj/argo-workflows/v3@${ARGO_VERSION}" >/dev/null
    local src; src="$(go env GOMODCACHE)/github.com/argoproj/argo-workflows/v3@${ARGO_VERSION}"
    cp -r "${src}" argo-src && chmod -R u+w argo-src
    if [[ ! -f argo-src/workflow/executor/osspecific/signal_linux.go ]]; then
      cp argo-src/workflow/executor/osspecific/signal_darwin.go argo-src/workflow/executor/osspecific/signal_linux.go
    fi
    go mod edit -replace=github.com/argoproj/argo-workflows/v3=./argo-src
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "github.com/argoproj/argo-workflows/v3/cmd/argoexec"
	_ "github.com/argoproj/argo-workflows/v3/cmd/workflow-controller"
)
GO
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    for c in workflow-controller argoexec; do
      CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${bin}/${c}" "github.com/argoproj/argo-workflows/v3/cmd/${c}"
      echo "cluster/build: built ${c} ($((SECONDS - t0))s since this component started)" >&2
    done
  )
  rm -rf "${mod}"
  touch "${stamp}"
}

# The argo CLI embeds the UI (ui/dist/app), which the module zip does not carry: a placeholder
# page stands in (the CLI never serves it). ≈13 min cold.
build_argo_cli() {
  local stamp="${bin}/.argo-cli-${ARGO_VERSION}"
  [[ -f "${stamp}" ]] && return 0
  local mod t0=${SECONDS}; mod=$(mktemp -d)
  echo "cluster/build: argo CLI ${ARGO_VERSION}" >&2
  (
    cd "${mod}"
    go mod init gantry.local/argo-cli-build >/dev/null 2>&1
    go mod edit -require="github.com/argoproj/argo-workflows/v3@${ARGO_VERSION}"
    go mod edit -replace=github.com/olekukonko/tablewriter=github.com/olekukonko/tablewriter@v0.0.5
    go mod download -json "github.com/argoproj/argo-workflows/v3@${ARGO_VERSION}" >/dev/null
    local src; src="$(go env GOMODCACHE)/github.com/argoproj/argo-workflows/v3@${ARGO_VERSION}"
    cp -r "${src}" argo-src && chmod -R u+w argo-src
    mkdir -p argo-src/ui/dist/app
    echo '<!doctype html><title>argo</title>' >argo-src/ui/dist/app/index.html
    go mod edit -replace=github.com/argoproj/argo-workflows/v3=./argo-src
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/argoproj/argo-workflows/v3/cmd/argo"
GO
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X github.com/argoproj/argo-workflows/v3.version=${ARGO_VERSION}" \
      -o "${bin}/argo" github.com/argoproj/argo-workflows/v3/cmd/argo
    echo "cluster/build: built argo ($((SECONDS - t0))s)" >&2
  )
  rm -rf "${mod}"
  touch "${stamp}"
}

# Tekton is built inside its own module (its go.mod and go.sum pin what it was released with);
# the binaries land in ${bin}/tekton-${TEKTON_VERSION}/, its release manifests in .../config.
build_tekton() {
  local out="${bin}/tekton-${TEKTON_VERSION}" stamp="${bin}/.tekton-${TEKTON_VERSION}"
  [[ -f "${stamp}" ]] && return 0
  local mod t0=${SECONDS}; mod=$(mktemp -d)
  echo "cluster/build: tekton pipelines ${TEKTON_VERSION}" >&2
  (
    cd "${mod}"
    go mod download -json "github.com/tektoncd/pipeline@${TEKTON_VERSION}" >/dev/null
    cp -r "$(go env GOMODCACHE)/github.com/tektoncd/pipeline@${TEKTON_VERSION}" src && chmod -R u+w src
    cd src
    rm -rf "${out}" && mkdir -p "${out}"
    for c in controller webhook resolvers entrypoint nop workingdirinit sidecarlogresults; do
      CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${out}/${c}" "./cmd/${c}"
      echo "cluster/build: built tekton ${c} ($((SECONDS - t0))s since this component started)" >&2
    done
    cp -r config "${out}/config"
  )
  rm -rf "${mod}"
  touch "${stamp}"
}

# build_module NAME MODULE VERSION IMPORT PKG: builds PKG of MODULE@VERSION (its tools.go imports
# IMPORT) into ${bin}/NAME, in a throw-away module; once per version.
build_module() {
  local name=$1 module=$2 version=$3 import=$4 pkg=$5
  local stamp="${bin}/.${name}-${version}"
  [[ -f "${stamp}" ]] && return 0
  local mod t0=${SECONDS}; mod=$(mktemp -d)
  echo "cluster/build: ${name} ${version}" >&2
  (
    cd "${mod}"
    go mod init "gantry.local/${name}-build" >/dev/null 2>&1
    go mod edit -require="${module}@${version}"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "${import}" >tools.go
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${bin}/${name}" "${pkg}"
    echo "cluster/build: built ${name} ($((SECONDS - t0))s)" >&2
  )
  rm -rf "${mod}"
  touch "${stamp}"
}
build_coredns() { build_module coredns github.com/coredns/coredns "${COREDNS_VERSION}" github.com/coredns/coredns github.com/coredns/coredns; }
build_etcd() { build_module etcd go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" go.etcd.io/etcd/server/v3/etcdmain go.etcd.io/etcd/server/v3; }
build_registry() {
  local cmd=github.com/distribution/distribution/v3/cmd/registry
  build_module registry github.com/distribution/distribution/v3 "${DISTRIBUTION_VERSION}" "${cmd}" "${cmd}"
}

case "${1:-all}" in
  k8s) build_k8s ;;
  argo) build_argo; build_argo_cli ;;
  coredns) build_coredns ;;
  registry) build_registry ;;
  tekton) build_tekton ;;
  etcd) build_etcd ;;
  all) build_k8s; build_etcd; build_argo; build_coredns; build_argo_cli; build_registry; build_tekton ;;
  *) echo "usage: $0 [k8s|etcd|argo|coredns|registry|tekton|all]" >&2; exit 2 ;;
esac
ls -la "${bin}"
