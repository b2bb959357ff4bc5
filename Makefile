# Thin wrappers over hack/ scripts; the logic lives there.
.PHONY: test test-short tools build verify bench fuzz demo demo-local e2e cluster-up cluster-down
test:        ## unit + integration tests (installs MinIO and the dataset when missing)
	hack/test.sh
test-short:  ## unit tests only, no servers
	go test -short ./...
tools:
	hack/install-tools.sh
build:
	go build ./...
verify:
	hack/verify.sh
bench:
	hack/bench/run.sh
demo:        ## the whole loop on a local offline Kubernetes + Argo (brings it up, builds what is missing)
	hack/cluster/demo.sh
demo-local:  ## the same steps as plain processes on 127.0.0.1, no cluster
	hack/demo.sh
e2e:         ## e2e suite against the local cluster (brings it up)
	hack/e2e.sh
cluster-up:
	hack/cluster/up.sh
cluster-down:
	hack/cluster/down.sh
