# Two entry points (see README): `make demo` and `make test`. Everything else is
# what they need: a virtualenv with the project installed, system tools for the
# deployment tests, and the Kafka broker jars from Maven Central.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install system-deps broker-jars bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,plot]'
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/shiftwatch demo

system-deps:
	bash scripts/install-system-deps.sh

broker-jars: install
	$(BIN)/python tests/kafka_broker.py fetch

test: install system-deps broker-jars
	$(BIN)/python -m pytest -ra

bench: install
	$(BIN)/pip install -q --disable-pip-version-check -e '.[bench]'
	$(BIN)/python benchmarks/sketches_bench.py --quick
	$(BIN)/python benchmarks/detectors_bench.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
