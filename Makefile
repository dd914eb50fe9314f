# speechmoe: set-up and checks.
#   make install   system packages, .venv with pinned requirements, kaldifeat (built once, cached)
#   make test      install if needed, then run the default test suite
#   make bench     the MoE-layer benchmark (prints moe_vs_dense_ratio=...)
#   make info      params and cost of the paper's systems
#   make gpu-check the CUDA tests, the B1 / MoE-8e step benchmark and a short bf16 MoE-8e
#                  training under torchrun (NCCL), on a machine with a GPU (tools/gpu_check.sh)

PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.speechmoe-installed
PYTEST_ARGS ?= --durations=15

.PHONY: install test test-all bench info gpu-check clean-venv

install: $(STAMP)

$(STAMP): requirements.txt setup.py tools/install_system_deps.sh tools/install_kaldifeat.sh
	tools/install_system_deps.sh
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q setuptools wheel
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	tools/install_kaldifeat.sh $(PY)
	touch $@

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

# The default suite plus the slow checks (marked `slow`).
test-all: install
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS) tests

bench: install
	$(PY) -m speechmoe.bench.moe_layer

info: install
	$(VENV)/bin/speechmoe-info egs/aishell2/conf/model/*.yaml

gpu-check: install
	tools/gpu_check.sh

clean-venv:
	rm -rf $(VENV)
