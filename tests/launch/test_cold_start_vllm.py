"""The cold start with vLLM engines (vllm tier, .venv-vllm): the teacher's answers come from a vLLM engine
serving the teacher's weights, the DeepSpeed group SFT-trains the student, and OPD then starts from the export
with a vLLM rollout engine and a vLLM teacher."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "opd_ray" / "lab" / "artifacts"


@pytest.mark.vllm
def test_cold_start_with_vllm_engines(tmp_path):
    cmd = [sys.executable, str(ROOT / "launch" / "opd_job.py"), "--config", str(ROOT / "configs" / "lab_cpu_vllm.yaml"),
           f"model.teacher={LAB / 'teacher_incompatible'}", f"run.out_dir={tmp_path}", "stages=[cold_start,opd]",
           "cold_start.prompts=48", "cold_start.steps=4", "cold_start.batch_size=16", "run.steps=2",
           "data.prompts_per_step=8", "data.eval_size=16", "data.continuation_depths=[0.0]"]
    done = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = next(tmp_path.glob("lab_cpu_vllm-*"))
    stage = json.loads((run_dir / "cold_start" / "summary.json").read_text())
    assert stage["kept"] + stage["dropped_after_retries"] == stage["prompts"] == 48 and stage["kept"] > 0
    # the incompatible teacher writes right to left: the SFT data is its own format, and correct
    assert stage["kept_correct"] > 0.9 and stage["sft_nll_last"] < stage["sft_nll_first"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["cold_start"]["student_export"].endswith("cold_start/hf")
