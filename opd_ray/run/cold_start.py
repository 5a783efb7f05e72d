"""The off-policy cold start stage (`stages: [cold_start, opd]`; docs/design.md, paper §3.1).

When student and teacher think differently, OPD's teacher signal lands on states the teacher never visits.
The paper's rescue: first SFT the student on the teacher's own answers, then run OPD.

    1. the teacher answers `cold_start.prompts` prompts (a rollout engine serving the teacher's weights, so the
       HF and vLLM backends both work), at `cold_start.temperature`;
    2. the rejection filters (opd_ray/data/rejection_filters.py) drop truncated, repetitive and badly formatted
       answers, and wrong ones with `cold_start.require_correct`; rejected prompts are sampled again, up to
       `cold_start.retries` times;
    3. the DeepSpeed learner group SFT-trains the student on what is left (`DeepSpeedLearner.sft_step`);
    4. the result is exported as a Hugging Face folder, and OPD starts from it, on prompts deduplicated against
       the SFT prompts (`opd_prompts`).

Like the controller, this module receives actor factories and never imports `actors/`.
"""
from __future__ import annotations

import copy
import json
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import ray

from opd_ray.config.schema import OPDConfig
from opd_ray.data.prompt_selection import dedup
from opd_ray.data.rejection_filters import FILTERS, filter_responses
from opd_ray.data.task import Example, Task
from opd_ray.data.verifiers import get_verifier
from opd_ray.loop.evaluation import Unguarded, evaluate, gap_recovery
from opd_ray.runtime.remote import get
from opd_ray.trajectory.batch import TrajectoryBatch, concat

STAGE_DIR = "cold_start"


def opd_examples(task: Task, cfg: OPDConfig) -> list[Example]:
    """The OPD prompt set; after a cold start, without the SFT prompts (exact, and near-duplicates when
    `cold_start.dedup_threshold` < 1), as the paper ran OPD on prompts deduplicated against the SFT subset."""
    if "cold_start" not in cfg.stages:
        return task.train
    by_prompt = {ex.prompt: ex for ex in reversed(task.train)}  # the first of any duplicates
    kept = dedup([ex.prompt for ex in task.train], against=[ex.prompt for ex in task.cold_start],
                 threshold=cfg.cold_start.dedup_threshold)
    return [by_prompt[p] for p in kept]


def generator_config(cfg: OPDConfig) -> OPDConfig:
    """A rollout engine config that samples from the teacher at the cold-start temperature."""
    gen = copy.deepcopy(cfg)
    gen.model.student = cfg.model.teacher
    gen.rollout.temperature = cfg.cold_start.temperature
    gen.rollout.max_new_tokens = cfg.cold_start.max_new_tokens
    gen.placement.strategy = ""  # stage actors are scheduled one by one, outside the OPD placement group
    return gen


