#!/usr/bin/env bash
# Builds every gantry image with ko into a registry on loopback — no outside registry needed:
# starts `crane registry serve` (unless REGISTRY is given), builds a minimal nonroot base image,
# `ko build`s the six images, `ko resolve`s templates/ (every ko:// pinned by digest) and prints
# each image's compressed size.
# Inside the local cluster's network namespace, hack/cluster/gantry.sh runs it with REGISTRY set.
#   hack/images.sh            # registry on 127.0.0.1:5000, data in ~/.cache/gantry/registry
#   REGISTRY=host:port hack/images.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(hack/install-tools.sh --images | tail -n 1)
export PATH="${bin}:${PATH}"
state="${GANTRY_STATE:-${HOME}/.cache/gantry}"
mkdir -p "${state}"

if [[ -z "${REGISTRY:-}" ]]; then
  REGISTRY=127.0.0.1:5000
  if ! curl -fs "http://${REGISTRY}/v2/" >/dev/null 2>&1; then
    mkdir -p "${state}/registry"
    nohup crane registry serve --address "${REGISTRY}" --disk "${state}/registry" >"${state}/registry.log" 2>&1 &
    echo $! >"${state}/registry.pid"
    for _ in $(seq 100); do curl -fs "http://${REGISTRY}/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fs "http://${REGISTRY}/v2/" >/dev/null 2>&1 || { echo "images: the registry on ${REGISTRY} did not answer within 10 s; its log: ${state}/registry.log" >&2; exit 1; }
    echo "registry: ${REGISTRY} (pid $(cat "${state}/registry.pid"))"
  fi
fi

base=$(hack/base-image.sh "${REGISTRY}")
echo "base: $(crane digest "${base}")"

export KO_DOCKER_REPO="${REGISTRY}/gantry" KO_DEFAULTBASEIMAGE="${base}"
refs=$(ko build --base-import-paths --platform=linux/amd64 --sbom=none \
  ./cmd/train-launcher ./cmd/model-publisher ./cmd/canary-evaluator ./cmd/approver ./images/fashion-trainer ./images/model-server)
mkdir -p _output
ko resolve --base-import-paths --platform=linux/amd64 --sbom=none -f templates/ >_output/gantry-release.yaml
ko resolve --base-import-paths --platform=linux/amd64 --sbom=none -f templates/tekton/ >_output/gantry-tekton-release.yaml
for f in _output/gantry-release.yaml _output/gantry-tekton-release.yaml; do
  if grep -v '^#' "${f}" | grep -q 'ko://'; then echo "unresolved ko:// references left in ${f}" >&2; exit 1; fi
  echo "resolved: ${f} ($(grep -c '@sha256:' "${f}") pinned image references)"
done
printf '%-60s %10s\n' IMAGE "COMPRESSED"
for r in ${refs}; do
  size=$(crane manifest "${r}" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(l["size"] for l in m["layers"])+m["config"]["size"])')
  printf '%-60s %7.1f MB\n' "${r%@*}" "$(echo "${size}/1000000" | bc -l)"
done
