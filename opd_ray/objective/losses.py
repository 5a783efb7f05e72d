"""The OPD objective family (docs/design.md, paper §1). Pure tensor functions; the learner picks one by config.

Shapes: B rows, R response positions, V vocabulary, K top-k entries, S support entries (K or 2K).
Log-probs are full-vocabulary normalised (as in the paper's released code), student ones taken from the
learner's own forward pass at the states the student visited.

Two kinds of objective:
- *Advantage* objectives (sampled_token, topk) give a detached per-token (or per-(token, v)) advantage A that
  enters the policy-gradient loss `pg_loss` = -A * log pi. The paper's code wraps this in the PPO clipped
  surrogate, but with one update per rollout batch and a recomputed old policy its ratio is exactly 1 and the
  clip never binds, so we write the equivalent loss directly.
- *Direct* objectives (full_reverse_kl, forward_kl, gjsd) are differentiable divergences, as in GKD.

Log-probs below LOGP_FLOOR (including -inf, e.g. a zero-probability teacher token or an fp16 underflow) are
raised to it, so a token the teacher rules out costs a large but finite penalty instead of a NaN loss.
"""
from __future__ import annotations

import math

import torch

ADVANTAGE_KINDS = ("sampled_token", "topk")
DIRECT_KINDS = ("full_reverse_kl", "forward_kl", "gjsd")
OBJECTIVES = ADVANTAGE_KINDS + DIRECT_KINDS
FULL_VOCAB_KINDS = ("full_reverse_kl", "gjsd")  # need the teacher's whole distribution
# above this vocabulary the teacher's whole distribution is not shipped (and the vLLM teacher does not fetch it)
FULL_VOCAB_LIMIT = 4096
SUPPORTS = ("student", "teacher", "intersection", "union", "symdiff")
STUDENT_SIDE_SUPPORTS = ("student", "intersection", "union", "symdiff")  # need the teacher at the student's ids
WEIGHTS = ("student", "teacher", "uniform")
LOGP_FLOOR = -100.0


def floor_logp(logp: torch.Tensor) -> torch.Tensor:
    return logp.clamp(min=LOGP_FLOOR)


# --- advantage objectives -------------------------------------------------------------------------------

def sampled_token_advantage(student_logp_BR: torch.Tensor, teacher_logp_BR: torch.Tensor) -> torch.Tensor:
    """A_t = log q_t(y_t) - log p_t(y_t): the negative single-sample reverse KL (paper Eq. 3)."""
    return floor_logp(teacher_logp_BR) - floor_logp(student_logp_BR)


def on_support(student_side_BRK: torch.Tensor, teacher_side_BRK: torch.Tensor, support: str) -> torch.Tensor:
    """Values laid out like `topk_support`'s ids: the student-top-k side, the teacher side, or both."""
    if support in ("student", "intersection"):
        return student_side_BRK
    if support == "teacher":
        return teacher_side_BRK
    if support in ("union", "symdiff"):
        return torch.cat([student_side_BRK, teacher_side_BRK], dim=-1)
    raise ValueError(f"unknown top-k support {support!r}; expected one of {SUPPORTS}")


def payload_k(objective) -> int:
    """How many top-k ids and log-probs the engines and teachers ship per position: enough for the objective's k
    and the diagnostics' (`objective.diagnostics_k`)."""
    return max(objective.k, objective.diagnostics_k)


def diagnostics_k(objective) -> int:
    return objective.diagnostics_k or objective.k


