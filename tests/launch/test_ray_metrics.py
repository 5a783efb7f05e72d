"""The pipeline metrics reach the head's Prometheus endpoint while a submitted job runs.

A real head (`ray start --head --metrics-export-port=...`, token auth on) runs launch/opd_job.py under
`ray job submit`; the test scrapes http://127.0.0.1:<metrics port>/metrics during the run, as Prometheus
would, and checks every metric of opd_ray/ray_metrics.py has a plausible value.
"""
import math
import subprocess
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.launch.ray_head import RAY, opd_job_args, ray_head

# Prometheus series name -> a check of its value (max_staleness=1: one batch sampled ahead, at most 1 version old)
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


def scrape(port: int) -> dict[str, float]:
    """{series: value} of the opd metrics; tokens/s is keyed by role, e.g. ray_opd_tokens_per_s[teacher]."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return {}
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ray_opd_") and math.isfinite(sample.value):
                role = sample.labels.get("role")
                found[f"{sample.name}[{role}]" if role else sample.name] = sample.value
    return found


def test_pipeline_metrics_on_the_heads_prometheus_endpoint(tiny_lab, tmp_path):
    # Export every second instead of every 10 s, so a short job shows up while it runs.
    with ray_head(tmp_path, {"RAY_metrics_report_interval_ms": "1000"}) as head:
        cmd = [RAY, "job", "submit", "--address", head.address, "--", *opd_job_args(
            f"model.student={tiny_lab / 'student'}", f"model.teacher={tiny_lab / 'teacher'}", "run.steps=12",
            "data.prompts_per_step=8", "data.eval_size=8", "rollout.max_new_tokens=16", "pipeline.max_staleness=1",
            "ckpt.export_hf=false", f"run.out_dir={tmp_path / 'runs'}")]
        job = subprocess.Popen(cmd, env=head.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen: dict[str, float] = {}
        deadline = time.time() + 600
        while job.poll() is None and time.time() < deadline:
            seen.update({k: v for k, v in scrape(head.metrics_port).items() if k in EXPECTED and EXPECTED[k](v)})
            if len(seen) == len(EXPECTED):
                break
            time.sleep(1)
        log = job.communicate(timeout=600)[0]
        assert job.returncode == 0, log[-3000:]
    missing = sorted(set(EXPECTED) - set(seen))
    assert not missing, f"no plausible value for {missing}; seen {seen}"
