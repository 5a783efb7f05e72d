"""The OPD objectives against straightforward float64 references written with loops (not the code under test)."""
import math

import numpy as np
import torch

from opd_ray import objectives as obj

CLIP_LO, CLIP_HI, DUAL = 0.2, 0.25, 3.0


def ref_clipped(new, old, adv):
    ratio = math.exp(new - old)
    loss = max(-adv * ratio, -adv * min(max(ratio, 1 - CLIP_LO), 1 + CLIP_HI))
    return min(loss, -adv * DUAL) if adv < 0 else loss


def random_case(rng, B=3, R=5, K=4, V=9):
    logits_old = rng.normal(size=(B, R, V)) * 2
    old = logits_old - np.log(np.exp(logits_old).sum(-1, keepdims=True))
    new = old + rng.normal(size=old.shape) * 0.3  # ratios inside and outside the clip range
    teacher_logits = rng.normal(size=(B, R, V)) * 2
    teacher = teacher_logits - np.log(np.exp(teacher_logits).sum(-1, keepdims=True))
    mask = rng.random((B, R)) > 0.3
    return old, new, teacher, mask


def test_sampled_token_loss_matches_reference():
    rng = np.random.default_rng(0)
    old, new, teacher, mask = random_case(rng)
    tok = rng.integers(0, old.shape[-1], size=mask.shape)
    pick = lambda a: np.take_along_axis(a, tok[..., None], -1)[..., 0]  # noqa: E731
    old_t, new_t, te_t = pick(old), pick(new), pick(teacher)
    adv = obj.sampled_token_advantage(torch.tensor(old_t), torch.tensor(te_t))
    loss_BR = obj.ppo_clipped_loss(torch.tensor(new_t), torch.tensor(old_t), adv, CLIP_LO, CLIP_HI, DUAL)
    got = obj.token_mean(loss_BR, torch.tensor(mask, dtype=torch.float64), float(mask.sum()))
    total = 0.0
    for b in range(mask.shape[0]):
        for r in range(mask.shape[1]):
            if mask[b, r]:
                total += ref_clipped(new_t[b, r], old_t[b, r], te_t[b, r] - old_t[b, r])
    assert abs(got.item() - total / mask.sum()) < 1e-12


def test_student_topk_loss_matches_reference():
    rng = np.random.default_rng(1)
    old, new, teacher, mask = random_case(rng, K=4)
    K = 4
    topk_ids = np.argsort(-old, axis=-1)[..., :K]
    g = lambda a: np.take_along_axis(a, topk_ids, -1)  # noqa: E731
    adv = obj.student_topk_advantage(torch.tensor(g(old)), torch.tensor(g(teacher)))
    loss_BRK = obj.ppo_clipped_loss(torch.tensor(g(new)), torch.tensor(g(old)), adv, CLIP_LO, CLIP_HI, DUAL)
    got = obj.token_mean(loss_BRK.sum(-1), torch.tensor(mask, dtype=torch.float64), float(mask.sum()))
    total = 0.0
    for b, r in zip(*np.nonzero(mask)):
        ids = sorted(range(old.shape[-1]), key=lambda v: -old[b, r, v])[:K]
        z = sum(math.exp(old[b, r, v]) for v in ids)
        for v in ids:
            w = math.exp(old[b, r, v]) / z  # student probability renormalised on its top-k
            a = -w * (old[b, r, v] - teacher[b, r, v])
            total += ref_clipped(new[b, r, v], old[b, r, v], a)
    assert abs(got.item() - total / mask.sum()) < 1e-12


def test_gradient_at_ratio_one_is_reinforce():
    """With new == old the surrogate's gradient is -A * grad log p (the paper's effective REINFORCE update)."""
    logp = torch.tensor([-0.5, -1.5, -2.0], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    obj.ppo_clipped_loss(logp, logp.detach(), adv, 0.2, 0.2, 3.0).sum().backward()
    assert torch.allclose(logp.grad, -adv)


def test_zero_advantage_when_teacher_equals_student():
    lp = torch.log_softmax(torch.randn(2, 3, 4, dtype=torch.float64), -1)
    assert torch.all(obj.student_topk_advantage(lp, lp) == 0)
    assert torch.all(obj.sampled_token_advantage(lp[..., 0], lp[..., 0]) == 0)


def test_all_tokens_masked_gives_zero_loss_not_nan():
    loss = obj.token_mean(torch.ones(2, 3), torch.zeros(2, 3), 0.0)
    assert loss.item() == 0.0


def test_nan_in_padding_does_not_poison_the_loss():
    loss = torch.tensor([[1.0, float("nan")]])
    assert obj.token_mean(loss, torch.tensor([[1.0, 0.0]]), 1.0).item() == 1.0
