"""`stages: [cold_start, opd]` end to end through launch/opd_job.py (slow tier: two DeepSpeed groups in a row).

The lab teacher generates answers, the filters keep them, the learner group SFT-trains the student, the export
becomes the OPD student, and the summary reports the recovery from the original student.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "opd_ray" / "lab" / "artifacts"


@pytest.mark.slow
def test_cold_start_then_opd(tmp_path):
    cmd = [sys.executable, str(ROOT / "launch" / "opd_job.py"), "--config", str(ROOT / "configs" / "lab_cpu.yaml"),
           f"model.teacher={LAB / 'teacher_incompatible'}", f"run.out_dir={tmp_path}", "stages=[cold_start,opd]",
           "cold_start.prompts=32", "cold_start.steps=3", "cold_start.batch_size=16", "run.steps=2",
           "data.prompts_per_step=8", "data.eval_size=16", "data.continuation_depths=[0.0]"]
    done = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = next(tmp_path.glob("lab_cpu-*"))
    stage = json.loads((run_dir / "cold_start" / "summary.json").read_text())
    assert stage["kept"] + stage["dropped_after_retries"] == stage["prompts"] == 32 and stage["sft_steps"] == 3
    assert (run_dir / "cold_start" / "hf" / "model.safetensors").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["cold_start"]["student_export"].endswith("cold_start/hf")
    assert "gap_recovery_from_original" in summary
    assert "[cold start] SFT 3 steps" in done.stdout
