"""The lab's teachers for the paper's failure conditions: their cards and the chain-of-thought they write."""
import json

import pytest

from opd_ray.lab.task import Problem, verify
from opd_ray.models.loading import load_model, load_tokenizer
from opd_ray.models.sampling import decode_responses, sample
from tests.conftest import LAB


def card(name):
    return json.loads((LAB / name / "lab_card.json").read_text())


def greedy(name, prompt):
    tok, model = load_tokenizer(str(LAB / name)), load_model(str(LAB / name))
    out = sample(model, [tok(prompt)["input_ids"]], max_new_tokens=56, eos_id=tok.eos_token_id,
                 pad_id=tok.pad_token_id, seeds=None)
    return decode_responses(tok, out)[0]


def test_reverse_chain_of_thought_is_the_same_sum():
    p = Problem((12, 34, 56))
    assert p.solution_in("reverse") == "56+34=90;90+12=102;#102" and verify(p.prompt, p.solution_in("reverse"))


def test_same_data_teacher_scores_higher_than_the_student_but_far_below_the_good_teacher():
    student, same, good = card("student"), card("teacher_samedata"), card("teacher")
    assert same["sft_mixture"] == student["sft_mixture"] and same["parameters"] > student["parameters"]
    assert student["hard_acc"] < same["hard_acc"] < good["hard_acc"] - 0.3


def test_incompatible_teacher_is_as_capable_but_thinks_right_to_left():
    incompatible, good = card("teacher_incompatible"), card("teacher")
    assert incompatible["hard_acc"] >= good["hard_acc"] - 0.02 and incompatible["cot"] == "reverse"
    p = Problem((21, 43, 65, 87))
    assert greedy("teacher_incompatible", p.prompt) == p.solution_in("reverse")
    assert greedy("teacher", p.prompt) == p.solution


@pytest.mark.slow  # ~31 s of SFT: the slow tier, which CI runs
def test_build_fine_tunes_the_incompatible_teacher_from_the_teacher(tmp_path):
    """`make lab`'s two phases at a tiny step count: the fine-tune waits for, and starts from, its base."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "opd_ray.lab.build", "--out", str(tmp_path), "--steps-scale",
                           "0.002", "--only", "teacher_incompatible", "teacher"], capture_output=True, text=True,
                          timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    cards = {n: json.loads((tmp_path / n / "lab_card.json").read_text()) for n in ("teacher", "teacher_incompatible")}
    assert cards["teacher_incompatible"]["init_from"] == "teacher" and cards["teacher_incompatible"]["cot"] == "reverse"
    assert cards["teacher"]["sft_steps"] == 5 and cards["teacher_incompatible"]["sft_steps"] == 1
