"""Rejection filters for teacher-generated cold-start data (docs/design.md, paper §3.1).

The paper's released generator (`scripts/infer/vllm_rollout.py` in thunlp/OPD) drops a teacher response when it is
truncated, lacks the answer format (`\\boxed`), or degenerates into repetition:
- a line of >= 20 characters repeated >= 5 times,
- a 100-character n-gram repeated >= 3 times,
- a 50-character block repeated 3 times in a row (checked only for texts over 5,000 characters).

`PAPER_FILTERS` keeps those numbers; `LAB_FILTERS` scales them to the lab's responses (<= 56 characters, one
"line" per running-sum step, `;`-separated, answer `#<digits>` at the end). Each check returns the reason it
rejected a text, so the cold-start stage can count rejections per reason.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class FilterConfig:
    answer_pattern: str = r"\\boxed\{"  # a regex the response must match (re.search)
    line_sep: str = "\n"  # what splits a response into "lines"
    line_min_chars: int = 20  # lines shorter than this are never counted as repeated
    line_max_repeats: int = 4  # reject when one line occurs more than this many times (paper: >= 5)
    ngram_chars: int = 100
    ngram_max_repeats: int = 2  # reject when one n-gram occurs more than this many times (paper: >= 3)
    block_chars: int = 50
    block_max_run: int = 2  # reject when a block repeats more than this many times in a row (paper: 3)
    block_min_text_chars: int = 5000  # the block check only looks at texts at least this long


PAPER_FILTERS = FilterConfig()
# The lab: lines are the `a+b=c;` steps (a step is 6-9 characters); a 12-character n-gram spans about one and a
# half steps, which a correct running sum never repeats because the running total grows.
LAB_FILTERS = FilterConfig(answer_pattern=r"#\d+$", line_sep=";", line_min_chars=5, line_max_repeats=1,
                           ngram_chars=12, ngram_max_repeats=1, block_chars=4, block_max_run=2,
                           block_min_text_chars=0)


def repeated_line(text: str, cfg: FilterConfig) -> bool:
    """Some line of at least `line_min_chars` characters occurs more than `line_max_repeats` times."""
    lines = [line.strip() for line in text.split(cfg.line_sep)]
    counts = Counter(line for line in lines if len(line) >= cfg.line_min_chars)
    return any(c > cfg.line_max_repeats for c in counts.values())


def repeated_ngram(text: str, cfg: FilterConfig) -> bool:
    """Some character n-gram of length `ngram_chars` occurs more than `ngram_max_repeats` times (overlaps count)."""
    n = cfg.ngram_chars
    if len(text) < n:
        return False
    counts = Counter(text[i: i + n] for i in range(len(text) - n + 1))
    return max(counts.values()) > cfg.ngram_max_repeats


def repeated_block_run(text: str, cfg: FilterConfig) -> bool:
    """Some block of `block_chars` characters repeats more than `block_max_run` times back to back
    (`abcabcabc` is `abc` three times in a row), in texts of at least `block_min_text_chars`."""
    n = cfg.block_chars
    if len(text) < max(cfg.block_min_text_chars, n * (cfg.block_max_run + 1)):
        return False
    # a back-reference regex finds a block followed by block_max_run copies of itself at any offset
    pattern = re.compile(r"(.{%d})\1{%d}" % (n, cfg.block_max_run), re.DOTALL)
    return pattern.search(text) is not None


def rejection_reason(text: str, truncated: bool, cfg: FilterConfig) -> str | None:
    """Why a response is rejected (the first failed check), or None when it passes every filter.

    `truncated`: generation stopped at the token limit instead of at end-of-sequence.
    """
    if truncated:
        return "truncated"
    if not re.search(cfg.answer_pattern, text.strip()):
        return "answer_format"
    if repeated_line(text, cfg):
        return "repeated_line"
    if repeated_ngram(text, cfg):
        return "repeated_ngram"
    if repeated_block_run(text, cfg):
        return "repeated_block"
    return None


def filter_responses(texts: list[str], truncated: list[bool], cfg: FilterConfig,
                     correct: list[bool] | None = None) -> tuple[list[bool], Counter]:
    """A keep-mask over the responses and the count of rejections per reason.

    `correct`: the verifier's judgement of each response, when wrong answers should be rejected too (reason
    "wrong_answer", after the format checks). The paper's filters check form only; a verifier is our option.
    """
    reasons = [rejection_reason(t, tr, cfg) for t, tr in zip(texts, truncated)]
    if correct is not None:
        reasons = [r if r is not None or ok else "wrong_answer" for r, ok in zip(reasons, correct)]
    return [r is None for r in reasons], Counter(r for r in reasons if r is not None)


FILTERS = {"lab": LAB_FILTERS, "paper": PAPER_FILTERS}  # by cold_start.filters
