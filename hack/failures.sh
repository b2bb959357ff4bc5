#!/usr/bin/env bash
# What each failed test reported, from a `go test -v` log (parallel tests interleave: a line
# belongs to the test the last "=== RUN/CONT/NAME" named). Per failed test: its own t.Log/t.Error
# lines (the framework's namespace dumps left out), each cut to 600 characters, the last 25.
#   hack/failures.sh _output/e2e.log
set -euo pipefail
case "${1:-}" in
  -h | --help) sed -n '2,5p' "$0" | cut -c3-; exit 0 ;;
  "" | -*) echo "usage: hack/failures.sh LOG" >&2; exit 2 ;;
esac
log=$1
[[ -r "${log}" ]] || { echo "failures.sh: cannot read ${log}" >&2; exit 2; }
awk '
  /^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
  /^(--- FAIL|    --- FAIL): / { name = $3; if (!(name in failed)) { failed[name] = 1; order[++n] = name } next }
  /^ +[A-Za-z0-9_]+_test\.go:[0-9]+: / {
    if ($0 ~ /framework_test\.go:[0-9]+: (run at failure:|namespace .* dumped to )/) next
    if (cur == "") next
    c = ++count[cur]; line[cur, c] = substr($0, 1, 600); next
  }
  END {
    if (n == 0) exit
    print "\n=== what the failed tests reported (" n ") ==="
    for (i = 1; i <= n; i++) {
      t = order[i]; print "--- " t
      from = count[t] > 25 ? count[t] - 24 : 1
      for (j = from; j <= count[t]; j++) print line[t, j]
    }
  }' "${log}"
