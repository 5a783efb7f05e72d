"""The paper's token-level diagnostics at student-visited states (docs/design.md, paper §2).

All functions take per-position top-k ids/log-probs and return per-position values (shape B×R); the caller
averages over valid tokens. Top-k log-probs are full-vocabulary normalised.
"""
from __future__ import annotations

import numpy as np
import torch


def overlap_count_BR(student_ids_BRK: np.ndarray, teacher_ids_BRK: np.ndarray) -> np.ndarray:
    """|S_p ∩ S_q| at each position (ids within one top-k list are distinct)."""
    return (student_ids_BRK[..., :, None] == teacher_ids_BRK[..., None, :]).any(-1).sum(-1)


def overlap_ratio_BR(student_ids_BRK: np.ndarray, teacher_ids_BRK: np.ndarray) -> np.ndarray:
    """Eq. 6: |S_p ∩ S_q| / k."""
    return overlap_count_BR(student_ids_BRK, teacher_ids_BRK) / student_ids_BRK.shape[-1]


def overlap_mass_BR(ids_BRK: np.ndarray, logp_BRK: np.ndarray, other_ids_BRK: np.ndarray) -> np.ndarray:
    """Eqs. 9-10: the probability mass that one model (ids, logp) puts on the tokens shared with the other's top-k."""
    shared_BRK = (ids_BRK[..., :, None] == other_ids_BRK[..., None, :]).any(-1)
    return (np.exp(logp_BRK.astype(np.float64)) * shared_BRK).sum(-1)


ENTROPY_CHUNK = 1 << 22  # elements per pass: the exp/entr temporaries stay at 32 MiB in float64


# Teacher-entropy bands (nats) for the overlap metrics: ours, not the paper's, which reports the aggregate only. On a
# near-deterministic task most positions sit in the first band, where ranks 2..k hold almost no mass and their
# overlap is noise; the overlap at positions where the teacher spreads its mass is what the paper's mechanism moves.
ENTROPY_BANDS = {"lt0.1": (0.0, 0.1), "0.1to1": (0.1, 1.0), "ge1": (1.0, float("inf"))}


def sums_by_entropy_band(values_BR: np.ndarray, entropy_BR: np.ndarray, mask_BR: np.ndarray
                         ) -> dict[str, tuple[float, float]]:
    """{band: (sum of values, number of valid positions)} over the valid positions whose entropy falls in the band
    [lo, hi); a band with no position has count 0 (its mean is NaN, not 0)."""
    out = {}
    for band, (lo, hi) in ENTROPY_BANDS.items():
        in_band_BR = mask_BR & (entropy_BR >= lo) & (entropy_BR < hi)
        out[band] = (float(np.where(in_band_BR, values_BR, 0.0).sum()), float(in_band_BR.sum()))
    return out


def entropy_BR(logp_BRV: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Shannon entropy of each position's full distribution (zero-probability tokens contribute 0, not NaN),
    computed in `dtype` (default: that of `logp_BRV`).

    Rows (the first axis) go through in chunks of about ENTROPY_CHUNK elements, so the temporaries (the
    probabilities and their entr) never span the whole B×R×V; each position's sum does not depend on the chunk.
    Slicing the first axis keeps views (a reshape of a strided tensor would copy all of it).
    """
    per_row = max(int(np.prod(logp_BRV.shape[1:])), 1)
    step = max(1, ENTROPY_CHUNK // per_row)
    parts = [torch.special.entr(logp_BRV[i: i + step].to(dtype or logp_BRV.dtype).exp()).sum(-1)
             for i in range(0, logp_BRV.shape[0], step)]
    return torch.cat(parts) if len(parts) != 1 else parts[0]


def logp_at_ids_BRK(ids_BRK: np.ndarray, other_ids_BRK: np.ndarray, other_logp_BRK: np.ndarray) -> np.ndarray:
    """The other model's log-prob at each of `ids_BRK` where its top-k holds that id (0 elsewhere: callers use
    these values only at shared ids)."""
    match_BRKK = ids_BRK[..., :, None] == other_ids_BRK[..., None, :]
    return np.where(match_BRKK, other_logp_BRK[..., None, :], 0.0).sum(-1).astype(np.float32)


def overlap_token_advantage_BR(student_ids_BRK: np.ndarray, student_logp_BRK: np.ndarray,
                               teacher_ids_BRK: np.ndarray, teacher_logp_at_student_ids_BRK: np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 7: mean over v in S_p ∩ S_q of p̄(v) (log q̄(v) - log p̄(v)), p̄ and q̄ renormalised on the intersection.

    Both log-prob arrays are aligned with the student's top-k ids. Returns the value and whether the position
    has any shared token (positions without one have no value and must be left out of the average).
    """
    shared_BRK = (student_ids_BRK[..., :, None] == teacher_ids_BRK[..., None, :]).any(-1)
    p_bar_logp = _log_renormalise(student_logp_BRK, shared_BRK)
    q_bar_logp = _log_renormalise(teacher_logp_at_student_ids_BRK, shared_BRK)
    term_BRK = np.where(shared_BRK, np.exp(p_bar_logp) * (q_bar_logp - p_bar_logp), 0.0)
    n_shared_BR = shared_BRK.sum(-1)
    return term_BRK.sum(-1) / np.maximum(n_shared_BR, 1), n_shared_BR > 0


def _log_renormalise(logp_BRK: np.ndarray, keep_BRK: np.ndarray) -> np.ndarray:
    logp = np.maximum(logp_BRK.astype(np.float64), -100.0)
    top = np.max(np.where(keep_BRK, logp, -1e300), axis=-1, keepdims=True)
    log_norm = top + np.log(np.maximum(np.exp(np.where(keep_BRK, logp - top, -np.inf)).sum(-1, keepdims=True), 1e-300))
    return np.where(keep_BRK, logp - log_norm, 0.0)  # 0 off the set: callers mask it, and no inf - inf


def p_minus_q_at_max_advantage_BR(student_topk_logp_BRK: np.ndarray, teacher_logp_at_student_topk_BRK: np.ndarray
                                  ) -> np.ndarray:
    """App. B.2: p(v) - q(v) at the student-top-k token with the largest |advantage| (student-weighted top-k)."""
    s = np.maximum(student_topk_logp_BRK.astype(np.float64), -100.0)
    t = np.maximum(teacher_logp_at_student_topk_BRK.astype(np.float64), -100.0)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    worst_BR1 = np.abs(w * (s - t)).argmax(-1)[..., None]
    return (np.exp(np.take_along_axis(s, worst_BR1, -1)) - np.exp(np.take_along_axis(t, worst_BR1, -1)))[..., 0]


def sequence_mean_reward_B(student_logp_BR: np.ndarray, teacher_logp_BR: np.ndarray, mask_BR: np.ndarray) -> np.ndarray:
    """§6.2: r̄(y) = (1/T) Σ_t [log q(y_t) - log p(y_t)], the sampled-token OPD reward averaged over the sequence."""
    diff_BR = np.where(mask_BR, teacher_logp_BR.astype(np.float64) - student_logp_BR.astype(np.float64), 0.0)
    return diff_BR.sum(-1) / np.maximum(mask_BR.sum(-1), 1)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting 1/2.

    Computed from average ranks (Mann-Whitney U); NaN when either class is empty.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):  # average rank over each run of tied scores
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
