#!/usr/bin/env bash
# Many models at once: submits R ml-pipeline runs over M models (model-name load-0 … load-(M-1)),
# all at once, with short training, and approves each as soon as it waits — as an approver
# identity the bench holds (a ServiceAccount bound to gantry-approver; the admission policy checks
# it like anyone's). Reports, from the API server's, MinIO's and the kernel's own counters:
#   runs/hour, p50/p95 submit→promoted (every promoted run, a retried promote too), how every run
#   ended (Succeeded, or Failed with the step and reason), pods per run, API requests per run of
#   the Argo controller and of gantry's steps each counted apart (FlowSchemas the bench installs:
#   the API server's own per-schema counters, so the bench's polling and approver are not in
#   them), object-store requests per run, the Argo controller's CPU seconds and its peak memory
#   during the bench, and whether every promoted run is in its model's production history.
#   hack/bench/load.sh 5 20                  # M=5 models, R=20 runs, on the cluster as it is
#   NODES=2 hack/bench/load.sh 10 40         # brings up a second node first
#   PARALLELISM=6 hack/bench/load.sh 10 40   # at most 6 runs at a time in the namespace (Argo's
#                                            # workflows.argoproj.io/parallelism-limit label)
#   UNSCHEDULABLE_TIMEOUT=30m …              # the training's patience for a full cluster (10m)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../cluster/lib.sh
source hack/cluster/lib.sh
models=${1:-5} runs=${2:-20}
if ! [[ "${models}" =~ ^[0-9]+$ && "${runs}" =~ ^[0-9]+$ ]] || ((models < 1 || runs < 1)); then
  echo "usage: $0 MODELS RUNS (positive integers)" >&2
  exit 2
fi
ns="${NAMESPACE:-load-${models}-${runs}}"
out="${BENCH_OUT:-_output/bench/load-${models}-${runs}}"
rm -rf "${out}" && mkdir -p "${out}" _output/bin
hack/cluster/up.sh --nodes "${NODES:-1}"
SKIP_IMAGES="${SKIP_IMAGES:-}" hack/cluster/gantry.sh "${ns}"
if [[ -n "${PARALLELISM:-}" ]]; then
  k label namespace "${ns}" --overwrite "workflows.argoproj.io/parallelism-limit=${PARALLELISM}" >/dev/null
else
  k label namespace "${ns}" "workflows.argoproj.io/parallelism-limit-" >/dev/null
fi
go build -o _output/bin/approver ./cmd/approver
argo() { in_node argo --loglevel warn -n "${ns}" "$@"; }

# The approver: a ServiceAccount with gantry-approver, its own token and kubeconfig.
cp "$(approver_kubeconfig "${ns}" load-approver)" "${out}/approver.kubeconfig"

