"""The objective family against float64 references written with loops and Python sets (not the code under
test), through the learner's real wiring (TeacherPayload -> TrajectoryBatch -> ShardTensors -> token_losses).

Each case checks the loss value and its gradient with respect to the student's logits. Advantage objectives'
reference gradient is the REINFORCE form sum_v -A(v) (e_v - p); direct objectives use the analytic gradient
or finite differences.
"""
import math

import numpy as np
import pytest
import torch

from opd_ray.config.schema import ObjectiveConfig
from opd_ray.engines.hf_teacher import TeacherPayload
from opd_ray.learner.opd_loss import ShardTensors, token_losses
from opd_ray.objective import losses as obj
from opd_ray.trajectory.batch import TrajectoryBatch

B, R, V, K = 3, 5, 9, 4
TOL = 2e-5  # the teacher's payload travels as float32 (the learner's precision); references are float64


def log_softmax(x):
    return x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)


def make_case(seed, k=K, teacher_logits=None, full_vocab=False, dtype="float32"):
    """Random student logits (a float64 leaf), teacher log-probs, a scored batch built by the real payload code."""
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(size=(B, R, V)) * 2, requires_grad=True)
    q = log_softmax(teacher_logits if teacher_logits is not None else rng.normal(size=(B, R, V)) * 2)
    p = log_softmax(logits.detach().numpy())
    mask = rng.random((B, R)) > 0.3
    mask[0, 0] = True
    tok = rng.integers(0, V, size=(B, R))
    s_ids = np.argsort(-p, axis=-1, kind="stable")[..., :min(k, V)]
    batch = TrajectoryBatch(
        traj_ids=[(0, b, 0) for b in range(B)], policy_version=0,
        prompt_ids_BP=np.zeros((B, 1), np.int32), prompt_mask_BP=np.ones((B, 1), bool),
        response_ids_BR=tok.astype(np.int32), response_mask_BR=mask,
        student_logp_BR=np.take_along_axis(p, tok[..., None], -1)[..., 0].astype(np.float32),
        student_topk_ids_BRK=s_ids.astype(np.int32),
        student_topk_logp_BRK=np.take_along_axis(p, s_ids, -1).astype(np.float32),
        outcome_correct_B=np.array([True, False, True]))
    fields = TeacherPayload(k, dtype, full_vocab).fields(torch.tensor(q), batch)
    batch = batch.with_teacher(**fields, outcome_advantage_B=np.array([1 / 3, -2 / 3, 1 / 3]))
    return logits, p, q, mask, tok, batch


def run(logits, batch, **objective):
    logp = torch.log_softmax(logits, -1)
    loss_BR = token_losses(logp, ShardTensors(batch, "cpu"), ObjectiveConfig(k=K, **objective))
    mask = torch.tensor(batch.response_mask_BR)
    loss = obj.token_mean(loss_BR, mask, float(mask.sum()))
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.item(), grad.numpy()


def ref_pg(p, mask, advantages):
    """Loss -sum A / N and gradient of sum_t sum_v -A_t(v) log p_t(v) / N, from {(b, r): {v: A}}."""
    n = mask.sum()
    loss, grad = 0.0, np.zeros_like(p)
    for (b, r), adv in advantages.items():
        if not mask[b, r]:
            continue
        probs = np.exp(p[b, r])
        for v, a in adv.items():
            loss += -a / n
            onehot = np.zeros(V)
            onehot[v] = 1.0
            grad[b, r] += -a * (onehot - probs) / n
    return loss, grad


def topk_set(logp_row, k):
    return set(sorted(range(len(logp_row)), key=lambda v: (-logp_row[v], v))[:k])


SUPPORT_SETS = {
    "student": lambda sp, sq: sp, "teacher": lambda sp, sq: sq, "intersection": lambda sp, sq: sp & sq,
    "union": lambda sp, sq: sp | sq, "symdiff": lambda sp, sq: sp ^ sq,
}


def ref_topk_advantages(p, q, support, weights, k=K):
    out = {}
    for b in range(B):
        for r in range(R):
            S = SUPPORT_SETS[support](topk_set(p[b, r], k), topk_set(q[b, r], k))
            if not S:
                out[(b, r)] = {}
                continue
            base = {"student": p[b, r], "teacher": q[b, r], "uniform": np.zeros(V)}[weights]
            z = sum(math.exp(base[v]) for v in S)
            out[(b, r)] = {v: -(math.exp(base[v]) / z) * (p[b, r, v] - q[b, r, v]) for v in S}
    return out


def test_sampled_token_matches_reference():
    logits, p, q, mask, tok, batch = make_case(0)
    adv = {(b, r): {tok[b, r]: q[b, r, tok[b, r]] - p[b, r, tok[b, r]]} for b in range(B) for r in range(R)}
    want_loss, want_grad = ref_pg(p, mask, adv)
    loss, grad = run(logits, batch, kind="sampled_token")
    assert abs(loss - want_loss) < TOL and np.abs(grad - want_grad).max() < TOL


