"""`ray job submit` of launch/opd_job.py to a real local head started with `ray start --head`.

The head gets a private temp dir and free ports, keeps Ray 2.60's token authentication on, and is stopped by
killing its own process group (never `ray stop`, which would kill every Ray process on the machine).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opd_ray.runtime import free_port

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def ray_head(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token", "HOME": str(tmp_path)}  # a private token in a private home
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    ports = {f"--{name}": str(free_port()) for name in (
        "port", "dashboard-port", "node-manager-port", "object-manager-port", "ray-client-server-port",
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")}
    temp_dir = Path("/tmp") / f"ray-{os.getpid()}"  # short: Ray's socket paths must stay under 108 bytes
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--temp-dir={temp_dir}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
         "--include-dashboard=true", *[x for kv in ports.items() for x in kv]],
        env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    try:
        wait_for_dashboard(address, env, head)
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def wait_for_dashboard(address, env, head, timeout_s=120):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited: {head.stdout.read()}")
        probe = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, text=True)
        if probe.returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"Ray dashboard at {address} did not come up")


def test_job_submit_runs_opd_to_completion(ray_head, tmp_path):
    address, env = ray_head
    out_dir = tmp_path / "runs"
    cmd = [RAY, "job", "submit", "--address", address, "--", sys.executable, str(ROOT / "launch" / "opd_job.py"),
           "--config", str(ROOT / "configs" / "lab_cpu.yaml"), "run.steps=2", "data.eval_size=16",
           "data.prompts_per_step=8", f"run.out_dir={out_dir}"]
    job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    summaries = list(out_dir.glob("*/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["steps"] == 2 and 0.0 <= summary["student_after"] <= 1.0


def test_submission_without_the_token_is_refused(ray_head, tmp_path):
    address, env = ray_head
    no_token = {**env, "HOME": str(tmp_path / "elsewhere")}  # no ~/.ray/auth_token here
    probe = subprocess.run([RAY, "job", "list", "--address", address], env=no_token, capture_output=True, text=True)
    assert probe.returncode != 0