# Who makes the API requests: FlowSchemas that set apart the Argo controller's requests, those of
# gantry's steps in the bench's namespace, and those of the bench's own approver (matched first);
# the API server counts what it dispatches per schema.
flowschema() { # NAME PRECEDENCE NAMESPACE SERVICEACCOUNT
  cat <<EOF
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: $1}
spec:
  priorityLevelConfiguration: {name: workload-high}
  matchingPrecedence: $2
  rules:
  - subjects: [{kind: ServiceAccount, serviceAccount: {namespace: "$3", name: "$4"}}]
    resourceRules: [{verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"], clusterScope: true}]
    nonResourceRules: [{verbs: ["*"], nonResourceURLs: ["*"]}]
EOF
}
{
  flowschema gantry-bench-argo-controller 700 argo argo
  flowschema gantry-bench-approver 701 "${ns}" load-approver
  flowschema gantry-bench-steps 702 "${ns}" "*"
} | k apply -f - >/dev/null
# They go with the bench: left behind, they would keep the controller at another priority level.
loop=""
cleanup() {
  [[ -z "${loop}" ]] || kill "${loop}" 2>/dev/null || true
  k delete flowschema gantry-bench-argo-controller gantry-bench-approver gantry-bench-steps --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT
flow_requests() { k get --raw /metrics | awk -v fs="flow_schema=\"$1\"" '/^apiserver_flowcontrol_dispatched_requests_total\{/ && index($0, fs) {s += $NF} END {printf "%d\n", s}'; }

# Counters before.
# shellcheck disable=SC1091
source "${RUN}/etc/minio.env"
api_requests() { k get --raw /metrics | awk '/^apiserver_request_total\{/ {s += $NF} END {printf "%d\n", s}'; }
pod_creates() { k get --raw /metrics | awk '/^apiserver_request_total\{/ && /resource="pods"/ && /verb="POST"/ && /subresource=""/ {s += $NF} END {printf "%d\n", s}'; }
s3_requests() { in_node curl -fs "http://${NODE_IP}:9000/minio/v2/metrics/cluster" | awk '/^minio_s3_requests_total\{/ {s += $NF} END {printf "%d\n", s}'; }
# The controller's process name is longer than the 15 characters pgrep -x compares.
controller_pid() { pgrep -f '^workflow-controller ' | head -1; }
controller_cpu() { # utime+stime in seconds
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f\n", ($14 + $15) / hz}' "/proc/$(controller_pid)/stat"
}
[[ -n "$(controller_pid)" ]] || die "no workflow-controller process on this machine"
api0=$(api_requests) pods0=$(pod_creates) s30=$(s3_requests) cpu0=$(controller_cpu)
ctl0=$(flow_requests gantry-bench-argo-controller) steps0=$(flow_requests gantry-bench-steps)
# The controller's peak memory is measured from here: writing 5 to clear_refs resets VmHWM.
echo 5 >"/proc/$(controller_pid)/clear_refs"
echo "before: api=${api0} pod-creates=${pods0} s3=${s30} controller-cpu=${cpu0} controller-api=${ctl0} steps-api=${steps0}" >"${out}/counters.txt"

log "submitting ${runs} runs over ${models} models"
t0=$(date +%s)
: >"${out}/runs.txt"
for ((i = 0; i < runs; i++)); do
  argo submit --from workflowtemplate/ml-pipeline -o name -p "model-name=load-$((i % models))" \
    -p hyperparameters=epochs=1,learning-rate=0.001,batch-size=128 -p min-accuracy=0.7 -p smoke-min-accuracy=0.7 \
    -p max-p99-ms=10000 -p max-accuracy-drop=0.05 -p "unschedulable-timeout=${UNSCHEDULABLE_TIMEOUT:-10m}" >>"${out}/runs.txt"
done

# Approve whatever waits, until every run has ended.
approver_loop() {
  while true; do
    in_node _output/bin/approver list -n "${ns}" --kubeconfig "${out}/approver.kubeconfig" 2>/dev/null | awk 'NR > 1 {print $1}' |
      while read -r r; do
        in_node _output/bin/approver approve "${r}" -n "${ns}" --kubeconfig "${out}/approver.kubeconfig" >>"${out}/approvals.log" 2>&1 || true
      done
    sleep 2
  done
}
approver_loop &
loop=$!
deadline=$((SECONDS + ${LOAD_TIMEOUT:-7200}))
while true; do
  left=$(k -n "${ns}" get workflows -l 'workflows.argoproj.io/completed!=true' -o name 2>/dev/null | grep -c . || true)
  ((left == 0)) && break
  ((SECONDS > deadline)) && die "runs still going after ${LOAD_TIMEOUT:-7200}s"
  sleep 5
done
kill "${loop}" 2>/dev/null || true
t1=$(date +%s)
api1=$(api_requests) pods1=$(pod_creates) s31=$(s3_requests) cpu1=$(controller_cpu)
ctl1=$(flow_requests gantry-bench-argo-controller) steps1=$(flow_requests gantry-bench-steps)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$(controller_pid)/status")
echo "after: api=${api1} pod-creates=${pods1} s3=${s31} controller-cpu=${cpu1} controller-peak-rss-kib=${rss} controller-api=${ctl1} steps-api=${steps1} t0=${t0} t1=${t1}" >>"${out}/counters.txt"
k -n "${ns}" get workflows -o json >"${out}/workflows.json"
for ((m = 0; m < models; m++)); do
  in_node env S3_ENDPOINT="http://${NODE_IP}:9000" AWS_ACCESS_KEY_ID="${MINIO_ROOT_USER}" AWS_SECRET_ACCESS_KEY="${MINIO_ROOT_PASSWORD}" \
    "${RUN}/bin/s3" get "s3://models/registry/load-${m}/environments/${ns}/production.json" "${out}/history-load-${m}.json" 2>/dev/null || echo '{"entries": []}' >"${out}/history-load-${m}.json"
done

python3 - "${out}" "${models}" "${runs}" "${t0}" "${t1}" "$((api1 - api0))" "$((pods1 - pods0))" "$((s31 - s30))" \
  "$(echo "${cpu1} - ${cpu0}" | bc)" "${rss}" "${NODES:-1}" "${PARALLELISM:-}" "$((ctl1 - ctl0))" "$((steps1 - steps0))" <<'PY'
import json, sys, glob, re
from datetime import datetime
out, models, runs, t0, t1, api, pods, s3, cpu, rss, nodes, parallelism, ctl, steps = sys.argv[1:]
models, runs, t0, t1 = int(models), int(runs), int(t0), int(t1)
ts = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").timestamp()
wfs = json.load(open(f"{out}/workflows.json"))["items"]
histories = {}
for f in glob.glob(f"{out}/history-*.json"):
    h = json.load(open(f))
    for e in h.get("entries", []):
        histories.setdefault(e.get("run"), []).append(e)
lat, ended, missing = [], {}, []
for w in wfs:
    st = w["status"]
    phase = st.get("phase")
    nodes_ = st.get("nodes", {}).values()
    # The promote attempt that succeeded, retried or not (promote(0), promote(1), …).
    promote = max((n for n in nodes_ if re.fullmatch(r"promote\(\d+\)", n["displayName"]) and n["phase"] == "Succeeded"),
                  key=lambda n: n["finishedAt"], default=None)
    if phase == "Succeeded":
        lat.append(ts(promote["finishedAt"]) - ts(w["metadata"]["creationTimestamp"]))
        if w["metadata"]["name"] not in histories: missing.append(w["metadata"]["name"])
        key = "Succeeded"
    else:
        failed = [n for n in nodes_ if n["phase"] in ("Failed", "Error") and n.get("type") == "Pod"]
        first = min(failed, key=lambda n: n.get("finishedAt") or "9") if failed else None
        # Grouped by step and reason, numbers blanked: "canary(0): … p99 #ms vs max #ms".
        msg = re.sub(r"sha256:[0-9a-f]+", "DIGEST", (first.get("message") or "").split("): ", 1)[-1]) if first else ""
        msg = re.sub(r"[0-9][0-9.]*", "#", re.sub(r"\bpod \S+", "pod …", msg))[:80]
        reason = f"{first['displayName']}: {msg}" if first else (st.get("message") or "no reason")
        key = f"{phase} at {reason}"
    ended[key] = ended.get(key, 0) + 1
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] if lat else float("nan")
wall = t1 - t0
cap = f", at most {parallelism} at a time" if parallelism else ""
print(f"\nload: {runs} runs over {models} models on {nodes} node(s), all submitted at once{cap}; wall {wall} s")
print(f"  throughput        {runs / wall * 3600:.0f} runs/hour ({len(lat)} promoted)")
print(f"  submit→promoted   p50 {pct(0.5):.0f} s, p95 {pct(0.95):.0f} s")
print(f"  per run           {int(pods) / runs:.1f} pods, {int(s3) / runs:.0f} object-store requests; API requests: "
      f"Argo controller {int(ctl) / runs:.0f}, gantry's steps {int(steps) / runs:.0f} (the whole API server {int(api) / runs:.0f})")
print(f"  Argo controller   {float(cpu):.1f} CPU-s ({float(cpu) / runs:.2f} per run), peak RSS during the bench {int(rss) / 1024:.0f} MiB")
print(f"  every run ended:  " + "; ".join(f"{v}× {k}" for k, v in sorted(ended.items(), key=lambda kv: -kv[1])))
print(f"  nothing lost:     {len(wfs)} of {runs} runs recorded; promoted runs missing from their production history: {missing or 'none'}")
if len(wfs) != runs or missing: sys.exit(1)
PY
