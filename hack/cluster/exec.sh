#!/usr/bin/env bash
# Runs a command inside the local cluster's network namespace with its kubeconfig and binaries
# (kubectl, argo, crane, ko) on PATH:
#   hack/cluster/exec.sh kubectl get pods -A
#   hack/cluster/exec.sh argo -n demo list
#   hack/cluster/exec.sh bash          # a shell "on the node"
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" # no cd: the command runs in the caller's directory
export PATH="${GANTRY_TOOLS:-${HOME}/.cache/gantry/tools}/bin:${PATH}"
[[ -e "/run/netns/${NETNS}" ]] || die "cluster is not up (hack/cluster/up.sh)"
exec nsenter --net="/run/netns/${NETNS}" -- "$@"
