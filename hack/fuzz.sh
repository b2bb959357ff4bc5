#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes for a short time each (default 10s): the IDX reader,
# the model loader and the predict request decoder. Usage: hack/fuzz.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-10s}"
for target in \
  "./internal/idx FuzzReadImages" \
  "./internal/idx FuzzReadLabels" \
  "./images/mlp FuzzUnmarshal" \
  "./images/model-server/serving FuzzParseTensor" \
  "./images/model-server/serving FuzzPredictRequest"; do
  read -r pkg fn <<<"${target}"
  set -- "${pkg}" "${fn}"
  echo "fuzz $2 (${t})"
  log=$(mktemp)
  if ! go test -run '^$' -fuzz "^$2\$" -fuzztime "${t}" "$1" >"${log}" 2>&1; then
    # the whole story, not the last two lines: a crasher is saved under $1/testdata/fuzz/$2
    grep -v '^fuzz: elapsed' "${log}" >&2
    rm -f "${log}"
    exit 1
  fi
  tail -n 2 "${log}"
  rm -f "${log}"
done
