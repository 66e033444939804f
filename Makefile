# bmslink — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PY_SRC := shared/src services tests tools

.PHONY: help venv venv-test testdeps demo test lint typecheck pytest fmt bench soak clean uv mosquitto credentials
TEST_APT := mosquitto mosquitto-clients socat dbus libdbus-1-dev libglib2.0-dev pkg-config
RUN_TEST := $(UV) run --frozen --group bluez

help:
	@echo "make demo   - run broker + simulated batteries + readers and watch them live"
	@echo "make test   - ruff, mypy and pytest (unit + integration with a real Mosquitto)"
	@echo "make bench  - benchmarks (JSON in .bench/)"
	@echo "make soak   - 64 simulated packs at 1 Hz for 10 min (SOAK_ARGS=\"--minutes 60\")"
	@echo "make credentials - broker passwords (.env) and ACL (mosquitto/) for docker compose"

# uv from PyPI when it is missing (no other download source is needed).
uv:
	@command -v uv >/dev/null 2>&1 || test -x "$(UV)" || python3 -m pip install --user --quiet uv

venv: uv
	@$(UV) sync --frozen --quiet

# What the tests need from apt: a real broker, socat pty pairs, a D-Bus daemon for the mocked
# BlueZ, and the headers that dbus-python (python-dbusmock) builds against.
testdeps:
	@missing=$$(for p in $(TEST_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $$missing (apt)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing apt packages: $$missing (run: sudo apt-get install $$missing)"; exit 1; fi; \
	fi

venv-test: uv testdeps
	@$(UV) sync --frozen --quiet --group bluez

# Mosquitto: the installed binary, else apt when root, else the demo falls back to amqtt.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing mosquitto (apt)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	else echo "mosquitto not installed and not root: the demo uses the embedded amqtt broker"; fi

# Without a mosquitto binary, `bmslink demo` uses amqtt (installed with the dev group).
demo: venv mosquitto
	@$(UV) run --frozen bmslink demo $(DEMO_ARGS)

lint: venv-test
	$(RUN_TEST) ruff check $(PY_SRC)
	$(RUN_TEST) ruff format --check $(PY_SRC)

typecheck: venv-test
	$(RUN_TEST) mypy

pytest: venv-test
	$(RUN_TEST) pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

fmt: venv
	$(UV) run --frozen ruff format $(PY_SRC)
	$(UV) run --frozen ruff check --fix $(PY_SRC)

# Broker users/passwords/ACL for compose from compose.yaml + config/site.toml (never committed).
credentials: venv
	$(UV) run --frozen bmslink credentials $(CREDENTIALS_ARGS)

bench: venv-test
	$(RUN_TEST) python -m tools.bench $(BENCH_ARGS)

# The whole stack under load for a long time (not in CI): python -m tools.soak --minutes 60
soak: venv-test
	$(RUN_TEST) python -m tools.soak $(SOAK_ARGS)

clean:
	rm -rf .demo .bench .pytest_cache .mypy_cache .ruff_cache
