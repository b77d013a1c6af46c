# The two commands a newcomer needs: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MODEL  := models/SmolLM2-135M-Instruct.Q4_1.gguf
# Compile llama-cpp-python with every core; pip keeps the built wheel in its cache, so a new
# virtual environment (or a fresh clone) reuses it instead of compiling again.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
RUN_ARGS ?=

.PHONY: install run test bench clean

install: $(VENV)/.installed $(MODEL)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when the dependencies in pyproject.toml change.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(MODEL): | $(VENV)/.installed
	$(PY) -m digest.embedded models

run: install
	$(VENV)/bin/digest run --sample-feeds --out site $(RUN_ARGS)

test: install
	DIGEST_REQUIRE_MODEL=1 $(PY) -m pytest -q

bench: install
	$(VENV)/bin/digest bench

clean:
	rm -rf $(VENV) site .pytest_cache .hypothesis
