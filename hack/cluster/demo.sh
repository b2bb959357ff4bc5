#!/usr/bin/env bash
# make demo: the whole loop on a real (local, offline) Kubernetes with the real Argo controller.
#   1. brings the cluster up without Tekton (building what is missing; see the README for the
#      cold figure, seconds warm); Tekton and the distribution registry build in the background
#   2. ko-builds gantry's images into the node's registry, installs the templates in namespace demo
#   3. argo submit --from workflowtemplate/ml-pipeline
#   4. waits for the approval step, approves with `argo resume` as an approver (a ServiceAccount
#      bound to gantry-approver, with its own token: the API server names who approved)
#   5. waits for promotion, asks the production endpoint about a real test image,
#      and copies the canary report to _output/demo/
#   6. pushes a new training image into the cluster's registry: the registry's notification starts
#      one run (shown); the same image pushed under a second tag starts none
# EPOCHS (default 3), NAMESPACE (default demo) and DEMO_TIMEOUT (the run's budget in seconds from
# submit, default 1800) can be set. A run that does not finish in time is reported step by step:
# which pod waits, and why.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=lib.sh
source hack/cluster/lib.sh
ns="${NAMESPACE:-demo}"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
argo() { in_node argo --loglevel warn -n "${ns}" "$@"; }

# The demo's phases, each a function (e2e-free tests replace them: hack/cluster/demo_test.go).
# bring_up: the cluster without Tekton (the demo does not need it); Tekton and the distribution
# registry then build in the background at the lowest CPU priority, so that `make e2e` finds them.
bring_up() {
  hack/cluster/up.sh --no-tekton
  if ! hack/cluster/build.sh --check all >/dev/null 2>&1; then
    mkdir -p "${RUN}/logs"
    log "building Tekton and the distribution registry in the background (nice 19; log: ${RUN}/logs/build-extras.log)"
    setsid nohup nice -n 19 hack/cluster/build.sh extras >>"${RUN}/logs/build-extras.log" 2>&1 </dev/null &
  fi
}
install() {
  hack/cluster/gantry.sh --push-trigger "${ns}"
  # as ko builds (static, trimmed): the packages it shares with gantry's images are compiled already
  CGO_ENABLED=0 go build -trimpath -o "${RUN}/bin/follow" ./hack/cluster/follow
}
submit() {
  argo submit --from workflowtemplate/ml-pipeline -o name \
    -p hyperparameters="epochs=${EPOCHS:-3},learning-rate=0.001,batch-size=128"
}
# follow_run RUN approval|done: each step as it changes, until the run asks for the approval or
# ends; at the deadline, which steps wait and why (hack/cluster/follow).
follow_run() { in_node "${RUN}/bin/follow" -n "${ns}" --deadline "${deadline}" --until "$2" "$1"; }
approve() { in_node argo --loglevel warn --kubeconfig "$(approver_kubeconfig "${ns}" demo-approver)" -n "${ns}" resume "$1"; }

main() {
  step "cluster (hack/cluster/up.sh --no-tekton)"
  bring_up
  step "images and templates (hack/cluster/gantry.sh ${ns})"
  install
  step "argo submit --from workflowtemplate/ml-pipeline (${EPOCHS:-3} epochs)"
  run=$(submit)
  # The run's budget (DEMO_TIMEOUT seconds, default 30 min) starts at submit: however long the
  # cluster took to build, the run gets all of it; one stuck pod must not hang the demo for the
  # run's own 7-day deadline.
  deadline=$((EPOCHSECONDS + ${DEMO_TIMEOUT:-1800}))
  echo "run: ${run} (the demo waits for it until $(date -d "@${deadline}" +%T))"
  follow_run "${run}" "approval" || fail "${run}"
  step "approval requested: argo resume ${run}"
  approve "${run}"
  follow_run "${run}" "done" || fail "${run}"
  answers
  report
  push_new_image
  echo
  echo "the cluster keeps running: hack/cluster/exec.sh argo -n ${ns} list   |   stop it: hack/cluster/down.sh"
}
fail() { echo "demo: run $1 did not promote (above: where it stopped and why)" >&2; exit 1; }

