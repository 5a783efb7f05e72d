"""OPD objectives: per-token advantages from teacher and student log-probs, and the PPO-clipped surrogate.

Both forms follow the paper's released code (shared/paper-notes.md §1.2):
- sampled-token: A_t = log q_t(y_t) - log p_old_t(y_t) (negative sampled reverse KL; discount 0, no baseline);
- student top-k: for each v in S_t = TopK(p_old_t, k), A_t(v) = -w_t(v) (log p_old_t(v) - log q_t(v)),
  w_t = softmax of log p_old over S_t (the student's renormalised probabilities); log p and log q are
  full-vocabulary log-probs.
The loss is the PPO clipped surrogate with dual clip on every (token, v), summed over v, token-mean.
"""
from __future__ import annotations

import torch


def sampled_token_advantage(student_logp_BR: torch.Tensor, teacher_logp_BR: torch.Tensor) -> torch.Tensor:
    return teacher_logp_BR - student_logp_BR


def student_topk_advantage(student_topk_logp_BRK: torch.Tensor,
                           teacher_logp_at_student_topk_BRK: torch.Tensor) -> torch.Tensor:
    weight_BRK = torch.softmax(student_topk_logp_BRK, dim=-1)
    return -weight_BRK * (student_topk_logp_BRK - teacher_logp_at_student_topk_BRK)


def ppo_clipped_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor,
                     clip_low: float, clip_high: float, dual_clip: float) -> torch.Tensor:
    """Per-element clipped surrogate loss (to minimise). Any shape; the advantage is treated as a constant."""
    advantage = advantage.detach()
    ratio = torch.exp(new_logp - old_logp.detach())
    unclipped = -advantage * ratio
    clipped = -advantage * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    # dual clip: with a negative advantage, bound the loss so one huge ratio cannot dominate
    return torch.where(advantage < 0, torch.minimum(loss, -advantage * dual_clip), loss)


def token_mean(loss_BR: torch.Tensor, mask_BR: torch.Tensor, n_tokens: float) -> torch.Tensor:
    """Sum of per-token losses over valid tokens, divided by `n_tokens` (the global count across ranks).

    Padding is selected away (not multiplied by 0, which would turn a NaN in padding into a NaN loss).
    """
    return torch.where(mask_BR.bool(), loss_BR, torch.zeros_like(loss_BR)).sum() / max(n_tokens, 1.0)
