"""Slurm -> Ray -> OPD: `sbatch launch/slurm/opd.sbatch` on a real one-node Slurm (launch/slurm/dev_cluster.sh).

The batch script starts a Ray head through srun, submits launch/opd_job.py with `ray job submit`, follows the
logs, stops its Ray and exits with the job's status; `sbatch --wait` hands that status back here.
CI (.ci/run) installs and starts Slurm first and sets OPD_REQUIRE_SLURM=1, so a missing Slurm fails there;
on a developer machine without `sbatch` the test is skipped, saying how to get it.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.launch.ray_head import private_home_env

# whole jobs under Slurm: the slow tier, which CI runs with its Slurm clusters up (make test-slow)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEV_CLUSTER = ROOT / "launch" / "slurm" / "dev_cluster.sh"


def start_dev_cluster(script: Path, missing: str | None) -> str:
    """Start (or check) a dev Slurm with `script start`; returns its slurm.conf. `missing`: why it cannot run here
    (None: it can): a skip on a developer machine, a failure under OPD_REQUIRE_SLURM=1 (CI)."""
    if missing is not None:
        if os.environ.get("OPD_REQUIRE_SLURM") == "1":
            pytest.fail(f"{missing}, and OPD_REQUIRE_SLURM=1: run `{script.relative_to(ROOT)} start` as root")
        pytest.skip(f"{missing}: `sudo {script.relative_to(ROOT)} start` installs (Debian) and starts it")
    started = subprocess.run([str(script), "start"], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr[-3000:]
    return started.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def slurm_conf() -> str:
    return start_dev_cluster(DEV_CLUSTER, "sbatch not found" if shutil.which("sbatch") is None else None)


def test_sbatch_runs_opd_through_ray_and_returns_its_status(slurm_conf, tiny_lab, tmp_path):
    out_dir = tmp_path / "runs"
    # a private home: the batch script generates its own token there
    env = {**private_home_env(tmp_path), "SLURM_CONF": slurm_conf, "OPD_PYTHON": sys.executable}
    sbatch = ["sbatch", "--wait", f"--output={tmp_path}/slurm-%j.out", "--cpus-per-task=2",
              "--time=20", str(ROOT / "launch" / "slurm" / "opd.sbatch"),
              "--config", "configs/lab_cpu.yaml", f"model.student={tiny_lab / 'student'}",
              f"model.teacher={tiny_lab / 'teacher'}", "run.steps=2", "data.prompts_per_step=8", "data.eval_size=8",
              "rollout.max_new_tokens=16", "ckpt.export_hf=false", f"run.out_dir={out_dir}"]
    job = subprocess.run(sbatch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    logs = list(tmp_path.glob("slurm-*.out"))
    log = logs[0].read_text() if logs else ""
    assert job.returncode == 0, job.stderr[-2000:] + log[-4000:]
    assert "all 1 node(s) joined" in log and "job opd-slurm-" in log and ": succeeded" in log, log[-4000:]
    summary = json.loads(next(out_dir.glob("*/summary.json")).read_text())
    assert summary["steps"] == 2


def test_a_failing_job_fails_the_slurm_job(slurm_conf, tmp_path):
    env = {**private_home_env(tmp_path), "SLURM_CONF": slurm_conf, "OPD_PYTHON": sys.executable}
    sbatch = ["sbatch", "--wait", f"--output={tmp_path}/slurm-%j.out", "--cpus-per-task=2", "--time=10",
              str(ROOT / "launch" / "slurm" / "opd.sbatch"), "--config", "configs/lab_cpu.yaml", "run.steps=0"]
    job = subprocess.run(sbatch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = next(tmp_path.glob("slurm-*.out")).read_text()
    assert job.returncode != 0, log[-3000:]
    assert "run.steps: must be >= 1" in log and ": failed" in log, log[-3000:]


def test_sigterm_to_the_batch_shell_leaves_a_resumable_checkpoint(slurm_conf, tiny_lab, tmp_path):
    """Preemption: `scancel --batch --signal=TERM` (what `--signal=B:TERM@300` does before the time limit) reaches
    the driver through `ray job stop`; it checkpoints after its current step; the Slurm job fails; `--resume auto`
    then finishes the run."""
    from tests.launch.test_preemption import wait_for_step

    out_dir, steps = tmp_path / "runs", 40
    env = {**private_home_env(tmp_path), "SLURM_CONF": slurm_conf, "OPD_PYTHON": sys.executable}
    job_args = ["--config", "configs/lab_cpu.yaml", f"model.student={tiny_lab / 'student'}",
                f"model.teacher={tiny_lab / 'teacher'}", f"run.steps={steps}", "data.prompts_per_step=8",
                "data.eval_size=8", "eval.avg_k=0", "data.continuation_depths=[]", "rollout.max_new_tokens=16",
                f"run.out_dir={out_dir}"]
    sbatch = subprocess.Popen(["sbatch", "--wait", f"--output={tmp_path}/slurm-%j.out", "--cpus-per-task=2",
                               "--time=20", str(ROOT / "launch" / "slurm" / "opd.sbatch"), *job_args],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = sbatch.stdout.readline().split()[-1]  # "Submitted batch job N"
    wait_for_step(out_dir, 3, sbatch)
    subprocess.run(["scancel", "--batch", "--signal=TERM", job_id], env=env, check=True)
    assert sbatch.wait(timeout=600) != 0
    log = next(tmp_path.glob("slurm-*.out")).read_text()
    assert "SIGTERM: asking job opd-slurm-" in log and ": stopped" in log and "--resume auto" in log, log[-4000:]
    (run_dir,) = [p for p in out_dir.iterdir() if not p.name.startswith('.')]  # the run, not .frozen_evals
    stopped_at = int((run_dir / "checkpoints" / "latest").read_text().strip().removeprefix("step_"))
    assert 3 <= stopped_at < steps, log[-3000:]
    resumed = subprocess.run([sys.executable, str(ROOT / "launch" / "opd_job.py"), *job_args, "--resume", "auto"],
                             cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0 and f"at step {stopped_at}" in resumed.stdout, resumed.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == steps
