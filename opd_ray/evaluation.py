"""Accuracy of the student (through the rollout engines) and the teacher on held-out prompts; gap recovery;
the teacher-continuation advantage (paper §6.1)."""
from __future__ import annotations

from typing import Callable

from opd_ray.controller import get
from opd_ray.data import score_responses

Generate = Callable[[list[list[int]]], list[str]]  # prompt token ids -> greedy response texts


def greedy_texts(servers: list, prompt_ids: list[list[int]], timeout_s: float) -> list[str]:
    """Greedy decoding spread over the given actors (rollout engines or teacher servers), in prompt order."""
    refs = [s.greedy.remote(prompt_ids[i:: len(servers)]) for i, s in enumerate(servers)]
    shards = get(refs, timeout_s, "rollout")
    responses = [None] * len(prompt_ids)
    for i, shard in enumerate(shards):
        responses[i:: len(servers)] = shard
    return responses


def greedy_accuracy(servers: list, prompts: list[str], tokenizer, timeout_s: float) -> float:
    """Greedy decoding on the actors, scored by the verifier."""
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    return score_responses(prompts, greedy_texts(servers, ids, timeout_s))


def evaluate(servers: list, eval_sets: dict[str, list[str]], tokenizer, timeout_s: float) -> dict[str, float]:
    return {name: greedy_accuracy(servers, prompts, tokenizer, timeout_s) for name, prompts in eval_sets.items()}


def gap_recovery(before: float, after: float, teacher: float) -> float:
    """(after - before) / (teacher - before); NaN when the teacher is no better than the student was."""
    gap = teacher - before
    return (after - before) / gap if gap > 0 else float("nan")


def teacher_continuation_advantage(student: Generate, teacher: Generate, prompts: list[str], tokenizer,
                                   depths: list[float]) -> dict[str, float]:
    """§6.1: cut the student's greedy responses after a fraction `d` of their tokens, let the teacher continue,
    and report teacher-continued accuracy minus the student's own accuracy, per depth.

    A large positive value at depth d means the teacher still knows how to finish from where the student is:
    there is capability left to distil at those states. Depth 0 is the teacher answering alone.
    """
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    responses = student(prompt_ids)
    out = {"student_accuracy": score_responses(prompts, responses)}
    for depth in depths:
        prefixes = []
        for text in responses:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            prefixes.append(ids[: int(len(ids) * depth)])
        continued = teacher([p + prefix for p, prefix in zip(prompt_ids, prefixes)])
        full = [tokenizer.decode(prefix, skip_special_tokens=True) + rest for prefix, rest in zip(prefixes, continued)]
        out[f"depth_{depth:g}"] = score_responses(prompts, full) - out["student_accuracy"]
    return out
