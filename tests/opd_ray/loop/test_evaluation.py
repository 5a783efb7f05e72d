"""Accuracy statistics of the evaluation (opd_ray/loop/evaluation.py) against float64 references."""
import numpy as np
import pytest

from opd_ray.loop.evaluation import advantage_means, binomial_se, depth_decay, gap_recovery, paired_stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_stats_match_a_float64_reference_on_random_outcomes(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    before = (rng.random(n) < 0.3).astype(int)
    after = np.where(rng.random(n) < 0.7, before, (rng.random(n) < 0.6).astype(int))  # correlated, as a run is
    teacher = 0.8
    stats = paired_stats(before.tolist(), after.tolist(), teacher)
    diff = (after - before).astype(np.float64)
    assert stats["n"] == n
    assert stats["student_before"] == pytest.approx(before.mean(), abs=1e-12)
    assert stats["student_after_se"] == pytest.approx(np.sqrt(after.mean() * (1 - after.mean()) / n), rel=1e-12)
    assert stats["paired_diff"] == pytest.approx(diff.mean(), abs=1e-12)
    assert stats["paired_diff_se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(n), rel=1e-12)
    assert (stats["flips_up"], stats["flips_down"]) == (int((diff == 1).sum()), int((diff == -1).sum()))
    assert stats["gap_recovery_se"] == pytest.approx(stats["paired_diff_se"] / (teacher - before.mean()), rel=1e-12)
    # paired beats unpaired when outcomes are correlated: the problems solved both times cancel
    unpaired = np.sqrt(stats["student_before_se"] ** 2 + stats["student_after_se"] ** 2)
    assert stats["paired_diff_se"] < unpaired


def test_paired_stats_refuse_different_problem_counts_and_a_missing_gap_is_nan():
    with pytest.raises(ValueError, match="same problems"):
        paired_stats([1, 0, 1], [1, 0], 0.9)
    assert np.isnan(paired_stats([1, 1], [1, 0], 0.5)["gap_recovery_se"])
    assert np.isnan(gap_recovery(0.5, 0.6, 0.4)) and binomial_se(0.5, 100) == 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_depth_decay_matches_a_float64_reference_on_random_outcomes(seed):
    """Per depth: the mean paired advantage and its SE; the slope of advantage on depth and the SE of the per-problem
    slopes (numpy's least squares, problem by problem); the slipped share and its binomial SE."""
    rng = np.random.default_rng(seed)
    n, depths = int(rng.integers(30, 300)), [0.0, 0.125, 0.25, 0.5, 0.75]
    student = (rng.random(n) < 0.3).astype(float)
    continued = {d: (rng.random(n) < 0.7 - 0.5 * d).astype(float) for d in depths}  # a decaying advantage
    slipped = {d: (rng.random(n) < d).astype(int) for d in depths}
    outcomes = {"student": student.tolist(), "continued": {d: c.tolist() for d, c in continued.items()},
                "slipped": {d: x.tolist() for d, x in slipped.items()}}
    decay = depth_decay(outcomes)
    adv_ND = np.stack([continued[d] - student for d in depths], axis=1)
    design = np.stack([np.ones(len(depths)), depths], axis=1)
    slopes_N = np.linalg.lstsq(design, adv_ND.T, rcond=None)[0][1]  # each problem's own least-squares slope
    assert decay["n"] == n and decay["student_accuracy"] == pytest.approx(student.mean(), abs=1e-12)
    assert decay["slope"] == pytest.approx(np.polyfit(depths, adv_ND.mean(0), 1)[0], abs=1e-12)
    assert decay["slope"] == pytest.approx(slopes_N.mean(), abs=1e-12)
    assert decay["slope_se"] == pytest.approx(slopes_N.std(ddof=1) / np.sqrt(n), rel=1e-9)
    for j, d in enumerate(depths):
        row = decay["depths"][f"{d:g}"]
        assert row["advantage"] == pytest.approx(adv_ND[:, j].mean(), abs=1e-12)
        assert row["advantage_se"] == pytest.approx(adv_ND[:, j].std(ddof=1) / np.sqrt(n), rel=1e-9)
        assert row["slipped_share"] == pytest.approx(slipped[d].mean(), abs=1e-12)
        assert row["slipped_share_se"] == pytest.approx(np.sqrt(slipped[d].mean() * (1 - slipped[d].mean()) / n))
    means = advantage_means(outcomes)
    assert means["depth_0.125"] == pytest.approx(adv_ND[:, 1].mean(), abs=1e-12)
    with pytest.raises(ValueError, match="2 depths"):
        depth_decay({"student": [1, 0], "continued": {0.0: [1, 1]}, "slipped": {}})
