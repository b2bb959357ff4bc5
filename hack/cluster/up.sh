#!/usr/bin/env bash
# Brings up the local single-node Kubernetes cluster with the real Argo Workflows controller,
# offline: etcd, kube-apiserver, controller-manager, scheduler, containerd + kubelet, kube-proxy,
# CoreDNS, a registry and MinIO, all inside the network namespace gantry-node (see lib.sh).
# Idempotent: what already runs is kept. Installs Debian packages and builds what is missing
# (Kubernetes, Argo, CoreDNS: ≈30 min cold on 2 cores, cached in ~/.cache/gantry/cluster).
#   hack/cluster/up.sh       then   hack/cluster/exec.sh kubectl get nodes
#   hack/cluster/up.sh --nodes 2   adds worker nodes (hack/cluster/node.sh), each in its own namespace
#   hack/cluster/up.sh --no-tekton builds and installs only what `make demo` needs (no Tekton);
#                                  a later up.sh without it adds it
set -euo pipefail
nodes=1 tekton=true
while (($#)); do
  case "$1" in
    --nodes) nodes=${2:?--nodes N}; shift 2 ;;
    --no-tekton) tekton=false; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--nodes N] [--no-tekton]" >&2; exit 2 ;;
  esac
done
if ! [[ "${nodes}" =~ ^[0-9]+$ ]] || ((nodes < 1 || nodes > 20)); then echo "up.sh: --nodes ${nodes}: want 1..20" >&2; exit 2; fi
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source hack/cluster/lib.sh
t0=${SECONDS}
[[ $(id -u) == 0 ]] || die "needs root (network namespace, containerd, kubelet)"

# --- packages and binaries ---------------------------------------------------------------------
pkgs=()
for p in containerd:containerd runc:runc iptables:iptables conntrack:conntrack socat:socat openssl:openssl curl:curl nsenter:util-linux ip:iproute2; do
  command -v "${p%%:*}" >/dev/null || pkgs+=("${p#*:}")
