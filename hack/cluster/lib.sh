# Shared by hack/cluster/*.sh (sourced, not run). Layout of the local single-node cluster:
#   network namespace  gantry-node — no link to the host: no veth, no default route
#   bridge gantry0     10.250.0.1/24, the node IP (apiserver :6443, CoreDNS :53, MinIO :9000)
#   bridge cni0        10.244.0.0/24, pods (CNI bridge + host-local)
#   services           10.96.0.0/24, routed to gantry0 (kube-proxy, iptables mode)
#   registry           127.0.0.1:5000 inside the node namespace (the distribution registry, its
#                      push notifications wired per namespace by hack/cluster/push-trigger.sh;
#                      worker nodes, hack/cluster/node.sh, pull through 10.250.0.1:5000)
# Every daemon and client runs with `nsenter --net=/run/netns/gantry-node` (not `ip netns exec`,
# which remounts /sys and hides the cgroup mounts kubelet and runc need).
# shellcheck shell=bash
# Sourced by the other scripts, which use these names.
# shellcheck disable=SC2034
NETNS="${GANTRY_NETNS:-gantry-node}"
NODE_NAME="${GANTRY_NODE_NAME:-gantry-node}"
NODE_IP=10.250.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
REGISTRY=127.0.0.1:5000
ARGO_VERSION="${ARGO_VERSION:-v3.7.18}"
ARGO_MODULE="github.com/argoproj/argo-workflows/${ARGO_VERSION%%.*}"
TEKTON_VERSION="${TEKTON_VERSION:-v1.9.1}"
CLUSTER_ROOT="${GANTRY_CLUSTER:-${HOME}/.cache/gantry/cluster}"
CLUSTER_BIN="${CLUSTER_ROOT}/bin"
RUN="${CLUSTER_ROOT}/run"               # pki, configs, logs, pids, etcd/minio/registry data
VARLIB="/var/lib/gantry-cluster"         # containerd + kubelet roots (need a local ext4/xfs)
SOCK_DIR="/run/gantry-cluster"
export KUBECONFIG="${RUN}/pki/admin.kubeconfig"
export PATH="${CLUSTER_BIN}:${PATH}"

