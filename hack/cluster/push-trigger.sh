#!/usr/bin/env bash
# Wires the cluster's registry to a namespace's push trigger (docs/push-trigger.md), as a platform
# team does for its own registry: a push of a new training image by tag starts one ml-pipeline run.
#   1. the trigger's repository: PATH in the cluster's registry (default gantry/fashion-trainer):
#      the WorkflowEventBinding as `gen-templates --train-repository` generates it for PATH, the
#      trigger's `repository` (as the nodes pull it) and `catch-up-repository` (as its pod
#      reaches the registry: the node's IP);
#   2. the first catch-up runs now and adopts the digests already there (installing the trigger
#      retrains nothing); then the catch-up CronWorkflow is resumed;
#   3. the registry's notifications: an endpoint for this namespace (the Argo Server's events API,
#      with the token of gantry-registry-notifier from a service-account-token Secret); the
#      registry restarts with it (a notification queued at that moment is the catch-up's).
#   hack/cluster/push-trigger.sh [--repository PATH] NAMESPACE   (PATH: as wired before, else the default)
#   hack/cluster/push-trigger.sh --off NAMESPACE     the registry stops notifying it, catch-up suspended
# gantry.sh --push-trigger NAMESPACE installs gantry and runs this; gantry.sh NAMESPACE runs it again
# for a namespace wired before (a reinstall applies the generic binding and parameters).
set -euo pipefail
repo="" off=false
while (($#)); do
  case "$1" in
    --repository) repo=${2:?--repository PATH}; shift 2 ;;
    --off) off=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "push-trigger.sh: unknown flag $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
(($# == 1)) || { echo "usage: $0 [--repository PATH | --off] NAMESPACE" >&2; exit 2; }
ns=$1
[[ "${ns}" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || { echo "push-trigger.sh: ${ns}: want a namespace name" >&2; exit 2; }
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source hack/cluster/lib.sh
endpoint="${RUN}/etc/registry-notify/${ns}.yml"
# The endpoint's first line records the repository it was wired for.
if [[ -z "${repo}" && -f "${endpoint}" ]]; then repo=$(sed -n '1s/^# repository: //p' "${endpoint}"); fi
repo=${repo:-gantry/fashion-trainer}
[[ "${repo}" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] || { echo "push-trigger.sh: --repository ${repo}: want a repository path (a/b)" >&2; exit 2; }
argo() { in_node argo --loglevel warn -n "${ns}" "$@"; }
catch_up_suspended() { k -n "${ns}" patch cronworkflow gantry-trigger-catch-up --type merge -p "{\"spec\":{\"suspend\":$1}}" >/dev/null; }

if ${off}; then
  rm -f "${endpoint}"
  registry_start
  if k get namespace "${ns}" >/dev/null 2>&1; then catch_up_suspended true; fi
  log "${ns}: the registry no longer notifies it; catch-up suspended"
  exit 0
fi
k -n "${ns}" get workflowtemplate gantry-trigger >/dev/null || die "gantry is not installed in ${ns} (hack/cluster/gantry.sh ${ns})"

# 1. The binding for PATH, from the generator itself (it holds no image: nothing to resolve).
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
go run ./cmd/gen-templates --out "${tmp}" --train-repository "${REGISTRY}/${repo}" >/dev/null
python3 - "${tmp}/push-trigger.yaml" >"${tmp}/binding.yaml" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
print(next(d for d in docs if "\nkind: WorkflowEventBinding\n" in "\n" + d))
PY
k -n "${ns}" apply --server-side --force-conflicts --field-manager=gantry -f "${tmp}/binding.yaml" >/dev/null
params=$(k -n "${ns}" get workflowtemplate gantry-trigger -o json | python3 -c '
import json, sys
repo, catch_up = sys.argv[1:]
ps = json.load(sys.stdin)["spec"]["arguments"]["parameters"]
for p in ps:
    if p["name"] == "repository": p["value"] = repo
    if p["name"] == "catch-up-repository": p["value"] = catch_up
print(json.dumps([{"op": "replace", "path": "/spec/arguments/parameters", "value": ps}]))' "${REGISTRY}/${repo}" "${NODE_IP}:${REGISTRY#*:}/${repo}")
k -n "${ns}" patch workflowtemplate gantry-trigger --type json -p "${params}" >/dev/null

# 2. Adopt what is there, then keep catching up.
run=$(argo submit --from cronwf/gantry-trigger-catch-up -o name)
in_node timeout 300 argo --loglevel warn -n "${ns}" wait "${run}" >/dev/null || die "${ns}: the first catch-up ${run#*/} did not finish in 5 min"
[[ $(k -n "${ns}" get workflow "${run#*/}" -o jsonpath='{.status.phase}') == Succeeded ]] ||
  die "${ns}: the first catch-up ${run#*/} did not succeed (argo -n ${ns} logs ${run#*/})"
catch_up_suspended false

# 3. The registry notifies this namespace's events endpoint.
k -n "${ns}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: gantry-registry-notifier-token
  annotations: {kubernetes.io/service-account.name: gantry-registry-notifier}
type: kubernetes.io/service-account-token
EOF
token=""
for _ in $(seq 100); do
  token=$(k -n "${ns}" get secret gantry-registry-notifier-token -o jsonpath='{.data.token}' | base64 -d)
  [[ -n "${token}" ]] && break
  sleep 0.2
done
[[ -n "${token}" ]] || die "${ns}: the token controller did not fill gantry-registry-notifier-token"
server=$(k -n argo get service argo-server -o jsonpath='{.spec.clusterIP}:{.spec.ports[0].port}')
mkdir -p "${endpoint%/*}"
(
  umask 077
  cat >"${endpoint}" <<EOF
# repository: ${repo}
  - name: argo-${ns}
    url: http://${server}/api/v1/events/${ns}/registry
    headers: {Authorization: [Bearer ${token}]}
    timeout: 3s
    threshold: 3
    backoff: 1s
    ignore: {actions: [pull]}
EOF
)
registry_start
log "${ns}: a push by tag to ${REGISTRY}/${repo} starts one ml-pipeline run (catch-up: $(k -n "${ns}" get cronworkflow gantry-trigger-catch-up -o jsonpath='{.spec.schedules[0]}'))"
