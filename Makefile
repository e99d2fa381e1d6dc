# RapidMQ: `make run` starts the broker, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: run test lint format bench system-deps clean image base-image wheelhouse

# The container image (see docs/container.md): `make image [BASE_IMAGE=...]`.
BASE_IMAGE ?= python:3.11-slim
IMAGE ?= rapidmq:dev
DEBOOTSTRAP_IMAGE := rapidmq-base:bookworm
WHEELHOUSE := packaging/wheelhouse
WHEEL_SOURCES := pyproject.toml README.md $(shell find rapidmq -name '*.py' 2>/dev/null)
PIP_WHEEL := $(BIN)/python -m pip wheel -q --disable-pip-version-check

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/rapidmq serve $(ARGS)

# Debian tools the tests drive (amqp-tools, mosquitto-clients, a real slapd; Docker
# and debootstrap for the image); skipped tests say so if this fails.
system-deps:
	@{ command -v amqp-publish && command -v mosquitto_pub && command -v slapd; } >/dev/null 2>&1 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	       amqp-tools mosquitto-clients slapd ldap-utils) >/dev/null 2>&1 || \
	    echo "note: could not install amqp-tools, mosquitto-clients or slapd; their tests will be skipped"; }
	@{ command -v dockerd && command -v docker && command -v debootstrap; } >/dev/null 2>&1 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	       docker.io debootstrap) >/dev/null 2>&1 || \
	    echo "note: could not install docker.io or debootstrap; the image tests will be skipped"; }

lint: $(STAMP)
	$(BIN)/ruff check rapidmq tests compat-tests bench
	$(BIN)/ruff format --check rapidmq tests compat-tests bench
	$(BIN)/mypy --strict rapidmq

format: $(STAMP)
	$(BIN)/ruff check --fix rapidmq tests compat-tests bench
	$(BIN)/ruff format rapidmq tests compat-tests bench

test: $(STAMP) system-deps lint
	$(BIN)/pytest -q

# Wheels of the dependencies (rebuilt when pyproject.toml changes) and of RapidMQ
# (rebuilt when its sources change), kept apart so that the image build reuses
# its dependency layer when only RapidMQ changed.
$(WHEELHOUSE)/deps/.stamp: pyproject.toml | $(STAMP)
	rm -rf $(WHEELHOUSE)/deps
	$(PIP_WHEEL) --wheel-dir $(WHEELHOUSE)/deps '.[uvloop]'
	rm -f $(WHEELHOUSE)/deps/rapidmq-*.whl
	@touch $@

$(WHEELHOUSE)/rapidmq/.stamp: $(WHEEL_SOURCES) | $(STAMP)
	rm -rf $(WHEELHOUSE)/rapidmq build/lib
	$(PIP_WHEEL) --no-deps --wheel-dir $(WHEELHOUSE)/rapidmq .
	@touch $@

wheelhouse: $(WHEELHOUSE)/deps/.stamp $(WHEELHOUSE)/rapidmq/.stamp

image: wheelhouse
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) -f packaging/Dockerfile packaging

# Debian 12 with python3, made with debootstrap, for a machine without an image
# registry: `make base-image image BASE_IMAGE=rapidmq-base:bookworm`.  Built once.
base-image:
	packaging/build-base-image.sh $(DEBOOTSTRAP_IMAGE)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info $(WHEELHOUSE)
