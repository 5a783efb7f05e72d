"""The real lab (opd_ray/lab/real_lab.py): its task files, its SFT data and a tiny build on SmolLM2's tokenizer."""
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from opd_ray.data.verifiers import math_verify_reward
from opd_ray.lab import real_lab
from opd_ray.lab.real_lab import Sum
from opd_ray.models.loading import load_tokenizer
from opd_ray.run.preflight import build_task, load_config

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "smollm2_cpu.yaml"


def test_the_chain_of_thought_adds_one_term_per_line_and_math_verify_grades_it():
    s = Sum((23, 45, 67))
    assert s.question == "What is 23 plus 45 plus 67?"
    assert s.solution == "23+45=68\n68+67=135\n\\boxed{135}"
    assert math_verify_reward(s.solution, str(s.answer)) == 1.0
    assert math_verify_reward("23+45=68\n\\boxed{68}", str(s.answer)) == 0.0


def test_no_training_draw_is_a_held_out_question():
    held_out = real_lab.held_out()
    assert len(held_out) == sum(size for _, _, size in real_lab.EVAL_SETS.values())
    assert not held_out & {s.question for s in real_lab.train_prompts()}
    for recipe in real_lab.RECIPES.values():
        drawn = {s.question for step in range(recipe.steps) for s in real_lab.sft_sums(recipe, step, held_out)}
        assert not held_out & drawn
        ranges = {len(s.terms) for step in range(recipe.steps) for s in real_lab.sft_sums(recipe, step, held_out)}
        assert ranges <= {n for _, (lo, hi) in recipe.mixture for n in range(lo, hi + 1)}
    student = real_lab.RECIPES["smollm2-sums-student"]
    assert real_lab.sft_sums(student, 3, held_out) == real_lab.sft_sums(student, 3, held_out)  # seeded


def test_the_sft_prompts_are_exactly_what_the_opd_run_renders(smollm2, tmp_path):
    """The models are fine-tuned on the token ids the dataset task will give the engines under smollm2_cpu.yaml."""
    real_lab.write_task_files(tmp_path / "sums_chat")
    files = {"data.train_files": [str(tmp_path / "sums_chat" / "train.jsonl")],
             "data.eval_files": {n: str(tmp_path / "sums_chat" / f"{n}.jsonl") for n in real_lab.EVAL_SETS}}
    overrides = [f"{k}={json.dumps(v)}" for k, v in files.items()]
    cfg = load_config(CONFIG, overrides, resolve_models=False)
    tokenizer = load_tokenizer(str(smollm2))
    task = build_task(cfg, tokenizer)
    assert len(task.train) == len(real_lab.train_prompts())  # none dropped as too long, none as leakage
    for name, sums in real_lab.eval_sets().items():
        assert [list(ex.prompt_ids) for ex in task.eval_sets[name]] == [real_lab.prompt_ids(tokenizer, s) for s in sums]
        assert [ex.answer for ex in task.eval_sets[name]] == [str(s.answer) for s in sums]
    assert max(len(ex.prompt_ids) for ex in task.train) <= cfg.data.max_prompt_tokens


def test_a_tiny_build_is_deterministic_and_skips_what_exists(tiny_smol, tmp_path, monkeypatch, capsys):
    recipe = real_lab.Recipe(((1.0, (2, 3)),), steps=2, lr=1e-3, seed=5)
    monkeypatch.setattr(real_lab, "RECIPES", {"tiny": recipe})
    monkeypatch.setattr(real_lab, "DERIVED", {real_lab.INCOMPATIBLE: (recipe, "tiny", real_lab.reverse_solution)})
    monkeypatch.setattr(real_lab, "EVAL_SETS", {"hard": (1, (4, 5), 2), "easy": (2, (2, 3), 2)})
    weights = []
    for out in (tmp_path / "a", tmp_path / "b"):
        monkeypatch.setattr("sys.argv", ["real_lab", "--base", str(tiny_smol / "student"), "--out", str(out)])
        real_lab.main()
        weights.append(load_file(out / "tiny" / "model.safetensors"))
        card = json.loads((out / "tiny" / "lab_card.json").read_text())
        assert card["sft_steps"] == 2 and set(card) >= {"easy_acc", "hard_acc", "train_s"}
    assert weights[0].keys() == weights[1].keys()
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
    assert any((weights[0][k] != load_file(tiny_smol / "student" / "model.safetensors")[k]).any() for k in weights[0])
    real_lab.main()
    assert "tiny: exists" in capsys.readouterr().out

    # the right-to-left teacher continues from the pair's teacher ("tiny" here), which must exist first
    argv = ["real_lab", "--base", str(tiny_smol / "student"), "--only", real_lab.INCOMPATIBLE]
    monkeypatch.setattr("sys.argv", argv + ["--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="build it first"):
        real_lab.main()
    monkeypatch.setattr("sys.argv", argv + ["--out", str(tmp_path / "b")])
    real_lab.main()
    card = json.loads((tmp_path / "b" / real_lab.INCOMPATIBLE / "lab_card.json").read_text())
    assert card["base"] == str(tmp_path / "b" / "tiny") and 0.0 <= card["right_to_left_share"] <= 1.0


def test_the_right_to_left_chain_adds_the_last_terms_first_to_the_same_answer():
    text = real_lab.reverse_solution(Sum((23, 45, 67)), None)
    assert text.splitlines()[0] == "67+45=112" and math_verify_reward(text, "135") == 1.0

