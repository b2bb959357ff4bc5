#!/usr/bin/env bash
# Every verify-* check.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/verify-templates.sh