answers() {
  step "production answers (first test image; label 9 = Ankle boot)"
  ip=$(k -n "${ns}" get service fashion-mnist-production -o jsonpath='{.spec.clusterIP}')
  port=$(k -n "${ns}" get service fashion-mnist-production -o jsonpath='{.spec.ports[0].port}')
  in_node python3 - "${ip}" "${port}" <<'PY'
import gzip, json, sys, urllib.request
px = gzip.open('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz').read()[16:16+784]
url = f'http://{sys.argv[1]}:{sys.argv[2]}/v1/models/fashion-mnist:predict'
req = urllib.request.Request(url, data=json.dumps({'instances': [[p/255 for p in px]]}).encode(),
                             headers={'Content-Type': 'application/json'})
p = json.load(urllib.request.urlopen(req, timeout=10))['predictions'][0]
names = ["T-shirt/top","Trouser","Pullover","Dress","Coat","Sandal","Shirt","Sneaker","Bag","Ankle boot"]
best = max(range(10), key=lambda i: p[i])
print(f'POST {url}\npredicted {best} ({names[best]}) with probability {p[best]:.3f}')
PY
}

report() {
  step "canary report"
  # shellcheck disable=SC1091
  source "${RUN}/etc/minio.env"
  report=$(argo get "${run}" -o json | python3 -c '
import json, sys
for n in json.load(sys.stdin)["status"]["nodes"].values():
    if n["displayName"].startswith("canary(") and n["phase"] == "Succeeded":
        print({p["name"]: p.get("value") for p in n["outputs"]["parameters"]}["report-uri"])')
  mkdir -p _output/demo
  in_node env S3_ENDPOINT="http://${NODE_IP}:9000" AWS_ACCESS_KEY_ID="${MINIO_ROOT_USER}" AWS_SECRET_ACCESS_KEY="${MINIO_ROOT_PASSWORD}" \
    "${RUN}/bin/s3" get "${report}" _output/demo/report.html
  echo "${report} → _output/demo/report.html"
}

# push_new_image: what a training team does — push a new trainer image by tag. The registry
# notifies the Argo Server, the binding submits the trigger, the trigger starts ml-pipeline-<12 hex
# of the digest>. The same digest under a second tag is a second notification: it starts nothing.
push_new_image() {
  local repo="${REGISTRY}/gantry/fashion-trainer" tag digest run t0 n
  tag="demo-$(date +%Y%m%d-%H%M%S)"
  PATH="$(hack/install-tools.sh --images | tail -n 1):${PATH}" # crane
  step "a new training image: crane push ${repo}:${tag}"
  # A new digest: the trainer as built, with one more label.
  in_node crane mutate "${repo}:latest" --label "gantry.dev/pushed=${tag}" -t "${repo}:${tag}" >/dev/null 2>&1
  t0=${EPOCHREALTIME}
  digest=$(in_node crane digest "${repo}:${tag}")
  run="ml-pipeline-${digest:7:12}"
  for _ in $(seq 300); do k -n "${ns}" get workflow "${run}" >/dev/null 2>&1 && break; sleep 0.2; done
  k -n "${ns}" get workflow "${run}" >/dev/null 2>&1 || { echo "demo: no run ${run} within 60 s of the push (registry log: ${RUN}/logs/registry.log)" >&2; exit 1; }
  printf 'push → run %s started in %.1f s (train-image=%s@%s)\n' "${run}" "$(echo "${EPOCHREALTIME} - ${t0}" | bc -l)" "${repo}" "${digest}"
  step "the same image under a second tag: a second notification, no second run"
  n=$(k -n "${ns}" get workflows -l workflows.argoproj.io/workflow-template=gantry-trigger -o name | wc -l)
  in_node crane tag "${repo}:${tag}" "${tag}-again" 2>/dev/null
  for _ in $(seq 300); do
    (($(k -n "${ns}" get workflows -l workflows.argoproj.io/workflow-template=gantry-trigger -o name | wc -l) > n)) && break
    sleep 0.2
  done
  in_node timeout 120 argo --loglevel warn -n "${ns}" wait "$(k -n "${ns}" get workflows -l workflows.argoproj.io/workflow-template=gantry-trigger --sort-by=.metadata.creationTimestamp -o name | tail -n 1 | cut -d/ -f2)" >/dev/null
  n=$(k -n "${ns}" get workflows -o json | python3 -c '
import json, sys
want = sys.argv[1]
print(sum(1 for w in json.load(sys.stdin)["items"]
          for p in w["spec"].get("arguments", {}).get("parameters", []) if p["name"] == "train-image" and p.get("value") == want))' "${repo}@${digest}")
  echo "runs with train-image=…@${digest:0:19}…: ${n}"
  ((n == 1)) || { echo "demo: ${n} runs for one pushed digest" >&2; exit 1; }
  argo list --prefix ml-pipeline
  echo "${run} trains now and waits for its approval like the first: argo resume ${run} (or argo stop ${run})"
}

[[ "${BASH_SOURCE[0]}" != "$0" ]] || main "$@"
