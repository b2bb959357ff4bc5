#!/usr/bin/env bash
# The test command (make test): installs the test dependencies when missing, verifies the
# generated files, then runs unit + integration tests with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

# phase NAME: prints how long the previous phase took (the cold CI's time is measured per phase).
t=${SECONDS} last=""
phase() { [[ -z "${last}" ]] || echo "== ${last}: $((SECONDS - t))s" >&2; t=${SECONDS} last=$1; [[ -z "$1" ]] || echo "== $1"; }

phase "dependencies (apt, MinIO)"
hack/install-deps.sh
export GANTRY_TOOLS="${GANTRY_TOOLS:-${HOME}/.cache/gantry/tools}"
hack/install-tools.sh >/dev/null

phase "verify"
hack/verify.sh
phase "Argo v4 validation"
hack/verify-argo-v4.sh
phase "go vet"
# With -race, as the tests are built: vet's compile of every package is the tests' too (cold,
# one compile of the dependencies instead of two).
go vet -race ./...
go vet -race -tags e2e ./e2e

phase "go test"
go test -race -count=1 -timeout 20m ./... 2>&1 | tee /tmp/gantry-test.log
if [[ -x hack/fuzz.sh ]]; then phase "fuzz (short)"; hack/fuzz.sh 10000x; fi
phase ""
