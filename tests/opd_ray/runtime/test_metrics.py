"""metrics.jsonl after a rewind (a resume or a learner restart): the re-run steps replace the rows they ran
before, in the report and in summary.json, and the file says which rows were superseded."""

from opd_ray.run.report import RunData
from opd_ray.runtime.metrics import REWIND, MetricsSink, current_rows, read_rows


def test_a_rewind_supersedes_the_rows_of_the_steps_that_ran_again(tmp_path):
    sink = MetricsSink(tmp_path)
    sink.log(0, {"eval/hard/greedy": 0.4})
    for step in (1, 2, 3, 4):  # the first process: killed after step 4, its last checkpoint is step 2
        sink.log(step, {"overlap_ratio": 0.5, "loss": float(step)})
    sink.mark_rewind(2, "resumed from step_2")
    for step in (3, 4, 5):
        sink.log(step, {"overlap_ratio": 0.6, "loss": 10.0 + step})
    sink.close()
    rows = read_rows(tmp_path / "metrics.jsonl")
    assert [r for r in rows if REWIND in r] == [{"step": 2, REWIND: 2, "reason": "resumed from step_2"}]
    kept, superseded = current_rows(rows)
    assert superseded == 2 and [r["step"] for r in kept] == [0, 1, 2, 3, 4, 5]
    run = RunData(tmp_path)
    steps, losses = run.series("loss")
    assert steps.tolist() == [1, 2, 3, 4, 5] and losses.tolist() == [1.0, 2.0, 13.0, 14.0, 15.0]


def test_rewinds_compose_and_a_run_without_one_keeps_every_row():
    rows = [{"step": s} for s in (1, 2, 3)] + [{"step": 1, REWIND: 1}, {"step": 2}, {"step": 0, REWIND: 0},
                                               {"step": 1}]
    kept, superseded = current_rows(rows)
    assert [r["step"] for r in kept] == [1] and superseded == 4
    plain = [{"step": s, "loss": s} for s in (1, 2)]
    assert current_rows(plain) == (plain, 0)
