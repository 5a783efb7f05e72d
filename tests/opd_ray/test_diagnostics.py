"""Overlap metrics against a brute-force reference with Python sets."""
import math

import numpy as np
import torch

from opd_ray import diagnostics as diag


def topk(logp, k):
    ids = np.argsort(-logp, axis=-1)[..., :k]
    return ids.astype(np.int32), np.take_along_axis(logp, ids, -1)


def test_overlap_ratio_and_mass_match_sets():
    rng = np.random.default_rng(0)
    B, R, V, K = 4, 6, 12, 4
    p = torch.log_softmax(torch.tensor(rng.normal(size=(B, R, V)) * 2), -1).numpy()
    q = torch.log_softmax(torch.tensor(rng.normal(size=(B, R, V)) * 2), -1).numpy()
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
