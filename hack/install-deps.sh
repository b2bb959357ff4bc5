#!/usr/bin/env bash
# Debian packages the tests need: the Fashion-MNIST dataset, git, shellcheck (hack/verify.sh); with
# --browser also Chromium (the e2e suite opens the canary report in it). Idempotent.
set -euo pipefail
need=()
[[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]] || need+=(dataset-fashion-mnist)
command -v git >/dev/null || need+=(git)
command -v shellcheck >/dev/null || need+=(shellcheck)
if [[ "${1:-}" == "--browser" ]]; then command -v chromium >/dev/null || need+=(chromium); fi
if ((${#need[@]})); then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  ${sudo} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq "${need[@]}"
fi
