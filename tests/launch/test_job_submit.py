"""`ray job submit` of launch/opd_job.py to a real local head started with `ray start --head`.

The head gets a private temp dir and free ports, keeps Ray 2.60's token authentication on, and is stopped by
killing its own process group (never `ray stop`, which would kill every Ray process on the machine).
"""
import json
import subprocess

import pytest

from tests.launch.ray_head import RAY, opd_job_args, ray_head


@pytest.fixture
def head(tmp_path):
    with ray_head(tmp_path) as started:
        yield started


def test_job_submit_runs_opd_to_completion(head, tmp_path):
    out_dir = tmp_path / "runs"
    cmd = [RAY, "job", "submit", "--address", head.address, "--",
           *opd_job_args("run.steps=2", "data.eval_size=16", "data.prompts_per_step=8", f"run.out_dir={out_dir}")]
    job = subprocess.run(cmd, env=head.env, capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    summaries = list(out_dir.glob("*/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["steps"] == 2 and 0.0 <= summary["student_after"] <= 1.0


def test_submission_without_the_token_is_refused(head, tmp_path):
    no_token = {**head.env, "HOME": str(tmp_path / "elsewhere")}  # no ~/.ray/auth_token here
    probe = subprocess.run([RAY, "job", "list", "--address", head.address], env=no_token, capture_output=True,
                           text=True)
    assert probe.returncode != 0
