"""SIGTERM of the driver mid-run (what Slurm and `ray job stop` send), then `--resume auto`: the two runs
together train exactly `run.steps` steps, on exactly the ids an uninterrupted run consumes."""
import json
import os
import signal
import subprocess
import time

import pytest

from tests.launch.test_crash_resume import job

STEPS, BATCH = 30, 8


def wait_for_step(out_dir, step: int, process, timeout_s: float = 600) -> None:
    """Until the run under `out_dir` has logged `step` (or `process` ended)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and process.poll() is None:
        metrics = list(out_dir.glob("*/metrics.jsonl"))
        if metrics and f'"step": {step},' in metrics[0].read_text():
            return
        time.sleep(0.05)


@pytest.mark.slow  # two whole jobs, killed and resumed: the slow tier, which CI runs (make test-slow)
def test_sigterm_checkpoints_and_resume_auto_finishes_the_same_run(tiny_lab, tmp_path):
    out, env = tmp_path / "runs", {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = job(tiny_lab, out, f"run.steps={STEPS}", "ckpt.save_every=0", "eval.avg_k=0", "data.continuation_depths=[]")
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(out, 3, first)
    first.send_signal(signal.SIGTERM)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 128 + signal.SIGTERM, stdout[-2000:] + stderr[-2000:]
    assert "[opd] SIGTERM: stopping after this step" in stdout
    assert "Resume with: python launch/opd_job.py --config" in stderr and "--resume auto" in stderr
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith('.')]  # the run, not .frozen_evals
    stopped_at = int((run_dir / "checkpoints" / "latest").read_text().strip().removeprefix("step_"))
    assert 3 <= stopped_at < STEPS, stopped_at

    second = subprocess.run(args + ["--resume", "auto"], env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"at step {stopped_at}" in second.stdout
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if '"reverse_kl"' in line]
    assert steps == list(range(1, STEPS + 1))  # each step trained once, across the two runs
    final = json.loads((run_dir / "checkpoints" / f"step_{STEPS}" / "state.json").read_text())
    # the ids an uninterrupted run consumes, the stream's first STEPS * BATCH, each once (serials below the floor)
    assert final["consumed"] == {"floor": STEPS * BATCH, "above": [], "count": STEPS * BATCH}
