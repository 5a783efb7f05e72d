# The verbs a person types. Each target sets up .venv first (idempotent), so a fresh clone needs only
# Python 3.11 and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
ENV    := HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CONFIG ?= configs/lab_cpu.yaml

.PHONY: setup run test test-slow lab clean

setup: $(VENV)/.installed

# torch goes in first from the CPU wheel: installing the package first would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: setup  ## the OPD job on the CPU lab default
	$(ENV) $(PY) launch/opd_job.py --config $(CONFIG) $(ARGS)

test: setup  ## the default test tier
	$(ENV) $(PY) -m pytest

test-slow: setup
	$(ENV) $(PY) -m pytest -m slow

lab: setup  ## rebuild the lab tokenizer and models (deterministic, ~25 min on 2 cores)
	$(ENV) $(PY) -m opd_ray.lab.build --out opd_ray/lab/artifacts

clean:
	rm -rf $(VENV) runs .pytest_cache
