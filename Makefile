# The two commands a newcomer needs: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
# GPU= (empty: CPU), cuda or vulkan: which llama.cpp backend llama-cpp-python is compiled with.
GPU    ?=
ifeq ($(GPU),)
VENV   ?= .venv
GPU_CMAKE_ARGS :=
else ifeq ($(GPU),cuda)
VENV   ?= .venv-cuda
GPU_CMAKE_ARGS := -DGGML_CUDA=on
else ifeq ($(GPU),vulkan)
VENV   ?= .venv-vulkan
GPU_CMAKE_ARGS := -DGGML_VULKAN=on
else
$(error GPU=$(GPU): use GPU=cuda or GPU=vulkan, or leave it empty for the CPU build)
endif
PY     := $(VENV)/bin/python
# The pinned llama-cpp-python, as pyproject.toml names it.
LLAMA_CPP_PYTHON := $(shell sed -n 's/^ *"\(llama-cpp-python==[^"]*\)".*/\1/p' pyproject.toml)
# The embedded model: the published Q4_1 and the Q8_0 digest runs, made from it (digest/models/embedded.py).
MODEL  := models/SmolLM2-135M-Instruct.Q8_0.gguf
# A second family for the engine's tests (tests/test_gemma.py): Gemma 3 270M, from its PyPI chunk wheels,
# converted to Q8_0 (its Q4_K kernels make a row's logits depend on the batch on x86)
# (~30 s). `make test` needs it; `make run` does not.
GEMMA  := models/gemma-3-270m-q8_0.gguf
# Compile llama-cpp-python with every core; pip keeps the built wheel in its cache, so a new
# virtual environment (or a fresh clone) reuses it instead of compiling again.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
RUN_ARGS ?=

.PHONY: install run test bench clean peers

install: $(VENV)/.installed $(MODEL)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when the dependencies in pyproject.toml change. A GPU build compiles
# llama-cpp-python first, with its backend, bypassing pip's cache (which may hold a CPU wheel of
# the same version that pip would otherwise reuse); the project's install then finds it in place.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
ifneq ($(GPU),)
	CMAKE_ARGS="$(GPU_CMAKE_ARGS)" $(PY) -m pip install --force-reinstall --no-cache-dir --no-deps --no-binary llama-cpp-python "$(LLAMA_CPP_PYTHON)"
endif
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Extracts the published Q4_1 from its wheel, derives the Q8_0 from it with llama.cpp's quantizer,
# and checks both against their sizes and sha256 (nothing is redone for a file that verifies).
$(MODEL): | $(VENV)/.installed
	$(PY) -m digest.models.embedded models

# Pulled and checked against the registry's size and sha256 (nothing is redone for a file that is there).
$(GEMMA): | $(VENV)/.installed
	$(VENV)/bin/digest models pull gemma3-270m-q8_0

run: install
	$(VENV)/bin/digest run --sample-feeds --out site $(RUN_ARGS)

# Two pytest workers (pytest-xdist), each pinned to its own share of the CPUs, where llama.cpp then runs
# one thread: on 2 cores, two single-threaded models in parallel finish the suite sooner than one
# two-threaded one after another. worksteal: an idle worker takes tests from the busy one (a module's
# fixtures may then run on both, the balance is worth more).
# TEST_WORKERS=0: one process, as plain pytest.
TEST_WORKERS ?= 2
test: install $(GEMMA)
	DIGEST_REQUIRE_MODEL=1 $(PY) -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist worksteal)

# The loops on the default Q8_0 and on the published Q4_1; llama.cpp's own server and decode rates
# too when `make peers` has built them. BENCH_ARGS: more flags (e.g. BENCH_ARGS="--runs 5").
BENCH_ARGS ?=
bench: install
	$(VENV)/bin/digest bench --loop-model smollm2-135m-q4_1 \
	  $(if $(wildcard $(PEER_BUILD)/bin/llama-server),--llama-server $(PEER_BUILD)/bin/llama-server) \
	  $(if $(wildcard $(PEER_BUILD)/bin/llama-batched-bench),--native $(PEER_BUILD)/bin/llama-batched-bench) \
	  $(BENCH_ARGS)

clean:
	rm -rf $(VENV) site .pytest_cache .hypothesis

# The native peers of `digest bench`: llama.cpp's own llama-server and llama-batched-bench, built from
# the llama.cpp sources vendored in the pinned llama-cpp-python (its sdist, verified by pip against
# PyPI's sha256), with the flags llama-cpp-python builds its library with: Release, shared libraries,
# -march=native, OpenMP. No web UI and no download at build time. About 15 minutes on 2 cores, niced;
# nothing is rebuilt when nothing changed. Binaries: build/llama.cpp/bin/.
PEER_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
PEER_SDIST := build/sdist/llama_cpp_python-$(PEER_VERSION).tar.gz
PEER_SRC   := build/llama_cpp_python-$(PEER_VERSION)/vendor/llama.cpp
PEER_BUILD := build/llama.cpp
PEER_BINS  := $(PEER_BUILD)/bin/llama-server $(PEER_BUILD)/bin/llama-batched-bench
PEER_CMAKE_FLAGS := -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
	-DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

peers: $(PEER_BINS)

$(PEER_SDIST): | $(PY)
	$(PY) -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$(PEER_VERSION)" -d $(@D)
	touch $@

$(PEER_SRC)/CMakeLists.txt: $(PEER_SDIST)
	tar xzf $< -C build
	touch $@

$(PEER_BUILD)/CMakeCache.txt: $(PEER_SRC)/CMakeLists.txt
	cmake -S $(PEER_SRC) -B $(PEER_BUILD) $(PEER_CMAKE_FLAGS)

$(PEER_BINS) &: $(PEER_BUILD)/CMakeCache.txt
	nice -n 10 cmake --build $(PEER_BUILD) --target llama-server llama-batched-bench
	touch $(PEER_BINS)
