#!/usr/bin/env bash
# ml-pipeline on Argo and on Tekton, side by side on the local cluster (hack/cluster/), same
# model, epochs and images, one after the other: submit → awaiting approval (the approval waits
# and the request went out), approval → promoted, → finished, and where the time goes: pods per
# run, task work (the union of the steps' main containers, training included) and overhead (wall
# time − task work: pod creation and start-up, init containers, the engine noticing a finished
# step and starting the next one). Each run is approved as soon as it asks, as a person would.
# Container times have one-second resolution (Kubernetes): ±1 s per step.
# ARGO_REQUEUE lists the controller's DEFAULT_REQUEUE_TIME values to run Argo with (each restarts
# the controller; the cluster's own value is restored at the end), in the same run as Tekton.
#   hack/bench/tekton-vs-argo.sh            # one run each, 2 epochs
#   RUNS=3 EPOCHS=2 hack/bench/tekton-vs-argo.sh
#   ARGO_REQUEUE="2s 1s" hack/bench/tekton-vs-argo.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../cluster/lib.sh
source hack/cluster/lib.sh
ns="${NAMESPACE:-bench}"
out="${BENCH_OUT:-_output/bench/tekton-vs-argo}"
mkdir -p "${out}" _output/bin
hack/cluster/up.sh
SKIP_IMAGES="${SKIP_IMAGES:-}" hack/cluster/gantry.sh "${ns}"
go build -o _output/bin/approver ./cmd/approver
params="epochs=${EPOCHS:-2},learning-rate=0.001,batch-size=128"

# until SECONDS CMD...: retry CMD every 0.5 s until it prints something non-empty; CMD exiting 3
# (the run failed) ends the wait at once.
until_out() {
  local deadline=$((SECONDS + $1)) v rc; shift
  while ((SECONDS < deadline)); do
    rc=0
    v=$("$@" 2>/dev/null) || rc=$?
    if ((rc == 3)); then echo "bench: the run failed: $*" >&2; return 1; fi
    if [[ -n "${v}" ]]; then echo "${v}"; return 0; fi
    sleep 0.5
  done
  echo "bench: timed out waiting for: $*" >&2
  return 1
}
argo_node() { # RUN DISPLAYNAME PHASE: prints the phase when the node has it
  in_node argo --loglevel warn -n "${ns}" get "$1" -o json | python3 -c '
import json, sys
st = json.load(sys.stdin).get("status", {})
if st.get("phase") in ("Failed", "Error"): sys.exit(3)
print(next((n["phase"] for n in st.get("nodes", {}).values() if n["displayName"] == sys.argv[1] and n["phase"] == sys.argv[2]), ""))' "$2" "$3"
}
argo_done() {
  in_node argo --loglevel warn -n "${ns}" get "$1" -o json | python3 -c '
import json, sys
p = json.load(sys.stdin).get("status", {}).get("phase", "")
print(p if p in ("Succeeded", "Failed", "Error") else "")'
}
tekton_task() { # RUN TASK STATUS REASON: prints when the task's TaskRun has them (exit 3: the run failed)
  [[ $(k -n "${ns}" get pipelinerun "$1" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}') != False ]] || return 3
  k -n "${ns}" get taskruns -l "tekton.dev/pipelineRun=$1,tekton.dev/pipelineTask=$2" -o json | python3 -c '
import json, sys
for tr in json.load(sys.stdin)["items"]:
    c = next((c for c in tr.get("status", {}).get("conditions", []) if c["type"] == "Succeeded"), {})
    if c.get("status") == sys.argv[1] and c.get("reason") == sys.argv[2]: print("yes")' "$3" "$4"
}
tekton_done() {
  k -n "${ns}" get pipelinerun "$1" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}' | grep -E 'True|False' || true
}

original=$(argo_requeue "") # the value it has
trap 'argo_requeue "${original}" >/dev/null' EXIT
read -r -a requeues <<<"${ARGO_REQUEUE:-${original}}"
for i in $(seq "${RUNS:-1}"); do
  for rq in "${requeues[@]}"; do
  argo_requeue "${rq}" >/dev/null
  log "Argo run ${i} (DEFAULT_REQUEUE_TIME=${rq})"
  run=$(k -n "${ns}" create -o jsonpath='{.metadata.name}' -f - <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: bench-argo-}
spec:
  workflowTemplateRef: {name: ml-pipeline}
  podGC: {strategy: OnWorkflowSuccess, deleteDelayDuration: 1h}
  arguments:
    parameters:
    - {name: hyperparameters, value: "${params}"}
    - {name: min-accuracy, value: "0.8"}
    - {name: max-p99-ms, value: "10000"}
EOF
)
  until_out 1200 argo_node "${run}" approval Running >/dev/null
  until_out 300 argo_node "${run}" 'request-approval(0)' Succeeded >/dev/null
  in_node argo --loglevel warn --kubeconfig "$(approver_kubeconfig "${ns}" bench-approver)" -n "${ns}" resume "${run}" >/dev/null
  [[ $(until_out 600 argo_done "${run}") == Succeeded ]] || die "Argo run ${run} failed"
  in_node argo --loglevel warn -n "${ns}" get "${run}" -o json >"${out}/argo-${rq}-${i}-run.json"
  k -n "${ns}" get pods -o json >"${out}/argo-${rq}-${i}-pods.json"
  in_node argo --loglevel warn -n "${ns}" delete "${run}" >/dev/null
  done

  log "Tekton run ${i}"
  run=$(sed "s/value: epochs=2,learning-rate=0.001,batch-size=128/value: ${params}\n  - {name: min-accuracy, value: \"0.8\"}\n  - {name: smoke-min-accuracy, value: \"0.8\"}\n  - {name: max-p99-ms, value: \"10000\"}/" \
    templates/tekton-runs/ml-pipeline-run.yaml | sed 's/generateName: ml-pipeline-/generateName: bench-tekton-/' |
    k -n "${ns}" create -o jsonpath='{.metadata.name}' -f -)
  until_out 1200 tekton_task "${run}" approval Unknown Running >/dev/null
  until_out 300 tekton_task "${run}" request-approval True Succeeded >/dev/null
  in_node _output/bin/approver approve "${run}" --tekton -n "${ns}" >/dev/null
  [[ $(until_out 600 tekton_done "${run}") == True ]] || die "Tekton run ${run} failed"
  k -n "${ns}" get pipelinerun "${run}" -o json >"${out}/tekton-${i}-run.json"
  k -n "${ns}" get taskruns -l "tekton.dev/pipelineRun=${run}" -o json >"${out}/tekton-${i}-taskruns.json"
  k -n "${ns}" get pods -o json >"${out}/tekton-${i}-pods.json"
  k -n "${ns}" delete pipelinerun "${run}" >/dev/null