log() { printf '\033[1mcluster:\033[0m %s\n' "$*" >&2; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

# in_node CMD...: run CMD inside the node's network namespace.
in_node() { nsenter --net="/run/netns/${NETNS}" -- "$@"; }
k() { in_node kubectl "$@"; }

# approver_kubeconfig NS NAME: prints the path of a kubeconfig for ServiceAccount NAME in NS,
# bound to Role gantry-approver, with its own token. A resume counts as an approval only when the
# API server names who resumed: Argo reads the name from a bearer token (the admin's client
# certificate names nobody, and a resume that names nobody is no approval).
approver_kubeconfig() {
  local ns=$1 name=$2 file="${RUN}/etc/approver-$1-$2.kubeconfig" token
  k -n "${ns}" create serviceaccount "${name}" --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n "${ns}" create rolebinding "${name}" --role=gantry-approver --serviceaccount="${ns}:${name}" --dry-run=client -o yaml | k apply -f - >/dev/null
  token=$(k -n "${ns}" create token "${name}" --duration=12h)
  (
    umask 077
    cat >"${file}" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://${NODE_IP}:6443", certificate-authority: "${RUN}/pki/ca.crt"}}]
users: [{name: ${name}, user: {token: "${token}"}}]
contexts: [{name: c, context: {cluster: c, user: ${name}, namespace: ${ns}}}]
current-context: c
EOF
  )
  echo "${file}"
}

# pid_alive NAME: the daemon's recorded PID runs and is still ours (every daemon's command line
# names a path under ${RUN}): after a reboot a stale PID file must not point at someone else.
pid_alive() {
  local f="${RUN}/pids/$1.pid" pid
  [[ -f "${f}" ]] || return 1
  pid=$(cat "${f}")
  kill -0 "${pid}" 2>/dev/null && tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF "${RUN}"
}

# daemon NAME CMD...: start CMD in the node namespace (DAEMON_NETNS: another one, a worker
# node's) unless NAME already runs; log to logs/NAME.log.
daemon() {
  local name=$1; shift
  if pid_alive "${name}"; then return 0; fi
  mkdir -p "${RUN}/pids" "${RUN}/logs"
  nohup nsenter --net="/run/netns/${DAEMON_NETNS:-${NETNS}}" -- "$@" >>"${RUN}/logs/${name}.log" 2>&1 &
  echo $! >"${RUN}/pids/${name}.pid"
}

# The cluster's registry: the Docker distribution registry (images, models, OCI artifacts), data in
# ${RUN}/distribution, config ${RUN}/etc/registry.yml rendered from one notification endpoint per
# namespace wired for the push trigger (${RUN}/etc/registry-notify/<ns>.yml).
REGISTRY_CONFIG="${RUN}/etc/registry.yml"
registry_render() { # prints the config
  local e=("${RUN}"/etc/registry-notify/*.yml)
  cat <<EOF
version: 0.1
log: {level: info, formatter: text}
storage:
  filesystem: {rootdirectory: ${RUN}/distribution}
  delete: {enabled: true}
http:
  addr: 0.0.0.0:${REGISTRY#*:}
  draintimeout: 3s
notifications:
EOF
  if [[ -f "${e[0]}" ]]; then echo "  endpoints:"; cat "${e[@]}"; else echo "  endpoints: []"; fi
}
# registry_start: (re)starts the registry when its config changed or another registry (an older
# cluster's `crane registry serve`) holds the name; waits until it answers.
registry_start() {
  local f="${REGISTRY_CONFIG}" new pid
  mkdir -p "${RUN}/etc/registry-notify" "${RUN}/distribution"
  new=$(registry_render)
  if pid_alive registry; then
    pid=$(cat "${RUN}/pids/registry.pid")
    if [[ "${new}" != "$(cat "${f}" 2>/dev/null)" ]] || ! tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -qF "registry serve ${f}"; then
      stop_daemon registry
    fi
  fi
  (umask 077 && printf '%s\n' "${new}" >"${f}.tmp" && mv "${f}.tmp" "${f}") # it holds tokens
  daemon registry registry serve "${f}"
  wait_for registry 20 in_node curl -fs "http://${REGISTRY}/v2/"
}

# argo_requeue VALUE: prints the Argo controller's DEFAULT_REQUEUE_TIME; with VALUE, sets it
# first (restarting the controller) unless it already has it or VALUE is empty. The benches
# compare settings.
argo_requeue() {
  local jp='{.spec.template.spec.containers[0].env[?(@.name=="DEFAULT_REQUEUE_TIME")].value}' v
  v=$(k -n argo get deploy workflow-controller -o jsonpath="${jp}")
  if [[ -n "${1:-}" && "$1" != "${v:-10s}" ]]; then
    k -n argo set env deploy/workflow-controller "DEFAULT_REQUEUE_TIME=$1" >/dev/null
    k -n argo rollout status deploy/workflow-controller --timeout=120s >/dev/null
    v=$1
  fi
  echo "${v:-10s}"
}

# wait_for WHAT SECONDS CMD...: retry CMD every 0.2 s until it succeeds or SECONDS pass.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then die "${what} not ready after ${secs}s (logs: ${RUN}/logs)"; fi
    sleep 0.2
  done
}

stop_daemon() {
  local name=$1 f="${RUN}/pids/$1.pid"
  [[ -f "${f}" ]] || return 0
  local pid; pid=$(cat "${f}")
  if pid_alive "${name}"; then
    kill "${pid}" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${pid}" 2>/dev/null || true
  fi
  rm -f "${f}"
}

# node_daemons PREFIX NETNS NAME IP POD_CIDR ETC VARLIB SOCK CGROUP_ROOT RESOLV MIRROR LOGS: writes
# a node's CNI, containerd, kubelet and kube-proxy configuration under ETC and starts the three
# daemons (named PREFIX{containerd,kubelet,kube-proxy}) in NETNS. up.sh starts the first node
# with it, node.sh the workers. LOGS is the kubelet's pod log directory: each node needs its own
# (a kubelet removes the log directories of pods it does not know, another node's among them).
node_daemons() {
  local prefix=$1 netns=$2 name=$3 ip=$4 cidr=$5 etc=$6 varlib=$7 sock=$8 cgroot=$9 resolv=${10} mirror=${11} logs=${12}
  mkdir -p "${etc}/cni" "${varlib}" "${sock}"
  cat >"${etc}/cni/10-gantry.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "gantry", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "${cidr}"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "${varlib}/cni"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  cat >"${etc}/containerd.toml" <<EOF
version = 2
root = "${varlib}/containerd"
state = "${sock}/containerd"
[grpc]
  address = "${sock}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${REGISTRY}/gantry/pause:1"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${etc}/cni"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."${REGISTRY}"]
    endpoint = ["${mirror}"]
EOF
  DAEMON_NETNS="${netns}" daemon "${prefix}containerd" containerd --config "${etc}/containerd.toml"
  wait_for "${prefix}containerd" 30 test -S "${sock}/containerd.sock"
  cat >"${etc}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: ${cgroot}
podLogsDir: ${logs}
containerRuntimeEndpoint: unix://${sock}/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "${RUN}/pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "${RUN}/pki/kubelet.crt"
tlsPrivateKeyFile: "${RUN}/pki/kubelet.key"
clusterDNS: ["${NODE_IP}"]
clusterDomain: cluster.local
resolvConf: "${resolv}"
failSwapOn: false
serializeImagePulls: false
maxPods: 110
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
EOF
  # The kubelet exits when containerd's CRI is not initialized yet ("server is not initialized
  # yet": containerd answers on its socket a moment before it recovers its state). It is started
  # again until its healthz answers: a restarted worker once kept a dead kubelet behind a Node
  # that etcd still called Ready.
  # shellcheck disable=SC2317 # invoked through wait_for
  kubelet_up() {
    DAEMON_NETNS="${netns}" daemon "${prefix}kubelet" kubelet --config="${etc}/kubelet.yaml" --kubeconfig="${KUBECONFIG}" \
      --root-dir="${varlib}/kubelet" --node-ip="${ip}" --hostname-override="${name}" --v=1
    nsenter --net="/run/netns/${netns}" -- curl -fs http://127.0.0.1:10248/healthz
  }
  wait_for "${prefix}kubelet" 90 kubelet_up
  cat >"${etc}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "${KUBECONFIG}"}
mode: iptables
clusterCIDR: "10.244.0.0/16"
hostnameOverride: "${name}"
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  DAEMON_NETNS="${netns}" daemon "${prefix}kube-proxy" kube-proxy --config="${etc}/kube-proxy.yaml"
}
