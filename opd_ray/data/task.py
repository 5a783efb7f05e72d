"""A task is what the OPD loop is handed: prompt rows, a verifier, and named evaluation sets.

- `lab_arith` (opd_ray/lab/arith_task.py): the lab's generated arithmetic; the CPU default.
- `dataset` (opd_ray/data/dataset_task.py): the user's files (JSONL, JSON, Parquet, a `datasets` folder, a hub
  dataset), rendered through the tokenizer's chat template.

Everything downstream (controller, evaluation, cold start, probe, report) sees only `Task` and `Example`:
nothing outside the lab's own package knows which task is running.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Verifier = Callable[[str, str], float]  # (response text, reference answer) -> reward 1.0 / 0.0


@dataclass(frozen=True)
class Example:
    """One problem, ready for an engine: the prompt as the model sees it and its token ids, computed once."""
    prompt: str  # rendered: the chat template applied, when there is one
    prompt_ids: tuple[int, ...]
    answer: str  # the reference the verifier compares a response with
    teacher: str = "default"  # the teacher that scores this prompt's samples (opd_ray/config/teachers.py)


@dataclass
class Task:
    name: str
    train: list[Example]  # the OPD prompt set (never an evaluation row)
    eval_sets: dict[str, list[Example]]  # name -> held-out problems; gap recovery is reported per set
    primary: str  # the evaluation set the headline gap recovery is measured on
    verifier: str  # a spec for opd_ray.data.verifiers.get_verifier; actors build their own from it
    cold_start: list[Example] = field(default_factory=list)  # SFT prompts of the cold start stage
    notes: list[str] = field(default_factory=list)  # what building the task dropped, printed once
    eval_teachers: dict[str, str] = field(default_factory=dict)  # set -> the teacher of its domain (default: routed)

    def teacher_of_set(self, name: str, default: str) -> str:
        """The teacher an evaluation set is tied to: its gap recovery is measured against that teacher."""
        return self.eval_teachers.get(name) or default



def accuracy(verify: Verifier, examples: list[Example], responses: list[str]) -> float:
    """Mean reward of one response per example."""
    if not examples:
        return float("nan")
    return sum(float(verify(r, ex.answer)) for ex, r in zip(examples, responses, strict=True)) / len(examples)


def verify_batch(verify: Verifier, tokenizer, batch, answers: list[str]) -> np.ndarray:
    """The verifier's judgement of each trajectory of a batch (the outcome reward and the reward AUROC)."""
    texts = [tokenizer.decode(ids[mask].tolist(), skip_special_tokens=True)
             for ids, mask in zip(batch.response_ids_BR, batch.response_mask_BR)]
    return np.array([float(verify(t, a)) >= 0.5 for t, a in zip(texts, answers, strict=True)], dtype=bool)
