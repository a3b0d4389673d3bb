# The platform's commands. `make run` and `make test` set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GENERATED := platform_core/rpc/_gen/.stamp
NODE_MODULES := plugin_workers/node/node_modules/.package-lock.json
NODE_PROTO := plugin_workers/node/protos/plugin_protocol.proto

PPCTL := $(VENV)/bin/ppctl

.PHONY: ppctl run test test-fast test-postgres lint protos check-protos java node images sandbox wrk setup migrate bench bench-browser clean

setup: $(INSTALLED) $(GENERATED) ppctl java node sandbox wrk migrate images

$(INSTALLED): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	@touch $@

# The command line (README, "ppctl"): a launcher in the virtualenv that runs this checkout's ppctl.
ppctl: $(PPCTL)

$(PPCTL): ppctl/cli.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@printf '#!/bin/sh\n# Installed by make: the plugin platform'"'"'s command line (ppctl/cli.py).\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m ppctl "$$@"\n' "$(CURDIR)" "$(CURDIR)/$(PY)" > $@
	@chmod +x $@

# Generated gRPC code is not committed; it is made from protos/ whenever they change.
$(GENERATED): $(INSTALLED) protos/*.proto platform_core/codegen.py
	$(PY) -m platform_core.codegen
	@touch $@

protos: $(INSTALLED)
	$(PY) -m platform_core.codegen
	@touch $(GENERATED)

check-protos: $(INSTALLED)
	$(PY) -m platform_core.codegen --check

# Java workers: javac against Debian's grpc-java jars (installs them with apt when missing).
java:
	@if [ -x plugin_workers/java/build.sh ]; then plugin_workers/java/build.sh; fi

# Node.js workers: @grpc/grpc-js and @grpc/proto-loader from npm, exactly as package-lock.json says
# (Node.js and npm from Debian's apt when the machine has none).
node: $(NODE_MODULES) $(NODE_PROTO)

# Beside the Node SDK: a sandboxed worker sees its runtime's directory, not the platform's protos/.
$(NODE_PROTO): protos/plugin_protocol.proto
	@mkdir -p $(@D)
	cp $< $@

$(NODE_MODULES): plugin_workers/node/package.json plugin_workers/node/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q nodejs npm; }
	cd plugin_workers/node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# wrk, the compiled load generator of the hot-path benchmark (apt, when missing; bench/hotpath.py).
wrk:
	@command -v wrk >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q wrk; }

# The process backend's worker sandbox: bubblewrap, libseccomp, setpriv (apt, when missing).
sandbox:
	@scripts/sandbox-tools.sh ensure

# Worker images of the registered plugins for the docker backend (docs/DOCKER.md), when a Docker
# Engine answers; without one, everything runs on the process backend, which needs no image.
images: $(INSTALLED) $(GENERATED) java node migrate
	@if scripts/docker-engine.sh available; then $(PY) manage.py buildimages; \
	else echo "no Docker Engine: workers run on the process backend (scripts/docker-engine.sh ensure starts one)"; fi

migrate: $(INSTALLED) $(GENERATED)
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py loadplugins

run: setup
	$(PY) manage.py runplatform

test: setup
	$(PY) -m pytest

test-fast: $(INSTALLED) $(GENERATED)
	$(PY) -m pytest -m "not e2e"

# The production topology (PostgreSQL, Redis, two gateways, two supervisors; `make test` runs it
# too): starts the machine's PostgreSQL and Redis when they are not running.
test-postgres: setup
	scripts/services.sh ensure
	$(PY) -m pytest -m postgres

# Timings tables (docs/PERFORMANCE.md keeps the latest run between its markers): cold and warm
# timings per runtime and backend (bench.run), then the warm hot path under wrk (bench.hotpath).
bench: setup
	$(PY) -m bench.run --output docs/PERFORMANCE.md
	$(PY) -m bench.hotpath --output docs/PERFORMANCE.md

# The dashboard in Debian's Chromium: click → first arrow, answer → result, longest task (its own
# section of docs/PERFORMANCE.md).
bench-browser: setup
	$(PY) -m bench.browser --output docs/PERFORMANCE.md

# ruff, the import contracts (pyproject.toml [tool.importlinter]) and the type checker.
lint: $(INSTALLED) $(GENERATED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=plugin_workers/python $(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var .mypy_cache platform_core/rpc/_gen plugin_workers/python/ppp_sdk/_gen plugin_workers/java/build \
		plugin_workers/node/node_modules
