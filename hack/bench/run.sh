#!/usr/bin/env bash
# Runs gantry's benchmarks side by side and prints the ratios the closing notes report.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${BENCH_OUT:-$(mktemp)}"
hack/install-tools.sh --bench >/dev/null
go test -run '^$' -bench 'BenchmarkReaction' -benchtime 5x ./tasks/train/ | tee "${out}"
go test -run '^$' -bench 'BenchmarkPredictHTTP|BenchmarkCompute10k' -benchtime 2s ./images/model-server/serving/ | tee -a "${out}"
go test -run '^$' -bench 'BenchmarkEvaluate10k' -benchtime 1x -count 3 ./tasks/canary/ | tee -a "${out}"
go test -run '^$' -bench 'BenchmarkPublish1GiB' -benchtime 1x -count 3 -timeout 30m ./tasks/publish/ | tee -a "${out}"
go test -run '^$' -bench 'BenchmarkAttest' -benchtime 200x ./internal/attest/ | tee -a "${out}"
go test -run '^$' -bench 'BenchmarkPublishSigned' -benchtime 30x -count 3 ./tasks/publish/ | tee -a "${out}"
go test -run '^$' -bench 'BenchmarkModelLoad' -benchtime 20x -count 3 ./images/model-server/ | tee -a "${out}"
python3 - "${out}" <<'PY'
import re, sys, statistics
ns = {}
for line in open(sys.argv[1]):
    m = re.match(r'(Benchmark\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op', line)
    if m: ns.setdefault(m.group(1), []).append(float(m.group(3)))
med = {k: statistics.median(v) for k, v in ns.items()}
def ratio(a, b, what):
    if a in med and b in med: print(f"{what}: {med[b]/med[a]:.1f}x")
print()
ratio('BenchmarkReaction/watch', 'BenchmarkReaction/poll-1s', 'train-launcher reaction, 1 s polling / watch')
for wire in ('v2', 'v2-json', 'v1'):
    ratio('BenchmarkEvaluate10k/compute', f'BenchmarkEvaluate10k/gantry-{wire}', f'canary 10k images, gantry {wire} / pure compute (same batches, same concurrency)')
ratio('BenchmarkEvaluate10k/gantry-v2', 'BenchmarkEvaluate10k/sequential', 'canary 10k images, one request per image / gantry v2')
ratio('BenchmarkPublish1GiB/mc-cp', 'BenchmarkPublish1GiB/publish', 'publish 1 GiB (source carries SHA-256) / mc cp')
ratio('BenchmarkPublish1GiB/mc-cp', 'BenchmarkPublish1GiB/publish-staged', 'publish 1 GiB (through staging) / mc cp')
ratio('BenchmarkPublish1GiB/republish', 'BenchmarkPublish1GiB/mc-cp', 'mc cp / re-publish of the unchanged model')
ratio('BenchmarkModelLoad/digest-only', 'BenchmarkModelLoad/with-chain', 'model load from S3 with the attestation chain verified / digest-checked only')
ratio('BenchmarkPublishSigned/unsigned', 'BenchmarkPublishSigned/signed', 'publish with the training provenance signed / unsigned')
for k in sorted(med):
    if k.startswith(('BenchmarkReaction', 'BenchmarkEvaluate10k', 'BenchmarkPublish1GiB', 'BenchmarkAttest', 'BenchmarkModelLoad', 'BenchmarkPublishSigned')): print(f"{k}: {med[k]/1e6:.2f} ms")
PY
