"""Prompts for OPD and evaluation, and the epoch-based prompt stream that assigns trajectory ids."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from opd_ray.config import LAB_PROMPTS, DataConfig
from opd_ray.lab import build as lab_build
from opd_ray.lab.task import sample_problems, verify
from opd_ray.prompts import dedup, dedup_exact, select_aligned
from opd_ray.trajectory import TrajectoryBatch, TrajId


def lab_train_prompts(data: DataConfig, seed: int) -> list[str]:
    """The OPD prompt set: the hard range, plus `easy_mix` of the easy range; never the held-out eval problems."""
    held_out = {p.prompt for s in lab_build.eval_sets() for p in s}
    n_easy = round(data.train_prompts * data.easy_mix)
    problems = sample_problems(10_000 + seed, data.train_prompts - n_easy, tuple(data.train_n_terms))
    problems += sample_problems(20_000 + seed, n_easy, tuple(data.easy_n_terms))
    random.Random(seed).shuffle(problems)
    template = data.prompt_template  # "{q}" by default; another template tests prompt alignment (docs/recipes.md)
    return [template.replace("{q}", p.prompt) for p in problems if p.prompt not in held_out]


def opd_prompt_set(data: DataConfig, seed: int) -> list[str]:
    """The OPD prompt set. By default the task's prompts (`lab_train_prompts`). With `data.teacher_prompts`, the
    paper's content alignment (shared/paper-notes.md §3.2 b): `data.train_prompts` prompts, (1 - other_share) of
    them drawn from the teacher's post-training prompts and the rest from the task's own, never a held-out
    evaluation problem, and without near-duplicates when `data.dedup_threshold` < 1."""
    task = lab_train_prompts(data, seed)
    if not data.teacher_prompts:
        return task
    held_out = [p.prompt for s in lab_build.eval_sets() for p in s]
    aligned = dedup_exact(load_teacher_prompts(data.teacher_prompts), against=held_out)
    chosen = select_aligned(aligned, task, data.train_prompts, data.other_share, seed)
    return dedup(chosen, against=held_out, threshold=data.dedup_threshold)


def load_teacher_prompts(source: str) -> list[str]:
    """`data.teacher_prompts`: lab:<model>, or a .txt (a prompt per line), .jsonl or .parquet ("prompt") file."""
    if source.startswith(LAB_PROMPTS):
        return lab_build.post_training_prompts(source.removeprefix(LAB_PROMPTS))
    path = Path(source)
    if path.suffix == ".txt":
        prompts = [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        prompts = [_prompt_field(row, path, i) for i, row in enumerate(rows, 1)]
    else:
        table = pq.read_table(path)
        if "prompt" not in table.column_names:
            raise ValueError(f"data.teacher_prompts: {path} has no 'prompt' column (columns: {table.column_names})")
        prompts = [str(p) for p in table.column("prompt").to_pylist() if p]
    if not prompts:
        raise ValueError(f"data.teacher_prompts: {path} holds no prompts")
    return prompts


def _prompt_field(row, path: Path, line: int) -> str:
    if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
        raise ValueError(f"data.teacher_prompts: {path} line {line} has no string field 'prompt'")
    return row["prompt"]


def lab_eval_prompts(eval_size: int) -> dict[str, list[str]]:
    """Held-out sets: 'hard' is what gap recovery is measured on; 'easy' watches for forgetting."""
    easy, hard = lab_build.eval_sets(eval_size)
    return {"hard": [p.prompt for p in hard], "easy": [p.prompt for p in easy]}


def score_responses(prompts: list[str], responses: list[str]) -> float:
    return sum(verify(p, r) for p, r in zip(prompts, responses)) / len(prompts)


def verify_batch(tokenizer, batch: TrajectoryBatch) -> np.ndarray:
    """The verifier's judgement of each trajectory (for the outcome reward and the reward AUROC)."""
    decode = lambda ids, mask: tokenizer.decode(ids[mask].tolist(), skip_special_tokens=True)  # noqa: E731
    return np.array([verify(decode(p, pm), decode(r, rm)) for p, pm, r, rm in zip(
        batch.prompt_ids_BP, batch.prompt_mask_BP, batch.response_ids_BR, batch.response_mask_BR)], dtype=bool)


@dataclass
class PromptStream:
    """Walks the prompt set in seeded, shuffled epochs; each (prompt, sample) gets a unique traj_id.

    Prompts whose trajectories were refused (too stale) are handed out again first, under the same ids.
    """

    prompts: list[str]
    samples_per_prompt: int
    seed: int
    epoch: int = 0
    position: int = 0
    retry: list[tuple[TrajId, str]] = field(default_factory=list)

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.prompts)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def next_batch(self, n_prompts: int) -> list[tuple[TrajId, str]]:
        items, self.retry = self.retry, []
        order = self._order(self.epoch)
        while len(items) < n_prompts * self.samples_per_prompt:
            if self.position == len(order):
                self.epoch, self.position = self.epoch + 1, 0
                order = self._order(self.epoch)
            index = order[self.position]
            self.position += 1
            items += [((self.epoch, index, s), self.prompts[index]) for s in range(self.samples_per_prompt)]
        return items

    def give_back(self, items: list[tuple[TrajId, str]]) -> None:
        self.retry.extend(items)
