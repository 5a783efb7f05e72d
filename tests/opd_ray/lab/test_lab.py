"""The lab: task and verifier, tokenizer and model save/load round trips through from_pretrained."""
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from opd_ray.data.verifiers import extract_answer
from opd_ray.lab.task import Problem, sample_problems, verify
from opd_ray.lab.tiny_models import build_model
from opd_ray.lab.tokenizer import build_tokenizer


def test_solution_is_a_running_sum_and_verifies():
    p = Problem((12, 34, 56))
    assert p.prompt == "12+34+56:"
    assert p.solution == "12+34=46;46+56=102;#102"
    assert verify(p.prompt, p.solution)
    assert not verify(p.prompt, "12+34=46;46+56=101;#101")
    assert not verify(p.prompt, "12+34=46;")  # no final answer
    assert extract_answer("#7 trailing") is None


def test_difficulty_knob_sets_the_number_of_terms():
    problems = sample_problems(0, 200, (4, 5))
    assert {len(p.terms) for p in problems} == {4, 5}
    assert sample_problems(0, 50, (4, 5)) == problems[:50]  # seeded


def test_tokenizer_round_trip(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = Problem((10, 99, 42)).prompt + Problem((10, 99, 42)).solution
    ids = loaded(text)["input_ids"]
    assert ids[0] == loaded.bos_token_id and ids == tok(text)["input_ids"]
    assert loaded.decode(ids, skip_special_tokens=True) == text
    assert len(loaded) == 18 and len(ids) == len(text) + 1  # one token per character, plus <bos>


def test_model_round_trip_gives_identical_logits(tmp_path):
    tok = build_tokenizer()
    model = build_model("student", tok, seed=0).eval()
    assert model.config.head_dim == 64
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([tok("12+34:")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_committed_lab_models_are_loadable_and_the_teacher_is_better():
    """The committed checkpoints: the lab cards record held-out accuracies measured at build time."""
    import json

    from tests.conftest import LAB

    cards = {n: json.loads((LAB / n / "lab_card.json").read_text()) for n in ("student", "teacher")}
    assert cards["teacher"]["hard_acc"] > cards["student"]["hard_acc"] + 0.2
    assert cards["student"]["hard_acc"] > 0.1  # the student already solves some hard problems: OPD has signal
    AutoModelForCausalLM.from_pretrained(LAB / "student")
