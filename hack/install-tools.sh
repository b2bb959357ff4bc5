#!/usr/bin/env bash
# Installs the out-of-module tools the tests need (MinIO server, cosign) into $GANTRY_TOOLS/bin.
# Idempotent: a tool already built at the pinned version is kept. Nothing here enters go.mod.
set -euo pipefail

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
GANTRY_TOOLS="${GANTRY_TOOLS:-${HOME}/.cache/gantry/tools}"
bin="${GANTRY_TOOLS}/bin"
mkdir -p "${bin}"

stamp="${bin}/.minio-${MINIO_VERSION}"
if [[ ! -x "${bin}/minio" || ! -f "${stamp}" ]]; then
  echo "install-tools: building minio ${MINIO_VERSION} (several minutes cold)" >&2
  GOBIN="${bin}" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath "github.com/minio/minio@${MINIO_VERSION}"
  touch "${stamp}"
fi
# cosign: the tests check that `cosign verify-attestation --key` accepts gantry's attestations.
COSIGN_VERSION="${COSIGN_VERSION:-v2.6.2}"
if [[ ! -x "${bin}/cosign" || ! -f "${bin}/.cosign-${COSIGN_VERSION}" ]]; then
  echo "install-tools: building cosign ${COSIGN_VERSION} (a few minutes cold)" >&2
  GOBIN="${bin}" CGO_ENABLED=0 go install -trimpath "github.com/sigstore/cosign/v2/cmd/cosign@${COSIGN_VERSION}"
  touch "${bin}/.cosign-${COSIGN_VERSION}"
fi
# ko and crane: only for building images (hack/images.sh), not for the tests.
if [[ "${1:-}" == "--images" ]]; then
  KO_VERSION="${KO_VERSION:-v0.19.1}"
  CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
  if [[ ! -x "${bin}/ko" || ! -f "${bin}/.ko-${KO_VERSION}" ]]; then
    echo "install-tools: building ko ${KO_VERSION}" >&2
    GOBIN="${bin}" CGO_ENABLED=0 go install -trimpath "github.com/google/ko@${KO_VERSION}"
    touch "${bin}/.ko-${KO_VERSION}"
  fi
  if [[ ! -x "${bin}/crane" || ! -f "${bin}/.crane-${CRANE_VERSION}" ]]; then
    echo "install-tools: building crane ${CRANE_VERSION}" >&2
    GOBIN="${bin}" CGO_ENABLED=0 go install -trimpath "github.com/google/go-containerregistry/cmd/crane@${CRANE_VERSION}"
    touch "${bin}/.crane-${CRANE_VERSION}"
  fi
fi
# mc: only for the publish benchmark (hack/bench/run.sh), built from its Go module like MinIO.
if [[ "${1:-}" == "--bench" ]]; then
  MC_VERSION="${MC_VERSION:-v0.0.0-20250313080218-cf909e1063a9}"
  if [[ ! -x "${bin}/mc" || ! -f "${bin}/.mc-${MC_VERSION}" ]]; then
    echo "install-tools: building mc ${MC_VERSION} (≈1 min cold)" >&2
    GOBIN="${bin}" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath "github.com/minio/mc@${MC_VERSION}"
    touch "${bin}/.mc-${MC_VERSION}"
  fi
fi
echo "${bin}"
