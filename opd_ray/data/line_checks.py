"""Line-level checks of a partial chain of thought: does a prefix of a response already hold an error?

The paper's long-horizon finding (S8) is that the teacher's continuation advantage decays with the depth at which
the student's response is cut. The mechanism it proposes is that a deeper prefix more often holds an error no
continuation can undo. A check here reads the complete lines of a prefix and says whether one of them is wrong, so
that the probe can report the share of prefixes that had already slipped at each depth beside the advantage.
"""
from __future__ import annotations

import re
from typing import Callable

SUM_LINE_RE = re.compile(r"(\d+)\s*\+\s*(\d+)\s*=\s*(\d+)")
BOX_RE = re.compile(r"\\boxed\{(\d+)\}")
QUESTION_RE = re.compile(r"What is ((?:\d+ plus )+\d+)\?")  # the real and starter labs' question (real_lab.Sum)

PrefixCheck = Callable[[str, str], bool]  # (prefix text, rendered prompt) -> the prefix already holds an error


def question_terms(prompt: str) -> list[int] | None:
    """The terms of the last "What is 23 plus 45 plus 67?" in a rendered prompt, or None if it asks no such sum."""
    found = QUESTION_RE.findall(prompt)
    return [int(t) for t in found[-1].split(" plus ")] if found else None


def sum_chain_slipped(prefix: str, prompt: str) -> bool:
    """A running-sum chain ("23+45=68\\n68+67=135\\n\\boxed{135}") has slipped if a complete line is wrong: its sum
    is wrong, it does not start from the previous line's result (the first line: from the first term), or it adds
    another term than the question's next one (when the prompt asks a "What is ... plus ...?" sum). Text after the
    last newline is a line still being written and is not judged, except a closed box: a box that is not the last
    line's result, or that comes before the question's last term was added, has slipped too."""
    terms, previous, added = question_terms(prompt), None, 0
    *complete, partial = prefix.split("\n")
    for line in complete:
        m = SUM_LINE_RE.search(line)
        if m:
            a, b, c = map(int, m.groups())
            start = previous if previous is not None else (terms[0] if terms else a)
            term = terms[added + 1] if terms and added + 1 < len(terms) else b
            if a + b != c or a != start or b != term or (terms and added + 1 >= len(terms)):
                return True
            previous, added = c, added + 1
        elif wrong_box(line, previous, added, terms):
            return True
    return wrong_box(partial, previous, added, terms)


def wrong_box(line: str, previous: int | None, added: int, terms: list[int] | None) -> bool:
    """A closed box on `line` that is not the chain's last result, or that comes before every term was added."""
    box = BOX_RE.search(line)
    if box is None:
        return False
    return (previous is not None and int(box.group(1)) != previous) or bool(terms and added < len(terms) - 1)


PREFIX_CHECKS: dict[str, PrefixCheck] = {"sum_chain": sum_chain_slipped}