done
[[ -x /usr/lib/cni/bridge ]] || pkgs+=(containernetworking-plugins)
if ((${#pkgs[@]})); then
  log "installing ${pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
# The cluster's binaries and the tools (MinIO, ko, crane) build side by side: the two builds
# leave each other's idle moments (downloads, links) to the other.
set_=demo; ${tekton} && set_=all
hack/cluster/build.sh "${set_}" &
build_pid=$!
tools=$(hack/install-tools.sh --images | tail -n 1)
wait "${build_pid}" || die "hack/cluster/build.sh ${set_} failed"
export PATH="${tools}:${PATH}"
mkdir -p "${RUN}"/{pki,pids,logs,bin,etc,minio} "${VARLIB}" "${SOCK_DIR}"
CGO_ENABLED=0 go build -trimpath -o "${RUN}/bin/pause" ./hack/cluster/pause
CGO_ENABLED=0 go build -trimpath -o "${RUN}/bin/s3" ./hack/cluster/s3

# --- network namespace: no link to the host ------------------------------------------------------
if [[ ! -e "/run/netns/${NETNS}" ]]; then
  log "network namespace ${NETNS}"
  ip netns add "${NETNS}"
fi
in_node ip link set lo up
if ! in_node ip link show gantry0 >/dev/null 2>&1; then
  in_node ip link add gantry0 type bridge
  in_node ip addr add "${NODE_IP}/24" dev gantry0
fi
in_node ip link set gantry0 up
in_node ip route replace "${SERVICE_CIDR}" dev gantry0
in_node sysctl -qw net.ipv4.ip_forward=1
in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
printf 'nameserver 127.0.0.1\n' >"${RUN}/etc/resolv.conf"

# --- certificates --------------------------------------------------------------------------------
pki="${RUN}/pki"
cert() { # NAME SUBJECT SANS
  [[ -f "${pki}/$1.crt" ]] && return 0
  openssl req -new -newkey rsa:2048 -nodes -keyout "${pki}/$1.key" -subj "$2" -out "${pki}/$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' "$3" >"${pki}/$1.ext"
  openssl x509 -req -in "${pki}/$1.csr" -CA "${pki}/ca.crt" -CAkey "${pki}/ca.key" -CAcreateserial -days 3650 \
    -extfile "${pki}/$1.ext" -out "${pki}/$1.crt" 2>/dev/null
}
if [[ ! -f "${pki}/ca.crt" ]]; then
  log "certificates"
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "${pki}/ca.key" -subj /CN=gantry-cluster-ca -days 3650 -out "${pki}/ca.crt" 2>/dev/null
  openssl genrsa -out "${pki}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${pki}/sa.key" -pubout -out "${pki}/sa.pub" 2>/dev/null
fi
cert apiserver /CN=kube-apiserver "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:10.96.0.1,IP:${NODE_IP},IP:127.0.0.1"
cert admin "/O=system:masters/CN=gantry-admin" "DNS:gantry-admin"
cert kubelet "/O=system:nodes/CN=system:node:${NODE_NAME}" "DNS:${NODE_NAME},IP:${NODE_IP}"
cat >"${KUBECONFIG}" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gantry
  cluster: {server: "https://${NODE_IP}:6443", certificate-authority: "${pki}/ca.crt"}
users:
- name: admin
  user: {client-certificate: "${pki}/admin.crt", client-key: "${pki}/admin.key"}
contexts:
- name: gantry
  context: {cluster: gantry, user: admin, namespace: default}
current-context: gantry
EOF

# --- registry (the distribution registry: data kept on disk, notifications per namespace) -------
registry_start
# binary_image REPO DIR NAME FILE TAG: the image REGISTRY/REPO/NAME:TAG, gantry's base with FILE
# as DIR/NAME, its entrypoint.
binary_image() {
  local repo=$1 dir=$2 name=$3 file=$4 tag=$5 tmp; tmp=$(mktemp -d)
  mkdir -p "${tmp}/root/${dir}"
  cp "${file}" "${tmp}/root/${dir}/${name}"
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "${tmp}/root" -cf "${tmp}/layer.tar" .
  in_node crane append -b "${base}" -f "${tmp}/layer.tar" -t "${REGISTRY}/${repo}/${name}:${tag}" >/dev/null 2>&1
  in_node crane mutate "${REGISTRY}/${repo}/${name}:${tag}" --entrypoint "/${dir}/${name}" -t "${REGISTRY}/${repo}/${name}:${tag}" >/dev/null 2>&1
  rm -rf "${tmp}"
}
# bin_image NAME FILE TAG: an image with FILE as /bin/NAME (entrypoint) on gantry's base.
bin_image() { binary_image gantry bin "$1" "$2" "$3"; }
# The Argo this cluster runs (build.sh keeps each version's binaries apart).
cp "${CLUSTER_BIN}/argo-${ARGO_VERSION}"/{workflow-controller,argoexec,argo} "${CLUSTER_BIN}/"
# Argo's images are tagged by what they hold (the registry keeps them across restarts, nodes pull
# IfNotPresent): a rebuilt Argo is a new tag, which rolls its Deployments.
argo_tag="${ARGO_VERSION}-$(cat "${CLUSTER_BIN}"/{workflow-controller,argoexec,argo} | sha256sum | cut -c1-12)"
if ! in_node crane digest "${REGISTRY}/gantry/pause:1" >/dev/null 2>&1 ||
  ! in_node crane digest "${REGISTRY}/gantry/argo:${argo_tag}" >/dev/null 2>&1; then
  log "system images → ${REGISTRY}"
  base=$(in_node hack/base-image.sh "${REGISTRY}" 2>/dev/null)
  bin_image pause "${RUN}/bin/pause" 1
  bin_image argoexec "${CLUSTER_BIN}/argoexec" "${argo_tag}"
  bin_image workflow-controller "${CLUSTER_BIN}/workflow-controller" "${argo_tag}"
  bin_image argo "${CLUSTER_BIN}/argo" "${argo_tag}"
fi
# Tekton's images, as ko lays them out (/ko-app/NAME): the controller runs the entrypoint, the
# working-dir and the sidecar-log-results helpers by that path in every TaskRun pod.
tekton_bin="${CLUSTER_BIN}/tekton-${TEKTON_VERSION}"
# Pushed whenever built (a cluster that had Tekton still runs its pods), installed with Tekton.
if [[ -x "${tekton_bin}/webhook" ]] && ! in_node crane digest "${REGISTRY}/tekton/webhook:${TEKTON_VERSION}" >/dev/null 2>&1; then
  log "Tekton images → ${REGISTRY}/tekton"
  base=${base:-$(in_node hack/base-image.sh "${REGISTRY}" 2>/dev/null)}
  for c in controller webhook resolvers entrypoint nop workingdirinit sidecarlogresults; do
    binary_image tekton ko-app "${c}" "${tekton_bin}/${c}" "${TEKTON_VERSION}"
  done
fi

# --- control plane -------------------------------------------------------------------------------
daemon etcd etcd --name gantry --data-dir "${RUN}/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster gantry=http://127.0.0.1:2380
wait_for etcd 30 in_node curl -fs http://127.0.0.1:2379/health
daemon kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
  --advertise-address="${NODE_IP}" --bind-address=0.0.0.0 --secure-port=6443 \
  --service-cluster-ip-range="${SERVICE_CIDR}" --allow-privileged=true \
  --tls-cert-file="${pki}/apiserver.crt" --tls-private-key-file="${pki}/apiserver.key" --client-ca-file="${pki}/ca.crt" \
  --service-account-key-file="${pki}/sa.pub" --service-account-signing-key-file="${pki}/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --authorization-mode=Node,RBAC \
  --kubelet-client-certificate="${pki}/admin.crt" --kubelet-client-key="${pki}/admin.key" \
  --kubelet-preferred-address-types=InternalIP,Hostname --profiling=false
wait_for kube-apiserver 90 k get --raw /readyz
daemon kube-controller-manager kube-controller-manager --kubeconfig="${KUBECONFIG}" \
  --authentication-kubeconfig="${KUBECONFIG}" --authorization-kubeconfig="${KUBECONFIG}" \
  --leader-elect=false --bind-address=127.0.0.1 --use-service-account-credentials=true \
  --service-account-private-key-file="${pki}/sa.key" --root-ca-file="${pki}/ca.crt" \
  --cluster-signing-cert-file="${pki}/ca.crt" --cluster-signing-key-file="${pki}/ca.key" --profiling=false
daemon kube-scheduler kube-scheduler --kubeconfig="${KUBECONFIG}" \
  --authentication-kubeconfig="${KUBECONFIG}" --authorization-kubeconfig="${KUBECONFIG}" \
  --leader-elect=false --bind-address=127.0.0.1 --profiling=false

# --- node: containerd, kubelet, kube-proxy, CoreDNS ----------------------------------------------
node_daemons "" "${NETNS}" "${NODE_NAME}" "${NODE_IP}" "${POD_CIDR}" "${RUN}/etc" "${VARLIB}" "${SOCK_DIR}" / \
  "${RUN}/etc/resolv.conf" "http://${REGISTRY}" /var/log/pods

cat >"${RUN}/etc/Corefile" <<EOF
.:53 {
    bind ${NODE_IP}
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig ${KUBECONFIG} gantry
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
daemon coredns coredns -conf "${RUN}/etc/Corefile"

wait_for "node ${NODE_NAME}" 90 k get node "${NODE_NAME}"
k wait --for=condition=Ready "node/${NODE_NAME}" --timeout=120s >/dev/null
wait_for coredns 60 in_node curl -fs http://127.0.0.1:18181/ready
# Workers join before anything waits for a rollout: a cluster started again has pods bound to them.
for ((i = 2; i <= nodes; i++)); do hack/cluster/node.sh "${i}"; done

# --- MinIO (a node daemon behind the Service minio.gantry-system) ---------------------------------
if [[ ! -f "${RUN}/etc/minio.env" ]]; then
  printf 'MINIO_ROOT_USER=gantry\nMINIO_ROOT_PASSWORD=%s\n' "$(openssl rand -hex 16)" >"${RUN}/etc/minio.env"
fi
# shellcheck disable=SC1091
source "${RUN}/etc/minio.env"
# Prometheus metrics without a token (hack/bench/load.sh reads the request counters): the
# endpoint is reachable only inside the node's namespace.
daemon minio env MINIO_ROOT_USER="${MINIO_ROOT_USER}" MINIO_ROOT_PASSWORD="${MINIO_ROOT_PASSWORD}" MINIO_BROWSER=off MINIO_PROMETHEUS_AUTH_TYPE=public \
  minio server --address "${NODE_IP}:9000" --console-address 127.0.0.1:9001 --quiet "${RUN}/minio"
wait_for minio 60 in_node curl -fs "http://${NODE_IP}:9000/minio/health/ready"
in_node env S3_ENDPOINT="http://${NODE_IP}:9000" AWS_ACCESS_KEY_ID="${MINIO_ROOT_USER}" AWS_SECRET_ACCESS_KEY="${MINIO_ROOT_PASSWORD}" \
  "${RUN}/bin/s3" mb datasets models
k apply --server-side --field-manager=gantry-cluster -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: gantry-system}
---
apiVersion: v1
kind: Service
metadata: {name: minio, namespace: gantry-system}
spec:
  ports: [{name: s3, port: 9000, targetPort: 9000, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: minio-node
  namespace: gantry-system
  labels: {kubernetes.io/service-name: minio, endpointslice.kubernetes.io/managed-by: gantry-cluster}
addressType: IPv4
ports: [{name: s3, port: 9000, protocol: TCP}]
endpoints: [{addresses: ["${NODE_IP}"], conditions: {ready: true}}]
EOF

# --- Argo Workflows: CRDs, controller (Argo's own manifests), executor image ----------------------
# DEFAULT_REQUEUE_TIME=1s (Argo's default is 10s; its rate_limiters.go names 1s as the floor, below
# which the informer is likely behind): the controller re-reads a workflow at most that often after
# a pod changes, so every step paid up to 10 s before the next one started. hack/bench: submit →
# asked overhead 27 s at 2s, 21 s at 1s (Tekton 13 s, same run).
# INFORMER_WRITE_BACK=false: with write-back (Argo's default) the controller puts the object its own
# update returned into its informer cache; when a person's resume/decision (a newer resourceVersion)
# arrived in between, the cache goes back to the older object and the run is never picked up again
# (seen: an approval node resumed and rejected, the run still Running 5 min later; upstream
# argo-workflows#12863, #14780). Without write-back the controller waits 1 s after each update.
argo_src="$(go env GOMODCACHE)/${ARGO_MODULE}@${ARGO_VERSION}/manifests"
[[ -d "${argo_src}" ]] || go mod download "${ARGO_MODULE}@${ARGO_VERSION}"
rm -rf "${RUN}/argo" && mkdir -p "${RUN}/argo" && cp -r "${argo_src}/." "${RUN}/argo/" && chmod -R u+w "${RUN}/argo"
cat >"${RUN}/argo/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: argo
resources:
- base/crds/minimal
- base/workflow-controller
- cluster-install-no-crds/workflow-controller-rbac
- base/argo-server
- cluster-install-no-crds/argo-server-rbac
images:
- {name: quay.io/argoproj/workflow-controller, newName: ${REGISTRY}/gantry/workflow-controller, newTag: ${argo_tag}}
- {name: quay.io/argoproj/argocli, newName: ${REGISTRY}/gantry/argo, newTag: ${argo_tag}}
patches:
- target: {kind: Deployment, name: workflow-controller}
  patch: |-
    - {op: replace, path: /spec/template/spec/containers/0/args, value: [--executor-image, ${REGISTRY}/gantry/argoexec:${argo_tag}, --executor-image-pull-policy, IfNotPresent]}
    - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: LEADER_ELECTION_DISABLE, value: "true"}}
    - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: DEFAULT_REQUEUE_TIME, value: "1s"}}
    - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: INFORMER_WRITE_BACK, value: "false"}}
