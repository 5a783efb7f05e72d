"""The whole job (opd_ray/run/job.py) on the real actors: an engine that dies during an evaluation is replaced as
it would be during a training step, and the run ends with the fault-free run's numbers.

The strict loop (pipeline.max_staleness=0) keeps a replaced engine from holding a batch sampled ahead, so that the
final weights, and every evaluation after them, are those of the fault-free run."""
import json

import pytest

from actors.group import create_actors
from launch import opd_job
from opd_ray.run import job, preflight
from tests.conftest import LAB_CFG

# four whole jobs (a fault-free one, a faulted one, two that reuse the first one's evaluations): the slow tier,
# which CI runs (make test-slow)
pytestmark = pytest.mark.slow


def run_job(out, prefix, *overrides) -> tuple[dict, list[dict]]:
    cfg = preflight.load_config(LAB_CFG, ["run.steps=3", "data.prompts_per_step=8", "data.eval_size=16", "eval.every=1",
                                "eval.avg_k=2", "data.continuation_depths=[0.5]", "pipeline.max_staleness=0",
                                "learner.cpus_per_rank=0.5", f"run.out_dir={out}", *overrides])
    run_dir = opd_job.make_run_dir(cfg)
    summary = job.run(cfg, preflight.prepare(cfg), run_dir, create_actors, name_prefix=prefix)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, rows


def evaluations(rows: list[dict]) -> dict[int, dict]:
    """{step: {eval/<set>/<measure>: accuracy}}, the student's evaluations as metrics.jsonl has them."""
    return {r["step"]: {k: v for k, v in r.items() if k.startswith("eval/") and k.count("/") == 2}
            for r in rows if any(k.startswith("eval/") and k.count("/") == 2 for k in r)}


@pytest.fixture(scope="module")
def clean_out(tmp_path_factory):
    """The fault-free run's run.out_dir: it holds the frozen models' stored evaluations (.frozen_evals)."""
    return tmp_path_factory.mktemp("job_clean")


@pytest.fixture(scope="module")
def fault_free(ray_cluster, clean_out):
    summary, rows = run_job(clean_out, "clean-")
    assert 0 < summary["student_before"] < summary["teacher"]  # numbers that a wrong evaluation would change
    stats = summary["primary_stats"]  # per-problem outcomes before and after, paired on the same 16 problems
    assert stats["n"] == 16 and stats["student_before"] == summary["student_before"]
    assert stats["student_after"] == summary["student_after"] and stats["teacher"] == summary["teacher"]
    assert stats["paired_diff"] == pytest.approx(summary["student_after"] - summary["student_before"])
    assert summary["paired_stats"].keys() == summary["eval"].keys()  # every set's, the primary one among them
    assert summary["paired_stats"][summary["primary_set"]] == stats
    for name, paired in summary["paired_stats"].items():
        assert paired["student_after"] == summary["eval"][name]["student_after"]["greedy"]
        after = summary["student_after_correct"][name]
        assert sum(after) / len(after) == paired["student_after"]
    return summary, rows


# engine 0 dies in the evaluation before training, in the periodic one after step 1, and in the one after training;
# each death in the next replacement (gen), so that one faulted run covers all three
EVAL_DEATHS = {0: "before training", 1: "periodic, after step 1", 3: "after training"}


def test_an_engine_killed_in_each_evaluation_is_replaced_and_the_numbers_are_the_fault_free_ones(
        fault_free, tmp_path, capsys):
    fault = ";".join(f"rollout_eval:engine=0,gen={gen},version={version},action=exit"
                     for gen, version in enumerate(EVAL_DEATHS))
    summary, rows = run_job(tmp_path, "evalkill-", f"run.fault={fault}")
    out = capsys.readouterr().out
    assert out.count("evalkill-rollout-0 died") == len(EVAL_DEATHS), out[-3000:]  # each fault fired
    clean_summary, clean_rows = fault_free
    assert evaluations(rows) == evaluations(clean_rows)
    for key in ("student_before", "student_after", "teacher", "gap_recovery", "eval", "continuation_after",
                "trajectories"):
        assert json.dumps(summary[key]) == json.dumps(clean_summary[key]), key  # NaN == NaN (no gap to close)
    restarts = [r["fleet/restarts_rollout"] for r in rows if "fleet/restarts_rollout" in r]
    assert restarts[-1] == len(EVAL_DEATHS)  # counted like failures in a training step (pipeline.max_actor_restarts)


def test_a_second_run_reuses_the_frozen_models_evaluations(fault_free, clean_out, capsys):
    """Same out_dir as the fault-free run, same models, sets and decoding: the teacher's and the starting student's
    evaluations are read back, not decoded again. Proof: the engine raises if asked to evaluate at version 0 (before
    training), and the run still finishes, with the first run's numbers."""
    capsys.readouterr()
    second, _ = run_job(clean_out, "reuse2-", "run.fault=rollout_eval:engine=0,version=0,action=raise")
    assert "[opd] reused stored evaluations of the frozen models:" in capsys.readouterr().out
    for key in ("student_before", "teacher", "continuation_before", "student_after", "gap_recovery", "primary_stats"):
        assert json.dumps(second[key]) == json.dumps(fault_free[0][key]), key
    with pytest.raises(Exception, match="injected fault at rollout_eval"):  # and without reuse it would have run
        run_job(clean_out, "reuse3-", "run.fault=rollout_eval:engine=0,version=0,action=raise",
                "eval.reuse_frozen=false")
