"""Run on-policy distillation: `python launch/opd_job.py --config configs/lab_cpu.yaml [dotted.key=value ...]`.

Starts a local Ray when none is running; under `ray job submit` it attaches to that cluster.
Everything goes into a fresh run directory (printed at start and end): the resolved config, metrics.jsonl,
TensorBoard events and summary.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import ray  # noqa: E402

from actors.group import LearnerGroup, create_actors  # noqa: E402
from actors.placement import Placement  # noqa: E402
from actors.rollout import RolloutEngine  # noqa: E402
from opd_ray import cold_start, controller, resume  # noqa: E402
from opd_ray.checkpoint import (CheckpointDir, ResumeError, config_differences, config_fingerprint,  # noqa: E402
                                find_resume_checkpoint, read_state)
from opd_ray.config import ConfigError, OPDConfig, load_config, to_yaml  # noqa: E402
from opd_ray.data import PromptStream, lab_eval_prompts  # noqa: E402
from opd_ray.evaluation import evaluate, gap_recovery, greedy_texts, teacher_continuation_advantage  # noqa: E402
from opd_ray.hf_models import load_tokenizer  # noqa: E402
from opd_ray.metrics import MetricsSink  # noqa: E402
from opd_ray.prompts import EntropyCollapseWatch  # noqa: E402


def make_run_dir(cfg: OPDConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.run.out_dir).resolve() / f"{cfg.run.name}-{stamp}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    return run_dir


def connect_ray() -> None:
    """Attach to the cluster of `ray job submit` (RAY_ADDRESS is set there), else start a local one."""
    if ray.is_initialized():
        return
    # "local", not None: None would join any cluster last announced in /tmp/ray/ray_current_cluster.
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=True,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})


def check_resume_config(checkpoint: Path, cfg: OPDConfig, allow_change: bool) -> None:
    """Refuse a resume under a different config, unless allowed; either way, print what differs."""
    diffs = config_differences(read_state(checkpoint)["config"], config_fingerprint(cfg))
    if not diffs:
        return
    listing = "\n  ".join(diffs)
    if not allow_change:
        raise ResumeError(f"the config differs from the checkpoint's ({checkpoint}):\n  {listing}\n"
                          "pass --allow-config-change to resume anyway")
    print(f"[opd] resuming with a changed config:\n  {listing}", flush=True)


def start_engine(cfg: OPDConfig, name: str):
    """A rollout engine serving cfg.model.student (the cold start uses one for the teacher's answers)."""
    return RolloutEngine.options(name=name, **Placement(cfg).options("rollout", 0)).remote(cfg, 0)


def continuation_eval(actors, prompts: list[str], tokenizer, cfg: OPDConfig) -> dict[str, float]:
    """Teacher-continuation advantage on the hard set, per prefix depth (data.continuation_depths)."""
    timeout = cfg.pipeline.rollout_timeout_s
    return teacher_continuation_advantage(lambda ids: greedy_texts(actors.rollouts, ids, timeout),
                                          lambda ids: greedy_texts(actors.teachers, ids, timeout),
                                          prompts, tokenizer, cfg.data.continuation_depths)


def evaluate_before(actors, eval_sets, tokenizer, cfg: OPDConfig, run_dir: Path) -> dict:
    """Teacher and initial-student accuracy, measured once per run directory (a resume reuses them)."""
    cache = run_dir / "eval_before.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    timeout = cfg.pipeline.rollout_timeout_s
    result = {"teacher": evaluate(actors.teachers, eval_sets, tokenizer, timeout),
              "student": evaluate(actors.rollouts, eval_sets, tokenizer, timeout),
              "continuation": continuation_eval(actors, eval_sets["hard"], tokenizer, cfg)}
    cache.write_text(json.dumps(result) + "\n")
    return result


def run(cfg: OPDConfig, run_dir: Path, resume_from: Path | None = None, name_prefix: str = "") -> dict:
    t_start = time.time()
    tokenizer = load_tokenizer(cfg.model.student, cfg.model.trust_remote_code)
    stream = PromptStream(cold_start.opd_prompts(cfg), cfg.data.samples_per_prompt, cfg.run.seed)
    eval_sets = lab_eval_prompts(cfg.data.eval_size)
    ckpt = CheckpointDir(run_dir / "checkpoints", cfg.ckpt.keep_last)
    for partial in ckpt.clean_partial():
        print(f"[opd] removed the partial checkpoint {partial} (a crash interrupted it)", flush=True)
    actors = create_actors(cfg, name_prefix)  # checks first that the cluster can hold the run (placement.*)
    controller.get(actors.ready_refs(), cfg.pipeline.startup_timeout_s, "startup")
    ev = evaluate_before(actors, eval_sets, tokenizer, cfg, run_dir)
    before, teacher_acc = ev["student"], ev["teacher"]
    print(f"[opd] before: student hard {before['hard']:.3f} easy {before['easy']:.3f} | "
          f"teacher hard {teacher_acc['hard']:.3f} easy {teacher_acc['easy']:.3f}", flush=True)
    state = controller.LoopState()
    if resume_from is not None:
        resume.restore(actors, resume_from, state, stream, cfg, controller.get)
        controller.sync_weights(actors, state.policy_version, cfg)  # engines serve the restored version
        print(f"[opd] resumed from {resume_from} at step {state.step} (policy v{state.policy_version})", flush=True)
    sink = MetricsSink(run_dir)
    t_train = time.time()
    state = controller.train(actors, stream, tokenizer, cfg, sink, state, ckpt,
                             on_step=EntropyCollapseWatch(cfg.data.entropy_collapse_ratio))
    train_s = time.time() - t_train
    after = evaluate(actors.rollouts, eval_sets, tokenizer, cfg.pipeline.rollout_timeout_s)
    continuation_after = continuation_eval(actors, eval_sets["hard"], tokenizer, cfg)
    final = ckpt.latest()
    if final is None or final.name != f"step_{state.step}":
        final = resume.save_checkpoint(actors, state, stream, ckpt, cfg, controller.get)
    export_dir = final / "hf" if cfg.ckpt.export_hf else None
    summary = {
        "student_before": before["hard"], "student_after": after["hard"], "teacher": teacher_acc["hard"],
        "gap_recovery": gap_recovery(before["hard"], after["hard"], teacher_acc["hard"]),
        "student_easy_before": before["easy"], "student_easy_after": after["easy"], "teacher_easy": teacher_acc["easy"],
        "steps": state.step, "trajectories": len(state.consumed), "refused_stale": state.refused_stale,
        "train_s": round(train_s, 1), "wall_s": round(time.time() - t_start, 1),
        "continuation_before": ev.get("continuation"), "continuation_after": continuation_after,
        "objective": cfg.objective.kind, "k": cfg.objective.k, "run_dir": str(run_dir),
        "student_export": str(export_dir) if export_dir else None, "checkpoint": str(final),
    }
    sink.log(state.step, {f"eval/{k}": v for k, v in summary.items() if isinstance(v, float)})
    sink.close()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file, e.g. configs/lab_cpu.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. run.steps=10")
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="auto: the newest checkpoint of a run with this run.name; or a run dir / checkpoint")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume even though the config differs from the checkpoint's (differences are printed)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)  # validated before Ray starts
        resume_from = find_resume_checkpoint(args.resume, Path(cfg.run.out_dir), cfg.run.name) if args.resume else None
        if resume_from is not None:
            check_resume_config(resume_from, cold_start.resumed_config(cfg, resume_from.parent.parent),
                                args.allow_config_change)
    except (ConfigError, ResumeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = resume_from.parent.parent if resume_from else make_run_dir(cfg)
    print(f"[opd] run directory: {run_dir}", flush=True)
    connect_ray()
    stage = None
    if "cold_start" in cfg.stages:  # SFT on the teacher's filtered answers; OPD then starts from that student
        cfg, stage = cold_start.run_stage(cfg, run_dir, load_tokenizer(cfg.model.student), start_engine, LearnerGroup)
        if "opd" not in cfg.stages:
            return 0
    summary = run(cfg, run_dir, resume_from)
    if stage is not None:
        summary = cold_start.merge_summary(summary, stage, run_dir)
        print(f"[opd] cold start + OPD from the original student {stage['student_before']:.3f}: gap recovery "
              f"{summary['gap_recovery_from_original']:.1%}", flush=True)
    print(f"[opd] hard-set accuracy: student {summary['student_before']:.3f} -> {summary['student_after']:.3f} "
          f"(teacher {summary['teacher']:.3f}); gap recovery {summary['gap_recovery']:.1%}; "
          f"easy {summary['student_easy_before']:.3f} -> {summary['student_easy_after']:.3f}; "
          f"{summary['steps']} steps in {summary['train_s']} s", flush=True)
    print(f"[opd] run directory: {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
