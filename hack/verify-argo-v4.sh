#!/usr/bin/env bash
# Validates templates/ with Argo v4's own validation (strict lint): the generated WorkflowTemplates,
# the catch-up CronWorkflow and the event binding must work on a v4 controller too. hack/argo-v4 is
# a module of its own (gantry stays on the v3 API); ≈2 min cold (modules + build), seconds warm.
set -euo pipefail
cd "$(dirname "$0")/argo-v4"
GOFLAGS=-mod=mod go run . ../../templates
