#!/usr/bin/env bash
# Renders a canary report.html in headless Chromium (Debian's `chromium`) and saves a PNG, to check
# the report looks right as a person (or the Argo UI's artifact view) sees it.
# Usage: hack/screenshot-report.sh REPORT.html [OUT.png]
set -euo pipefail
report="$(realpath "$1")"
out="${2:-${report%.html}.png}"
command -v chromium >/dev/null || { sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo; ${sudo} apt-get install -y -qq chromium >/dev/null; }
profile=$(mktemp -d)
trap 'rm -rf "${profile}"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="${profile}" --hide-scrollbars \
  --window-size=1200,1900 --screenshot="${out}" "file://${report}" 2>/dev/null
echo "${out}"
