"""Prompt recipe helpers on crafted inputs: template rewriting, exact and near-duplicate removal, mixing."""
import numpy as np
import pytest

from opd_ray.data.prompt_selection import (
    char_ngram_embed,
    dedup,
    dedup_exact,
    dedup_near,
    normalize,
    rewrite_template,
    select_aligned,
    strip_template,
)

DAPO = ("Solve the following math problem step by step. The last line of your response should be of the form "
        "Answer: $Answer\n\n{q}\n\nRemember to put your answer on its own line after \"Answer:\".")
JUSTRL = "{q} Please reason step by step, and put your final answer within \\boxed{}."


def test_rewrite_between_the_papers_templates():
    q = "What is 2+3?"
    dapo_prompt = DAPO.replace("{q}", q)
    assert strip_template(dapo_prompt, DAPO) == q
    assert rewrite_template(dapo_prompt, DAPO, JUSTRL) == q + " Please reason step by step, and put your final " \
                                                            "answer within \\boxed{}."
    assert rewrite_template("12+34:", "{q}:", "#{q}=") == "#12+34="  # the lab's foreign template
    with pytest.raises(ValueError, match="not in the template"):
        strip_template("12+34=", "{q}:")
    with pytest.raises(ValueError, match="exactly once"):
        rewrite_template("12+34:", "{q}:", "no placeholder")


def test_exact_dedup_normalises_case_space_and_unicode():
    prompts = ["What is  2+3?", "what is 2+3?", "What is 2+3?\n", "What is 2＋3?", "Other"]
    assert dedup_exact(prompts) == ["What is  2+3?", "Other"]  # fullwidth ＋ folds to + under NFKC
    assert dedup_exact(prompts, against=["OTHER"]) == ["What is  2+3?"]
    assert normalize(" A\tB ") == "a b"


def test_char_ngram_embedding_is_unit_norm_and_similarity_tracks_overlap():
    v = char_ngram_embed(["12+34+56:", "12+34+57:", "98+76+54:"])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)
    close, far = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert close > 0.6 and far < 0.2  # 6 of 9 character 3-grams shared vs none


def test_near_dedup_threshold_is_configurable():
    prompts = ["Compute the sum of 12 and 34.", "Compute the sum of 12 and 35.", "Name a prime above 100."]
    assert dedup_near(prompts, threshold=0.6) == [prompts[0], prompts[2]]  # first of a near-duplicate group stays
    assert dedup_near(prompts, threshold=0.99) == prompts  # nothing that close
    assert dedup_near(prompts, threshold=0.6, against=["Name a prime above 100!"]) == [prompts[0]]
    with pytest.raises(ValueError, match="threshold"):
        dedup_near(prompts, threshold=0.0)


def test_near_dedup_accepts_any_embedder():
    """A stand-in for a sentence model: two 'paraphrases' share a vector."""
    table = {"a cat sat": [1, 0], "the cat sat down": [0.99, 0.14], "dogs bark": [0, 1]}
    embed = lambda texts: np.array([table[t] for t in texts], dtype=np.float32)  # noqa: E731
    assert dedup(list(table), threshold=0.6, embed=embed) == ["a cat sat", "dogs bark"]
    assert dedup(list(table) + ["A cat sat"], threshold=1.0) == list(table)  # 1.0: exact only


def test_select_aligned_mixes_the_configured_share_without_overlap():
    aligned = [f"a{i}" for i in range(100)]
    other = [f"o{i}" for i in range(50)] + aligned[:10]  # overlaps are removed from the other pool
    chosen = select_aligned(aligned, other, count=40, other_share=0.25, seed=0)
    assert len(chosen) == len(set(chosen)) == 40
    assert sum(c.startswith("o") for c in chosen) == 10
    assert chosen == select_aligned(aligned, other, count=40, other_share=0.25, seed=0)  # seeded
    with pytest.raises(ValueError, match="count"):
        select_aligned(aligned, other, count=200, other_share=0.5, seed=0)


