#!/usr/bin/env bash
# The tree's hygiene, first thing CI runs (hack/test.sh calls it): no build outputs or data in
# git, no path a shell would read as a flag, gofmt, shellcheck on every script, and every
# generated file current, and the dependency rules between packages.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
fail() { echo "verify: $*" >&2; status=1; }

echo "== tracked files: none over 1 MB, none starting with -"
max=$((1024 * 1024))
while IFS= read -r -d '' f; do
  case "${f}" in -* | */-*) fail "${f}: a tracked path starts with '-' (a flag typed as a path?)" ;; esac
  if [[ -f "${f}" ]] && (($(stat -c %s -- "${f}") > max)); then
    fail "${f}: $(stat -c %s -- "${f}") bytes, over 1 MB (build output or data? keep it out of git)"
  fi
done < <(git ls-files -z)

echo "== gofmt"
mapfile -d '' gofiles < <(git ls-files -z '*.go')
unformatted=$(gofmt -l "${gofiles[@]}")
[[ -z "${unformatted}" ]] || fail "gofmt needed: ${unformatted}"

echo "== shellcheck"
if ! command -v shellcheck >/dev/null; then
  fail "shellcheck is not installed (hack/install-deps.sh installs it)"
else
  mapfile -d '' scripts < <(git ls-files -z '*.sh' .ci/run)
  shellcheck -x -P SCRIPTDIR "${scripts[@]}" || fail "shellcheck findings above"
fi

echo "== dependency rules: internal/ is runtime code; the loop names no engine"
# internal/ holds what the binaries share at run time: it imports neither the tasks nor the
# commands (build-time code such as the template generator lives in pipeline/ and cmd/). The
# engine-neutral loop (pipeline/) imports no engine's API: each renderer (pipeline/argo,
# pipeline/tekton) imports its own.
module=$(go list -m)
while read -r pkg imports; do
  for imp in ${imports}; do
    case "${pkg}:${imp}" in
      "${module}"/internal/*:"${module}"/tasks/* | "${module}"/internal/*:"${module}"/cmd/*)
        fail "${pkg#"${module}"/} imports ${imp#"${module}"/}: internal/ is runtime code shared by the binaries, never above them" ;;
      "${module}/pipeline:github.com/argoproj/"* | "${module}/pipeline:github.com/tektoncd/"*)
        fail "pipeline imports ${imp}: the loop is engine-neutral; engine types belong to pipeline/argo or pipeline/tekton" ;;
    esac
  done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./internal/... ./pipeline)

echo "== generated files"
hack/verify-generated.sh || status=1

echo "== docs name only what exists (make targets, scripts, tests, gantry's flags, ml-pipeline's parameters)"
go test -count=1 -run 'TestDocsNameWhatExists' ./cmd/gen-templates >/dev/null || {
  go test -count=1 -run 'TestDocsNameWhatExists' ./cmd/gen-templates || true
  fail "the docs name something that does not exist (above)"
}
exit "${status}"
