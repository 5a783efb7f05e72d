"""A small `stages: [cold_start, opd]` run of launch/opd_job.py, shared by the HF and vLLM cold-start tests."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "opd_ray" / "lab" / "artifacts"


def run_cold_start_job(tmp_path: Path, config: str, *overrides: str, prompts: int, sft_steps: int
                       ) -> tuple[dict, dict, str]:
    """Cold start with the incompatible teacher, then 2 OPD steps; returns (stage summary, run summary, stdout)."""
    cmd = [sys.executable, str(ROOT / "launch" / "opd_job.py"), "--config", str(ROOT / "configs" / config),
           f"model.teacher={LAB / 'teacher_incompatible'}", f"run.out_dir={tmp_path}", "stages=[cold_start,opd]",
           f"cold_start.prompts={prompts}", f"cold_start.steps={sft_steps}", "cold_start.batch_size=16",
           "run.steps=2", "data.prompts_per_step=8", "data.eval_size=16", "data.continuation_depths=[0.0]", *overrides]
    done = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = next(tmp_path.glob(f"{Path(config).stem}-*"))
    assert (run_dir / "cold_start" / "hf" / "model.safetensors").is_file()
    stage = json.loads((run_dir / "cold_start" / "summary.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert stage["kept"] + stage["dropped_after_retries"] == stage["prompts"] == prompts
    assert stage["sft_steps"] == sft_steps and summary["steps"] == 2
    assert summary["cold_start"]["student_export"].endswith("cold_start/hf")
    return stage, summary, done.stdout
