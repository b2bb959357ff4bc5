#!/usr/bin/env bash
# Builds the binaries of the offline local cluster from the Go module proxy, into
# $GANTRY_CLUSTER/bin (default ~/.cache/gantry/cluster/bin); idempotent per version.
#   hack/cluster/build.sh demo     what `make demo` needs (the components marked "demo" below)
#   hack/cluster/build.sh extras   the rest (Tekton)
#   hack/cluster/build.sh all      both (the e2e suite)
#   hack/cluster/build.sh k8s|etcd|argo|coredns|registry|tekton
#   hack/cluster/build.sh --list   the component table (the README's copy is checked against it)
#   hack/cluster/build.sh --check [demo|extras|all]   exit 1 unless every binary is there
# Independent components build in two lanes at once (module downloads and linking leave a core
# idle in a single lane); every component takes a lock, so a build started in the background
# (demo.sh starts `extras` at low priority) and a later `up.sh` never build the same thing twice.
# Each component's wall time is appended to ${root}/build-times.tsv.
# Build-only Go modules live in temp dirs: nothing here enters gantry's go.mod. All of them share
# the one Go build cache (`go env GOCACHE`) and module cache.
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-v1.32.2}"
ARGO_VERSION="${ARGO_VERSION:-v3.7.18}"
# Argo's module path follows its major version (v3.x: …/v3, v4.x: …/v4).
ARGO_MODULE="github.com/argoproj/argo-workflows/${ARGO_VERSION%%.*}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"
# etcd ≥ 3.5.13 answers progress requests; without them (Debian's 3.4.23) the apiserver refuses
# the watch-list streams that client-go v0.33 informers (Argo, controller-manager) open.
ETCD_VERSION="${ETCD_VERSION:-v3.5.16}"
# Tekton Pipelines (controller, webhook, the images it injects into every TaskRun pod, the remote
# resolvers): v1.9.1 is an LTS release whose client-go (v0.32) matches the cluster's Kubernetes.
TEKTON_VERSION="${TEKTON_VERSION:-v1.9.1}"
# The Docker distribution registry: the cluster's registry, its push notifications start runs.
DISTRIBUTION_VERSION="${DISTRIBUTION_VERSION:-v3.1.2}"
root="${GANTRY_CLUSTER:-${HOME}/.cache/gantry/cluster}"
bin="${root}/bin"
mkdir -p "${bin}"

# The component table: NAME|SET|VERSION|BINARIES|WHAT FOR. SET is demo (make demo needs it) or
# extras (the e2e suite, Tekton users). `--list` prints it; hack/verify.sh holds the README to it.
components() {
  cat <<EOF
k8s|demo|${K8S_VERSION}|kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl|Kubernetes: control plane, node, kubectl
etcd|demo|${ETCD_VERSION}|etcd|the API server's store
coredns|demo|${COREDNS_VERSION}|coredns|Service names for pods (MinIO, model servers)
argo|demo|${ARGO_VERSION}|argo-${ARGO_VERSION}/workflow-controller argo-${ARGO_VERSION}/argoexec argo-${ARGO_VERSION}/argo|Argo Workflows: controller, executor, CLI and Argo Server with its UI
registry|demo|${DISTRIBUTION_VERSION}|registry|the cluster's registry (images, models, OCI artifacts), push notifications to the Argo Server
tekton|extras|${TEKTON_VERSION}|tekton-${TEKTON_VERSION}/controller tekton-${TEKTON_VERSION}/webhook tekton-${TEKTON_VERSION}/resolvers tekton-${TEKTON_VERSION}/entrypoint tekton-${TEKTON_VERSION}/nop tekton-${TEKTON_VERSION}/workingdirinit tekton-${TEKTON_VERSION}/sidecarlogresults|Tekton Pipelines: controller, webhook, resolvers, injected images
EOF
}
field() { components | awk -F'|' -v n="$1" -v f="$2" '$1 == n {print $f}'; }
members() { components | awk -F'|' -v s="$1" 's == "all" || $2 == s {print $1}'; }

# timed NAME FN: runs FN under NAME's lock unless NAME's stamp exists; records its wall time.
timed() {
  local name=$1 fn=$2 version stamp t0=${SECONDS}
  version=$(field "${name}" 3)
  stamp="${bin}/.${name}-${version}"
  [[ -f "${stamp}" ]] && current "${name}" && return 0
  exec {lock}>"${bin}/.lock-${name}"
  flock "${lock}"
  if [[ ! -f "${stamp}" ]] || ! current "${name}"; then # a concurrent build may have finished it while we waited
    echo "cluster/build: ${name} ${version} (started)" >&2
    "${fn}"
    touch "${stamp}"
    printf '%s\t%s\t%d\t%s\n' "${name}" "${version}" "$((SECONDS - t0))" "$(date -u +%FT%TZ)" >>"${root}/build-times.tsv"
    echo "cluster/build: ${name} ${version} built in $((SECONDS - t0))s" >&2
  fi
  flock -u "${lock}"
  exec {lock}>&-
}