# The Argo Server (the same argo binary, its server subcommand): the API, the artifact endpoint and the
# events endpoint the registry's push notifications call. Client auth: every request carries a
# Kubernetes bearer token and is authorised as that ServiceAccount or user (RBAC), never as the
# server. Plain HTTP inside the node (no link leaves it); put TLS in front of it anywhere else.
# The UI's first-visit, feedback and new-version pop-ups are off: each links to the internet,
# which an offline cluster cannot reach.
- target: {kind: Deployment, name: argo-server}
  patch: |-
    - {op: replace, path: /spec/template/spec/containers/0/args, value: [server, --secure=false, --auth-mode=client]}
    - {op: add, path: /spec/template/spec/containers/0/env, value: [{name: FIRST_TIME_USER_MODAL, value: "false"}, {name: FEEDBACK_MODAL, value: "false"}, {name: NEW_VERSION_MODAL, value: "false"}]}
    - {op: replace, path: /spec/template/spec/containers/0/readinessProbe, value: {httpGet: {port: 2746, scheme: HTTP, path: /}, periodSeconds: 2}}
EOF
k create namespace argo --dry-run=client -o yaml | k apply -f - >/dev/null
k apply --server-side --force-conflicts --field-manager=gantry-cluster -k "${RUN}/argo" >/dev/null
k -n argo rollout status deploy/workflow-controller --timeout=180s >/dev/null
k -n argo rollout status deploy/argo-server --timeout=180s >/dev/null

