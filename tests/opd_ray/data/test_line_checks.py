"""The line-level prefix check of sum chains (opd_ray/data/line_checks.py) on the real and starter labs' formats."""
import random

import pytest

from opd_ray.data.line_checks import question_terms, sum_chain_slipped
from opd_ray.lab.real_lab import Sum, sample_sums
from opd_ray.lab.starter_lab import STARTERS, starter_solution

PROMPT = "<|im_start|>user\nWhat is 23 plus 45 plus 67?<|im_end|>\n<|im_start|>assistant\n"


def test_every_prefix_of_a_correct_chain_holds_no_error_in_either_lab_format():
    write = starter_solution(STARTERS[:16])
    for problem in sample_sums(seed=5, count=50, n_terms=(2, 6)):
        prompt = f"user\n{problem.question}\nassistant\n"
        assert question_terms(prompt) == list(problem.terms)
        for solution in (problem.solution, write(problem, random.Random(0))):
            assert not any(sum_chain_slipped(solution[:cut], prompt) for cut in range(len(solution) + 1))


@pytest.mark.parametrize("response, wrong_line, why", [
    ("23+45=69\n", 0, "a wrong sum"),
    ("23+45=68\n67+67=134\n", 1, "a line that does not start from the previous result"),
    ("23+44=67\n", 0, "a term misread from the question"),
    ("45+23=68\n", 0, "a chain that does not start from the first term"),
    ("23+45=68\n68+67=135\n135+1=136\n", 2, "a line past the question's last term"),
    ("Next, 23+45=68.\nThen, 68+67=136.\n", 1, "a wrong sum in the starter format"),
])
def test_a_prefix_has_slipped_once_it_holds_the_first_wrong_line(response, wrong_line, why):
    ends = [i + 1 for i, ch in enumerate(response) if ch == "\n"]  # where each complete line ends
    assert not sum_chain_slipped(response[: ends[wrong_line] - 1], PROMPT), why  # the wrong line, unfinished
    assert sum_chain_slipped(response[: ends[wrong_line]], PROMPT), why


def test_a_line_still_being_written_is_not_judged():
    assert not sum_chain_slipped("23+45=68\n68+67=13", PROMPT)  # "13" may become "135"
    assert sum_chain_slipped("23+45=68\n68+67=13\n", PROMPT)


def test_a_box_before_the_last_term_or_not_on_the_last_result_is_a_slip():
    assert sum_chain_slipped("23+45=68\n\\boxed{68}", PROMPT)  # boxed after one of two additions
    assert sum_chain_slipped("23+45=68\n68+67=135\n\\boxed{136}", PROMPT)
    assert not sum_chain_slipped("23+45=68\n68+67=135\n\\boxed{135}", PROMPT)
    assert not sum_chain_slipped("23+45=68\n68+67=135\n\\boxed{13", PROMPT)  # not closed yet


def test_without_a_sum_question_only_the_arithmetic_and_the_chain_are_checked():
    assert question_terms("What is the capital of France?") is None
    assert not sum_chain_slipped("1+2=3\n3+4=7\n", "Add these.")
    assert sum_chain_slipped("1+2=3\n3+4=8\n", "Add these.") and sum_chain_slipped("1+2=3\n4+4=8\n", "Add these.")


def test_a_real_lab_problem_reads_its_own_terms():
    problem = Sum((19, 96, 85))
    assert question_terms(f"system\nAdd the numbers step by step.\nuser\n{problem.question}") == [19, 96, 85]
