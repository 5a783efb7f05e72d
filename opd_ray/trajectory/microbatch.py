"""Micro-batches: a shard split by sequence so that no pass holds more than a token budget of logits.

A micro-batch is a set of rows whose padded size, rows × (longest prompt + longest response), is at most
`budget` tokens (`learner.micro_batch_tokens`, `teacher.micro_batch_tokens`); a row longer than the budget
goes alone. Its logits are then at most budget × vocabulary floats, whatever the batch size.

A shard that fits the budget is one micro-batch, the shard itself as it came (same rows, same padding), so
a budget that covers the whole shard computes exactly what an unsplit pass does. Otherwise rows are sorted by
length (longest first, so similar lengths share padding) and packed greedily, and each micro-batch drops the
padding columns none of its rows uses.
"""
from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from opd_ray.trajectory.batch import TrajectoryBatch

RIGHT_PADDED = ("_BR", "_BRK", "_BRV")  # response-aligned arrays: padding at the end of axis 1


def lengths(batch: TrajectoryBatch) -> tuple[np.ndarray, np.ndarray]:
    """Valid prompt and response tokens of each row."""
    return np.asarray(batch.prompt_mask_BP).sum(1), np.asarray(batch.response_mask_BR).sum(1)


def padded_tokens(batch: TrajectoryBatch) -> int:
    return len(batch) * (batch.prompt_ids_BP.shape[1] + batch.response_ids_BR.shape[1])


def plan(batch: TrajectoryBatch, budget: int | None) -> list[np.ndarray] | None:
    """Row indices of each micro-batch, or None when the whole batch fits the budget (None: no budget) as it is."""
    if budget is None or padded_tokens(batch) <= budget:
        return None
    prompt_B, response_B = lengths(batch)
    order = np.argsort(-(prompt_B + response_B), kind="stable")
    groups, current, width_p, width_r = [], [], 0, 0
    for row in order:
        p, r = max(width_p, prompt_B[row]), max(width_r, response_B[row])
        if current and (len(current) + 1) * (p + r) > budget:
            groups.append(np.array(current))
            current, p, r = [], prompt_B[row], response_B[row]
        current.append(row)
        width_p, width_r = p, r
    groups.append(np.array(current))
    return groups


def count(batch: TrajectoryBatch, budget: int | None) -> int:
    groups = plan(batch, budget)
    return 1 if groups is None else len(groups)


def trimmed(batch: TrajectoryBatch) -> TrajectoryBatch:
    """The batch without the padding columns that none of its rows uses (prompts are left-padded, responses
    right-padded; position ids count valid tokens only, so the forward pass is unchanged)."""
    prompt_B, response_B = lengths(batch)
    width_p, width_r = max(int(prompt_B.max()), 1), max(int(response_B.max()), 1)
    changes = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        if not isinstance(value, np.ndarray) or value.ndim < 2:
            continue
        if f.name.endswith("_BP"):
            changes[f.name] = value[:, value.shape[1] - width_p:]
        elif f.name.endswith(RIGHT_PADDED):
            changes[f.name] = value[:, :width_r]
    return replace(batch, **changes)


def split(batch: TrajectoryBatch, budget: int | None) -> list[tuple[np.ndarray, TrajectoryBatch]]:
    """(row indices into `batch`, micro-batch) pairs that cover every row once."""
    groups = plan(batch, budget)
    if groups is None:
        return [(np.arange(len(batch)), batch)]
    return [(rows, trimmed(batch.rows(rows))) for rows in groups]


def scatter(parts: list[tuple[np.ndarray, dict[str, np.ndarray]]], fill: dict[str, np.ndarray], n_rows: int,
            width: int) -> dict[str, np.ndarray]:
    """Per-micro-batch arrays (rows × their own width × ...) back into whole-batch arrays of `width` columns.

    `fill[name]` is the value of one padding position (what an unsplit pass produces there), so a split
    batch and an unsplit one give the same arrays.
    """
    out = {}
    for name, pad in fill.items():
        out[name] = np.broadcast_to(pad, (n_rows, width) + pad.shape).copy()
        for rows, arrays in parts:
            value = arrays[name]
            out[name][rows, : value.shape[1]] = value
    return out


def add_sums(total: dict[str, list], part: dict[str, list]) -> dict[str, list]:
    """Adds [sum, count] metric pairs; per-position arrays of different widths add over the shared positions."""
    for name, (value, n) in part.items():
        if name not in total:
            total[name] = [value, n]
            continue
        total[name] = [_add(total[name][0], value), _add(total[name][1], n)]
    return total


def _add(a, b):
    if np.ndim(a) == 0:
        return a + b
    width = max(len(a), len(b))
    return np.pad(a, (0, width - len(a))) + np.pad(b, (0, width - len(b)))


def pad_positions(sums: dict[str, list], width: int) -> dict[str, list]:
    """Per-position arrays padded to the shard's response width (ranks add them element-wise)."""
    for name, (value, n) in sums.items():
        if np.ndim(value) == 1 and len(value) < width:
            sums[name] = [np.pad(value, (0, width - len(value))), np.pad(n, (0, width - len(n)))]
    return sums