def test_entropy_collapse_watch_warns_once(capsys):
    from types import SimpleNamespace

    from opd_ray.data.prompt_selection import EntropyCollapseWatch

    watch = EntropyCollapseWatch(0.1)
    for step, entropy in enumerate([0.5, 0.2, 0.06, 0.04, 0.01], start=1):
        watch(SimpleNamespace(step=step), {"entropy_student": entropy})
    out = capsys.readouterr().out
    assert out.count("warning: student entropy collapsed") == 1 and "by step 4" in out
    EntropyCollapseWatch(0.0)(SimpleNamespace(step=1), {"entropy_student": 0.0})  # off: never warns
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------- the OPD prompt set from the teacher's prompts
def aligned_cfg(source, *overrides):
    from opd_ray.run.preflight import load_config
    from tests.conftest import ROOT

    return load_config(ROOT / "configs" / "lab_cpu.yaml", [f"data.teacher_prompts={source}", "data.train_prompts=200",
                                                          *overrides])


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".parquet"])
def test_opd_prompt_set_draws_the_configured_share_from_a_teacher_prompt_file(tmp_path, suffix):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from opd_ray.lab.arith_task import lab_train_prompts, opd_prompt_set
    from opd_ray.lab.build import eval_sets

    held_out = eval_sets()[1][0].prompt  # a held-out hard problem must never become an OPD prompt
    teacher = [f"{a}+{b}+{a}:" for a in range(10, 40) for b in range(10, 20)] + [held_out, "10+10+10:"]
    path = tmp_path / f"teacher_prompts{suffix}"
    if suffix == ".txt":
        path.write_text("\n".join(teacher) + "\n")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(teacher)))
    else:
        pq.write_table(pa.table({"prompt": teacher}), path)
    cfg = aligned_cfg(path, "data.other_share=0.25")
    prompts = opd_prompt_set(cfg.data, seed=0)
    task = set(lab_train_prompts(cfg.data, 0))
    assert len(prompts) == len(set(prompts)) == 200
    assert sum(p in set(teacher) for p in prompts) == 150 and sum(p in task for p in prompts) == 50
    assert held_out not in prompts


def test_a_teacher_prompt_file_without_prompts_is_named(tmp_path):
    from opd_ray.lab.arith_task import opd_prompt_set

    path = tmp_path / "rows.jsonl"
    path.write_text('{"question": "1+1:"}\n')
    with pytest.raises(ValueError, match=r"data.teacher_prompts: .*rows.jsonl line 1 has no string field 'prompt'"):
        opd_prompt_set(aligned_cfg(path).data, seed=0)


def test_lab_teacher_prompts_are_exactly_what_its_sft_trained_on(monkeypatch):
    """lab:<model> regenerates the model's SFT problems; check against what train_sft actually batches."""
    from opd_ray.lab import sft
    from opd_ray.lab.tiny_models import build_model
    from opd_ray.lab.tokenizer import build_tokenizer

    seen = []
    real_make_batch = sft.make_batch
    monkeypatch.setattr(sft, "make_batch", lambda tok, problems, cot: seen.extend(problems) or real_make_batch(
        tok, problems, cot))
    tok = build_tokenizer()
    mixture = [(0.5, (2, 3)), (0.5, (4, 5))]
    sft.train_sft(build_model("student", tok, 0), tok, mixture, steps=3, batch_size=8, lr=1e-3, seed=2, desc="t")
    assert seen == sft.sft_problems(mixture, steps=3, batch_size=8, seed=2)


def test_content_aligned_set_from_the_lab_teacher_has_no_near_duplicates_of_the_eval_set():
    from opd_ray.lab.arith_task import opd_prompt_set
    from opd_ray.lab.build import eval_sets

    cfg = aligned_cfg("lab:teacher", "data.dedup_threshold=0.8")
    prompts = opd_prompt_set(cfg.data, seed=0)
    held_out = [p.prompt for s in eval_sets() for p in s]
    sims = char_ngram_embed(prompts) @ char_ngram_embed(held_out).T
    assert 0 < len(prompts) <= 200 and sims.max() < 0.8