# --- Tekton Pipelines: its own release manifests, its images from this registry -------------------
install_tekton() {
  # Left out: the events controller (CloudEvents sinks) and the webhook's HPA (no metrics API here).
  # Steps that use `script` need the shell image (a busybox by digest from cgr.dev): not reachable
  # offline, and gantry's Tasks have none.
  tk="${RUN}/tekton"
  rm -rf "${tk}" && mkdir -p "${tk}" && cp -r "${tekton_bin}/config/." "${tk}/" && chmod -R u+w "${tk}"
  rm -f "${tk}/events.yaml" "${tk}/webhook-hpa.yaml" "${tk}/config-leader-election-events.yaml"
  find "${tk}" -name '*.yaml' -exec sed -i -E "s#ko://github.com/tektoncd/pipeline/cmd/([a-z]+)#${REGISTRY}/tekton/\\1:${TEKTON_VERSION}#g" {} +
  # The resolvers' image is Tekton's tini-git base (an init that reaps git's children): the git
  # resolver needs the network anyway; the cluster and bundle resolvers run without tini.
  sed -i -e '/- \/sbin\/tini/d' -e '/^        - --$/d' "${tk}/resolvers/resolvers-deployment.yaml"
  printf 'apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: probe, namespace: default}\nspec: {steps: [{name: s, image: probe, command: [probe]}]}\n' >"${tk}/probe.yaml.txt"
  tekton_apply() { k apply --server-side --force-conflicts --field-manager=gantry-cluster "$@" >/dev/null; }
  # A cluster started again (its etcd kept) still has Tekton's webhook configurations, which
  # validate Tekton's own ConfigMaps: wait for the webhook's pod to answer before applying them.
  if k -n tekton-pipelines get deploy tekton-pipelines-webhook >/dev/null 2>&1; then
    k -n tekton-pipelines rollout status deploy/tekton-pipelines-webhook --timeout=180s >/dev/null
    wait_for "tekton webhook" 120 k create --dry-run=server -f "${tk}/probe.yaml.txt"
  fi
  tekton_apply -f "${tk}/100-namespace" -f "${tk}/resolvers/100-namespace.yaml"
  tekton_apply -f "${tk}/300-crds"
  k wait --for=condition=Established crd --all --timeout=60s >/dev/null
  mapfile -t files < <(find "${tk}" "${tk}/resolvers" -maxdepth 1 -name '*.yaml' ! -name '100-namespace.yaml' | sort)
  tekton_apply "${files[@]/#/--filename=}"
  k -n tekton-pipelines rollout status deploy/tekton-pipelines-controller --timeout=180s >/dev/null
  k -n tekton-pipelines rollout status deploy/tekton-pipelines-webhook --timeout=180s >/dev/null
  k -n tekton-pipelines-resolvers rollout status deploy/tekton-pipelines-remote-resolvers --timeout=180s >/dev/null
  # The webhook answers admission only once it has written its certificate into its configurations.
  wait_for "tekton webhook" 120 k create --dry-run=server -f "${tk}/probe.yaml.txt"
}
if ${tekton}; then install_tekton; fi

with_tekton=""; ${tekton} && with_tekton=", Tekton ${TEKTON_VERSION}"
log "up in $((SECONDS - t0))s: ${nodes} node(s) Ready, Argo ${ARGO_VERSION} (controller, server http://argo-server.argo.svc:2746)${with_tekton}, MinIO http://minio.gantry-system.svc:9000"
log "use it: hack/cluster/exec.sh kubectl get pods -A   |   next: hack/cluster/gantry.sh NAMESPACE"
