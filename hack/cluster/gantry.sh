#!/usr/bin/env bash
# Installs gantry into the local cluster (bringing the cluster up first if needed):
#   1. `ko build`s the six images into the node's registry and `ko resolve`s templates/
#      → _output/gantry-release.yaml (WorkflowTemplates + RBAC, every image pinned by digest);
#   2. uploads Fashion-MNIST to s3://datasets/fashion-mnist/ on the cluster's MinIO (once);
#   3. a MinIO user that may only read s3://models/registry/ (the model servers' credential);
#   4. per NAMESPACE: the namespace (labelled gantry.dev/approval-policy=enforce: the API server
#      enforces who may approve, templates/approval-policy.yaml), the `gantry-s3` Secret and the
#      release (its cluster-scoped admission policy included), server-side applied, and the
#      Secrets gantry-s3 (the pipeline steps) and gantry-s3-read (the model servers).
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

# (Re)built here too: a cluster brought up by an older checkout has an older helper.
CGO_ENABLED=0 go build -trimpath -o "${RUN}/bin/s3" ./hack/cluster/s3
# The model servers' credential: a MinIO user that may only read the registry (gantry-s3-read).
if [[ ! -f "${RUN}/etc/reader.env" ]]; then
  printf 'READER_USER=gantry-model-server\nREADER_PASSWORD=%s\n' "$(openssl rand -hex 20)" >"${RUN}/etc/reader.env"
fi
# shellcheck disable=SC1091
source "${RUN}/etc/reader.env"
s3 reader "${READER_USER}" "${READER_PASSWORD}" s3://models/registry/ >/dev/null

for ns in "$@"; do
  k create namespace "${ns}" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label namespace "${ns}" gantry.dev/approval-policy=enforce --overwrite >/dev/null
  k -n "${ns}" create secret generic gantry-s3 --from-literal=AWS_ACCESS_KEY_ID="${MINIO_ROOT_USER}" \
    --from-literal=AWS_SECRET_ACCESS_KEY="${MINIO_ROOT_PASSWORD}" --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n "${ns}" create secret generic gantry-s3-read --from-literal=AWS_ACCESS_KEY_ID="${READER_USER}" \
    --from-literal=AWS_SECRET_ACCESS_KEY="${READER_PASSWORD}" --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n "${ns}" apply --server-side --force-conflicts --field-manager=gantry -f _output/gantry-release.yaml >/dev/null
  log "gantry installed in namespace ${ns}: $(k -n "${ns}" get workflowtemplates -o name | tr '\n' ' ')"
done
