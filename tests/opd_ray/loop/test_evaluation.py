"""Accuracy statistics of the evaluation (opd_ray/loop/evaluation.py) against float64 references."""
import numpy as np
import pytest

from opd_ray.loop.evaluation import binomial_se, gap_recovery, paired_stats


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
