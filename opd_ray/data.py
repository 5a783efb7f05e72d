"""Prompts for OPD and evaluation, and the epoch-based prompt stream that assigns trajectory ids."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from opd_ray.config import DataConfig
from opd_ray.lab import build as lab_build
from opd_ray.lab.task import sample_problems, verify
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
