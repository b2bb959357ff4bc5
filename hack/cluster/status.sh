#!/usr/bin/env bash
# Shows which daemons of the local cluster run, the node and the Argo controller. Exit 0 only
# when everything is up.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
# shellcheck source=lib.sh
source hack/cluster/lib.sh
ok=0
for d in registry etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns minio; do
  if pid_alive "${d}"; then printf '%-24s running (pid %s)\n' "${d}" "$(cat "${RUN}/pids/${d}.pid")"
  else printf '%-24s STOPPED\n' "${d}"; ok=1; fi
done
if ((ok == 0)); then
  k get nodes -o wide || ok=1
  k -n argo get deploy workflow-controller || ok=1
fi
exit "${ok}"
