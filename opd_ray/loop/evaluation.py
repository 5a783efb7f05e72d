"""Held-out evaluation through the actors: every set greedily and as avg@k; gap recovery per set; the
teacher-continuation advantage (paper §6.1).

`servers` are rollout engines (the student) or teacher servers: both answer `greedy(prompt_ids)` and
`sample_texts(prompt_ids, seeds, temperature, top_p)`. A run's evaluations go through `fleet.GuardedServers`, so
that an actor that dies or hangs during an evaluation is replaced as it would be during a training step;
`Unguarded` calls a plain list of actors (the cold start's lone student). The verifier runs here, on the driver.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol

from tqdm import tqdm

from opd_ray.config.schema import OPDConfig
from opd_ray.data.line_checks import PrefixCheck
from opd_ray.data.task import Example, Verifier, accuracy
from opd_ray.models.sampling import trajectory_seed
from opd_ray.runtime.remote import get

Generate = Callable[[list[list[int]]], list[str]]  # prompt token ids -> greedy response texts
CHUNK = 128  # prompts per call and server: the progress bar moves, and no call holds a whole large set
EVAL_EPOCH = -1  # evaluation seeds use traj_ids (EVAL_EPOCH, set, problem, sample): never a training id


class Servers(Protocol):
    """Actors that answer evaluation calls: `map` calls `method(*args[j])` on the j-th one; results in order."""

    def __len__(self) -> int: ...

    def map(self, method: str, args: list[tuple], timeout_s: float) -> list: ...


class Unguarded:
    """A plain list of actors as `Servers`: a failed or late call ends the evaluation (runtime/remote.get)."""

    def __init__(self, handles: list):
        self.handles = handles

    def __len__(self) -> int:
        return len(self.handles)

    def map(self, method: str, args: list[tuple], timeout_s: float) -> list:
        return get([getattr(h, method).remote(*a) for h, a in zip(self.handles, args)], timeout_s, "rollout")


def spread(servers: Servers, method: str, prompt_ids: list[list[int]], timeout_s: float, per_row: tuple = (),
           shared: tuple = ()) -> list[str]:
    """Call `method` on the servers, each with an interleaved share of the rows (and of each list in `per_row`;
    `shared` arguments go to every call as they are); results in row order."""
    n = len(servers)
    args = [(prompt_ids[i::n], *(a[i::n] for a in per_row), *shared) for i in range(n)]
    out = [None] * len(prompt_ids)
    for i, shard in enumerate(servers.map(method, args, timeout_s)):
        out[i::n] = shard
    return out


def greedy_texts(servers: Servers, prompt_ids: list[list[int]], timeout_s: float) -> list[str]:
    """Greedy decoding spread over the given actors, in prompt order."""
    return spread(servers, "greedy", prompt_ids, timeout_s)


def sampled_texts(servers: Servers, prompt_ids: list[list[int]], seeds: list[int], cfg: OPDConfig) -> list[str]:
    """One sample per row at eval.temperature and eval.top_p, each with its own seed."""
    return spread(servers, "sample_texts", prompt_ids, cfg.pipeline.rollout_timeout_s, per_row=(seeds,),
                  shared=(cfg.eval.temperature, cfg.eval.top_p))


def evaluate(servers: Servers, eval_sets: dict[str, list[Example]], verify: Verifier, cfg: OPDConfig,
             desc: str = "eval", outcomes: dict | None = None) -> dict[str, dict[str, float]]:
    """{set: {"greedy": accuracy, "avg@k": mean accuracy of k samples per problem}} (avg@k when eval.avg_k).
    `outcomes`, when given, receives {set: [0/1 per problem, greedy]} for paired before/after statistics."""
    k, timeout = cfg.eval.avg_k, cfg.pipeline.rollout_timeout_s
    total = sum(len(examples) for examples in eval_sets.values()) * (1 + k)
    step = CHUNK * len(servers)
    results = {}
    with tqdm(total=total, desc=desc, unit="answer", leave=False, mininterval=2.0) as bar:
        for s, (name, examples) in enumerate(eval_sets.items()):
            greedy = []
            for lo in range(0, len(examples), step):
                chunk = examples[lo: lo + step]
                greedy += greedy_texts(servers, [list(ex.prompt_ids) for ex in chunk], timeout)
                bar.update(len(chunk))
            results[name] = {"greedy": accuracy(verify, examples, greedy)}
            if outcomes is not None:
                outcomes[name] = [int(verify(text, ex.answer)) for ex, text in zip(examples, greedy, strict=True)]
            if k:
                rows = [(i, j) for i in range(len(examples)) for j in range(k)]
                texts = []
                for lo in range(0, len(rows), step):
                    chunk = rows[lo: lo + step]
                    seeds = [trajectory_seed(cfg.run.seed, (EVAL_EPOCH, s, i, j), 0) for i, j in chunk]
                    texts += sampled_texts(servers, [list(examples[i].prompt_ids) for i, _ in chunk], seeds, cfg)
                    bar.update(len(chunk))
                results[name][f"avg@{k}"] = accuracy(verify, [examples[i] for i, _ in rows], texts)
    return results


def gap_recovery(before: float, after: float, teacher: float) -> float:
    """(after - before) / (teacher - before); NaN when the teacher is no better than the student was."""
    gap = teacher - before
    return (after - before) / gap if gap > 0 else float("nan")


def binomial_se(p: float, n: int) -> float:
    """The standard error of an accuracy p measured on n independent problems."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


