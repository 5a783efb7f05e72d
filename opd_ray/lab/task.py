"""The lab's synthetic reasoning task: multi-step addition with a running-sum chain of thought.

A problem is a sum of `n_terms` two-digit numbers; `n_terms` is the difficulty knob.

    prompt:    "12+34+56:"
    response:  "12+34=46;46+56=102;#102"

The chain of thought adds one term per step, so harder problems need longer chains of the same skill.
That matches the paper's setting: the teacher improved a skill the student already has (condition ii),
in the same format (condition i).

A second skill, `digits`, is the two-teacher lab's (configs/lab_mopd.yaml, docs/multi-teacher.md): the sum of the
terms' last digits, with the terms separated by `;`, so that a prompt says which skill it asks for.

    prompt:    "12;34;56:"
    response:  "2+4=6;6+6=12;#12"
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from opd_ray.data.verifiers import extract_answer  # the lab_arith verifier owns the answer format

PROMPT_END = ":"
TERMS_RE = re.compile(r"(\d+(?:\+\d+)*):$")
DIGITS_TERMS_RE = re.compile(r"(\d+(?:;\d+)*):$")
SKILLS = ("sum", "digits")


@dataclass(frozen=True)
class Problem:
    terms: tuple[int, ...]

    @property
    def answer(self) -> int:
        return sum(self.terms)

    @property
    def prompt(self) -> str:
        return "+".join(str(t) for t in self.terms) + PROMPT_END

    @property
    def solution(self) -> str:
        """The reference chain of thought followed by the final answer."""
        return "".join(f"{a}+{b}={c};" for a, b, c in running_sum_steps(self.terms)) + f"#{self.answer}"

    def solution_in(self, cot: str) -> str:
        """The chain of thought in one of COT_FORMATS.

        'reverse' adds the terms right to left (`12+34+56:` -> `56+34=90;90+12=102;#102`): the same skill and
        the same answer in a different thinking pattern, for the lab's incompatible teacher (paper §3.1).
        """
        if cot == "forward":
            return self.solution
        if cot != "reverse":
            raise ValueError(f"cot format must be one of {COT_FORMATS}, got {cot!r}")
        return Problem(tuple(reversed(self.terms))).solution


COT_FORMATS = ("forward", "reverse")


@dataclass(frozen=True)
class DigitsProblem:
    """The `digits` skill: the sum of the terms' last digits, added up one term per step like `Problem`."""
    terms: tuple[int, ...]

    @property
    def digits(self) -> tuple[int, ...]:
        return tuple(t % 10 for t in self.terms)

    @property
    def answer(self) -> int:
        return sum(self.digits)

    @property
    def prompt(self) -> str:
        return ";".join(str(t) for t in self.terms) + PROMPT_END

    @property
    def solution(self) -> str:
        """The sum skill's chain of thought over the last digits: `12;34;56:` -> `2+4=6;6+6=12;#12`."""
        return Problem(self.digits).solution

    def solution_in(self, cot: str) -> str:
        if cot != "forward":
            raise ValueError(f"the digits skill has only the forward chain of thought, got {cot!r}")
        return self.solution


def running_sum_steps(terms: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(running sum, next term, new running sum) for each addition of a left-to-right chain of thought."""
    steps, running = [], terms[0]
    for term in terms[1:]:
        steps.append((running, term, running + term))
        running += term
    return steps


def sample_problem(rng: random.Random, n_terms: int) -> Problem:
    return Problem(tuple(rng.randint(10, 99) for _ in range(n_terms)))


def sample_problems(seed: int, count: int, n_terms_range: tuple[int, int], skill: str = "sum"
                    ) -> list[Problem | DigitsProblem]:
    """`count` problems of `skill` (SKILLS) with n_terms drawn uniformly from the inclusive range."""
    if skill not in SKILLS:
        raise ValueError(f"lab skill must be one of {SKILLS}, got {skill!r}")
    rng = random.Random(seed)
    lo, hi = n_terms_range
    problems = [sample_problem(rng, rng.randint(lo, hi)) for _ in range(count)]
    return problems if skill == "sum" else [DigitsProblem(p.terms) for p in problems]


def parse_prompt(prompt: str) -> Problem | DigitsProblem:
    """The problem in a prompt; text before the terms (a prompt template's preamble, e.g. `#12+34:`) is ignored."""
    if not prompt.endswith(PROMPT_END):
        raise ValueError(f"lab prompt must end with {PROMPT_END!r}: {prompt!r}")
    digits = DIGITS_TERMS_RE.search(prompt)
    if digits is not None and ";" in digits.group(1):
        return DigitsProblem(tuple(int(t) for t in digits.group(1).split(";")))
    match = TERMS_RE.search(prompt)
    if match is None:
        raise ValueError(f"lab prompt has no terms before {PROMPT_END!r}: {prompt!r}")
    return Problem(tuple(int(t) for t in match.group(1).split("+")))


def verify(prompt: str, response: str) -> bool:
    """True when the response ends with '#<answer>' and the answer is the sum in the prompt."""
    return extract_answer(response) == parse_prompt(prompt).answer
