# Thin wrappers over hack/ scripts; the logic lives there.
.PHONY: test test-short tools build verify bench fuzz demo
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
demo:
	hack/demo.sh
