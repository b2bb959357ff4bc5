#!/usr/bin/env bash
# Installs gantry into the local cluster (bringing the cluster up first if needed):
#   1. `ko build`s the six images into the node's registry and `ko resolve`s templates/
#      → _output/gantry-release.yaml (WorkflowTemplates + RBAC, every image pinned by digest);
#   2. uploads Fashion-MNIST to s3://datasets/fashion-mnist/ on the cluster's MinIO (once);
#   3. per NAMESPACE: the namespace (labelled gantry.dev/approval-policy=enforce: the API server
#      enforces who may approve, templates/approval-policy.yaml), the `gantry-s3` Secret and the
#      release (its cluster-scoped admission policy included), server-side applied.
#   hack/cluster/gantry.sh demo [more namespaces...]
#   hack/cluster/gantry.sh                       # images and dataset only
#   SKIP_IMAGES=1 hack/cluster/gantry.sh ns2    # reuse _output/gantry-release.yaml
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source hack/cluster/lib.sh
hack/cluster/status.sh >/dev/null 2>&1 || hack/cluster/up.sh
hack/install-deps.sh >/dev/null
tools=$(hack/install-tools.sh --images | tail -n 1)
export PATH="${tools}:${PATH}"
# shellcheck disable=SC1091
source "${RUN}/etc/minio.env"
s3() { in_node env S3_ENDPOINT="http://${NODE_IP}:9000" AWS_ACCESS_KEY_ID="${MINIO_ROOT_USER}" AWS_SECRET_ACCESS_KEY="${MINIO_ROOT_PASSWORD}" "${RUN}/bin/s3" "$@"; }

if [[ -z "${SKIP_IMAGES:-}" || ! -f _output/gantry-release.yaml ]]; then
  log "ko build → ${REGISTRY} (the node namespace has no network: modules come from the local cache)"
  go mod download
  in_node env REGISTRY="${REGISTRY}" GOPROXY=off GOFLAGS=-mod=readonly hack/images.sh >"${RUN}/logs/images.log" 2>&1 ||
    { tail -20 "${RUN}/logs/images.log" >&2; die "image build failed (${RUN}/logs/images.log)"; }
  grep -E '^(resolved|.*MB$)' "${RUN}/logs/images.log" >&2 || true
fi

data=/usr/share/datasets/fashion-mnist
if [[ ! -f "${RUN}/etc/dataset.ok" ]]; then
  log "uploading Fashion-MNIST → s3://datasets/fashion-mnist/"
  s3 put "${data}"/*-ubyte.gz s3://datasets/fashion-mnist/ >/dev/null
  touch "${RUN}/etc/dataset.ok"
fi

for ns in "$@"; do
  k create namespace "${ns}" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label namespace "${ns}" gantry.dev/approval-policy=enforce --overwrite >/dev/null
  k -n "${ns}" create secret generic gantry-s3 --from-literal=AWS_ACCESS_KEY_ID="${MINIO_ROOT_USER}" \
    --from-literal=AWS_SECRET_ACCESS_KEY="${MINIO_ROOT_PASSWORD}" --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n "${ns}" apply --server-side --force-conflicts --field-manager=gantry -f _output/gantry-release.yaml >/dev/null
  log "gantry installed in namespace ${ns}: $(k -n "${ns}" get workflowtemplates -o name | tr '\n' ' ')"
done
