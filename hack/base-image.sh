#!/usr/bin/env bash
# Pushes gantry's base image to REGISTRY (arg 1) and prints its reference: a nonroot user
# (65532), /tmp and a home — all a static Go binary needs, built without any outside registry.
# Expects crane on PATH (hack/install-tools.sh --images).
set -euo pipefail
registry=${1:?usage: base-image.sh REGISTRY}
base="${registry}/gantry/base:static"
tmp=$(mktemp -d)
trap 'rm -rf "${tmp}"' EXIT
mkdir -p "${tmp}/root/etc" "${tmp}/root/tmp" "${tmp}/root/home/nonroot"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"${tmp}/root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"${tmp}/root/etc/group"
chmod 1777 "${tmp}/root/tmp"
tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -C "${tmp}/root" -cf "${tmp}/base.tar" .
crane append -f "${tmp}/base.tar" -t "${base}" --platform linux/amd64 >/dev/null
crane mutate "${base}" --user 65532 --workdir /home/nonroot --env PATH=/ko-app:/usr/local/bin:/usr/bin:/bin -t "${base}" >/dev/null
echo "${base}"
