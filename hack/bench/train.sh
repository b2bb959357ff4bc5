#!/usr/bin/env bash
# Full-data training benchmark: trains the default fashion-trainer on all 60k images and
# reports wall time and test accuracy on the 10k test set.
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${DATASET_URI:-file:///usr/share/datasets/fashion-mnist/}"
out=$(mktemp -d)
trap 'rm -rf "${out}"' EXIT
go build -o "${out}/fashion-trainer" ./images/fashion-trainer
start=$(date +%s.%N)
"${out}/fashion-trainer" --dataset-uri="${data}" --output-uri="file://${out}/model/" "$@"
end=$(date +%s.%N)
acc=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['test_accuracy'])" "${out}/model/metrics.json")
printf 'train: wall %.1fs test_accuracy %s cores %s\n' "$(echo "${end} - ${start}" | bc)" "${acc}" "$(nproc)"
