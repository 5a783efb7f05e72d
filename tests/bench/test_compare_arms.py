"""bench/paper/compare_arms.py: gap recovery per arm and per seed group, and paired differences between groups,
against float64 references on random outcomes."""
import importlib.util

import numpy as np
import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("compare_arms", ROOT / "bench" / "paper" / "compare_arms.py")
compare_arms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_arms)


@pytest.mark.parametrize("seed", [0, 1])
def test_groups_average_their_seeds_per_problem_and_differences_are_paired(seed):
    rng = np.random.default_rng(seed)
    n, teacher = 200, 0.7
    before = (rng.random(n) < 0.15).astype(float)
    skill = rng.random(n)  # problems differ in difficulty: the arms' outcomes are correlated through it
    after = {name: (skill < p + rng.normal(0, 0.05, n)).astype(float) for name, p in
             (("a0", 0.45), ("a1", 0.5), ("b0", 0.35))}
    arms = [{"run": name, "group": name[0], "seed": int(name[1]), "before": before.tolist(),
             "after": after[name].tolist(), "teacher": teacher, "easy_after": {}} for name in after]
    out = compare_arms.compare(arms)
    gap = teacher - before.mean()
    a = (after["a0"] + after["a1"]) / 2
    group_a, group_b = out["groups"]["a"], out["groups"]["b"]
    assert group_a["gap_recovery"] == pytest.approx((a - before).mean() / gap, abs=1e-12)
    assert group_a["gap_recovery_se"] == pytest.approx((a - before).std(ddof=1) / np.sqrt(n) / gap, rel=1e-9)
    assert group_a["gap_recovery_per_seed"] == pytest.approx([(after[k] - before).mean() / gap for k in ("a0", "a1")])
    diff = after["b0"] - a
    assert group_b["minus a"]["gap_recovery"] == pytest.approx(diff.mean() / gap, abs=1e-12)
    assert group_b["minus a"]["gap_recovery_se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(n) / gap, rel=1e-9)
    # paired on the same problems: tighter than the two groups' own standard errors combined
    assert group_b["minus a"]["gap_recovery_se"] < np.hypot(group_a["gap_recovery_se"], group_b["gap_recovery_se"])
    assert group_a["minus a"] is None and group_b["seed_spread"] is None


def test_arms_from_different_starting_points_are_refused():
    arm = {"run": "x", "group": "g", "seed": 0, "before": [0.0, 1.0], "after": [1.0, 1.0], "teacher": 1.0,
           "easy_after": {}}
    with pytest.raises(SystemExit, match="same student"):
        compare_arms.compare([arm, arm | {"run": "y", "before": [1.0, 0.0]}])


def test_by_splits_groups_on_config_keys(tmp_path):
    """Runs of one objective and teacher are seeds of one group, unless `--by` names a key they differ in."""
    import json

    def run(name: str, staleness: int, after: list[int]):
        d = tmp_path / name
        d.mkdir()
        (d / "config.yaml").write_text("objective: {kind: topk, k: 16}\nmodel: {teacher: models/t}\nrun: {seed: 0}\n"
                                       f"pipeline: {{max_staleness: {staleness}}}\n")
        (d / "eval_before.json").write_text(json.dumps({"student_correct": {"hard": [0, 0, 0]}}))
        (d / "summary.json").write_text(json.dumps({"primary_set": "hard", "teacher": 1.0, "eval": {},
                                                    "student_after_correct": {"hard": after}}))
        return d

    a, b = run("a", 0, [1, 1, 0]), run("b", 1, [1, 0, 0])
    assert {compare_arms.load_arm(a)["group"], compare_arms.load_arm(b)["group"]} == {"topk-16 teacher=t"}
    by = ("pipeline.max_staleness",)
    out = compare_arms.compare([compare_arms.load_arm(a, by), compare_arms.load_arm(b, by)])
    second = out["groups"]["topk-16 teacher=t pipeline.max_staleness=1"]
    assert second["minus topk-16 teacher=t pipeline.max_staleness=0"]["gap_recovery"] == pytest.approx(-1 / 3)