# current NAME: a stamped build is still what this script builds (Argo: built with its UI, or
# with the page saying why not; a build from before the UI is rebuilt once).
current() { [[ "$1" != argo || -f "${bin}/argo-${ARGO_VERSION}/.ui" ]]; }

# in_module NAME: a throw-away module directory for NAME (printed); removed by the caller.
in_module() { local d; d=$(mktemp -d); (cd "${d}" && go mod init "gantry.local/$1-build" >/dev/null 2>&1); echo "${d}"; }
tools_go() { # IMPORT...: a tools.go that imports each package (so `go mod tidy` resolves them)
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  printf '\t_ "%s"\n' "$@"
  printf ')\n'
}

build_k8s() {
  local mod; mod=$(in_module k8s)
  local staging="v0.${K8S_VERSION#v1.}" c pkgs=()
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do pkgs+=("k8s.io/kubernetes/cmd/${c}"); done
  (
    cd "${mod}"
    go mod edit -require="k8s.io/kubernetes@${K8S_VERSION}"
    # kubernetes' go.mod replaces its staging modules with ./staging/...: pin them to the release instead.
    go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" >/dev/null
    local gomod; gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${K8S_VERSION}.mod"
    grep -oE '^\s*k8s.io/[a-z0-9-]+ => ./staging' "${gomod}" | awk '{print $1}' | grep -v sample- | while read -r m; do
      go mod edit -replace="${m}=${m}@${staging}"
    done
    tools_go "${pkgs[@]}" >tools.go
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    # One `go build` for the six: their shared packages compile once and the links run side by side.
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}" \
      -o "${bin}/" "${pkgs[@]}"
  )
  rm -rf "${mod}"
}

# Argo's controller, executor and CLI (which is also the Argo Server's image), in one module and
# one `go build`, into ${bin}/argo-${ARGO_VERSION}/ (up.sh puts the version it runs in ${bin}/:
# ARGO_VERSION=v4.x brings up Argo v4 beside a built v3). The module zip has the UI's sources but
# not the built UI (ui/dist/app, embedded by the CLI): build_argo_ui builds it. The zip also lacks
# workflow/executor/osspecific's Linux signal file (argoexec then fails with "undefined:
# Setpgid"): the Darwin one, which is plain POSIX, stands in.
build_argo() {
  local mod; mod=$(in_module argo)
  (
    cd "${mod}"
    go mod edit -require="${ARGO_MODULE}@${ARGO_VERSION}"
    go mod edit -replace=github.com/olekukonko/tablewriter=github.com/olekukonko/tablewriter@v0.0.5
    go mod download -json "${ARGO_MODULE}@${ARGO_VERSION}" >/dev/null
    local src; src="$(go env GOMODCACHE)/${ARGO_MODULE}@${ARGO_VERSION}"
    cp -r "${src}" argo-src && chmod -R u+w argo-src
    if [[ ! -f argo-src/workflow/executor/osspecific/signal_linux.go ]]; then
      cp argo-src/workflow/executor/osspecific/signal_darwin.go argo-src/workflow/executor/osspecific/signal_linux.go
    fi
    build_argo_ui "${PWD}/argo-src"
    go mod edit -replace="${ARGO_MODULE}=./argo-src"
    local m="${ARGO_MODULE}/cmd"
    tools_go "${m}/argoexec" "${m}/workflow-controller" "${m}/argo" >tools.go
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X ${ARGO_MODULE}.version=${ARGO_VERSION}" \
      -o "${bin}/argo-${ARGO_VERSION}/" "${m}/workflow-controller" "${m}/argoexec" "${m}/argo"
    head -c 200 argo-src/ui/dist/app/index.html >"${bin}/argo-${ARGO_VERSION}/.ui"
  )
  rm -rf "${mod}"
}