def paired_stats(before: list[int], after: list[int], teacher: float) -> dict[str, float]:
    """Before/after accuracy on the same problems: each with its standard error, the paired difference and its
    standard error (from the per-problem differences, so problems that both runs solve or both miss cancel), the
    flips each way, and the standard error of gap recovery from the paired difference (the teacher's accuracy taken
    as fixed: it is measured once, on the same problems)."""
    n = len(before)
    if n != len(after) or n < 2:
        raise ValueError(f"paired statistics need the same problems before and after ({n} and {len(after)})")
    diffs = [a - b for b, a in zip(before, after)]
    mean_diff, se_diff = mean(diffs), sem(diffs)
    b, a = sum(before) / n, sum(after) / n
    gap = teacher - b
    return {"n": n, "student_before": b, "student_before_se": binomial_se(b, n), "student_after": a,
            "student_after_se": binomial_se(a, n), "teacher": teacher, "teacher_se": binomial_se(teacher, n),
            "paired_diff": mean_diff, "paired_diff_se": se_diff, "flips_up": diffs.count(1),
            "flips_down": diffs.count(-1),
            "gap_recovery_se": se_diff / gap if gap > 0 else float("nan")}


def gap_recoveries(before: dict, after: dict, teacher: dict) -> dict[str, dict[str, float]]:
    """Gap recovery per evaluation set and per measure (greedy, avg@k)."""
    return {name: {m: gap_recovery(before[name][m], after[name][m], teacher[name][m]) for m in after[name]}
            for name in after}


def continuation_outcomes(student: Generate, teacher: Generate, examples: list[Example], tokenizer,
                          verify: Verifier, depths: list[float], slipped: PrefixCheck | None = None) -> dict:
    """Per problem (the verifier's reward, 0/1 for the built-in verifiers): the student's own greedy outcome, and at
    each depth d the outcome when the student's greedy response is cut after a fraction d of its tokens and the
    teacher continues; with a `slipped` check, also whether the cut prefix already held an error (0/1).
    Returns {"student": [...], "continued": {d: [...]}, "slipped": {d: [...]}}."""
    prompt_ids = [list(ex.prompt_ids) for ex in examples]
    responses = student(prompt_ids)
    out = {"student": [float(verify(text, ex.answer)) for ex, text in zip(examples, responses)], "continued": {},
           "slipped": {}}
    for depth in depths:
        prefixes = []
        for text in responses:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            prefixes.append(ids[: int(len(ids) * depth)])
        continued = teacher([p + prefix for p, prefix in zip(prompt_ids, prefixes)])
        texts = [tokenizer.decode(prefix, skip_special_tokens=True) for prefix in prefixes]
        out["continued"][depth] = [float(verify(t + rest, ex.answer))
                                   for t, rest, ex in zip(texts, continued, examples)]
        if slipped is not None:
            out["slipped"][depth] = [int(slipped(t, ex.prompt)) for t, ex in zip(texts, examples)]
    return out


def teacher_continuation_advantage(student: Generate, teacher: Generate, examples: list[Example], tokenizer,
                                   verify: Verifier, depths: list[float]) -> dict[str, float]:
    """§6.1: cut the student's greedy responses after a fraction `d` of their tokens, let the teacher continue,
    and report teacher-continued accuracy minus the student's own accuracy, per depth.

    A large positive value at depth d means the teacher still knows how to finish from where the student is:
    there is capability left to distil at those states. Depth 0 is the teacher answering alone.
    """
    return advantage_means(continuation_outcomes(student, teacher, examples, tokenizer, verify, depths))


def advantage_means(outcomes: dict) -> dict[str, float]:
    """{"student_accuracy": ..., "depth_<d>": teacher-continued accuracy minus the student's, per depth}."""
    n = len(outcomes["student"])
    student = sum(outcomes["student"]) / n
    return {"student_accuracy": student} | {f"depth_{d:g}": sum(c) / n - student
                                            for d, c in outcomes["continued"].items()}


def depth_decay(outcomes: dict) -> dict:
    """The continuation advantage against depth, with standard errors from the per-problem differences (the same
    problems at every depth): per depth the advantage ± SE and, where measured, the share of prefixes that had
    already slipped ± SE; and the least-squares slope of advantage on depth ± SE. The slope's SE comes from each
    problem's own slope across the depths (the depths share problems, so their means are not independent)."""
    student, depths = outcomes["student"], sorted(outcomes["continued"])
    n = len(student)
    if n < 2 or len(depths) < 2:
        raise ValueError(f"a depth decay needs >= 2 problems and >= 2 depths ({n} and {len(depths)})")
    diffs = {d: [c - s for c, s in zip(outcomes["continued"][d], student)] for d in depths}
    mean_d = sum(depths) / len(depths)
    sxx = sum((d - mean_d) ** 2 for d in depths)
    slopes = [sum((d - mean_d) * diffs[d][i] for d in depths) / sxx for i in range(n)]
    per_depth = {}
    for d in depths:
        per_depth[f"{d:g}"] = {"advantage": mean(diffs[d]), "advantage_se": sem(diffs[d])}
        if d in outcomes["slipped"]:
            share = mean(outcomes["slipped"][d])
            per_depth[f"{d:g}"] |= {"slipped_share": share, "slipped_share_se": binomial_se(share, n)}
    return {"n": n, "student_accuracy": mean(student), "depths": per_depth, "slope": mean(slopes),
            "slope_se": sem(slopes)}


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def sem(xs: list[float]) -> float:
    """The standard error of the mean of xs (sample standard deviation over sqrt(n))."""
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))
