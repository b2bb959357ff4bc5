#!/usr/bin/env bash
# make demo: the whole loop on a real (local, offline) Kubernetes with the real Argo controller.
#   1. brings the cluster up (building what is missing; ≈40 min cold, seconds warm)
#   2. ko-builds gantry's images into the node's registry, installs the templates in namespace demo
#   3. argo submit --from workflowtemplate/ml-pipeline
#   4. waits for the approval step, approves with `argo resume`
#   5. waits for promotion, asks the production endpoint about a real test image,
#      and copies the canary report to _output/demo/
# EPOCHS (default 3) and NAMESPACE (default demo) can be set.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source hack/cluster/lib.sh
ns="${NAMESPACE:-demo}"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
argo() { in_node argo --loglevel warn -n "${ns}" "$@"; }
# state RUN: "<phase> <node:phase>..." of the run's steps
state() {
  argo get "$1" -o json | python3 -c '
import json, sys
w = json.load(sys.stdin); st = w.get("status", {})
nodes = sorted(st.get("nodes", {}).values(), key=lambda n: n.get("startedAt") or "~")
print(st.get("phase") or "Pending", " ".join(n["displayName"] + ":" + n["phase"] for n in nodes if n["type"] in ("Pod", "Suspend", "Skipped")))'
}
# follow RUN UNTIL-REGEX: print each step as it changes until the state matches, the run fails,
# or the demo's deadline passes (DEMO_TIMEOUT seconds for the whole demo, default 30 min: one
# stuck pod must not hang it for the run's own 7-day deadline).
seen=""
deadline=$((SECONDS + ${DEMO_TIMEOUT:-1800}))
follow() {
  local s
  while true; do
    if ((SECONDS > deadline)); then
      echo "demo: run $1 not done after ${DEMO_TIMEOUT:-1800}s; it is still there: hack/cluster/exec.sh argo -n ${ns} get $1" >&2
      return 1
    fi
    s=$(state "$1")
    for n in ${s#* }; do
      [[ " ${seen} " == *" ${n} "* ]] || printf '   %-28s %s\n' "${n%:*}" "${n##*:}"
    done
    seen="${s#* }"
    [[ "${s}" =~ $2 ]] && return 0
    case "${s%% *}" in Failed|Error) echo "run ${s%% *}: $(argo get "$1" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"].get("message",""))')"; return 1 ;; esac
    sleep 2
  done
}

step "cluster (hack/cluster/up.sh)"
hack/cluster/up.sh
step "images and templates (hack/cluster/gantry.sh ${ns})"
hack/cluster/gantry.sh "${ns}"

step "argo submit --from workflowtemplate/ml-pipeline (${EPOCHS:-3} epochs)"
run=$(argo submit --from workflowtemplate/ml-pipeline -o name \
  -p hyperparameters="epochs=${EPOCHS:-3},learning-rate=0.001,batch-size=128")
echo "run: ${run}"
follow "${run}" 'approval:Running'

step "approval requested: argo resume ${run}"
argo resume "${run}"
follow "${run}" '^Succeeded'

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
echo
echo "the cluster keeps running: hack/cluster/exec.sh argo -n ${ns} list   |   stop it: hack/cluster/down.sh"
