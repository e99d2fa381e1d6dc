# RapidMQ: `make run` starts the broker, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: run test lint format bench system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/rapidmq serve $(ARGS)

# Debian tools the tests drive (amqp-tools, mosquitto-clients, a real slapd); skipped
# tests say so if this fails.
system-deps:
	@{ command -v amqp-publish && command -v mosquitto_pub && command -v slapd; } >/dev/null 2>&1 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	       amqp-tools mosquitto-clients slapd ldap-utils) >/dev/null 2>&1 || \
	    echo "note: could not install amqp-tools, mosquitto-clients or slapd; their tests will be skipped"; }

lint: $(STAMP)
	$(BIN)/ruff check rapidmq tests compat-tests bench
	$(BIN)/ruff format --check rapidmq tests compat-tests bench
	$(BIN)/mypy --strict rapidmq

format: $(STAMP)
	$(BIN)/ruff check --fix rapidmq tests compat-tests bench
	$(BIN)/ruff format rapidmq tests compat-tests bench

test: $(STAMP) system-deps lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
