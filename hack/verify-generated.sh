#!/usr/bin/env bash
# Fails when a generated file is stale, anywhere in the tree: regenerates into a copy of the
# tracked files (templates/ from scratch) and diffs the copy against the checkout. Also fails on a
# tracked file that claims to be generated ("Code generated … DO NOT EDIT.") but that the
# generator does not write (a stale copy like the -h/ directory once committed).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
mkdir -p "${tmp}/tree"
while IFS= read -r -d '' f; do
  if [[ -e "${f}" ]]; then cp --parents -t "${tmp}/tree" -- "${f}"; fi
done < <(git ls-files -z)
rm -rf "${tmp}/tree/templates"
go run ./cmd/gen-templates --out "${tmp}/tree/templates" --readmes "${tmp}/tree"
status=0
if ! diff -ru --exclude=.git templates "${tmp}/tree/templates"; then status=1; fi
while IFS= read -r -d '' f; do
  if ! cmp -s "${f}" "${tmp}/tree/${f}"; then diff -u "${f}" "${tmp}/tree/${f}" || true; status=1; fi
done < <(git ls-files -z 'tasks/*/README.md' docs/engines.md)
while IFS= read -r f; do
  # templates/ (regenerated from scratch in the copy) and docs/engines.md are generated
  if [[ "${f}" != docs/engines.md && ("${f}" != templates/* || ! -f "${tmp}/tree/${f}") ]]; then
    echo "${f}: says it is generated, but gen-templates does not write it (delete it)" >&2
    status=1
  fi
done < <(git grep -l -E 'Code generated .*DO NOT EDIT' -- ':!*.go' ':!hack/verify-generated.sh' || true)
hack/readme-components.sh --check || status=1
if ((status)); then
  echo "generated files are stale: run hack/update-generated.sh" >&2
  exit 1
fi
echo "generated files up to date"
