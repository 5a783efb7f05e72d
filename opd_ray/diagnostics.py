"""The paper's token-level diagnostics at student-visited states (shared/paper-notes.md §2).

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


def entropy_BR(logp_BRV: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of each position's full distribution."""
    return -(logp_BRV.exp() * logp_BRV).sum(-1)
