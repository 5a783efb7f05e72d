"""Overlap metrics against a brute-force reference with Python sets."""
import math

import numpy as np
import torch

from opd_ray.objective import diagnostics as diag


def random_logp(rng, shape):
    return torch.log_softmax(torch.tensor(rng.normal(size=shape) * 2), -1).numpy()


def topk(logp, k):
    ids = np.argsort(-logp, axis=-1)[..., :k]
    return ids.astype(np.int32), np.take_along_axis(logp, ids, -1)


def test_overlap_ratio_and_mass_match_sets():
    rng = np.random.default_rng(0)
    B, R, V, K = 4, 6, 12, 4
    p, q = random_logp(rng, (B, R, V)), random_logp(rng, (B, R, V))
    sp_ids, sp_lp = topk(p, K)
    sq_ids, sq_lp = topk(q, K)
    ratio = diag.overlap_ratio_BR(sp_ids, sq_ids)
    mass_p = diag.overlap_mass_BR(sp_ids, sp_lp, sq_ids)
    mass_q = diag.overlap_mass_BR(sq_ids, sq_lp, sp_ids)
    for b in range(B):
        for r in range(R):
            shared = set(sp_ids[b, r].tolist()) & set(sq_ids[b, r].tolist())
            assert ratio[b, r] == len(shared) / K
            assert math.isclose(mass_p[b, r], sum(math.exp(p[b, r, v]) for v in shared), rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(mass_q[b, r], sum(math.exp(q[b, r, v]) for v in shared), rel_tol=1e-9, abs_tol=1e-12)


def test_identical_models_overlap_fully():
    logp = np.log(np.full((1, 2, 8), 1 / 8))
    ids = np.tile(np.arange(4, dtype=np.int32), (1, 2, 1))
    assert np.all(diag.overlap_ratio_BR(ids, ids) == 1.0)
    assert np.allclose(diag.overlap_mass_BR(ids, logp[..., :4], ids), 0.5)


def test_disjoint_supports_have_zero_overlap():
    a = np.array([[[0, 1]]], dtype=np.int32)
    b = np.array([[[2, 3]]], dtype=np.int32)
    assert diag.overlap_ratio_BR(a, b)[0, 0] == 0
    assert diag.overlap_mass_BR(a, np.zeros((1, 1, 2)), b)[0, 0] == 0


def test_entropy_matches_reference():
    logp = torch.log_softmax(torch.randn(3, 5, dtype=torch.float64), -1)
    want = [-sum(math.exp(x) * x for x in row) for row in logp.tolist()]
    assert np.allclose(diag.entropy_BR(logp).numpy(), want, atol=1e-12)


def test_entropy_ignores_zero_probability_tokens():
    logp = torch.tensor([[math.log(0.5), math.log(0.5), -math.inf]], dtype=torch.float64)
    assert math.isclose(diag.entropy_BR(logp).item(), math.log(2), rel_tol=1e-12)


def test_overlap_token_advantage_matches_sets():
    """Eq. 7 with p̄, q̄ renormalised on S_p ∩ S_q; positions without a shared token have no value."""
    rng = np.random.default_rng(1)
    B, R, V, K = 3, 7, 10, 3
    p, q = random_logp(rng, (B, R, V)), random_logp(rng, (B, R, V))
    sp_ids, sp_lp = topk(p, K)
    sq_ids, _ = topk(q, K)
    q_at_sp = np.take_along_axis(q, sp_ids, -1)
    value, has = diag.overlap_token_advantage_BR(sp_ids, sp_lp, sq_ids, q_at_sp)
    seen_empty = False
    for b in range(B):
        for r in range(R):
            shared = set(sp_ids[b, r].tolist()) & set(sq_ids[b, r].tolist())
            assert has[b, r] == bool(shared)
            if not shared:
                seen_empty = True
                continue
            zp = sum(math.exp(p[b, r, v]) for v in shared)
            zq = sum(math.exp(q[b, r, v]) for v in shared)
            terms = [math.exp(p[b, r, v]) / zp * (math.log(math.exp(q[b, r, v]) / zq) - math.log(math.exp(p[b, r, v]) / zp))
                     for v in shared]
            assert math.isclose(value[b, r], sum(terms) / len(shared), rel_tol=1e-9, abs_tol=1e-12)
    assert seen_empty  # the random case covers positions with an empty intersection


def test_p_minus_q_at_the_largest_advantage():
    rng = np.random.default_rng(2)
    p, q = random_logp(rng, (2, 4, 8)), random_logp(rng, (2, 4, 8))
    ids, p_top = topk(p, 3)
    q_at = np.take_along_axis(q, ids, -1)
    got = diag.p_minus_q_at_max_advantage_BR(p_top, q_at)
    for b in range(2):
        for r in range(4):
            z = sum(math.exp(x) for x in p_top[b, r])
            adv = [abs(math.exp(p_top[b, r, j]) / z * (p_top[b, r, j] - q_at[b, r, j])) for j in range(3)]
            j = max(range(3), key=lambda i: adv[i])
            assert math.isclose(got[b, r], math.exp(p_top[b, r, j]) - math.exp(q_at[b, r, j]), abs_tol=1e-12)


def test_auroc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(3)
    for trial in range(20):
        scores = rng.integers(0, 5, size=30).astype(float)  # many ties
        labels = rng.random(30) > 0.4
        pos, neg = scores[labels], scores[~labels]
        want = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (len(pos) * len(neg))
        assert math.isclose(diag.auroc(scores, labels), want, rel_tol=1e-12)
    assert math.isnan(diag.auroc(np.array([0.1, 0.2]), np.array([True, True])))
    assert diag.auroc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0


def test_sequence_mean_reward_averages_valid_tokens():
    s = np.array([[-1.0, -2.0, -9.0]])
    t = np.array([[-0.5, -1.0, 5.0]])
    mask = np.array([[True, True, False]])
    assert diag.sequence_mean_reward_B(s, t, mask)[0] == 0.75


def test_sums_by_entropy_band_match_a_loop_over_positions():
    """float64 reference: each valid position counted once, in the band [lo, hi) its entropy falls in."""
    rng = np.random.default_rng(3)
    values_BR, mask_BR = rng.random((5, 40)), rng.random((5, 40)) < 0.8
    entropy_BR = rng.choice([0.0, 0.05, 0.1, 0.5, 1.0, 3.0], size=(5, 40)) + rng.random((5, 40)) * 0.01
    entropy_BR[0, :3] = [0.1, 1.0, 0.0999]  # the edges: 0.1 and 1.0 open the next band
    got = diag.sums_by_entropy_band(values_BR, entropy_BR, mask_BR)
    for band, (lo, hi) in diag.ENTROPY_BANDS.items():
        picked = [float(v) for v, h, m in zip(values_BR.ravel(), entropy_BR.ravel(), mask_BR.ravel())
                  if m and lo <= h < hi]
        assert got[band][1] == len(picked) > 0
        assert math.isclose(got[band][0], math.fsum(picked), rel_tol=1e-12)
    assert sum(count for _, count in got.values()) == mask_BR.sum()
    empty = diag.sums_by_entropy_band(values_BR, np.full_like(entropy_BR, 5.0), mask_BR)
    assert empty["lt0.1"] == (0.0, 0.0) and empty["ge1"][1] == mask_BR.sum()
