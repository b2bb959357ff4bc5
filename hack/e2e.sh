#!/usr/bin/env bash
# The e2e suite (make e2e): brings the local cluster up (hack/cluster/up.sh builds what is
# missing), ko-builds gantry's images into it, then runs `go test -tags e2e ./e2e` on the node
# (inside its network namespace) with the argo CLI and kubectl on PATH.
#   E2E_RUN=Reject hack/e2e.sh     # a subset (go test -run)
#   E2E_DOWN=1 hack/e2e.sh         # stop the cluster afterwards (CI does)
#   E2E_NODES=1 hack/e2e.sh        # one node (default 2: the node-loss test stops the second)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=${SECONDS}
hack/install-deps.sh --browser >/dev/null
hack/install-tools.sh >/dev/null # cosign: the evidence test runs cosign verify-attestation
hack/cluster/up.sh --nodes "${E2E_NODES:-2}"
hack/cluster/gantry.sh
root=$(pwd)
if [[ -n "${E2E_DOWN:-}" ]]; then trap '"${root}/hack/cluster/down.sh"' EXIT; fi
# namespaces an interrupted earlier run left behind, and a node it left cordoned (node.sh, from
# up.sh, has removed a lost node's taint)
hack/cluster/exec.sh kubectl get namespaces -o name | grep '^namespace/e2e-' | xargs -r hack/cluster/exec.sh kubectl delete --wait=false >/dev/null || true
hack/cluster/exec.sh kubectl uncordon gantry-node >/dev/null
mkdir -p _output
# Static and trimmed, as ko builds the images (and the suite builds the approver): the packages
# they share are compiled once (cold, that is one compile of gantry's dependencies, not three).
CGO_ENABLED=0 go test -c -trimpath -tags e2e -o _output/e2e.test ./e2e
CGO_ENABLED=0 go build -trimpath -o /dev/null ./cmd/approver ./cmd/model-publisher # warms the build cache: the node namespace has no module proxy
echo "e2e: cluster and images ready in $((SECONDS - t0))s; running the suite" >&2
cd e2e
# The whole output goes to _output/e2e.log as well; when a test fails, what each failed test
# itself reported is repeated at the end (a CI log's tail is often all one gets to read).
rc=0
GOPROXY=off GOFLAGS=-mod=readonly ../hack/cluster/exec.sh ../_output/e2e.test -test.v -test.timeout "${E2E_TIMEOUT:-45m}" \
  -test.parallel "${E2E_PARALLEL:-3}" -test.run "${E2E_RUN:-.}" 2>&1 | tee ../_output/e2e.log || rc=$?
if ((rc != 0)); then ../hack/failures.sh ../_output/e2e.log >&2; fi
echo "e2e: done in $((SECONDS - t0))s" >&2
exit "${rc}"
