"""Per-teacher accounting of a step (runs of several teachers): what each teacher scored and how it did.

An aggregate loss hides a teacher that is starved of rows or whose signal is off (TRL added per-teacher token
fractions for this). Every step of a run with several teachers logs, per teacher `<name>`, from the scored batches
the controller already holds (each batch names the teacher that scored it):

    teacher/<name>/token_share          its share of the step's response tokens (routing: they sum to 1;
                                        ensemble: 1 each, every teacher scores every token)
    teacher/<name>/trajectories         trajectories it scored
    teacher/<name>/reverse_kl           log p - log q at the sampled token (mean over its tokens)
    teacher/<name>/overlap_ratio        |top-k(student) ∩ top-k(teacher)| / k, and
    teacher/<name>/overlap_mass_teacher the teacher's mass on the shared ids; top1_agreement
    teacher/<name>/entropy_teacher      its entropy, and entropy_gap |H(q) - H(p)| (p: the sampling policy's
                                        entropy, shipped by the HF engines)
    teacher/<name>/latency_s            its slowest scoring call in the step; busy_s: all its calls' seconds
    teacher/<name>/queue_wait_s         the longest a sampled shard waited for its scoring to start
    teacher/<name>/payload_bytes_per_token, teacher/<name>/restarts (its servers' replacements so far)
"""
from __future__ import annotations

import numpy as np

from opd_ray.config import teachers
from opd_ray.objective import diagnostics as diag
from opd_ray.trajectory.batch import TrajectoryBatch


def token_sums(b: TrajectoryBatch) -> dict[str, tuple[float, float]]:
    """[sum, count] over the batch's valid response tokens of each per-token measure."""
    m_BR = b.response_mask_BR
    n = float(m_BR.sum())
    per_token = {
        "reverse_kl": b.student_logp_BR - b.teacher_logp_BR.astype(np.float32),
        "overlap_ratio": diag.overlap_ratio_BR(b.student_topk_ids_BRK, b.teacher_topk_ids_BRK),
        "overlap_mass_teacher": diag.overlap_mass_BR(b.teacher_topk_ids_BRK, b.teacher_topk_logp_BRK.astype(np.float32),
                                                     b.student_topk_ids_BRK),
        "top1_agreement": b.student_topk_ids_BRK[..., 0] == b.teacher_topk_ids_BRK[..., 0],
    }
    if b.teacher_entropy_BR is not None:
        per_token["entropy_teacher"] = b.teacher_entropy_BR.astype(np.float32)
        if b.student_entropy_BR is not None:
            per_token["entropy_gap"] = np.abs(per_token["entropy_teacher"] - b.student_entropy_BR)
    return {name: (float((values * m_BR).sum()), n) for name, values in per_token.items()}


def step_metrics(batches: list[TrajectoryBatch], health, cfg) -> dict[str, float]:
    """teacher/<name>/* for a step's scored batches (nothing in a one-teacher run: the aggregates say it all)."""
    if not teachers.is_multi(cfg):
        return {}
    step_tokens = float(sum(b.response_mask_BR.sum() for b in unique_trajectories(batches)))
    out = {}
    for name in teachers.names(cfg):
        own = [b for b in batches if b.scored_by == name]
        prefix = f"teacher/{name}/"
        tokens = float(sum(b.response_mask_BR.sum() for b in own))
        out[prefix + "token_share"] = tokens / max(step_tokens, 1.0)
        out[prefix + "trajectories"] = float(sum(len(b) for b in own))
        out[prefix + "restarts"] = float(health.restarts_by_role[teachers.role(name)])
        if not own:
            continue
        totals: dict[str, list[float]] = {}
        for b in own:
            for measure, (total, count) in token_sums(b).items():
                acc = totals.setdefault(measure, [0.0, 0.0])
                acc[0], acc[1] = acc[0] + total, acc[1] + count
        out |= {prefix + measure: total / max(count, 1.0) for measure, (total, count) in totals.items()}
        out[prefix + "latency_s"] = max(call_seconds(b) for b in own)
        out[prefix + "busy_s"] = sum(call_seconds(b) for b in own)
        out[prefix + "queue_wait_s"] = max(b.stage_s.get("teacher_queue", 0.0) for b in own)
        out[prefix + "payload_bytes_per_token"] = float(np.mean([b.payload_bytes_per_token() for b in own]))
    return out


def call_seconds(b: TrajectoryBatch) -> float:
    """How long the server took with the batch (its whole `score` call; the compute alone on older servers)."""
    return b.stage_s.get("teacher_call", b.stage_s.get("teacher", 0.0))


def unique_trajectories(batches: list[TrajectoryBatch]) -> list[TrajectoryBatch]:
    """One batch per set of trajectories (an ensemble scores each set once per teacher)."""
    seen, out = set(), []
    for b in batches:
        key = tuple(b.traj_ids)
        if key not in seen:
            seen.add(key)
            out.append(b)
    return out


def check_routing(shards, batches: list[TrajectoryBatch], cfg) -> None:
    """Every scored batch came from the teacher its rows name (routing) or its shard was sent to (ensemble):
    the binding of a sample to its teacher survives re-issues, replacements and resumes, or the step stops."""
    for shard, batch in zip(shards, batches, strict=True):
        expected = teachers.name_of(shard.teacher_role)
        named = {ex.teacher for _, ex in shard.items}
        if batch.scored_by != expected or (cfg.mopd.mode == "routing" and named != {expected}):
            raise RuntimeError(f"routing: a batch of rows for teacher(s) {sorted(named)} was scored by "
                               f"{batch.scored_by!r} (sent to {expected!r})")


class StarvedTeacherWatch:
    """Warn once per teacher whose token share of a step falls below `mopd.min_token_share` (0: off)."""

    def __init__(self, cfg):
        self.floor, self.warned = cfg.mopd.min_token_share, set()

    def __call__(self, state, metrics: dict) -> None:
        for key, share in metrics.items():
            if not (key.startswith("teacher/") and key.endswith("/token_share")) or not self.floor:
                continue
            name = key.split("/")[1]
            if share < self.floor and name not in self.warned:
                self.warned.add(name)
                print(f"[opd] warning: teacher {name} scored {share:.1%} of the tokens at step {state.step}, below "
                      f"mopd.min_token_share={self.floor:.1%}: it is starved of rows", flush=True)
