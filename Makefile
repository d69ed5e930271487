# kubedruid: `make demo` runs the demo on the local control plane, `make test` runs the whole test suite.
# Both install what they need (Python venv, the control plane's Go binaries) on first use.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export GOTOOLCHAIN := local

.PHONY: venv tools tools-node test test-unit test-integration test-faults test-druid test-node demo demo-down bench clean

$(BIN)/kubedruid: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/kubedruid

# The real node's plane: kube-apiserver & co., kubelet and kube-proxy (k8s), etcd, cert-manager, containerd, CoreDNS.
NODE_SETS := k8s etcd cert-manager containerd coredns
# What the kwok planes add: kwok, and helm for the chart's tests.
KWOK_SETS := kwok helm

# Builds every set once per pinned version (cached in ~/.cache/kubedruid; tools/build.sh).
tools:
	tools/build.sh $(NODE_SETS) $(KWOK_SETS) >/dev/null

tools-node:
	tools/build.sh $(NODE_SETS) >/dev/null

# Everything, in two chains side by side (decision 0022). The real-node tier (its own plane with one real node;
# Druid pods restart one at a time in every op) is the longest and starts first. Beside it, at a lower CPU priority
# so that the node's pods get the cores when both want them: kwok's and helm's builds (on a fresh machine), unit,
# integration and the fault suite (kwok planes: mostly waiting on the apiserver and on timers; KUBEDRUID_FAULTS=full
# adds a kill of the operator at every transition and more generated input), then the real-Druid
# tier (JVMs from Maven Central, a plane of its own). The real-node tier's output follows theirs. Every run always
# runs; make fails if any failed. Before them, pyflakes' checks (ruff's F rules): a missing import in a real-node
# test would otherwise show after 40 minutes.
test: venv tools-node
	$(BIN)/ruff check --select F --no-cache --output-format concise src tests tools
	@rc=0; node_log=$$(mktemp); \
	$(BIN)/python -m pytest -ra --durations=20 tests/node >$$node_log 2>&1 & node=$$!; \
	nice -n 10 tools/build.sh $(KWOK_SETS) >/dev/null || rc=$$?; \
	nice -n 10 $(BIN)/python -m pytest -ra --durations=20 tests/unit tests/integration tests/faults || rc=$$?; \
	nice -n 10 $(BIN)/python -m pytest -ra --durations=10 -m druid tests/druid || rc=$$?; \
	echo "== the real-node tier (tests/node), run beside the tiers above:"; \
	wait $$node || rc=$$?; cat $$node_log; rm -f $$node_log; \
	exit $$rc

# The real-node tier alone: `kubedruid dev up --real-node`, the operator, KubeDB's guide Druid on real pods.
test-node: venv tools-node
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
