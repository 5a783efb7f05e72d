"""Pipeline metrics for the Ray dashboard, through `ray.util.metrics` (exported in Prometheus format).

Fed once per step from the controller's metrics dict (see controller.opd_step), by MetricsSink. Ray prefixes
every name with `ray_`: `opd_queue_depth` is scraped as `ray_opd_queue_depth`. Each series carries a `run`
tag (the run directory's name), so several runs on one cluster stay apart. docs/cluster.md says how to
see them (Prometheus + Grafana pointed at the head). Importing this module does not start Ray.
"""
from __future__ import annotations

# Seconds buckets for per-step latencies: a tiny CPU lab step takes ~0.01-1 s, a cluster step up to minutes.
LATENCY_BUCKETS_S = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]

# name -> (description, key in the step's metrics dict)
GAUGES = {
    "opd_queue_depth": ("Rollout batches sampled ahead, in flight while the step trained (<= max_staleness)",
                        "queue_depth"),
    "opd_trajectory_age_versions": ("Policy versions between the batch's sampler and the weights it trained",
                                    "staleness"),
    "opd_policy_version": ("Policy version the rollout engines serve after the step's weight sync",
                           "policy_version"),
    "opd_overlap_ratio": ("Mean share of the student top-k also in the teacher top-k, over response tokens", "overlap_ratio"),
    "opd_reverse_kl": ("Mean per-token reverse KL(student || teacher), sampled-token estimate: log p - log q at "
                       "the token the student sampled", "reverse_kl"),
    # fleet health (opd_ray/loop/fleet.py): replaced actors, re-issued work, time to re-admit
    "opd_rollout_restarts": ("Rollout engines replaced so far (died or hung)", "fleet/restarts_rollout"),
    "opd_teacher_restarts": ("Teacher servers replaced so far (died or hung)", "fleet/restarts_teacher"),
    "opd_reissued_trajectories": ("Trajectories re-issued after an engine or teacher failed",
                                  "fleet/reissued_trajectories"),
    "opd_readmit_s": ("Seconds from the last failure noticed to its replacement serving", "fleet/readmit_s_last"),
}
HISTOGRAMS = {
    "opd_teacher_latency_s": ("Slowest teacher server's scoring time per step", "time/teacher_s"),
    "opd_weight_sync_s": ("Weight sync time (learner -> every rollout engine) per step", "time/sync_s"),
}
# runs of several teachers: measure of teacher/<name>/<measure> -> description; exported as
# opd_per_teacher_<measure> with a `teacher` tag (not opd_teacher_*: opd_teacher_latency_s is the histogram above) (opd_ray/loop/teacher_accounting.py, opd_ray/loop/elastic.py)
TEACHER_GAUGES = {
    "token_share": "Share of the step's response tokens this teacher scored",
    "trajectories": "Trajectories this teacher scored in the step",
    "reverse_kl": "Mean per-token reverse KL(student || this teacher) at the sampled token",
    "overlap_ratio": "Mean share of the student top-k also in this teacher's top-k",
    "overlap_mass_teacher": "This teacher's probability mass on the ids shared with the student's top-k",
    "entropy_gap": "Mean |H(teacher) - H(student)| per token",
    "latency_s": "This teacher's slowest scoring call in the step",
    "queue_wait_s": "Longest a sampled shard waited for a free server of this teacher",
    "payload_bytes_per_token": "Bytes this teacher shipped per response token",
    "restarts": "This teacher's servers replaced so far (died or hung)",
    "servers": "Servers in this teacher's pool (elastic pools)",
}
# role tag of opd_tokens_per_s -> the seconds key its rate divides by (tokens: trained response tokens)
ROLE_SECONDS = {"rollout": "time/rollout_s", "teacher": "time/teacher_s", "learner": "time/learner_s",
                "pipeline": "time/step_s"}


class RayMetrics:
    """One set of Ray metric objects per process; `record(metrics)` after each step."""

    def __init__(self, run: str):
        from ray.util.metrics import Counter, Gauge, Histogram

        tags = ("run",)
        self.gauges = {name: Gauge(name, description=desc, tag_keys=tags) for name, (desc, _) in GAUGES.items()}
        self.histograms = {name: Histogram(name, description=desc, boundaries=LATENCY_BUCKETS_S, tag_keys=tags)
                           for name, (desc, _) in HISTOGRAMS.items()}
        self.tokens_per_s = Gauge("opd_tokens_per_s", tag_keys=("run", "role"),
                                  description="Trained response tokens per second of each role's compute "
                                              "(pipeline: per wall-clock second of the whole step)")
        self.teacher_gauges = {measure: Gauge(f"opd_per_teacher_{measure}", description=desc, tag_keys=("run", "teacher"))
                               for measure, desc in TEACHER_GAUGES.items()}
        self.steps = Counter("opd_steps_total", description="OPD steps completed", tag_keys=tags)
        self.tokens = Counter("opd_tokens_total", description="Response tokens trained on", tag_keys=tags)
        for metric in [*self.gauges.values(), *self.histograms.values(), *self.teacher_gauges.values(),
                       self.tokens_per_s, self.steps, self.tokens]:
            metric.set_default_tags({"run": run})

    def record(self, metrics: dict[str, float]) -> None:
        """Missing keys are skipped: a step dict without, say, teacher timing still exports the rest."""
        if "policy_version" not in metrics:  # not a training step (e.g. the end-of-run eval/* line)
            return
        for name, (_, key) in GAUGES.items():
            if key in metrics:
                self.gauges[name].set(float(metrics[key]))
        for name, (_, key) in HISTOGRAMS.items():
            if key in metrics:
                self.histograms[name].observe(float(metrics[key]))
        for key, value in metrics.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "teacher" and parts[2] in self.teacher_gauges:
                self.teacher_gauges[parts[2]].set(float(value), tags={"teacher": parts[1]})
        tokens = float(metrics.get("tokens", 0.0))
        for role, key in ROLE_SECONDS.items():
            if metrics.get(key, 0.0) > 0:
                self.tokens_per_s.set(tokens / metrics[key], tags={"role": role})
        self.steps.inc()
        if tokens > 0:
            self.tokens.inc(tokens)
