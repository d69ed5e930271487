# kubedruid: `make demo` runs the demo on the local control plane, `make test` runs the whole test suite.
# Both install what they need (Python venv, the control plane's Go binaries) on first use.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export GOTOOLCHAIN := local

.PHONY: venv tools test test-unit test-integration test-faults test-druid test-node demo demo-down bench clean

$(BIN)/kubedruid: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/kubedruid

# Builds kube-apiserver & co., etcd, kwok, cert-manager, helm and the real node's kubelet, kube-proxy, containerd
# and CoreDNS once per pinned version (cached in ~/.cache/kubedruid).
tools:
	tools/build.sh k8s etcd kwok cert-manager helm containerd coredns >/dev/null

# Everything: unit, integration (real control plane) and the fault suite (its own plane; KUBEDRUID_FAULTS=full adds
# a kill of the operator at every transition and more generated input); beside them the real-Druid tier (JVMs from
# Maven Central, a plane of its own): the kwok tiers leave most of the CPU idle, waiting on the apiserver and on
# timers, and it uses it (its output follows theirs). Then the real-node tier in a run of its own: its plane and
# Druid pods never share the machine with another tier. Every run always runs; make fails if any failed.
test: venv tools
	@rc=0; druid_log=$$(mktemp); \
	$(BIN)/python -m pytest -ra --durations=10 -m druid tests/druid >$$druid_log 2>&1 & druid=$$!; \
	$(BIN)/python -m pytest -ra --durations=20 tests/unit tests/integration tests/faults || rc=$$?; \
	wait $$druid || rc=$$?; cat $$druid_log; rm -f $$druid_log; \
	$(BIN)/python -m pytest -ra --durations=20 tests/node || rc=$$?; \
	exit $$rc

# The real-node tier alone: `kubedruid dev up --real-node`, the operator, KubeDB's guide Druid on real pods.
test-node: venv tools
	$(BIN)/python -m pytest -ra tests/node

test-druid: venv tools
	$(BIN)/python -m pytest -ra -m druid tests/druid

test-unit: venv
	$(BIN)/python -m pytest -ra tests/unit

test-integration: venv tools
	$(BIN)/python -m pytest -ra tests/integration

test-faults: venv tools
	$(BIN)/python -m pytest -ra tests/faults

demo: venv tools
	scripts/demo.sh

demo-down: venv
	$(BIN)/kubedruid dev down

bench: venv tools
	$(BIN)/python -m tests.bench.bench_dev_plane
	$(BIN)/python -m tests.bench.bench_add_tls
	$(BIN)/python -m tests.bench.bench_scale --druids 300

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
