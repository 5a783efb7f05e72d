"""Accuracy of the student (through the rollout engines) and the teacher on held-out prompts; gap recovery."""
from __future__ import annotations

from opd_ray.controller import get
from opd_ray.data import score_responses


def greedy_accuracy(servers: list, prompts: list[str], tokenizer, timeout_s: float) -> float:
    """Greedy decoding spread over the given actors (rollout engines or teacher servers), scored by the verifier."""
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    refs = [s.greedy.remote(ids[i:: len(servers)]) for i, s in enumerate(servers)]
    shards = get(refs, timeout_s, "rollout")
    responses = [None] * len(prompts)
    for i, shard in enumerate(shards):
        responses[i:: len(servers)] = shard
    return score_responses(prompts, responses)


def evaluate(servers: list, eval_sets: dict[str, list[str]], tokenizer, timeout_s: float) -> dict[str, float]:
    return {name: greedy_accuracy(servers, prompts, tokenizer, timeout_s) for name, prompts in eval_sets.items()}


def gap_recovery(before: float, after: float, teacher: float) -> float:
    """(after - before) / (teacher - before); NaN when the teacher is no better than the student was."""
    gap = teacher - before
    return (after - before) / gap if gap > 0 else float("nan")
