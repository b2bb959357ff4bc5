#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes: the IDX reader, the model loader and the predict request
# decoder. Usage: hack/fuzz.sh [BUDGET]   BUDGET is a -fuzztime: a count ("10000x", the default,
# what `make test` uses) or a duration ("30s").
#
# Why a count by default: with a duration, Go's fuzz coordinator (through Go 1.26) can fail a
# target with a bare "context deadline exceeded" at the deadline when the machine is loaded
# (go.dev/issue/75804: the parent context is cancelled before its child, so the normal end is
# taken for an error). A count has no deadline to race. With a duration we tell that race apart
# from a finding: a finding writes a crasher under <pkg>/testdata/fuzz/<target>; the race writes
# none and the seed corpus still passes.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-10000x}"
for target in \
  "./internal/idx FuzzReadImages" \
  "./internal/idx FuzzReadLabels" \
  "./images/mlp FuzzUnmarshal" \
  "./images/model-server/serving FuzzParseTensor" \
  "./images/model-server/serving FuzzPredictRequest"; do
  read -r pkg fn <<<"${target}"
  echo "fuzz ${fn} (${budget})"
  corpus="${pkg}/testdata/fuzz/${fn}"
  before=$(find "${corpus}" -type f 2>/dev/null | wc -l || true)
  log=$(mktemp)
  if ! go test -run '^$' -fuzz "^${fn}\$" -fuzztime "${budget}" "${pkg}" >"${log}" 2>&1; then
    after=$(find "${corpus}" -type f 2>/dev/null | wc -l || true)
    if [[ "${after}" == "${before}" ]] && grep -q '^    context deadline exceeded$' "${log}" &&
      go test -run "^${fn}\$" "${pkg}" >/dev/null 2>&1; then
      echo "  ended by Go's fuzz deadline race (go.dev/issue/75804): no crasher written, seed corpus passes"
      rm -f "${log}"
      continue
    fi
    # the whole story, not the last two lines: a crasher is saved under ${corpus}
    grep -v '^fuzz: elapsed' "${log}" >&2
    rm -f "${log}"
    exit 1
  fi
  tail -n 2 "${log}"
  rm -f "${log}"
done
