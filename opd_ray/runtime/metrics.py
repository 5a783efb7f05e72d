"""Metric sinks: one JSONL line and TensorBoard scalars per step, in the run directory, and Ray metrics
(opd_ray/runtime/ray_metrics.py, for the dashboard) when Ray is running."""
from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from pathlib import Path

from opd_ray.runtime.ray_metrics import RayMetrics


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
