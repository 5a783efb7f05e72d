"""The trajectory batch that moves through the object store: rollout -> teacher -> learner.

Arrays are numpy with shape suffixes: B rows (trajectories), P prompt positions (left-padded),
R response positions (right-padded), K top-k entries. Compact dtypes: ids int32, masks bool,
student log-probs float32; the teacher's log-probs in `teacher.logprob_dtype` (float16 by default: the
compact payload, see `payload_bytes_per_token`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

TrajId = tuple[int, int, int]  # (epoch, prompt index, sample index)


@dataclass
class TrajectoryBatch:
    traj_ids: list[TrajId]
    policy_version: int  # the student weights version that sampled every row
    prompt_ids_BP: np.ndarray  # int32, left-padded
    prompt_mask_BP: np.ndarray  # bool
    response_ids_BR: np.ndarray  # int32, right-padded
    response_mask_BR: np.ndarray  # bool
    student_logp_BR: np.ndarray  # float32, sampled token under the sampling policy
    student_topk_ids_BRK: np.ndarray  # int32
    student_topk_logp_BRK: np.ndarray  # float32
    # filled in by the teacher
    outcome_correct_B: np.ndarray | None = None  # bool, the verifier's judgement of each response
    # filled in by the teacher (log-probs in teacher.logprob_dtype)
    teacher_logp_BR: np.ndarray | None = None  # sampled token
    teacher_logp_at_student_topk_BRK: np.ndarray | None = None
    teacher_topk_ids_BRK: np.ndarray | None = None  # int32
    teacher_topk_logp_BRK: np.ndarray | None = None
    teacher_entropy_BR: np.ndarray | None = None
    teacher_full_logp_BRV: np.ndarray | None = None  # only for objectives that need the whole distribution
    # filled in by the learner: verifier reward minus the step's batch mean (objective.outcome_weight)
    outcome_advantage_B: np.ndarray | None = None
    stage_s: dict[str, float] = field(default_factory=dict)  # compute seconds per stage, for the step timer

    def __len__(self) -> int:
        return len(self.traj_ids)

    def rows(self, index: np.ndarray | slice) -> "TrajectoryBatch":
        """A sub-batch (e.g. one learner rank's shard)."""
        idx = np.arange(len(self))[index]
        changes = {"traj_ids": [self.traj_ids[i] for i in idx]}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                changes[f.name] = value[idx]
        return replace(self, **changes)

    def with_teacher(self, **teacher_fields: np.ndarray) -> "TrajectoryBatch":
        return replace(self, **teacher_fields)

    def payload_bytes_per_token(self) -> float:
        """Bytes the teacher adds to the batch, per valid response token (padding included in the bytes)."""
        teacher_bytes = sum(getattr(self, f.name).nbytes for f in fields(self)
                            if f.name.startswith("teacher_") and getattr(self, f.name) is not None)
        return teacher_bytes / max(int(self.response_mask_BR.sum()), 1)


def concat(batches: list[TrajectoryBatch]) -> TrajectoryBatch:
    """Join batches sampled at one policy version; pads P and R to the widest."""
    versions = {b.policy_version for b in batches}
    if len(versions) != 1:
        raise ValueError(f"cannot concatenate batches of different policy versions {sorted(versions)}")
    out = {"traj_ids": [t for b in batches for t in b.traj_ids], "policy_version": versions.pop(),
           "stage_s": {}}
    for f in fields(TrajectoryBatch):
        arrays = [getattr(b, f.name) for b in batches]
        if not isinstance(arrays[0], np.ndarray):
            continue
        if arrays[0].ndim == 1:  # per-row values (_B)
            out[f.name] = np.concatenate(arrays)
            continue
        left = f.name.endswith("_BP")  # prompts are left-padded
        width = max(a.shape[1] for a in arrays)
        padded = []
        for a in arrays:
            pad = [(0, 0)] * a.ndim
            pad[1] = (width - a.shape[1], 0) if left else (0, width - a.shape[1])
            padded.append(np.pad(a, pad))
        out[f.name] = np.concatenate(padded, axis=0)
    return TrajectoryBatch(**out)
