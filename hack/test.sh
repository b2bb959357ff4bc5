#!/usr/bin/env bash
# The test command (make test): installs the test dependencies when missing, verifies the
# generated files, then runs unit + integration tests with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh
export GANTRY_TOOLS="${GANTRY_TOOLS:-${HOME}/.cache/gantry/tools}"
hack/install-tools.sh >/dev/null

hack/verify.sh
echo "== Argo v4 validation"
hack/verify-argo-v4.sh
echo "== go vet"
go vet ./...
go vet -tags e2e ./e2e

echo "== go test"
go test -race -count=1 -timeout 20m ./... 2>&1 | tee /tmp/gantry-test.log
if [[ -x hack/fuzz.sh ]]; then echo "== fuzz (short)"; hack/fuzz.sh 10000x; fi
