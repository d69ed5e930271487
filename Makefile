# kubedruid: `make demo` runs the demo on the local control plane, `make test` runs the whole test suite.
# Both install what they need (Python venv, the control plane's Go binaries) on first use.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export GOTOOLCHAIN := local

.PHONY: venv tools test test-unit test-integration test-druid demo demo-down bench clean

$(BIN)/kubedruid: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/kubedruid

# Builds kube-apiserver & co., etcd, kwok, cert-manager and helm once per pinned version (cached in ~/.cache/kubedruid).
tools:
	tools/build.sh k8s etcd kwok cert-manager helm >/dev/null

# Everything: unit, integration (real control plane) and the real-Druid tier (JVMs from Maven Central), one run.
test: venv tools
	$(BIN)/python -m pytest -ra -m "druid or not druid" tests/unit tests/integration tests/druid

test-druid: venv tools
	$(BIN)/python -m pytest -ra -m druid tests/druid

test-unit: venv
	$(BIN)/python -m pytest -ra tests/unit

test-integration: venv tools
	$(BIN)/python -m pytest -ra tests/integration

demo: venv tools
	scripts/demo.sh

demo-down: venv
	$(BIN)/kubedruid dev down

bench: venv tools
	$(BIN)/python -m tests.bench.bench_dev_plane
	$(BIN)/python -m tests.bench.bench_add_tls

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
