# dnsguard: the two entry points of the README, plus the checks CI runs.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test check demo stack-up stack-down filter image

setup:
	./deploy/local/setup.sh

# Everything CI runs: static checks, then unit, integration and e2e tests
# against real Kafka, Redis and Envoy started by the test fixtures.
test: setup check
	$(BIN)/pytest

check:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy detectors streams models bench
	$(BIN)/lint-imports
	./filter/check.sh

demo: setup
	$(BIN)/dnsguard demo

stack-up: setup
	$(BIN)/dnsguard stack up

stack-down:
	$(BIN)/dnsguard stack down

filter:
	./filter/build.sh

# The OCI images dnsguard:<version> and dnsguard-filter:<version> (buildah, vfs
# storage); tests/integration/test_image.py builds and smoke-tests them in `make test`.
image: setup
	./deploy/image/build.sh
