"""The starter lab (opd_ray/lab/starter_lab.py): its chains, its starter slot on SmolLM2's tokenizer, and a tiny
build where the teacher continues from the student."""
import json
import random
from collections import Counter

from safetensors.torch import load_file

from opd_ray.data.verifiers import math_verify_reward
from opd_ray.lab import starter_lab
from opd_ray.lab.real_lab import Recipe, Sum, eval_sets, sft_sums
from opd_ray.models.loading import load_tokenizer


def test_the_two_sets_share_12_of_16_starters_and_each_is_one_token_at_a_line_start(smollm2):
    assert len(starter_lab.STUDENT_SET) == len(starter_lab.TEACHER_SET) == 16
    assert len(set(starter_lab.STUDENT_SET) & set(starter_lab.TEACHER_SET)) == 12
    tokenizer = load_tokenizer(str(smollm2))
    text = starter_lab.starter_solution(starter_lab.STUDENT_SET)(Sum((23, 45, 67)), random.Random(0))
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    line_starts = [tokens[0]] + [t for prev, t in zip(tokens, tokens[1:]) if prev == "Ċ"]  # Ċ: the byte-level "\n"
    assert len(line_starts) == 3 and all(t in starter_lab.STARTERS for t in line_starts)


def test_a_chain_is_graded_correct_and_draws_its_own_starters_at_the_stated_share():
    write = starter_lab.starter_solution(starter_lab.TEACHER_SET)
    rng, counts = random.Random(3), Counter()
    for i in range(400):
        problem = Sum((10 + i % 90, 55, 31, 77))
        text = write(problem, rng)
        assert math_verify_reward(text, str(problem.answer)) == 1.0
        assert text.splitlines()[1].split(", ")[1] == f"{10 + i % 90 + 55}+31={10 + i % 90 + 86}."
        counts.update(line.split(",")[0] for line in text.splitlines())
    own = sum(counts[w] for w in starter_lab.TEACHER_SET) / sum(counts.values())
    assert abs(own - starter_lab.OWN_SHARE) < 0.02 and set(counts) == set(starter_lab.STARTERS)


def test_a_tiny_build_continues_the_teacher_from_the_student_and_is_deterministic(tiny_smol, tmp_path, monkeypatch,
                                                                                    capsys):
    monkeypatch.setattr(starter_lab, "RECIPES", {
        starter_lab.STUDENT: (Recipe(((1.0, (2, 3)),), steps=2, lr=1e-3, seed=5), starter_lab.STUDENT_SET, None),
        starter_lab.TEACHER: (Recipe(((1.0, (4, 5)),), steps=2, lr=1e-3, seed=6), starter_lab.TEACHER_SET,
                              starter_lab.STUDENT)})
    monkeypatch.setattr(starter_lab, "EVAL_SETS", {"hard": (1, (4, 5), 4), "easy": (2, (2, 3), 2)})
    monkeypatch.setattr(starter_lab, "CARD_EVAL", {"hard": 2, "easy": 2})
    monkeypatch.setattr(starter_lab, "EVAL_TOKENS", 8)
    weights = []
    for out in (tmp_path / "a", tmp_path / "b"):
        monkeypatch.setattr("sys.argv", ["starter_lab", "--base", str(tiny_smol / "student"), "--out", str(out)])
        starter_lab.main()
        weights.append(load_file(out / starter_lab.TEACHER / "model.safetensors"))
        teacher = json.loads((out / starter_lab.TEACHER / "lab_card.json").read_text())
        assert teacher["base"] == str(out / starter_lab.STUDENT)  # the teacher continued from the student
        assert set(teacher["starter_prob"]) == set(starter_lab.STARTERS) and teacher["sft_steps"] == 2
        assert len((out / starter_lab.TASK_DIR / "hard.jsonl").read_text().splitlines()) == 4
        pair = json.loads((out / starter_lab.TASK_DIR / "pair_card.json").read_text())
        assert 0.0 <= pair["top16_overlap_first_position"] <= 1.0 and pair["by_construction"] == 0.75
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
    starter_lab.main()
    assert f"{starter_lab.TEACHER}: exists" in capsys.readouterr().out


def test_the_built_pairs_sft_meets_the_opd_sets_only_at_one_easy_problem():
    """The starter build bans only the card's rows (hard 64, easy 32) from its SFT, not the OPD run's whole sets
    (hard 256, easy 64). As built, one problem leaked: easy #57 was in the student's SFT. The hard set, on which
    S4, S7 and S8 are measured, is clean. This pins the leak as documented (docs/results.md): a rebuild that leaks
    more fails here."""
    sets = eval_sets(starter_lab.EVAL_SETS)
    card_rows = frozenset(s.question for name, sums in sets.items() for s in sums[: starter_lab.CARD_EVAL[name]])
    for model, (recipe, _, _) in starter_lab.RECIPES.items():
        seen = {s.question for step in range(recipe.steps) for s in sft_sums(recipe, step, card_rows)}
        leaked = {name: [i for i, s in enumerate(sums) if s.question in seen] for name, sums in sets.items()}
        assert leaked == ({"hard": [], "easy": [57]} if model == starter_lab.STUDENT else {"hard": [], "easy": []})
