#!/usr/bin/env bash
# Writes the ConfigMap gantry-system/gantry-step-images that the admission policy gantry-step-pods
# (templates/approval-policy.yaml) reads: the images a pod running as a gantry step account may run.
#   hack/pinned-images.sh RELEASE.yaml... | kubectl apply -f -
# images:  every image pinned by digest in the resolved releases (ko resolve output);
# runtime: Argo's executor (--executor-image of the workflow-controller) and Tekton's init images
#          (-entrypoint-image, -workingdirinit-image, -shell-image of its controller), read from the
#          cluster with kubectl when it is on PATH; RUNTIME_IMAGES adds more (space-separated).
# Run it again after every ko resolve: a step pod with an image not listed is refused.
set -euo pipefail
if [[ $# -eq 0 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  [[ $# -eq 0 ]] && exit 2 || exit 0
fi
for f in "$@"; do [[ -f "${f}" ]] || { echo "pinned-images: ${f}: no such file" >&2; exit 2; }; done
images=$(grep -ho 'image: [^ ]*@sha256:[0-9a-f]\{64\}' "$@" | awk '{print $2}' | sort -u | tr '\n' ' ')
[[ -n "${images}" ]] || { echo "pinned-images: no image pinned by digest in $* (ko resolve them first)" >&2; exit 2; }
runtime="${RUNTIME_IMAGES:-}"
arg_after() { # FLAG ARGS...: the value following FLAG
  local flag=$1; shift
  while (($#)); do [[ "$1" == "${flag}" && $# -ge 2 ]] && { echo "$2"; return; }; shift; done
}
if command -v kubectl >/dev/null; then
  mapfile -t argo < <(kubectl -n argo get deploy workflow-controller -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}' 2>/dev/null || true)
  runtime+=" $(arg_after --executor-image "${argo[@]}")"
  mapfile -t tekton < <(kubectl -n tekton-pipelines get deploy tekton-pipelines-controller -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}' 2>/dev/null || true)
  for flag in -entrypoint-image -workingdirinit-image -shell-image; do runtime+=" $(arg_after "${flag}" "${tekton[@]}")"; done
fi
runtime=$(echo "${runtime}" | tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
cat <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: gantry-step-images
  namespace: gantry-system
  labels: {app.kubernetes.io/part-of: gantry}
data:
  images: "${images% }"
  runtime: "${runtime% }"
YAML
