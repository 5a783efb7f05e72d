"""Metric sinks: one JSONL line and TensorBoard scalars per step, in the run directory, and Ray metrics
(opd_ray/runtime/ray_metrics.py, for the dashboard) when Ray is running.

metrics.jsonl is appended to. When a run goes back to a checkpoint (`--resume`, a learner group restart), a
marker line `{"step": N, "rewound_to_step": N, "reason": ...}` says that every line above it of a step after N
is superseded by what follows; `current_rows` applies that, for the report and summary.json."""
from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from pathlib import Path

from opd_ray.runtime.ray_metrics import RayMetrics

REWIND = "rewound_to_step"


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def current_rows(rows: list[dict]) -> tuple[list[dict], int]:
    """The rows that still stand, in order, and how many were superseded: a rewind marker drops every earlier
    row of a later step (those steps ran again after it)."""
    kept, superseded = [], 0
    for row in rows:
        if REWIND in row:
            standing = [r for r in kept if r["step"] <= row[REWIND]]
            superseded += len(kept) - len(standing)
            kept = standing
        else:
            kept.append(row)
    return kept, superseded


class MetricsSink:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)
        self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.run_name, self.ray_metrics = run_dir.name, None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.tb.add_scalar(name, value, step)
        self.record_ray_metrics(metrics)

    def record_ray_metrics(self, metrics: dict[str, float]) -> None:
        import ray

        if not ray.is_initialized():  # a unit test without Ray: files only
            return
        if self.ray_metrics is None:
            self.ray_metrics = RayMetrics(self.run_name)
        self.ray_metrics.record(metrics)

    def mark_rewind(self, step: int, reason: str) -> None:
        """The run went back to step `step`: the rows of later steps above this line are superseded."""
        self.jsonl.write(json.dumps({"step": step, REWIND: step, "reason": reason}) + "\n")

    def close(self) -> None:
        self.jsonl.close()
        self.tb.close()


class StageTimer:
    """Wall-clock seconds per named stage of one step: `with timer("rollout"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
