"""Evaluations of frozen models are stored under a key of everything they depend on, and reused."""
import json

from opd_ray.loop import frozen_evals
from opd_ray.loop.frozen_evals import FrozenEvals
from opd_ray.models.loading import load_tokenizer
from opd_ray.run.preflight import build_task, load_config
from tests.conftest import LAB_CFG


def student_key(*overrides):
    cfg = load_config(LAB_CFG, ["data.eval_size=8", *overrides])
    task = build_task(cfg, load_tokenizer(cfg.model.student))
    return FrozenEvals.key(role="student", **frozen_evals.model_parts(cfg, "student"),
                           **frozen_evals.decoding(cfg, task), sets=frozen_evals.sets_parts(task.eval_sets))


def test_the_key_changes_with_each_thing_an_evaluation_depends_on():
    base = student_key()
    assert student_key() == base
    for override in ("run.seed=1", "eval.avg_k=2", "eval.temperature=0.5", "rollout.max_new_tokens=40",
                     "data.eval_size=9", "model.student=opd_ray/lab/artifacts/teacher", "learner.lr=1e-3"):
        assert (student_key(override) == base) == (override == "learner.lr=1e-3"), override  # lr: not a decoding setting


def test_a_stored_evaluation_is_reused_and_reuse_false_measures_again(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"hard": {"greedy": 0.5}}

    assert FrozenEvals(tmp_path).measure("k", compute) == {"hard": {"greedy": 0.5}} and len(calls) == 1
    again = FrozenEvals(tmp_path)
    assert again.measure("k", compute) == {"hard": {"greedy": 0.5}} and len(calls) == 1
    assert again.saved_s == json.loads((tmp_path / "k.json").read_text())["seconds"]
    assert FrozenEvals(tmp_path, enabled=False).measure("k", compute) and len(calls) == 2
    assert FrozenEvals(tmp_path).measure("other", compute) and len(calls) == 3
