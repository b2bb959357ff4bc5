#!/usr/bin/env bash
# The tree's hygiene, first thing CI runs (hack/test.sh calls it): no build outputs or data in
# git, no path a shell would read as a flag, gofmt, shellcheck on every script, and every
# generated file current.
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

echo "== generated files"
hack/verify-generated.sh || status=1
exit "${status}"
