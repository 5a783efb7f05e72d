"""From one learner shard (scored trajectories + the learner's forward pass) to per-token losses and the
step's token-level diagnostics. The formulas live in objectives.py and diagnostics.py; this module only
wires the batch's fields into them, so the learner stays a thin DeepSpeed wrapper.
"""
from __future__ import annotations

import numpy as np
import torch

from opd_ray.config.schema import ObjectiveConfig
from opd_ray.models.scoring import gather_BR, gather_BRK
from opd_ray.objective import diagnostics as diag
from opd_ray.objective import losses as obj
from opd_ray.trajectory.batch import TrajectoryBatch


class ShardTensors:
    """The shard's arrays as torch tensors on the learner's device (log-probs in float32, from 16-bit too). Top-k
    lists are cut to the objective's `k`: the payload may carry more for the diagnostics (objective.diagnostics_k);
    every top-k list is sorted, most likely first."""

    def __init__(self, shard: TrajectoryBatch, device, k: int | None = None):
        as_ids = lambda x: torch.as_tensor(x, device=device).long()  # noqa: E731
        as_f32 = lambda x: None if x is None else torch.as_tensor(x, device=device).float()  # noqa: E731
        shard = shard.topk_cut(k) if k is not None else shard
        self.mask_BR = torch.as_tensor(shard.response_mask_BR, device=device)
        self.response_ids_BR = as_ids(shard.response_ids_BR)
        self.behaviour_logp_BR = as_f32(shard.student_logp_BR)
        self.student_topk_ids_BRK = as_ids(shard.student_topk_ids_BRK)
        self.teacher_topk_ids_BRK = as_ids(shard.teacher_topk_ids_BRK)
        self.teacher_logp_BR = as_f32(shard.teacher_logp_BR)
        self.teacher_logp_at_student_topk_BRK = as_f32(shard.teacher_logp_at_student_topk_BRK)
        self.teacher_topk_logp_BRK = as_f32(shard.teacher_topk_logp_BRK)
        self.teacher_full_logp_BRV = as_f32(shard.teacher_full_logp_BRV)
        self.outcome_advantage_B = as_f32(shard.outcome_advantage_B)


def token_losses(logp_BRV: torch.Tensor, t: ShardTensors, o: ObjectiveConfig) -> torch.Tensor:
    """Per-token loss of the configured objective, plus the optional outcome term, IS correction and clamp."""
    new_BR = gather_BR(logp_BRV, t.response_ids_BR)
    if o.kind == "sampled_token":
        loss_BR = obj.pg_loss(new_BR, obj.sampled_token_advantage(new_BR.detach(), t.teacher_logp_BR))
    elif o.kind == "topk":
        ids_BRS, valid_BRS = obj.topk_support(t.student_topk_ids_BRK, t.teacher_topk_ids_BRK, o.support)
        new_BRS = gather_BRK(logp_BRV, ids_BRS)
        teacher_BRS = obj.on_support(t.teacher_logp_at_student_topk_BRK, t.teacher_topk_logp_BRK, o.support)
        adv_BRS = obj.topk_advantage(new_BRS.detach(), teacher_BRS, valid_BRS, o.weights)
        loss_BR = obj.pg_loss(new_BRS, adv_BRS).sum(-1)
    elif o.kind == "full_reverse_kl":
        loss_BR = obj.reverse_kl_BR(logp_BRV, require(t.teacher_full_logp_BRV, o.kind))
    elif o.kind == "forward_kl":
        loss_BR = obj.forward_kl_topk_BR(gather_BRK(logp_BRV, t.teacher_topk_ids_BRK), t.teacher_topk_logp_BRK)
    elif o.kind == "gjsd":
        loss_BR = obj.gjsd_BR(logp_BRV, require(t.teacher_full_logp_BRV, o.kind), o.beta)
    else:
        raise ValueError(f"objective.kind: unknown objective {o.kind!r}")
    if o.outcome_weight:
        outcome_adv_BR = o.outcome_weight * require(t.outcome_advantage_B, "outcome_weight")[:, None]
        loss_BR = loss_BR + obj.pg_loss(new_BR, outcome_adv_BR.expand_as(new_BR))
    if o.is_cap > 0:
        loss_BR = loss_BR * obj.truncated_is_weight_BR(new_BR, t.behaviour_logp_BR, o.is_cap)
    if o.loss_clamp > 0:
        loss_BR = loss_BR.clamp(-o.loss_clamp, o.loss_clamp)
    return loss_BR