@pytest.mark.parametrize("support", list(SUPPORT_SETS))
@pytest.mark.parametrize("weights", ["student", "teacher", "uniform"])
def test_topk_supports_and_weights_match_reference(support, weights):
    logits, p, q, mask, _, batch = make_case(1)
    want_loss, want_grad = ref_pg(p, mask, ref_topk_advantages(p, q, support, weights))
    loss, grad = run(logits, batch, kind="topk", support=support, weights=weights)
    assert abs(loss - want_loss) < TOL and np.abs(grad - want_grad).max() < TOL


def test_k_larger_than_vocab_uses_the_whole_vocabulary():
    logits, p, q, mask, _, batch = make_case(2, k=V + 7)
    assert batch.student_topk_ids_BRK.shape[-1] == V and batch.teacher_topk_ids_BRK.shape[-1] == V
    want_loss, want_grad = ref_pg(p, mask, ref_topk_advantages(p, q, "union", "student", k=V))
    loss, grad = run(logits, batch, kind="topk", support="union")
    assert abs(loss - want_loss) < TOL and np.abs(grad - want_grad).max() < TOL


def test_empty_intersection_gives_zero_loss_and_gradient():
    """Teacher top-k disjoint from the student's: the intersection objective has nothing to say (no NaN)."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(B, R, V))
    p = log_softmax(logits * 2)
    teacher_logits = np.full((B, R, V), -5.0)
    for b in range(B):
        for r in range(R):  # the teacher prefers exactly the student's bottom-k tokens
            teacher_logits[b, r, np.argsort(p[b, r])[:K]] = 5.0
    case = make_case(3, teacher_logits=teacher_logits)
    loss, grad = run(case[0], case[-1], kind="topk", support="intersection")
    assert loss == 0.0 and np.all(grad == 0.0)


def test_all_tokens_masked_gives_zero_loss_not_nan():
    logits, _, _, _, _, batch = make_case(4)
    batch.response_mask_BR[:] = False
    loss, grad = run(logits, batch, kind="topk")
    assert loss == 0.0 and np.all(grad == 0.0)


def test_minus_inf_teacher_logprobs_give_a_finite_floored_penalty():
    rng = np.random.default_rng(5)
    teacher_logits = rng.normal(size=(B, R, V))
    teacher_logits[..., 0] = -np.inf  # the teacher rules token 0 out everywhere
    logits, p, q, mask, tok, batch = make_case(5, teacher_logits=teacher_logits)
    assert np.isneginf(q[..., 0]).all()
    q_floored = np.maximum(q, obj.LOGP_FLOOR)
    for kind in ("sampled_token", "topk", "full_reverse_kl"):
        case = make_case(5, teacher_logits=teacher_logits, full_vocab=True)
        loss, grad = run(case[0], case[-1], kind=kind, support="union")
        assert math.isfinite(loss) and np.isfinite(grad).all(), kind
    want, _ = ref_pg(p, mask, ref_topk_advantages(p, q_floored, "union", "student"))
    assert abs(run(logits, batch, kind="topk", support="union")[0] - want) < TOL


def ref_kl(a, b):
    return sum(math.exp(a[v]) * (a[v] - b[v]) for v in range(len(a)) if math.exp(a[v]) > 0)


def test_full_reverse_kl_matches_reference():
    logits, p, q, mask, _, batch = make_case(6, full_vocab=True)
    n = mask.sum()
    want_loss = sum(ref_kl(p[b, r], q[b, r]) for b, r in zip(*np.nonzero(mask))) / n
    want_grad = np.zeros_like(p)
    for b, r in zip(*np.nonzero(mask)):  # d KL(p||q) / d logit_j = p_j (log p_j - log q_j - KL)
        kl = ref_kl(p[b, r], q[b, r])
        want_grad[b, r] = np.exp(p[b, r]) * (p[b, r] - q[b, r] - kl) / n
    loss, grad = run(logits, batch, kind="full_reverse_kl")
    assert abs(loss - want_loss) < TOL and np.abs(grad - want_grad).max() < TOL


def test_forward_kl_on_teacher_topk_matches_reference():
    logits, p, q, mask, _, batch = make_case(7)
    n, want_loss, want_grad = mask.sum(), 0.0, np.zeros_like(p)
    for b, r in zip(*np.nonzero(mask)):
        S = topk_set(q[b, r], K)
        z = sum(math.exp(q[b, r, v]) for v in S)
        for v in S:
            q_bar = math.exp(q[b, r, v]) / z
            want_loss += q_bar * (math.log(q_bar) - p[b, r, v]) / n
            want_grad[b, r, v] -= q_bar / n
        want_grad[b, r] += np.exp(p[b, r]) / n  # d/dlogits of -sum q̄ log p = p - q̄
    loss, grad = run(logits, batch, kind="forward_kl")
    assert abs(loss - want_loss) < TOL and np.abs(grad - want_grad).max() < TOL


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_generalised_jsd_matches_reference_and_finite_differences(beta):
    logits, p, q, mask, _, batch = make_case(8, full_vocab=True)
    n = mask.sum()

    def ref_loss(p_arr):
        total = 0.0
        for b, r in zip(*np.nonzero(mask)):
            pp, qq = np.exp(p_arr[b, r]), np.exp(q[b, r])
            if beta == 0.0:
                total += sum(qq[v] * math.log(qq[v] / pp[v]) for v in range(V))
            elif beta == 1.0:
                total += sum(pp[v] * math.log(pp[v] / qq[v]) for v in range(V))
            else:
                m = beta * qq + (1 - beta) * pp
                total += beta * sum(qq[v] * math.log(qq[v] / m[v]) for v in range(V))
                total += (1 - beta) * sum(pp[v] * math.log(pp[v] / m[v]) for v in range(V))
        return total / n

    loss, grad = run(logits, batch, kind="gjsd", beta=beta)
    assert abs(loss - ref_loss(p)) < TOL
    base = logits.detach().numpy()
    for b, r, v in [(0, 0, 0), (0, 0, 3), (1, 2, 5)]:  # central finite differences on a few logits
        bumped = [base.copy(), base.copy()]
        bumped[0][b, r, v] += 1e-5
        bumped[1][b, r, v] -= 1e-5
        fd = (ref_loss(log_softmax(bumped[0])) - ref_loss(log_softmax(bumped[1]))) / 2e-5
        assert abs(grad[b, r, v] - fd) < 1e-4


def test_outcome_reward_is_importance_weighted_and_clamped():
    """Outcome mix, truncated IS and the loss clamp, each against its loop reference."""
    logits, p, q, mask, tok, batch = make_case(9)
    batch.student_logp_BR = batch.student_logp_BR - np.float32(0.5) * (np.arange(R) % 2)  # stale rollout
    lam, cap, clamp = 0.5, 1.3, 0.8
    outcome = [1 / 3, -2 / 3, 1 / 3]
    want, n = 0.0, mask.sum()
    for b, r in zip(*np.nonzero(mask)):
        y = tok[b, r]
        per_token = -(q[b, r, y] - p[b, r, y]) - lam * outcome[b]
        per_token *= min(math.exp(p[b, r, y] - batch.student_logp_BR[b, r]), cap)
        want += min(max(per_token, -clamp), clamp) / n
    loss, grad = run(logits, batch, kind="sampled_token", outcome_weight=lam, is_cap=cap, loss_clamp=clamp)
    assert abs(loss - want) < TOL and np.isfinite(grad).all()


def test_float16_payload_changes_the_objective_by_at_most_its_rounding():
    """The compact payload: fp16 log-probs (relative error <= 2^-11) move the token-mean sampled-token loss by at
    most mean |log q| * 2^-11 and top-k by the same order; measured here ~1e-4 of the loss's scale."""
    teacher_logits = np.random.default_rng(10).normal(size=(B, R, V)) * 3
    case32 = make_case(10, teacher_logits=teacher_logits, dtype="float32")
    case16 = make_case(10, teacher_logits=teacher_logits, dtype="float16")
    q, mask, tok = case32[2], case32[3], case32[4]
    bound = np.abs(np.take_along_axis(q, tok[..., None], -1)[..., 0][mask]).mean() * 2.0 ** -11
    for kind in ("sampled_token", "topk"):
        l32, g32 = run(case32[0], case32[-1], kind=kind)
        l16, g16 = run(case16[0], case16[-1], kind=kind)
        assert abs(l32 - l16) <= max(bound, np.abs(q[mask]).max() * 2.0 ** -11), kind
        assert np.abs(g32 - g16).max() <= np.abs(q[mask]).max() * 2.0 ** -11
    per_position = {dt: (2 * K + 2) * size + 4 * K for dt, size in ((16, 2), (32, 4))}  # log-probs + int32 ids
    for dt, case in ((16, case16), (32, case32)):
        assert case[-1].payload_bytes_per_token() == per_position[dt] * B * R / mask.sum()


def test_zero_advantage_when_teacher_equals_student():
    lp = torch.log_softmax(torch.randn(2, 3, 4, dtype=torch.float64), -1)
    ids = torch.arange(4).expand(2, 3, 4)
    for weights in ("student", "teacher", "uniform"):
        assert torch.all(obj.topk_advantage(lp, lp, torch.ones_like(ids, dtype=torch.bool), weights) == 0)
    assert torch.all(obj.sampled_token_advantage(lp[..., 0], lp[..., 0]) == 0)


def test_nan_in_padding_does_not_poison_the_loss():
    loss = torch.tensor([[1.0, float("nan")]])
    assert obj.token_mean(loss, torch.tensor([[1.0, 0.0]]), 1.0).item() == 1.0
