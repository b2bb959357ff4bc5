#!/usr/bin/env bash
# Regenerates templates/ into a temp dir and fails when the committed files differ.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
go run ./cmd/gen-templates "${tmp}/templates"
if ! diff -ru templates "${tmp}/templates"; then
  echo "templates/ is stale: run hack/update-templates.sh" >&2
  exit 1
fi
echo "templates/ up to date"
