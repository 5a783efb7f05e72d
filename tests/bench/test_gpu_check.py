"""bench/gpu_check.py rehearsed on the CPU (`--device cpu --size tiny`): the HF rollout engine, the HF teacher and the
DeepSpeed learner run in one process, bf16 as on the GPU, and the JSON holds every stage's figures and the objective
computed on the device against float64."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # a subprocess that builds models and starts DeepSpeed: ~25 s
def test_gpu_check_runs_on_cpu_and_reports_every_stage(tmp_path):
    out = tmp_path / "gpu_check.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--size", "tiny",
                    "--prompts", "6", "--prompt-len", "12", "--new-tokens", "12", "--learner-steps", "1",
                    "--out", str(out)], check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                   capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["dtype"] == "bfloat16" and result["response_tokens"] == 6 * 12  # random init: no row ends early
    for stage in ("rollout", "teacher", "learner"):
        assert result[stage]["tokens_per_s"] > 0, stage
    assert result["learner"]["finite"] and 0 < result["learner"]["mfu"] < 1
    numerics = result["objective_device_vs_cpu"]
    assert numerics["tokens"] > 0 and numerics["max_abs_loss"] > 0.01  # a loss of zero would compare nothing
    assert numerics["max_abs_diff"] < 1e-5, numerics
