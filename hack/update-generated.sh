#!/usr/bin/env bash
# Regenerates every generated file from the Go definitions: templates/ (from pipeline/: the loop, rendered by pipeline/argo and pipeline/tekton)
# and the flag tables of tasks/*/README.md (from tasks/*/command). Run it after changing either.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf templates
go run ./cmd/gen-templates --out templates --readmes .
hack/readme-components.sh
echo "templates/ and the task README flag tables regenerated"