def sft_config(cfg: OPDConfig) -> OPDConfig:
    sft = copy.deepcopy(cfg)
    sft.learner.lr, sft.learner.warmup_steps = cfg.cold_start.lr, max(1, cfg.cold_start.steps // 10)
    sft.placement.strategy = ""
    return sft


def truncated_rows(batch: TrajectoryBatch, eos_id: int) -> np.ndarray:
    """Rows whose generation hit the token limit instead of ending with end-of-sequence."""
    return ~((batch.response_ids_BR == eos_id) & batch.response_mask_BR).any(axis=1)


def generate_filtered(engine, prompts: list[Example], tokenizer, cfg: OPDConfig) -> tuple[TrajectoryBatch, dict]:
    """Teacher answers that pass the rejection filters; rejected prompts are retried with fresh seeds."""
    filters = FILTERS[cfg.cold_start.filters]
    pending, kept, reasons = list(range(len(prompts))), [], Counter()
    for attempt in range(cfg.cold_start.retries + 1):
        if not pending:
            break
        ids = [list(prompts[i].prompt_ids) for i in pending]
        traj_ids = [(attempt, i, 0) for i in pending]  # per-row seeds differ across attempts
        answers = [prompts[i].answer for i in pending]
        batch = get(engine.generate.remote(ids, traj_ids, 0, answers), cfg.pipeline.rollout_timeout_s, "rollout")
        texts = [tokenizer.decode(r[m].tolist(), skip_special_tokens=True)
                 for r, m in zip(batch.response_ids_BR, batch.response_mask_BR)]
        correct = batch.outcome_correct_B.tolist() if cfg.cold_start.require_correct else None
        truncated = [t and not any(stop in text for stop in cfg.rollout.stop)  # a stop string ends a row too
                     for t, text in zip(truncated_rows(batch, tokenizer.eos_token_id), texts)]
        keep, why = filter_responses(texts, truncated, filters, correct)
        reasons.update(why)
        kept.append(batch.rows(np.flatnonzero(keep)))
        pending = [i for i, k in zip(pending, keep) if not k]
    stats = {"prompts": len(prompts), "kept": len(prompts) - len(pending), "dropped_after_retries": len(pending),
             "rejections": dict(reasons)}
    if stats["kept"] == 0:
        raise RuntimeError(f"cold start: the rejection filters rejected every teacher answer: {dict(reasons)} "
                           f"(cold_start.filters={cfg.cold_start.filters!r})")
    return concat([b for b in kept if len(b)]), stats


def sft(learners, data: TrajectoryBatch, cfg: OPDConfig) -> list[float]:
    """`cold_start.steps` optimizer steps on seeded, shuffled epochs of the filtered data; the NLL curve."""
    c, rng = cfg.cold_start, random.Random(cfg.run.seed)
    order, position, losses = [], 0, []
    for _ in range(c.steps):
        rows = []
        while len(rows) < min(c.batch_size, len(data)):
            if position == len(order):
                order, position = rng.sample(range(len(data)), len(data)), 0
            rows.append(order[position])
            position += 1
        batch_ref = ray.put(data.rows(np.array(rows)))
        results = get(learners.sft_step_refs(batch_ref), cfg.pipeline.learner_timeout_s, "learner")
        losses.append(sum(r["nll_sum"] for r in results) / max(sum(r["tokens"] for r in results), 1.0))
    return losses


def stage_config(cfg: OPDConfig) -> OPDConfig:
    """Stage actors are scheduled one by one, outside any OPD placement group (the OPD stage reserves its own)."""
    out = copy.deepcopy(cfg)
    out.placement.strategy = ""
    return out


def run_stage(cfg: OPDConfig, run_dir: Path, task: Task, tokenizer, start_engine, start_learners
              ) -> tuple[OPDConfig, dict]:
    """Run the cold start, or reuse it when the run directory already holds one (a resumed run).

    `start_engine(cfg, name)` starts a rollout engine serving cfg.model.student; `start_learners(cfg, name)`
    starts a learner group. Returns the OPD config (its student is the SFT'd export) and the stage summary.
    """
    out = run_dir / STAGE_DIR
    summary_file = out / "summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        print(f"[cold start] reusing {out / 'hf'}", flush=True)
    else:
        summary = _run_stage(stage_config(cfg), out, task, tokenizer, start_engine, start_learners)
        summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    opd_cfg = copy.deepcopy(cfg)
    opd_cfg.model.student = str(out / "hf")
    return opd_cfg, summary


def _run_stage(cfg: OPDConfig, out: Path, task: Task, tokenizer, start_engine, start_learners) -> dict:
    t0 = time.time()
    student = start_engine(cfg, "cold-start-student")  # the original student's accuracy, for gap recovery
    teacher = start_engine(generator_config(cfg), "cold-start-teacher")
    get([e.policy_version.remote() for e in (student, teacher)], cfg.pipeline.startup_timeout_s, "startup")
    before = evaluate(Unguarded([student]), task.eval_sets, get_verifier(task.verifier), cfg, desc="eval student (original)")
    ray.kill(student)
    data, stats = generate_filtered(teacher, task.cold_start, tokenizer, cfg)
    ray.kill(teacher)
    t_gen = time.time()
    print(f"[cold start] teacher answers kept {stats['kept']}/{stats['prompts']} "
          f"(rejections {stats['rejections']}) in {t_gen - t0:.0f} s", flush=True)
    learners = start_learners(sft_config(cfg), "cold-start-learner")
    get(learners.ready_refs(), cfg.pipeline.startup_timeout_s, "startup")
    losses = sft(learners, data, cfg)
    out.mkdir(parents=True, exist_ok=True)
    get(learners.save_pretrained_refs(str(out / "hf"), cfg.model.student), cfg.pipeline.learner_timeout_s, "learner")
    learners.kill()
    print(f"[cold start] SFT {cfg.cold_start.steps} steps, NLL {losses[0]:.3f} -> {losses[-1]:.3f} "
          f"in {time.time() - t_gen:.0f} s; student -> {out / 'hf'}", flush=True)
    correct = data.outcome_correct_B
    return {"student_before": before[task.primary]["greedy"], "eval_before": before, **stats,
            "kept_correct": float(np.mean(correct)) if correct is not None else None,
            "sft_steps": cfg.cold_start.steps, "sft_nll_first": losses[0], "sft_nll_last": losses[-1],
            "generate_s": round(t_gen - t0, 1), "sft_s": round(time.time() - t_gen, 1),
            "student_export": str(out / "hf")}


def resumed_config(cfg: OPDConfig, run_dir: Path) -> OPDConfig:
    """The config a cold-start run's OPD stage ran with (its student is the stage's export), so that resuming
    such a run compares like with like; other configs are returned unchanged."""
    export = run_dir / STAGE_DIR / "hf"
    if "cold_start" not in cfg.stages or not export.is_dir():
        return cfg
    out = copy.deepcopy(cfg)
    out.model.student = str(export)
    return out


def merge_summary(summary: dict, stage: dict, run_dir: Path) -> dict:
    """The OPD summary measures from the cold-started student; add the stage and the recovery of the whole
    pipeline, measured from the original student (comparable with a plain OPD run's gap_recovery)."""
    summary = {**summary, "cold_start": stage, "student_original": stage["student_before"],
               "gap_recovery_from_original": gap_recovery(stage["student_before"], summary["student_after"],
                                                          summary["teacher"])}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
