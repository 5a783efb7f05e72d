"""Prompt recipe helpers on crafted inputs: template rewriting, exact and near-duplicate removal, mixing."""
import numpy as np
import pytest

from opd_ray.prompts import char_ngram_embed, dedup, dedup_exact, dedup_near, normalize, rewrite_template, \
    select_aligned, strip_template

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

    from opd_ray.prompts import EntropyCollapseWatch

    watch = EntropyCollapseWatch(0.1)
    for step, entropy in enumerate([0.5, 0.2, 0.06, 0.04, 0.01], start=1):
        watch(SimpleNamespace(step=step), {"entropy_student": entropy})
    out = capsys.readouterr().out
    assert out.count("warning: student entropy collapsed") == 1 and "by step 4" in out
    EntropyCollapseWatch(0.0)(SimpleNamespace(step=1), {"entropy_student": 0.0})  # off: never warns
    assert capsys.readouterr().out == ""
