#!/usr/bin/env bash
# Regenerates templates/ from internal/pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf templates
go run ./cmd/gen-templates templates
echo "templates/ regenerated"
