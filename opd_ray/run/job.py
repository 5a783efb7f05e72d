"""The outline of one OPD run: check everything on the driver, evaluate before, train, evaluate after, write
the summary. `launch/opd_job.py` parses arguments, connects to Ray and calls these two functions:

    prepared = prepare(cfg)                     # models, contract, task: errors here, before any actor
    summary = run(cfg, prepared, run_dir, ...)  # actors, evaluation, training, summary.json

Like the controller, this module receives actor factories and never imports `actors/`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from opd_ray.config import teachers
from opd_ray.config.schema import OPDConfig
from opd_ray.data import verifiers
from opd_ray.data.prompt_selection import EntropyCollapseWatch
from opd_ray.data.task import Task
from opd_ray.data.verifiers import get_verifier
from opd_ray.loop import controller, fleet, frozen_evals, resume, teacher_accounting
from opd_ray.loop.checkpoint import CheckpointDir
from opd_ray.loop.evaluation import (evaluate, gap_recoveries, greedy_texts, paired_stats,
                                     teacher_continuation_advantage)
from opd_ray.loop.frozen_evals import FrozenEvals
from opd_ray.loop.prompt_stream import PromptStream
from opd_ray.objective.losses import diagnostics_k
from opd_ray.run import cold_start
from opd_ray.run.preflight import Prepared
from opd_ray.runtime.metrics import MetricsSink, current_rows, read_rows
from opd_ray.runtime.remote import get


def guarded(actors, role: str, state: controller.LoopState, cfg: OPDConfig) -> fleet.GuardedServers:
    """The up-to-date engines (role "rollout") or the teachers, for an evaluation under the fleet's protection:
    one that dies or hangs is replaced as during a training step, and counted in the same `state.health`."""
    return fleet.GuardedServers(actors, role, state.policy_version, state.health, cfg, state.stale_engines)


def continuation_eval(actors, prepared: Prepared, state: controller.LoopState, cfg: OPDConfig) -> dict[str, float]:
    """Teacher-continuation advantage on the primary set, per prefix depth (data.continuation_depths)."""
    if not cfg.data.continuation_depths:
        return {}
    timeout, task = cfg.pipeline.rollout_timeout_s, prepared.task

    def greedy(role: str):
        return lambda ids: greedy_texts(guarded(actors, role, state, cfg), ids, timeout)
    teacher = teachers.role(task.teacher_of_set(task.primary, teachers.default_teacher(cfg)))
    return teacher_continuation_advantage(greedy("rollout"), greedy(teacher), task.eval_sets[task.primary],
                                          prepared.tokenizer, get_verifier(task.verifier), cfg.data.continuation_depths)


def evaluate_student(actors, prepared: Prepared, state: controller.LoopState, cfg: OPDConfig, desc: str,
                     outcomes: dict | None = None) -> dict:
    return evaluate(guarded(actors, "rollout", state, cfg), prepared.task.eval_sets,
                    get_verifier(prepared.task.verifier), cfg, desc=desc, outcomes=outcomes)


def student_with_outcomes(actors, prepared: Prepared, state: controller.LoopState, cfg: OPDConfig, desc: str) -> dict:
    """{"results": evaluate's results, "greedy_correct": {set: [0/1 per problem]}} (paired statistics need both)."""
    outcomes = {}
    return {"results": evaluate_student(actors, prepared, state, cfg, desc, outcomes), "greedy_correct": outcomes}


def evaluate_before(actors, prepared: Prepared, state: controller.LoopState, cfg: OPDConfig, run_dir: Path) -> dict:
    """Teacher and initial-student accuracy, measured once per run directory (a resume reuses them), and stored for
    other runs of the same frozen models, sets and decoding (`loop/frozen_evals.py`; eval.reuse_frozen)."""
    cache = run_dir / "eval_before.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    task, frozen = prepared.task, FrozenEvals(Path(cfg.run.out_dir) / ".frozen_evals", cfg.eval.reuse_frozen)
    common = frozen_evals.decoding(cfg, task)
    student = {"role": "student", **frozen_evals.model_parts(cfg, "student"), **common}
    primary_teacher = teachers.view(cfg, task.teacher_of_set(task.primary, teachers.default_teacher(cfg)))
    continuation = {"role": "continuation", "student": student, "depths": list(cfg.data.continuation_depths),
                    "teacher": frozen_evals.model_parts(primary_teacher, "teacher"),
                    "set": frozen_evals.sets_parts({task.primary: task.eval_sets[task.primary]})}
    student = frozen.measure(frozen.key(**student, sets=frozen_evals.sets_parts(task.eval_sets)),
                             lambda: student_with_outcomes(actors, prepared, state, cfg, "eval student"))
    result = {"teacher": evaluate_teachers(actors, prepared, state, cfg, frozen), "student": student["results"],
              "student_correct": student["greedy_correct"],
              "continuation": frozen.measure(frozen.key(**continuation),
                                             lambda: continuation_eval(actors, prepared, state, cfg))}
    if frozen.saved_s:
        print(f"[opd] reused stored evaluations of the frozen models: {frozen.saved_s:.1f} s of decoding saved "
              f"(eval.reuse_frozen=false measures again)", flush=True)
    cache.write_text(json.dumps(result) + "\n")
    return result


def evaluate_teachers(actors, prepared: Prepared, state: controller.LoopState, cfg: OPDConfig,
                      frozen: FrozenEvals) -> dict:
    """Each evaluation set answered by its own teacher (`data.eval_files.<set>.teacher`, else the default one):
    gap recovery on a domain is measured against that domain's teacher."""
    task, default, results = prepared.task, teachers.default_teacher(cfg), {}
    for name, view in teachers.views(cfg).items():
        sets = {s: ex for s, ex in task.eval_sets.items() if task.teacher_of_set(s, default) == name}
        if sets:
            label = "eval teacher" + (f" {name}" if teachers.is_multi(cfg) else "")
            key = frozen.key(role="teacher", **frozen_evals.model_parts(view, "teacher"),
                             **frozen_evals.decoding(cfg, task), sets=frozen_evals.sets_parts(sets))
            results |= frozen.measure(key, lambda: evaluate(guarded(actors, teachers.role(name), state, cfg), sets,
                                                            get_verifier(task.verifier), cfg, desc=label))
    return {s: results[s] for s in task.eval_sets}


def eval_metrics(results: dict[str, dict[str, float]], prefix: str = "eval") -> dict[str, float]:
    """{set: {measure: value}} -> flat metric names, e.g. eval/aime/avg@16."""
    return {f"{prefix}/{name}/{measure}": value for name, m in results.items() for measure, value in m.items()}


def periodic_eval(actors, prepared: Prepared, cfg: OPDConfig, sink: MetricsSink):
    """A `controller.train(on_step=...)` hook: the student on every evaluation set each `eval.every` steps."""
    def hook(state, metrics) -> None:
        if cfg.eval.every and state.step % cfg.eval.every == 0 and state.step < cfg.run.steps:
            sink.log(state.step, eval_metrics(evaluate_student(actors, prepared, state, cfg,
                                                               f"eval student @ step {state.step}")))
    return hook


def run(cfg: OPDConfig, prepared: Prepared, run_dir: Path, create_actors, resume_from: Path | None = None,
        name_prefix: str = "") -> dict:
    """Start the actors, evaluate, train to run.steps, evaluate, checkpoint and write summary.json."""
    t_start = time.time()
    stream = PromptStream(cold_start.opd_examples(prepared.task, cfg), cfg.data.samples_per_prompt, cfg.run.seed)
    ckpt = CheckpointDir(run_dir / "checkpoints", cfg.ckpt.keep_last)
    for partial in ckpt.clean_partial():
        print(f"[opd] removed the partial checkpoint {partial} (a crash interrupted it)", flush=True)
    actors = create_actors(cfg, name_prefix)  # checks first that the cluster can hold the run (placement.*)
    try:
        return train_and_evaluate(cfg, prepared, run_dir, actors, stream, ckpt, resume_from, t_start)
    finally:
        actors.kill()


def train_and_evaluate(cfg: OPDConfig, prepared: Prepared, run_dir: Path, actors, stream: PromptStream,
                       ckpt: CheckpointDir, resume_from: Path | None, t_start: float) -> dict:
    """The run on started actors: evaluate before (or reuse it), restore a checkpoint if asked, train, evaluate
    after, checkpoint the final step, write summary.json."""
    task = prepared.task
    get(actors.ready_refs(), cfg.pipeline.startup_timeout_s, "startup")
    nodes = actors.node_ips(get, cfg.pipeline.startup_timeout_s)
    print("[opd] actors on nodes: " + ", ".join(f"{name} {ip}" for name, ip in nodes.items()), flush=True)
    state, sink = controller.LoopState(), MetricsSink(run_dir)
    ev = evaluate_before(actors, prepared, state, cfg, run_dir)
    print(f"[opd] before: student {format_eval(ev['student'])} | teacher {format_eval(ev['teacher'])}", flush=True)
    if resume_from is not None:
        resume.restore(actors, resume_from, state, stream, cfg, get)
        controller.sync_weights(actors, state.policy_version, cfg)  # engines serve the restored version
        sink.mark_rewind(state.step, f"resumed from {resume_from.name}")
        print(f"[opd] resumed from {resume_from} at step {state.step} (policy v{state.policy_version})", flush=True)
    if state.step == 0:
        sink.log(0, eval_metrics(ev["student"]) | eval_metrics(ev["teacher"], "eval_teacher")
                 | {"verifier/errors": verifiers.error_count()})
    watch, evals = EntropyCollapseWatch(cfg.data.entropy_collapse_ratio), periodic_eval(actors, prepared, cfg, sink)
    starved = teacher_accounting.StarvedTeacherWatch(cfg)
    t_train = time.time()
    state = controller.train(actors, stream, cfg, sink, state, ckpt,
                             on_step=lambda s, m: (watch(s, m), starved(s, m), evals(s, m)))
    train_s = time.time() - t_train
    ranks_agree = learner_ranks_agree(actors, cfg)
    after_correct = {}
    after = evaluate_student(actors, prepared, state, cfg, "eval student", after_correct)
    continuation_after = continuation_eval(actors, prepared, state, cfg)
    final = ckpt.latest()
    if final is None or final.name != f"step_{state.step}":
        final = resume.save_checkpoint(actors, state, stream, ckpt, cfg, get)
    export_dir = final / "hf" if cfg.ckpt.export_hf else None
    paired = paired_by_set(ev, after_correct)
    summary = summarize(task, ev, after) | {
        "steps": state.step, "trajectories": state.consumed.count, "refused_stale": state.refused_stale,
        "train_s": round(train_s, 1), "wall_s": round(time.time() - t_start, 1),
        "continuation_before": ev.get("continuation"), "continuation_after": continuation_after,
        "objective": cfg.objective.kind, "k": cfg.objective.k, "diagnostics_k": diagnostics_k(cfg.objective),
        "run_dir": str(run_dir),
        "student_export": str(export_dir) if export_dir else None, "checkpoint": str(final),
        "actor_nodes_at_start": nodes, "actor_nodes": actors.node_ips(get, cfg.pipeline.startup_timeout_s),
        "learner_ranks_agree": ranks_agree, "primary_stats": paired.get(task.primary), "paired_stats": paired,
        "student_after_correct": after_correct,  # per problem (greedy): runs on the same sets compare pairwise
    }
    sink.log(state.step, eval_metrics(after) | {f"eval/{k}": v for k, v in summary.items() if isinstance(v, float)}
             | {"verifier/errors": verifiers.error_count()} | state.health.metrics())  # fleet/*: also the final evaluation's replacements
    sink.close()
    summary["metrics_rows_superseded"] = current_rows(read_rows(run_dir / "metrics.jsonl"))[1]
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def learner_ranks_agree(actors, cfg: OPDConfig) -> bool | None:
    """Do the learner ranks hold the same weights after training? None when they cannot tell (one rank, ZeRO-3);
    a disagreement is printed: the ranks stepped apart, and the checkpoint keeps rank 0's."""
    if cfg.learner.num_ranks < 2 or cfg.learner.zero_stage == 3:
        return None
    digests = get(actors.learners.weights_digest_refs(), cfg.pipeline.learner_timeout_s, "learner")
    if len(set(digests)) > 1:
        print(f"[opd] the learner ranks' weights differ after training (SHA-256 {[d[:12] for d in digests]})",
              flush=True)
    return len(set(digests)) == 1


def paired_by_set(before: dict, after_correct: dict) -> dict[str, dict]:
    """Per evaluation set: standard errors and the paired before/after difference (greedy); empty for a run
    directory whose stored before-evaluation predates per-problem outcomes."""
    correct = before.get("student_correct", {})
    return {name: paired_stats(correct[name], after, before["teacher"][name]["greedy"])
            for name, after in after_correct.items() if name in correct}


def summarize(task: Task, before: dict, after: dict) -> dict:
    """Per set: student before/after and teacher, greedy and avg@k, and their gap recovery. The headline keys
    (student_before, student_after, teacher, gap_recovery) are the primary set's greedy accuracy."""
    recovery = gap_recoveries(before["student"], after, before["teacher"])
    per_set = {name: {"student_before": before["student"][name], "student_after": after[name],
                      "teacher": before["teacher"][name], "gap_recovery": recovery[name]} for name in after}
    p = task.primary
    return {"task": task.name, "primary_set": p, "student_before": before["student"][p]["greedy"],
            "student_after": after[p]["greedy"], "teacher": before["teacher"][p]["greedy"],
            "gap_recovery": recovery[p]["greedy"], "eval": per_set}


def format_eval(results: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{name} " + " ".join(f"{m} {v:.3f}" for m, v in r.items()) for name, r in results.items())


def percent(value: float) -> str:
    return "n/a (no gap to close)" if math.isnan(value) else f"{value:.1%}"


def final_lines(summary: dict) -> list[str]:
    """What the job prints at the end: per evaluation set, student before -> after (teacher) and gap recovery."""
    lines = []
    for name, s in summary["eval"].items():
        parts = [f"{m} {s['student_before'][m]:.3f} -> {s['student_after'][m]:.3f} (teacher {s['teacher'][m]:.3f}, "
                 f"gap recovery {percent(s['gap_recovery'][m])})" for m in s["student_after"]]
        lines.append(f"[opd] {name}: " + "; ".join(parts))
    lines.append(f"[opd] {summary['primary_set']} (greedy): student {summary['student_before']:.3f} -> "
                 f"{summary['student_after']:.3f} (teacher {summary['teacher']:.3f}); gap recovery "
                 f"{percent(summary['gap_recovery'])}; {summary['steps']} steps in {summary['train_s']} s")
    if stats := summary.get("primary_stats"):
        lines.append(f"[opd] {summary['primary_set']} on {stats['n']} problems, ± one standard error: before "
                     f"{stats['student_before']:.3f} ± {stats['student_before_se']:.3f}, after {stats['student_after']:.3f}"
                     f" ± {stats['student_after_se']:.3f}; paired difference {stats['paired_diff']:+.3f} ± "
                     f"{stats['paired_diff_se']:.3f} ({stats['flips_up']} up, {stats['flips_down']} down); gap recovery "
                     f"± {stats['gap_recovery_se']:.1%}")
    return lines