def require(value, what: str):
    if value is None:
        raise ValueError(f"objective {what!r} needs a field the teacher/rollout did not ship")
    return value


def entropy_banded_sums(per_token: dict[str, np.ndarray], m_BR: np.ndarray, n_tokens: float) -> dict[str, list]:
    """The overlap metrics and top-1 agreement per teacher-entropy band (`diagnostics.ENTROPY_BANDS`), and each
    band's share of the tokens (teacher_entropy_share/<band>)."""
    sums = {}
    for name in ("overlap_ratio", "overlap_mass_teacher", "overlap_mass_student", "top1_agreement"):
        banded = diag.sums_by_entropy_band(per_token[name], per_token["entropy_teacher"], m_BR)
        sums |= {f"{name}/teacher_entropy_{band}": [total, count] for band, (total, count) in banded.items()}
    sums |= {f"teacher_entropy_share/{band}": [count, n_tokens] for band, (_, count) in banded.items()}
    return sums


def diagnostic_sums(logp_BRV: torch.Tensor, t: ShardTensors, shard: TrajectoryBatch, k: int | None = None
                    ) -> dict[str, list]:
    """Per-token diagnostics as [sum, count] pairs over this shard (the controller sums ranks, then divides).

    Per-position entropies come as arrays (one entry per response position) for the position heatmaps. A
    teacher that ships only its own top-k and the sampled token (the vLLM teacher above FULL_VOCAB_LIMIT) has
    no entropy and no log-probs at the student's ids: the metrics that need them are left out, and the
    overlap-token advantage, which needs them only at ids in both top-k lists, reads them from its top-k.
    """
    shard = shard.topk_cut(k) if k is not None else shard  # objective.diagnostics_k
    m_BR = shard.response_mask_BR
    s_ids, t_ids = shard.student_topk_ids_BRK, shard.teacher_topk_ids_BRK
    s_logp, t_logp = shard.student_topk_logp_BRK, shard.teacher_topk_logp_BRK.astype(np.float32)
    t_at_s = shard.teacher_logp_at_student_topk_BRK
    t_at_s = t_at_s.astype(np.float32) if t_at_s is not None else diag.logp_at_ids_BRK(s_ids, t_ids, t_logp)
    entropy_student_BR = diag.entropy_BR(logp_BRV).cpu().numpy()
    per_token = {
        "reverse_kl": shard.student_logp_BR - shard.teacher_logp_BR.astype(np.float32),
        "overlap_ratio": diag.overlap_ratio_BR(s_ids, t_ids),
        "top1_agreement": s_ids[..., 0] == t_ids[..., 0],  # top-k lists are sorted, most likely first
        "overlap_mass_student": diag.overlap_mass_BR(s_ids, s_logp, t_ids),
        "overlap_mass_teacher": diag.overlap_mass_BR(t_ids, t_logp, s_ids),
        "entropy_student": entropy_student_BR,
    }
    if shard.teacher_entropy_BR is not None:
        entropy_teacher_BR = shard.teacher_entropy_BR.astype(np.float32)
        per_token["entropy_teacher"] = entropy_teacher_BR
        per_token["entropy_gap"] = np.abs(entropy_teacher_BR - entropy_student_BR)
    if shard.teacher_logp_at_student_topk_BRK is not None:
        per_token["p_minus_q_at_max_adv"] = diag.p_minus_q_at_max_advantage_BR(s_logp, t_at_s)
    n_tokens = float(m_BR.sum())
    sums = {name: [float((values * m_BR).sum()), n_tokens] for name, values in per_token.items()}
    adv_BR, has_overlap_BR = diag.overlap_token_advantage_BR(s_ids, s_logp, t_ids, t_at_s)
    sums["overlap_token_advantage"] = [float((adv_BR * (has_overlap_BR & m_BR)).sum()),
                                       float((has_overlap_BR & m_BR).sum())]
    if shard.teacher_entropy_BR is not None:  # the overlap where the teacher is sure, unsure, spread (ours)
        sums.update(entropy_banded_sums(per_token, m_BR, n_tokens))
    sums["entropy_student_by_position"] = [(entropy_student_BR * m_BR).sum(0), m_BR.sum(0).astype(np.float64)]
    if shard.teacher_entropy_BR is not None:
        sums["entropy_teacher_by_position"] = [(per_token["entropy_teacher"] * m_BR).sum(0),
                                               m_BR.sum(0).astype(np.float64)]
    return sums
