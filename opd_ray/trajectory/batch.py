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
    student_entropy_BR: np.ndarray | None = None  # float32, the sampling distribution's entropy (HF engines)
    # filled in by the teacher
    outcome_correct_B: np.ndarray | None = None  # bool, the verifier's judgement of each response
    # filled in by the teacher (log-probs in teacher.logprob_dtype)
    teacher_logp_BR: np.ndarray | None = None  # sampled token
    teacher_logp_at_student_topk_BRK: np.ndarray | None = None
    teacher_topk_ids_BRK: np.ndarray | None = None  # int32
    teacher_topk_logp_BRK: np.ndarray | None = None
    teacher_entropy_BR: np.ndarray | None = None
    teacher_full_logp_BRV: np.ndarray | None = None  # only for objectives that need the whole distribution
    scored_by: str = ""  # which teacher scored the rows (opd_ray/config/teachers.py); "" after mixing teachers
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

    def topk_cut(self, k: int) -> "TrajectoryBatch":
        """The batch with every top-k list cut to its first `k` entries (they are sorted, most likely first): the
        objective's k of a payload shipped at objective.diagnostics_k, or the other way round."""
        changes = {name: value[..., :k] for name in TOPK_FIELDS
                   if (value := getattr(self, name)) is not None and value.shape[-1] > k}
        return replace(self, **changes) if changes else self

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
    names = {b.scored_by for b in batches}
    out = {"traj_ids": [t for b in batches for t in b.traj_ids], "policy_version": versions.pop(),
           "stage_s": {}, "scored_by": names.pop() if len(names) == 1 else ""}
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


# the teacher fields an ensemble averages: log-probs at ids every teacher scored (the sampled token, the student's
# top-k), so the mean is exact there; and the entropy (the mean of the teachers' entropies)
TOPK_FIELDS = ("student_topk_ids_BRK", "student_topk_logp_BRK", "teacher_logp_at_student_topk_BRK",
               "teacher_topk_ids_BRK", "teacher_topk_logp_BRK")
ENSEMBLE_MEAN_FIELDS = ("teacher_logp_BR", "teacher_logp_at_student_topk_BRK", "teacher_entropy_BR")


def merge_teachers(batches: list[TrajectoryBatch]) -> list[TrajectoryBatch]:
    """`mopd.mode: ensemble`: the batches that hold the same trajectories, each scored by another teacher, become
    one. Its per-token signal is the teachers' mean log-prob at the sampled token and the student's top-k ids
    (the mean of the teachers' advantages, log q_i - log p, as slime averages them); its teacher top-k is
    `merged_topk` (for the overlap diagnostics). Batches of distinct trajectories (routing) pass unchanged."""
    groups: dict[tuple, list[TrajectoryBatch]] = {}
    for b in batches:
        groups.setdefault(tuple(b.traj_ids), []).append(b)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        first = members[0]
        means = {name: np.mean([getattr(m, name).astype(np.float32) for m in members], axis=0).astype(
            getattr(first, name).dtype) for name in ENSEMBLE_MEAN_FIELDS if getattr(first, name) is not None}
        ids_BRK, logp_BRK = merged_topk([m.teacher_topk_ids_BRK for m in members],
                                        [m.teacher_topk_logp_BRK for m in members])
        stage_s = {k: max(m.stage_s.get(k, 0.0) for m in members) for k in first.stage_s}
        out.append(replace(first, **means, teacher_topk_ids_BRK=ids_BRK,
                           teacher_topk_logp_BRK=logp_BRK.astype(first.teacher_topk_logp_BRK.dtype),
                           scored_by="+".join(m.scored_by for m in members), stage_s=stage_s))
    return out


def merged_topk(ids: list[np.ndarray], logps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of the teachers' mean log-prob over the union of their top-k ids. A teacher's log-prob at an id
    outside its own top-k is unknown and taken as its k-th value (an upper bound), so the merged top-k is exact
    where the teachers' top-k lists agree and an estimate elsewhere: diagnostics only, never the loss."""
    k = ids[0].shape[-1]
    cand_BRC = np.concatenate(ids, axis=-1)
    score_BRC = np.zeros(cand_BRC.shape, dtype=np.float64)
    for ids_BRK, logp_BRK in zip(ids, logps):
        hit_BRCK = cand_BRC[..., :, None] == ids_BRK[..., None, :]
        at_hit = np.where(hit_BRCK, logp_BRK[..., None, :].astype(np.float64), -np.inf).max(-1)
        score_BRC += np.where(hit_BRCK.any(-1), at_hit, logp_BRK[..., -1:].astype(np.float64))
    score_BRC /= len(ids)
    c = cand_BRC.shape[-1]
    earlier_CC = np.tril(np.ones((c, c), dtype=bool), -1)  # an id seen before in the candidate list
    duplicate_BRC = ((cand_BRC[..., :, None] == cand_BRC[..., None, :]) & earlier_CC).any(-1)
    score_BRC = np.where(duplicate_BRC, -np.inf, score_BRC)
    order_BRK = np.argsort(-score_BRC, axis=-1, kind="stable")[..., :k]
    return (np.take_along_axis(cand_BRC, order_BRK, -1).astype(np.int32),
            np.take_along_axis(score_BRC, order_BRK, -1).astype(np.float32))
