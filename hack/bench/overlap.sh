#!/usr/bin/env bash
# Three runs of one model on the local cluster (hack/cluster/), overlapping vs one after another.
# Each run is approved as soon as its approval step waits. Reports, per mode, the wall time from
# the first submit to the last run's end, and per run how long its release waited on the
# per-model mutex (release node start → promote start), its release time and its outcome.
# Overlapping, only the first release can promote: the others' canaries compared against a
# production that has changed since, and promote's compare-and-swap refuses them — that is
# the point; they still queue on the mutex, which is what is measured.
#   hack/bench/overlap.sh            # small models (12k images, 64 hidden units, 2 epochs)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../cluster/lib.sh
source hack/cluster/lib.sh
out="${BENCH_OUT:-_output/bench/overlap}"
mkdir -p "${out}"
timeout="${BENCH_WAIT_TIMEOUT:-1800}"

hack/cluster/up.sh
submit() { # NS SEED
  k -n "$1" create -o jsonpath='{.metadata.name}' -f - <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: overlap-}
spec:
  workflowTemplateRef: {name: ml-pipeline}
  arguments:
    parameters:
    - {name: hyperparameters, value: "epochs=2,hidden=64,train-limit=12000,seed=$2"}
    - {name: min-accuracy, value: "0.7"}
    - {name: max-p99-ms, value: "10000"}
EOF
}
# drive NS RUN...: approve each run when its approval waits, until every run has ended.
drive() {
  local ns=$1 deadline=$((SECONDS + timeout)) left
  shift
  while true; do
    left=0
    for r in "$@"; do
      st=$(k -n "${ns}" get workflow "${r}" -o json | python3 -c '
import json, sys
w = json.load(sys.stdin); st = w.get("status", {})
waiting = any(n["displayName"] == "approval" and n["phase"] == "Running" for n in st.get("nodes", {}).values())
print(st.get("phase") or "Pending", "waiting" if waiting else "")')
      case "${st}" in
        Succeeded* | Failed* | Error*) ;;
        *waiting) in_node argo --loglevel warn --kubeconfig "$(approver_kubeconfig "${ns}" bench-approver)" -n "${ns}" resume "${r}" >/dev/null 2>&1 || true; left=1 ;;
        *) left=1 ;;
      esac
    done
    ((left)) || return 0
    if ((SECONDS > deadline)); then
      echo "bench: runs $* not done within ${timeout}s; see hack/cluster/exec.sh argo -n ${ns} list" >&2
      return 1
    fi
    sleep 1
  done
}

for mode in overlapping sequential; do
  ns="bench-${mode}"
  k delete namespace "${ns}" --ignore-not-found --wait=true >/dev/null
  SKIP_IMAGES="${SKIP_IMAGES:-}" hack/cluster/gantry.sh "${ns}" >/dev/null
  SKIP_IMAGES=1
  runs=()
  start=${SECONDS}
  for seed in 1 2 3; do
    runs+=("$(submit "${ns}" "${seed}")")
    if [[ ${mode} == sequential ]]; then drive "${ns}" "${runs[-1]}"; fi
  done
  drive "${ns}" "${runs[@]}"
  echo "$((SECONDS - start))" >"${out}/${mode}-wall"
  for r in "${runs[@]}"; do k -n "${ns}" get workflow "${r}" -o json >"${out}/${mode}-${r}.json"; done
  log "${mode}: $((SECONDS - start)) s"
done

python3 - "${out}" <<'PY'
import glob, json, os, sys
from datetime import datetime

def ts(s): return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").timestamp()

out = sys.argv[1]
walls = {}
for mode in ("overlapping", "sequential"):
    walls[mode] = int(open(f"{out}/{mode}-wall").read())
    print(f"\n{mode}: {walls[mode]} s wall for 3 runs")
    print(f"  {'run':<16} {'outcome':<10} {'mutex wait':>10} {'release':>8}")
    total = 0.0
    for f in sorted(glob.glob(f"{out}/{mode}-overlap-*.json")):
        w = json.load(open(f))
        nodes = {n["displayName"]: n for n in w["status"]["nodes"].values()}
        rel, promote = nodes.get("release"), nodes.get("promote")
        wait = ts(promote["startedAt"]) - ts(rel["startedAt"]) if rel and promote else 0.0
        span = ts(rel["finishedAt"]) - ts(rel["startedAt"]) if rel and rel.get("finishedAt") else 0.0
        total += wait
        print(f"  {w['metadata']['name']:<16} {w['status']['phase']:<10} {wait:>9.0f}s {span:>7.0f}s")
    print(f"  queued on the mutex in all: {total:.0f} s")
print(f"\noverlapping / sequential wall time: {walls['overlapping'] / walls['sequential']:.2f}")
PY
