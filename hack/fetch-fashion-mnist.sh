#!/usr/bin/env bash
# Fetches the official Fashion-MNIST files into DIR (default ./fashion-mnist) and checks the md5 of
# the uncompressed bytes; then upload them to your bucket, e.g.
#   mc cp fashion-mnist/*.gz myminio/datasets/fashion-mnist/
# On Debian, `apt-get install dataset-fashion-mnist` gives the same data under /usr/share/datasets/.
set -euo pipefail
dir="${1:-fashion-mnist}"
base="${FASHION_MNIST_URL:-http://fashion-mnist.s3-website.eu-central-1.amazonaws.com}"
declare -A md5=(
  [train-images-idx3-ubyte.gz]=f4a8712d7a061bf5bd6d2ca38dc4d50a
  [train-labels-idx1-ubyte.gz]=9018921c3c673c538a1fc5bad174d6f9
  [t10k-images-idx3-ubyte.gz]=8181f5470baa50b63fa0f6fddb340f0a
  [t10k-labels-idx1-ubyte.gz]=15d484375f8d13e6eb1aabb0c3f46965
)
mkdir -p "${dir}"
for f in "${!md5[@]}"; do
  [[ -f "${dir}/${f}" ]] || curl -fsSL -o "${dir}/${f}" "${base}/${f}"
  got=$(gzip -dc "${dir}/${f}" | md5sum | cut -d' ' -f1)
  if [[ "${got}" != "${md5[$f]}" ]]; then echo "md5 mismatch for ${f}: ${got}" >&2; exit 1; fi
  echo "ok ${f}"
done
