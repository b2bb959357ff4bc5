#!/usr/bin/env bash
# Installs gantry into the local cluster (bringing the cluster up first if needed):
#   1. `ko build`s the six images into the node's registry and `ko resolve`s templates/
#      → _output/gantry-release.yaml (WorkflowTemplates + RBAC, every image pinned by digest);
#   2. uploads Fashion-MNIST to s3://datasets/fashion-mnist/ on the cluster's MinIO (once);
#   3. MinIO users by role: gantry-model-server (read the registry), gantry-runs (read datasets,
#      write runs/, read the registry and add attestations: the training launcher and the canary);
#   4. per NAMESPACE (Argo and Tekton alike): the namespace (labelled gantry.dev/approval-policy=enforce: the API server
#      enforces who may approve, templates/approval-policy.yaml), the `gantry-s3` Secret and the
#      release (its cluster-scoped admission policy included), server-side applied, and the
#      Secrets gantry-s3 (registry writers), gantry-s3-runs and gantry-s3-read.
#   5. with --push-trigger: the cluster's registry notifies each NAMESPACE's push trigger
#      (hack/cluster/push-trigger.sh): a push of a new training image starts one run. A namespace
#      wired before is wired again (same repository) without it: step 4 reset its trigger.
#   hack/cluster/gantry.sh demo [more namespaces...]
#   hack/cluster/gantry.sh --push-trigger demo
#   hack/cluster/gantry.sh                       # images and dataset only
#   SKIP_IMAGES=1 hack/cluster/gantry.sh ns2    # reuse _output/gantry-release.yaml
set -euo pipefail
push_trigger=false
if [[ "${1:-}" == --push-trigger ]]; then push_trigger=true; shift; fi
if [[ "${1:-}" == -* ]]; then echo "usage: $0 [--push-trigger] [NAMESPACE...]" >&2; exit 2; fi
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
# Object-store credentials by role (MinIO users with one policy each): gantry-s3-read for the
# model servers (read the registry), gantry-s3-runs for the training launcher and the canary
# (read datasets, write runs/); gantry-s3 (root here) for the registry writers.
if [[ ! -f "${RUN}/etc/users.env" ]]; then
  printf 'READER_PASSWORD=%s\nRUNS_PASSWORD=%s\n' "$(openssl rand -hex 20)" "$(openssl rand -hex 20)" >"${RUN}/etc/users.env"
fi
# shellcheck disable=SC1091
source "${RUN}/etc/users.env"
s3 user gantry-model-server "${READER_PASSWORD}" read:s3://models/registry/ >/dev/null
# The canary signs its evaluation: it reads a version's manifest and adds its attestation beside it.
s3 user gantry-runs "${RUNS_PASSWORD}" read:s3://datasets/ write:s3://models/runs/ read:s3://models/registry/ attest:s3://models/registry/ >/dev/null
secret() { # NAMESPACE NAME USER PASSWORD
  k -n "$1" create secret generic "$2" --from-literal=AWS_ACCESS_KEY_ID="$3" --from-literal=AWS_SECRET_ACCESS_KEY="$4" \
    --dry-run=client -o yaml | k apply -f - >/dev/null
}

# The images a pod running as a gantry step account may run (the admission policy gantry-step-pods
# reads them from here): this release's, Argo's executor, Tekton's init images.
if (($#)); then
  k create namespace gantry-system --dry-run=client -o yaml | k apply -f - >/dev/null
  releases=(_output/gantry-release.yaml)
  [[ -f _output/gantry-tekton-release.yaml ]] && releases+=(_output/gantry-tekton-release.yaml)
  in_node hack/pinned-images.sh "${releases[@]}" | k apply -f - >/dev/null
  # The cluster's step semaphores (train, evaluate): created once, never reset, so a size set for
  # the cluster (kubectl edit) survives the next install.
  # (Installs running side by side: whoever creates it second finds it there.)
  k create -f templates/cluster/semaphores.yaml >/dev/null 2>&1 || k -n gantry-system get configmap gantry-semaphores >/dev/null
fi

for ns in "$@"; do
  k create namespace "${ns}" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label namespace "${ns}" gantry.dev/approval-policy=enforce --overwrite >/dev/null
  secret "${ns}" gantry-s3 "${MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD}"
  secret "${ns}" gantry-s3-read gantry-model-server "${READER_PASSWORD}"
  secret "${ns}" gantry-s3-runs gantry-runs "${RUNS_PASSWORD}"
  # The namespace's default artifact repository: the cluster's MinIO, with the runs/ credentials
  # (the canary's and smoke's report.html/report.json land under runs/<run>/artifacts/; argo get
  # lists them, the Argo Server serves them).
  k -n "${ns}" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: artifact-repositories
  annotations: {workflows.argoproj.io/default-artifact-repository: gantry-minio}
data:
  gantry-minio: |
    s3:
      endpoint: minio.gantry-system.svc:9000
      insecure: true
      bucket: models
      keyFormat: "runs/{{workflow.name}}/artifacts/{{pod.name}}"
      accessKeySecret: {name: gantry-s3-runs, key: AWS_ACCESS_KEY_ID}
      secretKeySecret: {name: gantry-s3-runs, key: AWS_SECRET_ACCESS_KEY}
EOF
  k -n "${ns}" apply --server-side --force-conflicts --field-manager=gantry -f _output/gantry-release.yaml >/dev/null
  # The Tekton catalog and ml-pipeline (Tekton's webhook validates them on the way in), where
  # Tekton is installed (up.sh --no-tekton leaves it out).
  kinds=workflowtemplates
  if k get crd pipelines.tekton.dev >/dev/null 2>&1; then
    k -n "${ns}" apply --server-side --force-conflicts --field-manager=gantry -f _output/gantry-tekton-release.yaml >/dev/null
    kinds+=,pipelines.tekton.dev
  fi
  log "gantry installed in namespace ${ns}: $(k -n "${ns}" get "${kinds}" -o name | tr '\n' ' ')"
done
for ns in "$@"; do
  if ${push_trigger} || [[ -f "${RUN}/etc/registry-notify/${ns}.yml" ]]; then hack/cluster/push-trigger.sh "${ns}"; fi
done
