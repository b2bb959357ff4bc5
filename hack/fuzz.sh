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
  go test -run '^$' -fuzz "^$2\$" -fuzztime "${t}" "$1" 2>&1 | tail -n 2
done
