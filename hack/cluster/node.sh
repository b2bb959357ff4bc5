#!/usr/bin/env bash
# Adds worker node K (2, 3, …) to the local cluster (hack/cluster/up.sh --nodes N calls it):
# containerd, kubelet and kube-proxy in a network namespace of its own, gantry-node-K, linked to
# the first node's bridge gantry0 by a veth pair — still no link to the host.
#   node IP        10.250.0.K on gantry0's subnet (the first node is 10.250.0.1)
#   pods           10.244.(K-1).0/24 on the node's own cni0; every node routes each other node's
#                  pod subnet through that node's IP
#   services       kube-proxy (iptables) in the node's namespace
#   images         the first node's registry (127.0.0.1:5000 there) through the mirror
#                  http://10.250.0.1:5000: image references stay 127.0.0.1:5000/…
#   cgroups        the kubelet's cgroupRoot is /gantry-node-K, so that two kubelets on one kernel
#                  keep apart
#   hack/cluster/node.sh 2          # idempotent; a node that was lost comes back untainted
#   hack/cluster/node.sh 2 stop     # stop its daemons and pods (the Node object stays: NotReady)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source hack/cluster/lib.sh
n=${1:?usage: node.sh K [stop]}
if ! [[ "${n}" =~ ^[0-9]+$ ]] || ((n < 2 || n > 20)); then die "node number ${n}: want 2..20"; fi
name="${NODE_NAME}-${n}" ns="${NETNS}-${n}" ip="10.250.0.${n}"
root="${RUN}/node-${n}" varlib="${VARLIB}/node-${n}" sock="${SOCK_DIR}/node-${n}"
on_node() { nsenter --net="/run/netns/${ns}" -- "$@"; }

if [[ "${2:-}" == "stop" ]]; then
  # As a node that dies: its pods' processes end with it, nobody tells the API server.
  if pid_alive "node-${n}-containerd"; then
    for cns in $(on_node ctr --address "${sock}/containerd.sock" namespaces list -q 2>/dev/null); do
      for t in $(on_node ctr --address "${sock}/containerd.sock" -n "${cns}" tasks list -q 2>/dev/null); do
        on_node ctr --address "${sock}/containerd.sock" -n "${cns}" tasks kill -s SIGKILL "${t}" >/dev/null 2>&1 || true
      done
    done
  fi
  for d in kube-proxy kubelet containerd; do stop_daemon "node-${n}-${d}"; done
  pkill -9 -f "containerd-shim-runc-v2 .*-address ${sock}/containerd.sock" 2>/dev/null || true
  { grep -E " (${varlib}|${sock})/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do umount -l "${m}" 2>/dev/null || true; done
  log "node ${name} stopped"
  exit 0
fi

mkdir -p "${root}/etc/cni" "${varlib}" "${sock}"
# --- network: a veth from gantry0 (first node) into this node's namespace --------------------------
[[ -e "/run/netns/${ns}" ]] || ip netns add "${ns}"
on_node ip link set lo up
if ! on_node ip link show eth0 >/dev/null 2>&1; then
  in_node ip link add "vn${n}" type veth peer name "vn${n}p"
  in_node ip link set "vn${n}p" netns "${ns}"
  on_node ip link set "vn${n}p" name eth0
  in_node ip link set "vn${n}" master gantry0 up
  on_node ip addr add "${ip}/24" dev eth0
fi
on_node ip link set eth0 up
on_node ip route replace "${SERVICE_CIDR}" dev eth0
on_node sysctl -qw net.ipv4.ip_forward=1
on_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
# Pod routes: every node reaches every other node's pods through that node's IP.
routes() { # K: install routes for node K's view
  local k=$1 j
  for j in $(seq 1 20); do
    ((j == k)) && continue
    [[ ${j} == 1 || -e "/run/netns/${NETNS}-${j}" ]] || continue
    if ((k == 1)); then in_node ip route replace "10.244.$((j - 1)).0/24" via "10.250.0.${j}"
    else nsenter --net="/run/netns/${NETNS}-${k}" -- ip route replace "10.244.$((j - 1)).0/24" via "10.250.0.${j}"; fi
  done
}
routes 1
for k in $(seq 2 20); do [[ -e "/run/netns/${NETNS}-${k}" ]] && routes "${k}"; done
printf 'nameserver %s\n' "${NODE_IP}" >"${root}/etc/resolv.conf"

# --- cgroups: this kubelet's root in every v1 hierarchy (cgroupfs driver) --------------------------
for c in /sys/fs/cgroup/*/; do
  [[ -d "${c}" && ! -L "${c%/}" ]] || continue
  mkdir -p "${c}${name}" 2>/dev/null || true
  if [[ -f "${c}cpuset.cpus" ]]; then
    [[ -s "${c}${name}/cpuset.cpus" ]] || cat "${c}cpuset.cpus" >"${c}${name}/cpuset.cpus"
    [[ -s "${c}${name}/cpuset.mems" ]] || cat "${c}cpuset.mems" >"${c}${name}/cpuset.mems"
  fi
done

# --- containerd, kubelet, kube-proxy (as the first node's, lib.sh) --------------------------------
node_daemons "node-${n}-" "${ns}" "${name}" "${ip}" "10.244.$((n - 1)).0/24" "${root}/etc" "${varlib}" "${sock}" "/${name}" \
  "${root}/etc/resolv.conf" "http://${NODE_IP}:${REGISTRY#*:}" "${varlib}/pod-logs"

wait_for "node ${name}" 90 k get node "${name}"
k wait --for=condition=Ready "node/${name}" --timeout=120s >/dev/null
# A node brought back is a repaired machine: the out-of-service taint set when it was lost goes
# (as an operator removes it after the repair). A run that left it would keep pods off the node.
if k get node "${name}" -o jsonpath='{.spec.taints[*].key}' | grep -qF node.kubernetes.io/out-of-service; then
  k taint nodes "${name}" node.kubernetes.io/out-of-service- >/dev/null
fi
log "node ${name} Ready (${ip}, pods 10.244.$((n - 1)).0/24)"
