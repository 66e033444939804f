# bmslink — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PY_SRC := shared/src services tests tools

.PHONY: help venv demo test lint typecheck pytest fmt bench clean uv mosquitto credentials

help:
	@echo "make demo   - run broker + simulated batteries + readers and watch them live"
	@echo "make test   - ruff, mypy and pytest (unit + integration with a real Mosquitto)"
	@echo "make bench  - benchmarks (JSON in .bench/)"
	@echo "make credentials - broker passwords (.env) and ACL (mosquitto/) for docker compose"

# uv from PyPI when it is missing (no other download source is needed).
uv:
	@command -v uv >/dev/null 2>&1 || test -x "$(UV)" || python3 -m pip install --user --quiet uv

venv: uv
	@$(UV) sync --frozen --quiet

# Mosquitto: the installed binary, else apt when root, else the demo falls back to amqtt.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing mosquitto (apt)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	else echo "mosquitto not installed and not root: the demo uses the embedded amqtt broker"; fi

# Without a mosquitto binary, `bmslink demo` uses amqtt (installed with the dev group).
demo: venv mosquitto
	@$(UV) run --frozen bmslink demo $(DEMO_ARGS)

lint: venv
	$(UV) run --frozen ruff check $(PY_SRC)
	$(UV) run --frozen ruff format --check $(PY_SRC)

typecheck: venv
	$(UV) run --frozen mypy

pytest: venv mosquitto
	$(UV) run --frozen pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

fmt: venv
	$(UV) run --frozen ruff format $(PY_SRC)
	$(UV) run --frozen ruff check --fix $(PY_SRC)

# Broker users/passwords/ACL for compose from compose.yaml + config/site.toml (never committed).
credentials: venv
	$(UV) run --frozen bmslink credentials $(CREDENTIALS_ARGS)

bench: venv
	$(UV) run --frozen python -m tools.bench $(BENCH_ARGS)

clean:
	rm -rf .demo .bench .pytest_cache .mypy_cache .ruff_cache
