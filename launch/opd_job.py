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

from actors.group import create_actors  # noqa: E402
from opd_ray import controller  # noqa: E402
from opd_ray.config import ConfigError, OPDConfig, load_config, to_yaml  # noqa: E402
from opd_ray.data import PromptStream, lab_eval_prompts, lab_train_prompts  # noqa: E402
from opd_ray.evaluation import evaluate, gap_recovery  # noqa: E402
from opd_ray.hf_models import load_tokenizer  # noqa: E402
from opd_ray.metrics import MetricsSink  # noqa: E402


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
    ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})


def check_cluster_cpus(cfg: OPDConfig) -> None:
    """Fail fast instead of waiting forever for actors the cluster cannot place."""
    need = (cfg.rollout.num_engines * cfg.rollout.cpus_per_engine + cfg.teacher.num_servers * cfg.teacher.cpus_per_server
            + cfg.learner.num_ranks * cfg.learner.cpus_per_rank)
    have = ray.cluster_resources().get("CPU", 0.0)
    if need > have:
        raise ConfigError(f"rollout/teacher/learner cpus_per_* need {need:g} CPUs, the Ray cluster has {have:g}")


def run(cfg: OPDConfig, run_dir: Path, name_prefix: str = "") -> dict:
    t_start = time.time()
    tokenizer = load_tokenizer(cfg.model.student, cfg.model.trust_remote_code)
    stream = PromptStream(lab_train_prompts(cfg.data, cfg.run.seed), cfg.data.samples_per_prompt, cfg.run.seed)
    eval_sets = lab_eval_prompts(cfg.data.eval_size)
    check_cluster_cpus(cfg)
    actors = create_actors(cfg, name_prefix)
    controller.get(actors.ready_refs(), cfg.pipeline.startup_timeout_s, "startup")
    timeout = cfg.pipeline.rollout_timeout_s
    teacher_acc = evaluate(actors.teachers, eval_sets, tokenizer, timeout)
    before = evaluate(actors.rollouts, eval_sets, tokenizer, timeout)
    print(f"[opd] before: student hard {before['hard']:.3f} easy {before['easy']:.3f} | "
          f"teacher hard {teacher_acc['hard']:.3f} easy {teacher_acc['easy']:.3f}", flush=True)
    sink = MetricsSink(run_dir)
    t_train = time.time()
    state = controller.train(actors, stream, tokenizer, cfg, sink, controller.LoopState())
    train_s = time.time() - t_train
    after = evaluate(actors.rollouts, eval_sets, tokenizer, timeout)
    export_dir = run_dir / "checkpoints" / "final"
    controller.get(actors.learners.save_pretrained_refs(str(export_dir), cfg.model.student),
                   cfg.pipeline.learner_timeout_s, "learner")
    summary = {
        "student_before": before["hard"], "student_after": after["hard"], "teacher": teacher_acc["hard"],
        "gap_recovery": gap_recovery(before["hard"], after["hard"], teacher_acc["hard"]),
        "student_easy_before": before["easy"], "student_easy_after": after["easy"], "teacher_easy": teacher_acc["easy"],
        "steps": state.step, "trajectories": len(state.consumed), "refused_stale": state.refused_stale,
        "train_s": round(train_s, 1), "wall_s": round(time.time() - t_start, 1),
        "objective": cfg.objective.kind, "k": cfg.objective.k, "run_dir": str(run_dir),
        "student_export": str(export_dir),
    }
    sink.log(state.step, {f"eval/{k}": v for k, v in summary.items() if isinstance(v, float)})
    sink.close()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file, e.g. configs/lab_cpu.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. run.steps=10")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)  # validated before Ray starts
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    run_dir = make_run_dir(cfg)
    print(f"[opd] run directory: {run_dir}", flush=True)
    connect_ray()
    summary = run(cfg, run_dir)
    print(f"[opd] hard-set accuracy: student {summary['student_before']:.3f} -> {summary['student_after']:.3f} "
          f"(teacher {summary['teacher']:.3f}); gap recovery {summary['gap_recovery']:.1%}; "
          f"easy {summary['student_easy_before']:.3f} -> {summary['student_easy_after']:.3f}; "
          f"{summary['steps']} steps in {summary['train_s']} s", flush=True)
    print(f"[opd] run directory: {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
