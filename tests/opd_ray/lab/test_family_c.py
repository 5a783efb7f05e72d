"""Family C (opd_ray/lab/family_c.py): the truncated student computes what the kept layers compute, the prompt sets
are what S2 needs, and a tiny build continues each model from its parent."""
import json

import pytest
import torch

from opd_ray.lab import family_c
from opd_ray.lab.real_lab import Recipe, eval_sets
from opd_ray.lab.real_models import tiny_random_model
from opd_ray.models.loading import load_model, load_tokenizer


def test_a_truncated_model_is_the_kept_layers_of_its_base_with_a_working_kv_cache(tmp_path):
    base = tiny_random_model(out_dir=tmp_path / "base", seed=3, layers=5)
    card = family_c.truncate(base, tmp_path / "cut", keep=(0, 1, 4))
    assert card["kept_layers"] == [0, 1, 4] and card["of_layers"] == 5
    cut = load_model(str(tmp_path / "cut"))
    assert cut.config.num_hidden_layers == len(cut.model.layers) == 3
    reference = load_model(str(base))
    reference.model.layers = torch.nn.ModuleList(reference.model.layers[i] for i in (0, 1, 4))
    for i, layer in enumerate(reference.model.layers):
        layer.self_attn.layer_idx = i
    ids = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(cut(ids).logits, reference(ids).logits, rtol=0, atol=0)
        # decoding with the KV cache (each layer writes its own cache slot) gives the uncached greedy tokens
        out = cut.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
        step_by_step = ids
        for _ in range(6):
            step_by_step = torch.cat([step_by_step, cut(step_by_step).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, step_by_step)


def test_the_layers_kept_are_those_whose_loss_alone_rises_most_and_the_saved_model_has_the_measured_loss(tmp_path):
    base = tiny_random_model(out_dir=tmp_path / "base", seed=3, layers=5)
    ids = torch.randint(0, 1000, (3, 10))
    mask, labels = torch.ones_like(ids), ids.clone()
    labels[:, :4] = -100
    model = load_model(str(base))
    keep, measured = family_c.choose_layers(model, (ids, mask, labels), n_keep=3)
    assert len(model.model.layers) == 5  # the model is left whole

    def loss(layers: list[int]) -> float:  # an independent reference: a fresh copy running only `layers`, float64
        ref = load_model(str(base)).double()
        family_c.set_layers(ref, [ref.model.layers[i] for i in layers])
        with torch.no_grad():
            return ref(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    alone = {i: loss([j for j in range(5) if j != i]) for i in range(5)}
    for i, value in measured["loss_dropping_one"].items():
        assert value == pytest.approx(alone[i], abs=1e-3)
    assert set(range(5)) - set(keep) == set(sorted(alone, key=alone.get)[:2])
    card = family_c.truncate(base, tmp_path / "cut", keep=3, batch=(ids, mask, labels))
    assert card["kept_layers"] == list(keep)
    with torch.no_grad():
        saved = load_model(str(tmp_path / "cut"))(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    assert saved == pytest.approx(card["loss_kept"], abs=1e-3) == pytest.approx(loss(list(keep)), abs=1e-3)


def test_the_prompt_sets_are_half_d_half_d_prime_of_three_digit_terms_and_never_held_out():
    train = family_c.train_prompts()
    held = {s.question for sums in eval_sets(family_c.EVAL_SETS).values() for s in sums}
    assert not {s.question for s in train} & held
    long = sum(len(s.terms) >= family_c.D_PRIME[0] for s in train) / len(train)
    assert abs(long - 0.5) < 0.01
    assert all(100 <= t <= 999 for s in train for t in s.terms)
    sets = eval_sets(family_c.EVAL_SETS)
    assert [len(sets[k]) for k in ("d", "d_prime")] == [1024, 256]
    assert {len(s.terms) for s in sets["d_prime"]} == set(range(9, 13))


def test_a_tiny_family_build_continues_each_model_from_its_parent(tiny_smol, tmp_path, monkeypatch, capsys):
    tiny = dict(steps=2, lr=1e-3, terms=family_c.TERMS)
    monkeypatch.setattr(family_c, "RECIPES", {
        family_c.STUDENT: (Recipe(((1.0, (3, 4)),), seed=1, **tiny), family_c.TRUNCATED),
        family_c.TEACHER_SAME: (Recipe(((1.0, (3, 4)),), seed=1, **tiny), None),
        family_c.TEACHER_NOVEL: (Recipe(((0.5, (3, 4)), (0.5, (9, 10))), seed=2, **tiny), family_c.TEACHER_SAME)})
    monkeypatch.setattr(family_c, "N_KEEP", 1)
    monkeypatch.setattr(family_c, "CARD_EVAL", {"d": 2, "d_prime": 2})
    monkeypatch.setattr(family_c, "PLATEAU_STEPS", (1,))
    monkeypatch.setattr(family_c, "EVAL_TOKENS", 8)
    out = tmp_path / "models"
    monkeypatch.setattr("sys.argv", ["family_c", "--base", str(tiny_smol / "student"), "--out", str(out)])
    family_c.main()
    cards = {n: json.loads((out / n / "lab_card.json").read_text()) for n in (family_c.TRUNCATED, *family_c.RECIPES)}
    assert load_model(str(out / family_c.STUDENT)).config.num_hidden_layers == 1
    assert cards[family_c.STUDENT]["base"] == str(out / family_c.TRUNCATED)
    assert cards[family_c.TEACHER_SAME]["base"] == str(tiny_smol / "student")
    assert cards[family_c.TEACHER_NOVEL]["base"] == str(out / family_c.TEACHER_SAME)
    assert set(cards[family_c.STUDENT]["plateau_acc"]) == {"1", "2"}  # the plateau steps and the last one
    assert set(cards[family_c.TEACHER_NOVEL]) >= {"d_acc", "d_prime_acc"}
    rows = (out / family_c.TASK_DIR / "d_prime.jsonl").read_text().splitlines()
    assert len(rows) == 256 and json.loads(rows[0])["prompt"][0]["content"].startswith("What is ")
    assert load_tokenizer(str(out / family_c.STUDENT)).vocab_size == 49152
    family_c.main()
    assert f"{family_c.TEACHER_NOVEL}: exists" in capsys.readouterr().out