done

python3 - "${out}" "${RUNS:-1}" "${requeues[@]}" <<'PY'
import json, sys
from datetime import datetime

def ts(s): return datetime.strptime(s.replace(".000000", "")[:19] + "Z", "%Y-%m-%dT%H:%M:%SZ").timestamp()

def union(intervals, lo, hi):
    total, end = 0.0, lo
    for a, b in sorted(intervals):
        a, b = max(a, end, lo), min(b, hi)
        if b > a: total, end = total + b - a, b
    return total

def work(pods, own, main):
    spans, n = [], 0
    for p in pods:
        if not own(p): continue
        n += 1
        for c in p.get("status", {}).get("containerStatuses", []):
            t = c.get("state", {}).get("terminated")
            if t and main(p, c): spans.append((ts(t["startedAt"]), ts(t["finishedAt"])))
    return spans, n

out, runs, requeues = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
lab = lambda p: p["metadata"].get("labels", {})
rows = []
for i in range(1, runs + 1):
  for rq in requeues:
    wf = json.load(open(f"{out}/argo-{rq}-{i}-run.json"))
    pods = json.load(open(f"{out}/argo-{rq}-{i}-pods.json"))["items"]
    run = wf["metadata"]["name"]
    by = {n["displayName"]: n for n in wf["status"]["nodes"].values()}
    created = ts(wf["metadata"]["creationTimestamp"])
    asked = max(ts(by["approval"]["startedAt"]), ts(by["request-approval(0)"]["finishedAt"]))
    resumed = ts(by["approval"]["finishedAt"])
    promoted = ts(by["promote(0)"]["finishedAt"])
    finished = ts(wf["status"]["finishedAt"])
    spans, n = work(pods, lambda p: lab(p).get("workflows.argoproj.io/workflow") == run or lab(p).get("job-name") == run + "-train",
                    lambda p, c: c["name"] == "main" or lab(p).get("job-name") == run + "-train")
    rows.append((f"argo@{rq}", created, asked, resumed, promoted, finished, spans, n))

  pr = json.load(open(f"{out}/tekton-{i}-run.json"))
  trs = {t["metadata"]["labels"]["tekton.dev/pipelineTask"]: t for t in json.load(open(f"{out}/tekton-{i}-taskruns.json"))["items"]}
  pods = json.load(open(f"{out}/tekton-{i}-pods.json"))["items"]
  run = pr["metadata"]["name"]
  created = ts(pr["metadata"]["creationTimestamp"])
  appr_pod = next(p for p in pods if p["metadata"]["name"] == trs["approval"]["status"]["podName"])
  step = next(c for c in appr_pod["status"]["containerStatuses"] if c["name"].startswith("step-"))
  asked = max(ts(step["state"]["terminated"]["startedAt"]), ts(trs["request-approval"]["status"]["completionTime"]))
  resumed = ts(trs["approval"]["status"]["completionTime"])
  promoted = ts(trs["promote"]["status"]["completionTime"])
  finished = ts(pr["status"]["completionTime"])
  spans, n = work(pods, lambda p: lab(p).get("tekton.dev/pipelineRun") == run or lab(p).get("job-name") == run + "-train",
                  lambda p, c: c["name"].startswith("step-") or lab(p).get("job-name") == run + "-train")
  rows.append(("tekton", created, asked, resumed, promoted, finished, spans, n))

print(f"\n{'engine':>9} | {'submit→asked':>12} {'task work':>9} {'overhead':>8} | {'approval→promoted':>17} {'overhead':>8} | {'→finished':>9} | pods")
for eng, created, asked, resumed, promoted, finished, spans, n in rows:
    w1 = union(spans, created, asked)
    w2 = union(spans, resumed, promoted)
    print(f"{eng:>9} | {asked - created:>11.0f}s {w1:>8.0f}s {asked - created - w1:>7.0f}s | {promoted - resumed:>16.0f}s "
          f"{promoted - resumed - w2:>7.0f}s | {finished - resumed:>8.0f}s | {n}")
PY
