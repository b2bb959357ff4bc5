#!/usr/bin/env bash
# The local walk-through (make demo): train → publish → serve → canary → verdict, with gantry's own
# binaries on 127.0.0.1 and file:// storage (make demo-local). The on-cluster version: hack/cluster/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/install-deps.sh
work="${DEMO_DIR:-$(mktemp -d)}"
bin="${work}/bin"; mkdir -p "${bin}"
data="file:///usr/share/datasets/fashion-mnist/"
port="${DEMO_PORT:-18501}"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])" "$1"; }

step "building binaries"
for b in canary-evaluator model-publisher approver; do go build -o "${bin}/${b}" "./cmd/${b}"; done
for b in fashion-trainer model-server; do go build -o "${bin}/${b}" "./images/${b}"; done

step "training on Fashion-MNIST (${EPOCHS:-10} epochs, all cores)"
"${bin}/fashion-trainer" --dataset-uri="${data}" --output-uri="file://${work}/run/model/" --epochs="${EPOCHS:-10}"

step "publishing an immutable version"
pub=$("${bin}/model-publisher" publish --source-uri="file://${work}/run/model/" --registry-uri="file://${work}/registry" --model-name=fashion-mnist)
uri=$(echo "${pub}" | field model-uri); digest=$(echo "${pub}" | field model-digest)
echo "version $(echo "${pub}" | field model-version) at ${uri} (${digest})"

step "serving it on 127.0.0.1:${port}"
"${bin}/model-server" --model-uri="${uri}" --model-digest="${digest}" --listen="127.0.0.1:${port}" 2>"${work}/server.log" &
server=$!
trap 'kill ${server} 2>/dev/null || true' EXIT
ready=""
for _ in $(seq 300); do curl -fs "http://127.0.0.1:${port}/v2/health/ready" >/dev/null && ready=1 && break; sleep 0.1; done
[[ -n "${ready}" ]] || { echo "demo: the model server was not ready within 30 s; its log: ${work}/server.log" >&2; tail -5 "${work}/server.log" >&2; exit 1; }

step "canary: all 10k test images, batched and concurrent"
canary=$("${bin}/canary-evaluator" --endpoint="http://127.0.0.1:${port}" --dataset-uri="${data}" --min-accuracy=0.85 \
  --max-p99-ms=500 --report-uri="file://${work}/report/")
echo "${canary}"

step "verdict"
"${bin}/approver" conclude --decision="$(echo "${canary}" | field verdict)" --reason="$(echo "${canary}" | field reason)"

step "one prediction (first test image; label 9 = Ankle boot)"
python3 - "${port}" <<'PY'
import gzip, json, sys, urllib.request
px = gzip.open('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz').read()[16:16+784]
req = urllib.request.Request(f'http://127.0.0.1:{sys.argv[1]}/v1/models/fashion-mnist:predict',
    data=json.dumps({'instances': [[p/255 for p in px]]}).encode(), headers={'Content-Type': 'application/json'})
p = json.load(urllib.request.urlopen(req))['predictions'][0]
names = ["T-shirt/top","Trouser","Pullover","Dress","Coat","Sandal","Shirt","Sneaker","Bag","Ankle boot"]
best = max(range(10), key=lambda i: p[i])
print(f'predicted {best} ({names[best]}) with probability {p[best]:.3f}')
PY
echo; echo "report: ${work}/report/report.html"
