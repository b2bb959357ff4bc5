#!/usr/bin/env bash
# Installs the out-of-module tools the tests need (MinIO server) into $GANTRY_TOOLS/bin.
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
echo "${bin}"