# build_argo_ui SRC: the Argo UI into SRC/ui/dist/app, as Argo's own `yarn build` does, from the
# module's ui/ sources and their yarn.lock, packages from the npm registry (yarn 1.22.22 via npx;
# Node.js ≥ 20). One dependency no registry serves: argo-ui, which Argo pins as a git commit of
# github.com/argoproj/argo-ui — it is taken as argo-ui@1.0.0 from npm (argoproj's last publish,
# 2021; what the UI imports from it resolves, the rest of the pins are Argo's), plus the uuid@3 it
# imports as uuid/v1. Kept in ${bin}/argo-ui-${ARGO_VERSION}/ (source maps left out). When it
# cannot be built, a page that says so stands in and the Argo Server serves its API only.
build_argo_ui() {
  local src=$1 out="${bin}/argo-ui-${ARGO_VERSION}" log="${root}/argo-ui-${ARGO_VERSION}.log"
  if [[ ! -f "${out}/index.html" ]]; then
    echo "cluster/build: the Argo UI ${ARGO_VERSION} (yarn + webpack; log: ${log})" >&2
    # Not `if ! ( … )`: bash ignores set -e inside a tested command, so a failed step went on
    # (v4's webpack error left an empty UI that broke the Go build).
    local rc=0
    set +e
    (
      set -euo pipefail
      cd "${src}/ui"
      sed -i -E 's#"argo-ui": "git\+https://github.com/argoproj/argo-ui.git\#[0-9a-f]+"#"argo-ui": "1.0.0"#' package.json
      grep -q '"argo-ui": "1.0.0"' package.json
      python3 -c 'import sys; p = "yarn.lock"; b = open(p).read().split("\n\n"); open(p, "w").write("\n\n".join(x for x in b if not x.startswith("\"argo-ui@git+")))'
      # the lockfile gains argo-ui@1.0.0's entries; esbuild's binary is an optional dependency
      sed -i -e 's/--install.frozen-lockfile true/--install.frozen-lockfile false/' -e 's/--install.ignore-optional true/--install.ignore-optional false/' .yarnrc
      # (its package cache inside the throw-away module: ≈1 GB nobody needs once the UI is built)
      npx --yes yarn@1.22.22 install --ignore-scripts --non-interactive --network-timeout 600000 --cache-folder "${src}/.yarn-cache"
      mkdir -p node_modules/argo-ui/node_modules
      (cd node_modules/argo-ui/node_modules && npm pack --silent uuid@3.4.0 && tar xzf uuid-3.4.0.tgz && rm -rf uuid && mv package uuid)
      # argo-ui 1.0.0's log viewer imports xterm 2.4's stylesheet from the top-level node_modules;
      # where the UI has its own xterm there (v4: 4.x, another layout), argo-ui's nested 2.4 is meant.
      if [[ -d node_modules/argo-ui/node_modules/xterm ]]; then
        sed -i "s#@import 'node_modules/xterm/dist/xterm'#@import 'node_modules/argo-ui/node_modules/xterm/dist/xterm'#" \
          node_modules/argo-ui/src/components/logs-viewer/logs-viewer.scss
      fi
      NODE_ENV=production npx webpack --mode production
      rm -rf "${out}.tmp" && mkdir -p "${out}.tmp"
      (cd dist/app && find . -type f ! -name '*.map' -exec cp --parents {} "${out}.tmp/" \;)
      rm -rf "${out}" && mv "${out}.tmp" "${out}"
    ) >"${log}" 2>&1
    rc=$?
    set -e
    if ((rc != 0)) || [[ ! -f "${out}/index.html" ]]; then
      rm -rf "${out}"
      echo "cluster/build: the Argo UI did not build (${log}): the Argo Server serves its API only" >&2
      mkdir -p "${src}/ui/dist/app"
      printf '<!doctype html><title>Argo Server (no UI)</title><p>This Argo Server was built without its UI: the build failed (%s). Its API answers under /api/v1/.\n' "${log}" >"${src}/ui/dist/app/index.html"
      return 0
    fi
  fi
  rm -rf "${src}/ui/dist/app" && mkdir -p "${src}/ui/dist" && cp -r "${out}" "${src}/ui/dist/app"
}

# Tekton is built inside its own module (its go.mod and go.sum pin what it was released with);
# the binaries land in ${bin}/tekton-${TEKTON_VERSION}/, its release manifests in .../config.
build_tekton() {
  local out="${bin}/tekton-${TEKTON_VERSION}" mod; mod=$(mktemp -d)
  (
    cd "${mod}"
    go mod download -json "github.com/tektoncd/pipeline@${TEKTON_VERSION}" >/dev/null
    cp -r "$(go env GOMODCACHE)/github.com/tektoncd/pipeline@${TEKTON_VERSION}" src && chmod -R u+w src
    cd src
    rm -rf "${out}" && mkdir -p "${out}"
    local c pkgs=()
    for c in controller webhook resolvers entrypoint nop workingdirinit sidecarlogresults; do pkgs+=("./cmd/${c}"); done
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${out}/" "${pkgs[@]}"
    cp -r config "${out}/config"
  )
  rm -rf "${mod}"
}

