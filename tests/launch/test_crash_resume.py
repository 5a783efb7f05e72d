"""SIGKILL of the driver while it writes a checkpoint, then `--resume auto`.

The next run must pick the previous complete checkpoint, clean up the partial one, finish, and consume every
traj_id exactly once across both runs.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS, BATCH = 6, 8


def job(tiny_lab, out_dir, *extra):
    return [sys.executable, str(ROOT / "launch" / "opd_job.py"), "--config", str(ROOT / "configs" / "lab_cpu.yaml"),
            f"model.student={tiny_lab / 'student'}", f"model.teacher={tiny_lab / 'teacher'}", f"run.out_dir={out_dir}",
            f"run.steps={STEPS}", f"data.prompts_per_step={BATCH}", "data.eval_size=8", "rollout.max_new_tokens=16",
            "ckpt.save_every=2", "ckpt.keep_last=3", *extra]


@pytest.mark.slow  # two whole jobs, killed and resumed: the slow tier, which CI runs (make test-slow)
def test_sigkill_during_checkpoint_write_then_resume_auto(tiny_lab, tmp_path):
    out = tmp_path / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(job(tiny_lab, out, "run.fault=ckpt_publish:step=4,action=sleep,seconds=600"),
                             env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while not list(out.glob("*/checkpoints/tmp_step_4/learner")) and time.time() < deadline:
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        time.sleep(1)
    time.sleep(3)  # inside the injected sleep: the learner state is written, the checkpoint is not published
    os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started
    first.wait()
    run_dir = next(out.glob("lab_cpu-*"))
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_2"

    second = subprocess.run(job(tiny_lab, out) + ["--resume", "auto"], env=env, capture_output=True, text=True,
                            timeout=900)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    assert "removed the partial checkpoint tmp_step_4" in log
    assert f"resumed from {run_dir / 'checkpoints' / 'step_2'} at step 2" in log
    assert not list(run_dir.glob("checkpoints/tmp_step_*"))
    final = json.loads((run_dir / "checkpoints" / "step_6" / "state.json").read_text())
    consumed = [tuple(t) for t in final["consumed"]]
    assert len(consumed) == len(set(consumed)) == STEPS * BATCH
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == STEPS


def test_resume_with_a_changed_config_is_refused_naming_the_difference(tiny_lab, tmp_path):
    from opd_ray.loop.checkpoint import CheckpointDir, config_fingerprint
    from opd_ray.run.preflight import load_config

    out = tmp_path / "runs"
    ckpt = CheckpointDir(out / "lab_cpu-1" / "checkpoints")
    cfg = load_config(ROOT / "configs" / "lab_cpu.yaml", [f"model.student={tiny_lab / 'student'}",
                                                          f"model.teacher={tiny_lab / 'teacher'}"])
    ckpt.publish(ckpt.begin(2), 2, {"step": 2, "config": config_fingerprint(cfg)})
    changed = subprocess.run(job(tiny_lab, out, "learner.lr=0.5") + ["--resume", "auto"], capture_output=True,
                             text=True, timeout=120)
    assert changed.returncode == 2
    assert "learner.lr: 0.0001 -> 0.5" in changed.stderr and "--allow-config-change" in changed.stderr