def topk_support(student_ids_BRK: torch.Tensor, teacher_ids_BRK: torch.Tensor,
                 support: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The ids each position's advantage is computed on, and which of them count (`valid_BRS`).

    student/teacher: that model's top-k. intersection: student ids also in the teacher's top-k.
    union: student ids, then teacher ids not already there. symdiff: ids in exactly one of the two top-k sets.
    """
    in_teacher_BRK = (student_ids_BRK[..., :, None] == teacher_ids_BRK[..., None, :]).any(-1)
    in_student_BRK = (teacher_ids_BRK[..., :, None] == student_ids_BRK[..., None, :]).any(-1)
    valid_student_side, valid_teacher_side = {
        "student": (torch.ones_like(in_teacher_BRK), None),
        "teacher": (None, torch.ones_like(in_student_BRK)),
        "intersection": (in_teacher_BRK, None),
        "union": (torch.ones_like(in_teacher_BRK), ~in_student_BRK),
        "symdiff": (~in_teacher_BRK, ~in_student_BRK),
    }.get(support, (None, None))
    return (on_support(student_ids_BRK, teacher_ids_BRK, support),
            on_support(valid_student_side, valid_teacher_side, support))


def support_weights(student_logp_BRS: torch.Tensor, teacher_logp_BRS: torch.Tensor, valid_BRS: torch.Tensor,
                    weights: str) -> torch.Tensor:
    """w_t(v) over the valid support: a model's probabilities renormalised on it, or uniform. 0 elsewhere."""
    if weights == "uniform":
        return valid_BRS.float() / valid_BRS.sum(-1, keepdim=True).clamp(min=1)
    logp_BRS = {"student": student_logp_BRS, "teacher": teacher_logp_BRS}.get(weights)
    if logp_BRS is None:
        raise ValueError(f"unknown top-k weights {weights!r}; expected one of {WEIGHTS}")
    masked_BRS = torch.where(valid_BRS, floor_logp(logp_BRS), torch.full_like(logp_BRS, -math.inf))
    weight_BRS = torch.softmax(masked_BRS, dim=-1)
    return torch.where(valid_BRS, weight_BRS, torch.zeros_like(weight_BRS))  # an empty support gives NaN rows


def topk_advantage(student_logp_BRS: torch.Tensor, teacher_logp_BRS: torch.Tensor, valid_BRS: torch.Tensor,
                   weights: str) -> torch.Tensor:
    """A_t(v) = -w_t(v) (log p_t(v) - log q_t(v)) on the valid support, 0 elsewhere (the released code's form)."""
    w_BRS = support_weights(student_logp_BRS, teacher_logp_BRS, valid_BRS, weights)
    return -w_BRS * (floor_logp(student_logp_BRS) - floor_logp(teacher_logp_BRS))


def outcome_advantage_B(correct_B: torch.Tensor) -> torch.Tensor:
    """Verifier reward minus the batch mean (a GRPO-style baseline over the whole step's batch)."""
    reward_B = correct_B.float()
    return reward_B - reward_B.mean()


def pg_loss(new_logp: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """Per-element policy-gradient loss: value -A, gradient -A * grad log pi (A is a constant)."""
    return -advantage.detach() * torch.exp(new_logp - new_logp.detach())


# --- direct objectives ----------------------------------------------------------------------------------

def reverse_kl_BR(student_logp_BRV: torch.Tensor, teacher_logp_BRV: torch.Tensor) -> torch.Tensor:
    """KL(p_t || q_t) over the full vocabulary (paper Eq. 4), differentiable in the student."""
    return (student_logp_BRV.exp() * (student_logp_BRV - floor_logp(teacher_logp_BRV))).sum(-1)


def forward_kl_topk_BR(student_logp_at_teacher_topk_BRK: torch.Tensor,
                       teacher_topk_logp_BRK: torch.Tensor) -> torch.Tensor:
    """sum over the teacher's top-k of q̄ (log q̄ - log p), q̄ the teacher renormalised on its top-k.

    p stays full-vocabulary, so the loss is >= 0 and is 0 only when the student puts all its mass on the
    teacher's top-k in the teacher's proportions.
    """
    q_bar_logp_BRK = torch.log_softmax(floor_logp(teacher_topk_logp_BRK), dim=-1)
    return (q_bar_logp_BRK.exp() * (q_bar_logp_BRK - floor_logp(student_logp_at_teacher_topk_BRK))).sum(-1)


def gjsd_BR(student_logp_BRV: torch.Tensor, teacher_logp_BRV: torch.Tensor, beta: float) -> torch.Tensor:
    """GKD's generalised JSD: beta KL(q || m) + (1-beta) KL(p || m), m = beta q + (1-beta) p.

    The endpoints follow TRL's GKD trainer: beta=0 is the forward KL(q || p), beta=1 the reverse KL(p || q).
    """
    p_logp, q_logp = student_logp_BRV, floor_logp(teacher_logp_BRV)
    if beta == 0.0:
        return (q_logp.exp() * (q_logp - p_logp)).sum(-1)
    if beta == 1.0:
        return reverse_kl_BR(p_logp, q_logp)
    m_logp = torch.logsumexp(torch.stack([q_logp + math.log(beta), p_logp + math.log(1.0 - beta)]), dim=0)
    kl_q_m = (q_logp.exp() * (q_logp - m_logp)).sum(-1)
    kl_p_m = (p_logp.exp() * (p_logp - m_logp)).sum(-1)
    return beta * kl_q_m + (1.0 - beta) * kl_p_m


# --- shared pieces --------------------------------------------------------------------------------------

def truncated_is_weight_BR(learner_logp_BR: torch.Tensor, behaviour_logp_BR: torch.Tensor, cap: float) -> torch.Tensor:
    """min(pi_learner(y) / pi_rollout(y), cap) on the sampled token: corrects stale (or mismatched) rollouts."""
    return torch.exp(learner_logp_BR.detach() - behaviour_logp_BR).clamp(max=cap)


def token_mean(loss_BR: torch.Tensor, mask_BR: torch.Tensor, n_tokens: float) -> torch.Tensor:
    """Sum of per-token losses over valid tokens, divided by `n_tokens` (the global count across ranks).

    Padding is selected away (not multiplied by 0, which would turn a NaN in padding into a NaN loss).
    """
    return torch.where(mask_BR.bool(), loss_BR, torch.zeros_like(loss_BR)).sum() / max(n_tokens, 1.0)
