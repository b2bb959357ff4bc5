#!/usr/bin/env bash
# Puts a namespace's evidence in force: one Ed25519 signing key per role (training, evaluation,
# approval), each in its Secret gantry-signing-<role> (key key.pem) — mounted only into the step
# that signs as that role, and admitted only into pods running as that step's account (the
# admission policy gantry-signing-keys) — and the trust policy naming their public keys, the
# ConfigMap gantry-trust-policy, which promote and the production server read. From then on the
# namespace promotes only models whose chain (training → evaluation → approval) verifies.
#   hack/cluster/keys.sh NAMESPACE              # keys kept under the cluster's run dir, reused
#   hack/cluster/keys.sh NAMESPACE --rotate ROLE   # a new key for ROLE; the policy lists old and new
#   hack/cluster/keys.sh NAMESPACE --retire ROLE   # the policy keeps only ROLE's newest key
# The private keys stay in the Secrets (and, for this local cluster, under ${RUN}/etc/keys/).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source hack/cluster/lib.sh
ns="${1:?usage: keys.sh NAMESPACE [--rotate ROLE | --retire ROLE]}"
action="${2:-}" role_arg="${3:-}"
dir="${RUN}/etc/keys/${ns}"
mkdir -p "${dir}" && chmod 700 "${dir}"
newkey() { openssl genpkey -algorithm ed25519 -out "$1" 2>/dev/null && chmod 600 "$1"; }
case "${action}" in
  "") ;;
  --rotate | --retire) [[ "${role_arg}" =~ ^(training|evaluation|approval)$ ]] || die "${action} ROLE: want training, evaluation or approval" ;;
  *) die "unknown option ${action}" ;;
esac
CGO_ENABLED=0 go build -trimpath -o "${RUN}/bin/model-publisher" ./cmd/model-publisher
policy=()
for role in training evaluation approval; do
  # Keys of a role, oldest first: <role>.<n>.pem; the newest signs.
  mapfile -t keys < <(find "${dir}" -name "${role}.*.pem" -printf '%f\n' | sort -t. -k2 -n | sed "s|^|${dir}/|")
  if ((${#keys[@]} == 0)) || [[ "${action}" == --rotate && "${role_arg}" == "${role}" ]]; then
    next="${dir}/${role}.$((${#keys[@]} + 1)).pem"
    newkey "${next}"
    keys+=("${next}")
  fi
  if [[ "${action}" == --retire && "${role_arg}" == "${role}" ]]; then
    for old in "${keys[@]:0:${#keys[@]}-1}"; do rm -f "${old}"; done
    keys=("${keys[-1]}")
  fi
  for key in "${keys[@]}"; do policy+=("--${role}=${key}"); done
  k -n "${ns}" create secret generic "gantry-signing-${role}" --from-file=key.pem="${keys[-1]}" \
    --dry-run=client -o yaml | k apply -f - >/dev/null
done
"${RUN}/bin/model-publisher" trust-policy "${policy[@]}" >"${dir}/policy.json"
k -n "${ns}" create configmap gantry-trust-policy --from-file=policy.json="${dir}/policy.json" \
  --dry-run=client -o yaml | k apply -f - >/dev/null
log "evidence in force in namespace ${ns}: Secrets gantry-signing-{training,evaluation,approval}, ConfigMap gantry-trust-policy (${dir}/policy.json)"
