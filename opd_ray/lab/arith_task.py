"""The `lab_arith` task: the lab's generated OPD prompts, cold-start prompts and held-out evaluation sets.

Evaluation sets: 'hard' (4-5 terms) is what gap recovery is measured on; 'easy' (2-3 terms) watches for
forgetting. Prompts are raw text (the lab tokenizer has no chat template); the reference answer is the sum.
"""
from __future__ import annotations

import random

from opd_ray.config import teachers
from opd_ray.config.schema import LAB_PROMPTS, DataConfig, OPDConfig
from opd_ray.data.prompt_selection import dedup, dedup_exact, load_teacher_prompts, select_aligned
from opd_ray.data.task import Example, Task
from opd_ray.lab import build as lab_build
from opd_ray.lab.task import parse_prompt, sample_problems


def held_out_prompts() -> list[str]:
    """Every problem the evaluation sets can draw (at any data.eval_size up to 512): never trained on."""
    return [p.prompt for s in lab_build.eval_sets() for p in s]


def lab_train_prompts(data: DataConfig, seed: int) -> list[str]:
    """The OPD prompt set: the hard range, plus `easy_mix` of the easy range; never the held-out eval problems."""
    held_out = set(held_out_prompts())
    n_easy = round(data.train_prompts * data.easy_mix)
    problems = sample_problems(10_000 + seed, data.train_prompts - n_easy, tuple(data.train_n_terms))
    problems += sample_problems(20_000 + seed, n_easy, tuple(data.easy_n_terms))
    random.Random(seed).shuffle(problems)
    template = data.prompt_template  # "{q}" by default; another template tests prompt alignment (docs/recipes.md)
    return [template.replace("{q}", p.prompt) for p in problems if p.prompt not in held_out]


def opd_prompt_set(data: DataConfig, seed: int) -> list[str]:
    """The OPD prompt set. By default the task's prompts (`lab_train_prompts`). With `data.teacher_prompts`, the
    paper's content alignment (docs/design.md, paper §3.2 b): `data.train_prompts` prompts, (1 - other_share) of
    them drawn from the teacher's post-training prompts and the rest from the task's own, never a held-out
    evaluation problem, and without near-duplicates when `data.dedup_threshold` < 1."""
    task = lab_train_prompts(data, seed)
    if not data.teacher_prompts:
        return task
    held_out = held_out_prompts()
    aligned = dedup_exact(teacher_prompts(data.teacher_prompts), against=held_out)
    chosen = select_aligned(aligned, task, data.train_prompts, data.other_share, seed)
    return dedup(chosen, against=held_out, threshold=data.dedup_threshold)


def teacher_prompts(source: str) -> list[str]:
    """`data.teacher_prompts`: `lab:<model>`, a lab model's own post-training prompts, or a prompt file."""
    if source.startswith(LAB_PROMPTS):
        return lab_build.post_training_prompts(source.removeprefix(LAB_PROMPTS))
    return load_teacher_prompts(source)


def cold_start_prompts(cfg: OPDConfig) -> list[str]:
    """The SFT prompts: seeded, never the held-out eval problems, in the run's prompt template."""
    held_out = set(held_out_prompts())
    c = cfg.cold_start
    problems = sample_problems(30_000 + cfg.run.seed, c.prompts, tuple(c.n_terms))
    return dedup([cfg.data.prompt_template.replace("{q}", p.prompt) for p in problems if p.prompt not in held_out])


def example(prompt: str, tokenizer, teacher: str = teachers.DEFAULT) -> Example:
    return Example(prompt, tuple(tokenizer(prompt)["input_ids"]), str(parse_prompt(prompt).answer), teacher)


def build(cfg: OPDConfig, tokenizer) -> Task:
    easy, hard = lab_build.eval_sets(cfg.data.eval_size)
    eval_sets = {"hard": [example(p.prompt, tokenizer) for p in hard],
                 "easy": [example(p.prompt, tokenizer) for p in easy]}
    cold = cold_start_prompts(cfg) if "cold_start" in cfg.stages else []
    teacher = teachers.default_teacher(cfg)  # the lab's prompts name no teacher: all go to the default one
    return Task(name="lab_arith", train=[example(p, tokenizer, teacher) for p in opd_prompt_set(cfg.data, cfg.run.seed)],
                eval_sets=eval_sets, primary="hard", verifier=cfg.data.verifier,
                cold_start=[example(p, tokenizer) for p in cold])
