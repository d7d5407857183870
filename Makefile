# pgwarden: `make demo`, `make test`, `make setup`, `make lint`, `make bench`.
#
# `make setup` is idempotent and silent when there is nothing to do. It
#   1. finds uv (PATH, ~/.local/bin, ~/.cargo/bin) or installs it into .venv-tools/,
#   2. runs `uv sync --frozen` into .venv/ (again whenever pyproject.toml or uv.lock change),
#   3. installs the PostgreSQL server and clients (psql, pgbench) with the system's package
#      manager if they are missing (through sudo when not root),
#   4. compiles the data path's hot modules with mypyc (pgwarden/_native.py; again whenever
#      one of them changes). Without a C compiler and Python's headers pgwarden runs them as
#      plain Python: the same behaviour, more CPU per statement.
# `make test` also installs the system's Chromium (Debian's `chromium` package) if it is
# missing: the web console's browser tests drive /usr/bin/chromium through Playwright, which is
# never allowed to download a browser of its own.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV        := .venv
TOOLS       := .venv-tools
PYTHON      ?= python3
PYTEST_ARGS ?=
DEMO_ARGS   ?=
BENCH_ARGS  ?=

UV ?= $(or $(shell command -v uv 2>/dev/null),$(wildcard $(HOME)/.local/bin/uv),$(wildcard $(HOME)/.cargo/bin/uv),$(CURDIR)/$(TOOLS)/bin/uv)

# Root runs package managers directly; others go through sudo when it exists.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && echo sudo; })

# $(call sys_install,debian packages,rpm packages): install with apt-get or dnf.
define sys_install
	if [ "$$(id -u)" -ne 0 ] && [ -z "$(SUDO)" ]; then \
	  echo "setup: need root or sudo to install: $(1)" >&2; exit 1; \
	fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1) >/dev/null; \
	elif command -v dnf >/dev/null 2>&1; then \
	  $(SUDO) dnf install -y -q $(2); \
	else \
	  echo "setup: install these with your package manager, then run make again: $(1)" >&2; exit 1; \
	fi
endef

# Is there a PostgreSQL server (postgres + initdb)?
define have_pg_server
	{ ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
	  || ls /usr/pgsql-*/bin/postgres >/dev/null 2>&1 \
	  || { command -v pg_config >/dev/null 2>&1 && [ -x "$$(pg_config --bindir)/postgres" ]; } \
	  || { command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; }; }
endef

# Is client program $(1) available (on PATH or next to the server)?
define have_pg_client
	{ command -v $(1) >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/$(1) >/dev/null 2>&1; }
endef

.PHONY: help setup python-deps native postgres chromium pgbouncer valgrind test demo bench bench-instructions lint

help:
	@echo "make demo    install everything, start a throwaway PostgreSQL with sample data,"
	@echo "             the gateway and its web console, and print how to connect"
	@echo "make test    install everything and run the whole test suite"
	@echo "make setup   create .venv/ (uv sync) and install PostgreSQL if missing"
	@echo "make lint    ruff and mypy"
	@echo "make bench   run the benchmark script"
	@echo "make bench-instructions   the gateway's instructions per pgbench transaction (valgrind)"

setup: python-deps native postgres
	@:

python-deps: $(VENV)/.synced

$(CURDIR)/$(TOOLS)/bin/uv:
	@echo "setup: installing uv into $(TOOLS)/"
	@if ! $(PYTHON) -m venv $(TOOLS) >/dev/null 2>&1; then \
	  rm -rf $(TOOLS); \
	  echo "setup: '$(PYTHON) -m venv' is unavailable; installing python3-venv"; \
	  $(call sys_install,python3-venv,python3); \
	  $(PYTHON) -m venv $(TOOLS); \
	fi
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@echo "setup: installing Python dependencies into $(VENV)/ (uv sync --frozen)"
	@$(UV) sync --frozen --quiet
	@touch $@

# The modules pgwarden/_native.py lists, as files: pgwarden.proxy.relay -> pgwarden/proxy/relay.py
NATIVE_SOURCES := $(addsuffix .py,$(subst .,/,$(shell sed -n 's/^    "\(pgwarden\.[a-z_.]*\)",$$/\1/p' pgwarden/_native.py)))

native: pgwarden/_native.json

pgwarden/_native.json: $(NATIVE_SOURCES) pgwarden/_native.py scripts/build_native.py $(VENV)/.synced
	@echo "setup: compiling the data path's hot modules with mypyc (about a minute)"
	@$(VENV)/bin/python scripts/build_native.py \
	  || echo "setup: continuing with them as plain Python (slower; see the error above)" >&2

postgres:
	@if ! $(have_pg_server); then \
	  echo "setup: installing the PostgreSQL server"; \
	  if command -v apt-get >/dev/null 2>&1 && ! dpkg -s postgresql-common >/dev/null 2>&1; then \
	    $(call sys_install,postgresql-common,postgresql); \
	    if [ -f /etc/postgresql-common/createcluster.conf ]; then \
	      $(SUDO) sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
	        /etc/postgresql-common/createcluster.conf; \
	    fi; \
	  fi; \
	  $(call sys_install,postgresql postgresql-client,postgresql-server postgresql postgresql-contrib); \
	fi
	@if ! $(call have_pg_client,psql) || ! $(call have_pg_client,pgbench); then \
	  echo "setup: installing the PostgreSQL clients (psql, pgbench)"; \
	  $(call sys_install,postgresql-client postgresql,postgresql postgresql-contrib); \
	fi
	@$(have_pg_server) || { echo "setup: PostgreSQL server binaries still not found" >&2; exit 1; }

# The console's browser tests need a Chromium at /usr/bin/chromium (Debian's package).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "setup: installing Chromium for the console's browser tests"; \
	  $(call sys_install,chromium,chromium); \
	fi
	@[ -x /usr/bin/chromium ] || { echo "setup: /usr/bin/chromium still not found" >&2; exit 1; }

# `make bench` compares the gateway with pgbouncer (Debian's package; /usr/sbin is not on
# every PATH).
pgbouncer:
	@if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then \
	  echo "setup: installing pgbouncer for the benchmark"; \
	  $(call sys_install,pgbouncer,pgbouncer); \
	fi
	@command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] \
	  || { echo "setup: pgbouncer still not found" >&2; exit 1; }

# `make bench-instructions` counts the gateway's instructions under valgrind.
valgrind:
	@if ! command -v valgrind >/dev/null 2>&1; then \
	  echo "setup: installing valgrind for make bench-instructions"; \
	  $(call sys_install,valgrind,valgrind); \
	fi
	@command -v valgrind >/dev/null 2>&1 || { echo "setup: valgrind still not found" >&2; exit 1; }

test: setup chromium
	$(VENV)/bin/pytest -q -ra $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/pgwarden demo $(DEMO_ARGS)

bench: setup pgbouncer
	$(VENV)/bin/python scripts/bench.py $(BENCH_ARGS)

bench-instructions: setup valgrind
	$(VENV)/bin/python scripts/bench_instructions.py $(BENCH_ARGS)

lint: python-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
