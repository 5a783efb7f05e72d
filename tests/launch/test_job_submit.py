"""`ray job submit` of launch/opd_job.py to a real local head started with `ray start --head`.

The head gets a private temp dir and free ports, keeps Ray 2.60's token authentication on, and is stopped by
killing its own process group (never `ray stop`, which would kill every Ray process on the machine).
While the job runs, the test scrapes the head's Prometheus endpoint (`--metrics-export-port`), as Prometheus
would, and checks every pipeline metric of opd_ray/runtime/ray_metrics.py shows up with a plausible value.
"""
import json
import math
import socket
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.launch.ray_head import RAY, opd_job_args, ray_head

# Prometheus series -> a check of its value (max_staleness=1: one batch sampled ahead, at most 1 version old)
EXPECTED = {
    "ray_opd_queue_depth": lambda v: 0 <= v <= 2,
    "ray_opd_trajectory_age_versions": lambda v: 0 <= v <= 1,
    "ray_opd_policy_version": lambda v: v >= 1,
    "ray_opd_overlap_ratio": lambda v: 0 < v <= 1,
    "ray_opd_reverse_kl": lambda v: 0 <= v < 50,
    "ray_opd_teacher_latency_s_count": lambda v: v >= 1,
    "ray_opd_teacher_latency_s_sum": lambda v: 0 < v < 300,
    "ray_opd_weight_sync_s_count": lambda v: v >= 1,
    "ray_opd_weight_sync_s_sum": lambda v: 0 < v < 300,
    "ray_opd_steps_total": lambda v: v >= 1,
    "ray_opd_tokens_total": lambda v: v > 0,
    **{f"ray_opd_tokens_per_s[{role}]": lambda v: 0 < v < 1e8 for role in ("rollout", "teacher", "learner", "pipeline")},
}


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    # Export metrics every second instead of every 10 s, so a short job shows up while it runs.
    with ray_head(tmp_path_factory.mktemp("home"), {"RAY_metrics_report_interval_ms": "1000"}) as started:
        yield started


def scrape(port: int) -> dict[str, float]:
    """{series: value} of the opd metrics, keyed by role or teacher where they have one: e.g.
    ray_opd_tokens_per_s[teacher] (the teacher stage), ray_opd_per_teacher_token_share[digits] (one teacher)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return {}
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ray_opd_") and math.isfinite(sample.value):
                label = sample.labels.get("role") or sample.labels.get("teacher")
                found[f"{sample.name}[{label}]" if label else sample.name] = sample.value
    return found


TEACHER_GAUGES = ("token_share", "reverse_kl", "overlap_ratio", "latency_s", "queue_wait_s")


def test_job_submit_runs_a_two_teacher_opd_job_with_its_metrics_on_the_head(head, tmp_path):
    """configs/lab_mopd.yaml (two teachers) submitted to the head: it runs to completion, and while it runs the head
    exports every pipeline metric with a plausible value, and each teacher's gauges
    (ray_opd_per_teacher_<measure>{teacher=...})."""
    out_dir = tmp_path / "runs"
    cmd = [RAY, "job", "submit", "--address", head.address, "--", *opd_job_args(
        "run.steps=4", "data.eval_size=16", "data.prompts_per_step=16", "pipeline.max_staleness=1",
        f"run.out_dir={out_dir}")]
    cmd[cmd.index(str(ROOT / "configs" / "lab_cpu.yaml"))] = str(ROOT / "configs" / "lab_mopd.yaml")
    job = subprocess.Popen(cmd, env=head.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wanted = {f"ray_opd_per_teacher_{m}[{t}]" for m in TEACHER_GAUGES for t in ("sum", "digits")}
    seen: dict[str, float] = {}
    deadline = time.time() + 900
    while job.poll() is None and time.time() < deadline and not (wanted | set(EXPECTED)) <= set(seen):
        seen.update({k: v for k, v in scrape(head.metrics_port).items()
                     if k in wanted or (k in EXPECTED and EXPECTED[k](v))})
        time.sleep(1)
    log = job.communicate(timeout=900)[0]
    assert job.returncode == 0, log[-3000:]
    assert "succeeded" in log
    summaries = list(out_dir.glob("*/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["steps"] == 4 and 0.0 <= summary["student_after"] <= 1.0
    missing = sorted((set(EXPECTED) | wanted) - set(seen))
    assert not missing, f"no plausible value for {missing}; seen {seen}"
    assert all(0 < seen[f"ray_opd_per_teacher_token_share[{t}]"] < 1 for t in ("sum", "digits"))


def test_submission_without_the_token_is_refused(head, tmp_path):
    no_token = {**head.env, "HOME": str(tmp_path / "elsewhere")}  # no ~/.ray/auth_token here
    probe = subprocess.run([RAY, "job", "list", "--address", head.address], env=no_token, capture_output=True,
                           text=True)
    assert probe.returncode != 0


def test_dashboard_and_job_server_listen_on_loopback_only(head):
    """An exposed job server runs anyone's code: it must not answer on the machine's network address."""
    import ray.util

    port = int(head.address.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    node_ip = ray.util.get_node_ip_address()
    assert node_ip != "127.0.0.1"
    with pytest.raises(OSError):
        socket.create_connection((node_ip, port), timeout=5).close()
