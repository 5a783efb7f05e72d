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

from opd_ray.run.report import RunData

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
    # the stream's first STEPS * BATCH ids, each once (serials below the floor: opd_ray/trajectory/ledger.py)
    assert final["consumed"] == {"floor": STEPS * BATCH, "above": [], "count": STEPS * BATCH}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == STEPS
    # steps 3 and 4 ran twice: the report and summary.json keep the second run's rows
    assert summary["metrics_rows_superseded"] == 2
    assert RunData(run_dir).series("loss")[0].tolist() == list(range(1, STEPS + 1))


@pytest.mark.slow  # a whole job that hangs: the slow tier, which CI runs (make test-slow)
def test_a_hung_learner_ends_the_run_in_one_line_with_the_resume_command(tiny_lab, tmp_path):
    out = tmp_path / "runs"
    done = subprocess.run(job(tiny_lab, out, "run.fault=learner_step:rank=0,step=3,gen=0,action=sleep,seconds=300",
                              "pipeline.learner_timeout_s=10", "eval.avg_k=0", "data.continuation_depths=[]"),
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr[-3000:]
    assert "learner did not finish within 10 s (pipeline.learner_timeout_s)" in errors[0], errors[0]
    assert errors[0].endswith("--resume auto") and "PipelineTimeout" not in done.stderr  # no traceback
    run_dir = next(out.glob("lab_cpu-*"))
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_2"  # the last good checkpoint


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
    (ckpt.latest() / "planted.pkl").write_bytes(b"not ours")  # a file the checkpoint does not list
    tampered = subprocess.run(job(tiny_lab, out) + ["--resume", "auto"], capture_output=True, text=True, timeout=120)
    errors = [line for line in tampered.stderr.splitlines() if line.startswith("error: ")]
    assert tampered.returncode == 2 and len(errors) == 1, tampered.stderr[-2000:]
    assert "does not match its state.json: planted.pkl is not listed" in errors[0]
    assert "Started a local Ray" not in tampered.stderr + tampered.stdout  # refused before Ray starts
