"""Rejection filters on crafted texts: each one fires on its pattern and on nothing a correct response writes."""
import pytest

from opd_ray.data.rejection_filters import (
    LAB_FILTERS,
    PAPER_FILTERS,
    filter_responses,
    rejection_reason,
    repeated_block_run,
    repeated_line,
    repeated_ngram,
)
from opd_ray.lab.task import sample_problems

GOOD = "12+34=46;46+56=102;#102"


def test_lab_reference_solutions_pass_every_filter():
    """No false rejects: 3,000 correct chains in both CoT formats, 2 to 5 terms."""
    for p in sample_problems(7, 3000, (2, 5)):
        for cot in ("forward", "reverse"):
            assert rejection_reason(p.solution_in(cot), False, LAB_FILTERS) is None, p.solution_in(cot)


@pytest.mark.parametrize("text,truncated,reason", [
    (GOOD, True, "truncated"),
    ("12+34=46;46+56=102;", False, "answer_format"),  # no final #answer
    ("12+34=46;46+56=102;#102;", False, "answer_format"),  # something after the answer
    ("12+34=46;12+34=46;#46", False, "repeated_line"),
    ("12+34=46;46+12+34=46;46+5=1;#9", False, "repeated_ngram"),  # "12+34=46;46+" twice, no line twice
    ("1+2=3;5+6=5+6=5+6=;#3", False, "repeated_block"),  # "5+6=" three times in a row
])
def test_lab_filters_reject_each_pattern(text, truncated, reason):
    assert rejection_reason(text, truncated, LAB_FILTERS) == reason


def test_paper_thresholds_line_ngram_block():
    line = "Let me double-check the arithmetic."  # 35 chars >= 20
    four, five = "\n".join([line] * 4), "\n".join([line] * 5)
    assert not repeated_line(four + "\n\\boxed{1}", PAPER_FILTERS)
    assert repeated_line(five, PAPER_FILTERS)  # >= 5 repeats of a line of >= 20 chars
    assert not repeated_line("\n".join(["short"] * 50), PAPER_FILTERS)  # lines under 20 chars never count

    gram = "x" * 30 + "".join(chr(97 + i % 26) for i in range(70))  # a 100-char chunk
    assert not repeated_ngram(gram + " ... " + gram, PAPER_FILTERS)  # twice is fine
    assert repeated_ngram(gram + " a " + gram + " b " + gram, PAPER_FILTERS)  # three times is not

    block = "".join(chr(65 + i % 26) for i in range(50))
    filler = "".join(chr(97 + (i * 7) % 26) + str(i % 10) for i in range(2600))  # > 5,000 varied chars
    assert repeated_block_run(filler + block * 3, PAPER_FILTERS)
    assert not repeated_block_run(filler + block * 2, PAPER_FILTERS)
    assert not repeated_block_run(block * 3, PAPER_FILTERS)  # short texts are not block-checked (paper: > 5,000)


def test_paper_answer_format_and_batch_counts():
    texts = ["so the answer is \\boxed{4}", "so the answer is 4", "\\boxed{5}"]
    keep, reasons = filter_responses(texts, [False, False, True], PAPER_FILTERS)
    assert keep == [True, False, False]
    assert reasons == {"answer_format": 1, "truncated": 1}


def test_a_verifier_rejects_wrong_answers_after_the_format_checks():
    texts = [GOOD, "12+34=46;46+56=103;#103", "12+34=46;46+56=102;", GOOD]
    truncated, correct = [False, False, False, False], [True, False, False, True]
    assert filter_responses(texts, truncated, LAB_FILTERS)[0] == [True, True, False, True]  # form only: 103 passes
    keep, reasons = filter_responses(texts, truncated, LAB_FILTERS, correct)
    assert keep == [True, False, False, True]
    assert reasons == {"wrong_answer": 1, "answer_format": 1}  # a badly formatted answer counts as that, not wrong
