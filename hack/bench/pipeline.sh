#!/usr/bin/env bash
# Orchestration overhead of ml-pipeline on the local cluster (hack/cluster/), side by side for
# Argo controller settings. For each DEFAULT_REQUEUE_TIME given (default: Argo's 10s, then the
# cluster's 2s) it restarts the controller with it, submits one run, approves it as soon as the
# approval step waits, and splits the wall time into
#   training   the training Job's container, start to finish
#   task work  the union of every step's main container run time (includes training: the
#              launcher waits for the Job)
#   overhead   wall time − task work: pod creation and start-up, Argo noticing a finished step
#              and starting the next one, the exit handler's pods
# for submit → awaiting approval (the suspend waits and the request went out) and for approval →
# promoted / → run finished. The bench approves once the request went out, as a person would.
# Container times have one-second resolution (Kubernetes), so each number is ±1 s per step.
#   hack/bench/pipeline.sh              # 10s vs 2s, 2 epochs
#   EPOCHS=3 hack/bench/pipeline.sh 10s 5s 2s 1s
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../cluster/lib.sh
source hack/cluster/lib.sh
ns="${NAMESPACE:-bench}"
values=("$@")
((${#values[@]})) || values=(10s 2s)
out="${BENCH_OUT:-_output/bench/pipeline}"
mkdir -p "${out}"
argo() { in_node argo --loglevel warn -n "${ns}" "$@"; }

hack/cluster/up.sh
SKIP_IMAGES="${SKIP_IMAGES:-}" hack/cluster/gantry.sh "${ns}"
original=$(argo_requeue "") # the value it has
trap 'argo_requeue "${original}" >/dev/null' EXIT

# wait_state RUN REGEX: poll the run's "<phase> node:phase..." until it matches (fails on
# Failed/Error, or after BENCH_WAIT_TIMEOUT seconds, default 20 min: a stuck pod must not hang it).
wait_state() {
  local s deadline=$((SECONDS + ${BENCH_WAIT_TIMEOUT:-1200}))
  while true; do
    if ((SECONDS > deadline)); then
      echo "bench: run $1 did not reach /$2/ within ${BENCH_WAIT_TIMEOUT:-1200}s (last: ${s:-nothing}); see: hack/cluster/exec.sh argo get $1" >&2
      return 1
    fi
    s=$(argo get "$1" -o json | python3 -c '
import json, sys
st = json.load(sys.stdin).get("status", {})
print(st.get("phase") or "Pending", " ".join(n["displayName"] + ":" + n["phase"] for n in st.get("nodes", {}).values()))')
    [[ "${s}" =~ $2 ]] && return 0
    case "${s%% *}" in Failed|Error) echo "run $1 ended ${s%% *}: ${s}" >&2; return 1 ;; esac
    sleep 0.5
  done
}

for v in "${values[@]}"; do
  log "DEFAULT_REQUEUE_TIME=${v}: restarting the Argo controller"
  k -n argo set env deploy/workflow-controller "DEFAULT_REQUEUE_TIME=${v}" >/dev/null
  k -n argo rollout status deploy/workflow-controller --timeout=120s >/dev/null
  # Keep the pods for an hour after success (the template deletes them at once) so their
  # container times can be read; everything else comes from the WorkflowTemplate.
  run=$(k -n "${ns}" create -o jsonpath='{.metadata.name}' -f - <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: bench-}
spec:
  workflowTemplateRef: {name: ml-pipeline}
  podGC: {strategy: OnWorkflowSuccess, deleteDelayDuration: 1h}
  arguments:
    parameters:
    - {name: hyperparameters, value: "epochs=${EPOCHS:-2},learning-rate=0.001,batch-size=128"}
    - {name: min-accuracy, value: "0.8"}
EOF
)
  log "run ${run}: waiting for the approval step"
  wait_state "${run}" ' approval:Running'
  # A person approves after the request reached them: the approval waits from the canary on, the
  # notification goes out alongside, and verify-approval needs both.
  wait_state "${run}" 'request-approval\(0\):Succeeded'
  in_node argo --loglevel warn --kubeconfig "$(approver_kubeconfig "${ns}" bench-approver)" -n "${ns}" resume "${run}" >/dev/null
  wait_state "${run}" '^Succeeded'
  argo get "${run}" -o json >"${out}/${v}-workflow.json"
  k -n "${ns}" get pods -o json >"${out}/${v}-pods.json"
  argo delete "${run}" >/dev/null
done

python3 - "${out}" "${values[@]}" <<'PY'
import json, sys
from datetime import datetime

def ts(s): return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").timestamp()

def union(intervals, lo, hi):
    total, end = 0.0, lo
    for a, b in sorted(intervals):
        a, b = max(a, end, lo), min(b, hi)
        if b > a: total, end = total + b - a, b
    return total

out, values = sys.argv[1], sys.argv[2:]
print(f"\n{'requeue':>8} | {'submit→approval':>15} {'training':>8} {'task work':>9} {'overhead':>8} | "
      f"{'approval→promoted':>17} {'overhead':>8} | {'→finished':>9} {'overhead':>8} | steps")
for v in values:
    wf = json.load(open(f"{out}/{v}-workflow.json"))
    pods = json.load(open(f"{out}/{v}-pods.json"))["items"]
    nodes = wf["status"]["nodes"]
    by_name = {n["displayName"]: n for n in nodes.values()}
    run = wf["metadata"]["name"]
    created = ts(wf["metadata"]["creationTimestamp"])
    # Asked: the suspend waits and the request went out (they run side by side).
    asked = max(ts(by_name["approval"]["startedAt"]), ts(by_name["request-approval(0)"]["finishedAt"]))
    resumed = ts(by_name["approval"]["finishedAt"])
    promoted = ts(next(n for d, n in by_name.items() if d.startswith("promote("))["finishedAt"])
    finished = ts(wf["status"]["finishedAt"])
    work, training = [], 0.0
    for p in pods:
        labels = p["metadata"].get("labels", {})
        for c in p.get("status", {}).get("containerStatuses", []):
            t = c.get("state", {}).get("terminated")
            if not t: continue
            span = (ts(t["startedAt"]), ts(t["finishedAt"]))
            if labels.get("workflows.argoproj.io/workflow") == run and c["name"] == "main":
                work.append(span)
            elif labels.get("job-name") == run + "-train":
                training = span[1] - span[0]
    steps = sum(1 for n in nodes.values() if n["type"] == "Pod")
    w1, w2, w3 = asked - created, promoted - resumed, finished - resumed
    o1, o2, o3 = w1 - union(work, created, asked), w2 - union(work, resumed, promoted), w3 - union(work, resumed, finished)
    print(f"{v:>8} | {w1:>14.0f}s {training:>7.0f}s {union(work, created, asked):>8.0f}s {o1:>7.0f}s | "
          f"{w2:>16.0f}s {o2:>7.0f}s | {w3:>8.0f}s {o3:>7.0f}s | {steps} pods")
PY
