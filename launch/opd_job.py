"""Run on-policy distillation: `python launch/opd_job.py --config configs/lab_cpu.yaml [dotted.key=value ...]`.

Starts a local Ray when none is running; under `ray job submit` it attaches to that cluster.
Everything goes into a fresh run directory (printed at start and end): the resolved config, metrics.jsonl,
TensorBoard events and summary.json.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import ray  # noqa: E402

from actors.group import LearnerGroup, create_actors  # noqa: E402
from actors.placement import Placement  # noqa: E402
from actors.rollout import RolloutEngine  # noqa: E402
from opd_ray.config.errors import ConfigError  # noqa: E402
from opd_ray.config.load import to_yaml
from opd_ray.config.schema import OPDConfig
from opd_ray.data.rows import DataError  # noqa: E402
from opd_ray.loop.checkpoint import (  # noqa: E402
    DiskFullError,
    ResumeError,
    find_resume_checkpoint,
)
from opd_ray.loop.fleet import FleetError  # noqa: E402
from opd_ray.run import cold_start, job, preflight  # noqa: E402
from opd_ray.run.preflight import load_config
from opd_ray.runtime.remote import PipelineTimeout  # noqa: E402
from opd_ray.runtime.signals import Stopped  # noqa: E402


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


def start_engine(cfg: OPDConfig, name: str):
    """A rollout engine serving cfg.model.student (the cold start uses one for the teacher's answers)."""
    return RolloutEngine.options(name=name, **Placement(cfg).options("rollout", 0)).remote(cfg, 0)


def resume_command(args: argparse.Namespace) -> str:
    return " ".join(["python", "launch/opd_job.py", "--config", args.config, *args.overrides, "--resume", "auto"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file, e.g. configs/lab_cpu.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. run.steps=10")
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="auto: the newest checkpoint of a run with this run.name; or a run dir / checkpoint")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume even though the config differs from the checkpoint's (differences are printed)")
    args = parser.parse_args(argv)
    try:  # everything a user can get wrong is checked here, before Ray starts
        cfg = load_config(args.config, args.overrides)
        resume_from = find_resume_checkpoint(args.resume, Path(cfg.run.out_dir), cfg.run.name) if args.resume else None
        if resume_from is not None:
            preflight.check_resume_config(resume_from, cold_start.resumed_config(cfg, resume_from.parent.parent),
                                args.allow_config_change)
        prepared = preflight.prepare(cfg)  # model folders, the student/teacher contract, the task's data
    except (ConfigError, ResumeError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = resume_from.parent.parent if resume_from else make_run_dir(cfg)
    print(f"[opd] run directory: {run_dir}", flush=True)
    print(preflight.compute_line(cfg), flush=True)
    connect_ray()
    stage = None
    if "cold_start" in cfg.stages:  # SFT on the teacher's filtered answers; OPD then starts from that student
        cfg, stage = cold_start.run_stage(cfg, run_dir, prepared.task, prepared.tokenizer, start_engine, LearnerGroup)
        if "opd" not in cfg.stages:
            return 0
    try:
        summary = job.run(cfg, prepared, run_dir, create_actors, resume_from)
    except Stopped as stop:  # SIGTERM / SIGINT: a checkpoint was written after the last step
        print(f"[opd] {stop}. Resume with: {resume_command(args)}", file=sys.stderr, flush=True)
        return stop.exit_code
    except PipelineTimeout as err:  # a stage hung past its timeout: the checkpoints written so far are kept
        print(f"error: {err}; the checkpoints written so far are kept. Resume with: {resume_command(args)}",
              file=sys.stderr, flush=True)
        return 1
    except (FleetError, DiskFullError) as err:  # an actor failed too often; a checkpoint did not fit
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    if stage is not None:
        summary = cold_start.merge_summary(summary, stage, run_dir)
        print(f"[opd] cold start + OPD from the original student {stage['student_before']:.3f}: gap recovery "
              f"{summary['gap_recovery_from_original']:.1%}", flush=True)
    print("\n".join(job.final_lines(summary)), flush=True)
    print(f"[opd] run directory: {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
