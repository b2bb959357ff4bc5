#!/usr/bin/env bash
# Stops the local cluster: every daemon by PID, every pod's containers, the network namespace.
# Keeps the builds and the data (etcd, MinIO, registry blobs) unless --purge is given.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source hack/cluster/lib.sh
# Worker nodes (hack/cluster/node.sh) first, then the first node.
for n in /run/netns/"${NETNS}"-*; do
  [[ -e "${n}" ]] || continue
  k=${n##*-}
  hack/cluster/node.sh "${k}" stop >/dev/null 2>&1 || true
  ip netns delete "${n##*/}" 2>/dev/null || true
done
# Pods first: stopping kubelet leaves their containers running under containerd-shim.
if pid_alive containerd; then
  for ns in $(in_node ctr --address "${SOCK_DIR}/containerd.sock" namespaces list -q 2>/dev/null); do
    for t in $(in_node ctr --address "${SOCK_DIR}/containerd.sock" -n "${ns}" tasks list -q 2>/dev/null); do
      in_node ctr --address "${SOCK_DIR}/containerd.sock" -n "${ns}" tasks kill -s SIGKILL "${t}" >/dev/null 2>&1 || true
    done
  done
fi
for d in kube-proxy kubelet coredns minio kube-scheduler kube-controller-manager kube-apiserver etcd registry containerd; do
  stop_daemon "${d}"
done
pkill -9 -f "containerd-shim-runc-v2 .*-address ${SOCK_DIR}/containerd.sock" 2>/dev/null || true
# Kubelet's mounts (secrets, projected tokens) and containerd's overlay mounts.
{ grep -E " (${VARLIB}|${SOCK_DIR})/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do umount -l "${m}" 2>/dev/null || true; done
# The pods' network namespaces (containerd's cni-*) and the node's own.
for n in /run/netns/cni-*; do if [[ -e "${n}" ]]; then ip netns delete "${n##*/}" 2>/dev/null || true; fi; done
if [[ -e "/run/netns/${NETNS}" ]]; then ip netns delete "${NETNS}"; fi
if [[ "${1:-}" == "--purge" ]]; then
  rm -rf "${RUN}" "${VARLIB}" "${SOCK_DIR}"
  log "purged cluster state (builds kept in ${CLUSTER_BIN})"
fi
log "down"