# build_module NAME MODULE VERSION IMPORT PKG: builds PKG of MODULE@VERSION (its tools.go imports
# IMPORT) into ${bin}/NAME, in a throw-away module.
build_module() {
  local name=$1 module=$2 version=$3 import=$4 pkg=$5 mod; mod=$(in_module "${name}")
  (
    cd "${mod}"
    go mod edit -require="${module}@${version}"
    tools_go "${import}" >tools.go
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${bin}/${name}" "${pkg}"
  )
  rm -rf "${mod}"
}
# CoreDNS with only the plugins the cluster's Corefile uses (up.sh: bind, ready, health, errors,
# cache, kubernetes), built the way CoreDNS documents for a custom set: a main that imports
# coremain and those plugins and sets dnsserver.Directives (their order as in CoreDNS's
# plugin.cfg). The stock binary compiles every plugin, the cloud providers' SDKs among them.
build_coredns() {
  local mod; mod=$(in_module coredns)
  (
    cd "${mod}"
    go mod edit -require="github.com/coredns/coredns@${COREDNS_VERSION}"
    cat >main.go <<'GO'
// CoreDNS with the plugins of the local cluster's Corefile (hack/cluster/up.sh).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "${bin}/coredns" .
  )
  rm -rf "${mod}"
}
build_etcd() { build_module etcd go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" go.etcd.io/etcd/server/v3/etcdmain go.etcd.io/etcd/server/v3; }
build_registry() {
  local cmd=github.com/distribution/distribution/v3/cmd/registry
  build_module registry github.com/distribution/distribution/v3 "${DISTRIBUTION_VERSION}" "${cmd}" "${cmd}"
}

# check SET: every binary of SET's components is there.
check() {
  local n b missing=0
  for n in $(members "$1"); do
    for b in $(field "${n}" 4); do
      [[ -x "${bin}/${b}" ]] || { echo "cluster/build: ${n}: ${bin}/${b} missing" >&2; missing=1; }
    done
    current "${n}" || { echo "cluster/build: ${n}: built by an older build.sh (rebuilt once)" >&2; missing=1; }
  done
  return "${missing}"
}

# lanes NAME...: builds NAMEs in two lanes — the biggest (k8s, then tekton) in one, the others in
# the other — and fails when either lane fails.
lanes() {
  local a=() b=() n pa pb rc=0
  for n in "$@"; do case "${n}" in k8s | tekton) a+=("${n}") ;; *) b+=("${n}") ;; esac; done
  (for n in "${a[@]}"; do timed "${n}" "build_${n}"; done) &
  pa=$!
  (for n in "${b[@]}"; do timed "${n}" "build_${n}"; done) &
  pb=$!
  wait "${pa}" || rc=1
  wait "${pb}" || rc=1
  return "${rc}"
}

t0=${SECONDS}
# An Argo built before versions were kept apart (its binaries in ${bin}/): build it again, apart.
[[ -f "${bin}/.argo-${ARGO_VERSION}" && ! -d "${bin}/argo-${ARGO_VERSION}" ]] && rm -f "${bin}/.argo-${ARGO_VERSION}"
case "${1:-all}" in
  --list)
    echo "| component | set | version | binaries | for |"
    echo "|---|---|---|---|---|"
    components | awk -F'|' '{b=$4; gsub(/(tekton|argo)-[^\/ ]*\//, "", b); printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, b, $5}'
    exit 0 ;;
  --check) check "${2:-all}"; exit $? ;;
  demo | extras | all) mapfile -t todo < <(members "$1") ;;
  k8s | etcd | argo | coredns | registry | tekton) todo=("$1") ;;
  *) echo "usage: $0 [demo|extras|all|k8s|etcd|argo|coredns|registry|tekton|--list|--check [SET]]" >&2; exit 2 ;;
esac
lanes "${todo[@]}"
for n in "${todo[@]}"; do
  for b in $(field "${n}" 4); do [[ -x "${bin}/${b}" ]] || { echo "cluster/build: ${n}: ${bin}/${b} was not built" >&2; exit 1; }; done
done
echo "cluster/build: ${todo[*]} ready ($((SECONDS - t0))s)" >&2
