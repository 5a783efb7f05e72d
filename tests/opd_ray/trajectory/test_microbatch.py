"""Micro-batches (learner.micro_batch_tokens, teacher.micro_batch_tokens): a split shard gives the unsplit result.

On the lab models: one OPD step over >= 3 micro-batches ends at the same weights as one unsplit step (1e-5
relative), with the same metrics, for the top-k and the sampled-token objectives; the teacher's micro-batched
scores equal its unsplit ones; a budget that covers the shard changes nothing at all.
"""
import dataclasses

import numpy as np
import pytest

from opd_ray.trajectory import microbatch
from tests.conftest import LAB, lab_learner, scored_lab_batch

SMALL_BUDGET = 200  # 16 lab rows of 20-56 tokens (896 padded): 4 micro-batches


@pytest.fixture(scope="module")
def scored():
    """16 lab trajectories of the trained student, scored by the trained teacher (unsplit, float32 payload)."""
    return scored_lab_batch(16, problem_seed=11)


def test_plan_covers_every_row_once_within_the_budget(scored):
    _, batch = scored
    groups = microbatch.plan(batch, SMALL_BUDGET)
    assert groups is not None and len(groups) >= 3
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(batch)))
    for rows, micro in microbatch.split(batch, SMALL_BUDGET):
        assert len(rows) >= 1 and microbatch.padded_tokens(micro) <= SMALL_BUDGET
        np.testing.assert_array_equal(micro.response_ids_BR, batch.response_ids_BR[rows, : micro.response_ids_BR.shape[1]])
        assert micro.response_mask_BR[:, -1].any() and micro.prompt_mask_BP[:, 0].any()  # no all-padding column
    assert microbatch.plan(batch, 1) is not None and len(microbatch.plan(batch, 1)) == len(batch)  # one row each
    assert microbatch.plan(batch, microbatch.padded_tokens(batch)) is None  # fits: the shard as it is


def test_teacher_micro_batched_scores_equal_unsplit(scored):
    from opd_ray.engines.hf_teacher import HFTeacher

    teacher, whole = scored
    split_teacher = HFTeacher(str(LAB / "teacher"), top_k=4, temperature=1.0, max_new_tokens=40,
                              logprob_dtype="float32", micro_batch_tokens=SMALL_BUDGET)
    split = split_teacher.score(whole)
    m = whole.response_mask_BR
    for f in dataclasses.fields(whole):
        if not f.name.startswith("teacher_") or getattr(whole, f.name) is None:
            continue
        got, want = getattr(split, f.name), getattr(whole, f.name)
        assert got.shape == want.shape and got.dtype == want.dtype, f.name
        if f.name == "teacher_topk_ids_BRK":
            np.testing.assert_array_equal(got, want, err_msg=f.name)  # padding positions too
        else:
            np.testing.assert_allclose(got[m], want[m], rtol=1e-5, atol=1e-6, err_msg=f.name)
            np.testing.assert_array_equal(got[~m], want[~m], err_msg=f.name)


def make_learner(objective_kind: str, budget: int):
    from opd_ray.config.schema import LearnerConfig, ObjectiveConfig

    return lab_learner(ObjectiveConfig(kind=objective_kind), LearnerConfig(lr=1e-3, micro_batch_tokens=budget))


def weights(learner) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in learner.full_state_dict().items()}


@pytest.mark.parametrize("kind", ["topk", "sampled_token"])
def test_one_step_over_micro_batches_gives_the_unsplit_weights_and_metrics(scored, kind):
    _, batch = scored
    assert microbatch.count(batch, SMALL_BUDGET) >= 3
    before = weights(make_learner(kind, 1 << 30))
    runs = {}
    for budget in (1 << 30, SMALL_BUDGET):
        learner = make_learner(kind, budget)
        out = learner.train_step([batch])
        runs[budget] = (weights(learner), out["sums"])
    (whole_w, whole_sums), (split_w, split_sums) = runs[1 << 30], runs[SMALL_BUDGET]
    moved = 0.0
    for name, want in whole_w.items():
        scale = max(np.linalg.norm(want), 1e-12)
        assert np.linalg.norm(split_w[name] - want) / scale < 1e-5, name
        moved = max(moved, np.linalg.norm(want - before[name]) / scale)
    assert moved > 1e-4  # the step changed the weights: the comparison above is not between two no-ops
    assert set(split_sums) == set(whole_sums)
    for name, (value, count) in whole_sums.items():
        np.testing.assert_allclose(split_sums[name][0], value, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(split_sums[name][1], count, rtol=0, err_msg=name)


def test_sampling_with_a_chunked_prompt_pass_matches_one_pass():
    """teacher.micro_batch_tokens also bounds the HF prompt pass: rows prefilled in chunks, caches joined."""
    from opd_ray.lab.task import sample_problems
    from opd_ray.models.loading import load_model, load_tokenizer
    from opd_ray.models.sampling import sample

    model, tok = load_model(str(LAB / "student")), load_tokenizer(str(LAB / "student"))
    prompts = [tok(p.prompt)["input_ids"] for p in sample_problems(12, 12, (2, 5))]
    kwargs = dict(max_new_tokens=24, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, seeds=list(range(12)))
    whole = sample(model, prompts, **kwargs)
    width = max(len(p) for p in prompts)
    chunked = sample(model, prompts, **kwargs, prefill_tokens=3 * width)  # 4 chunks of 3 rows
    np.testing.assert_array_equal(chunked.response_ids_BR, whole.response_ids_BR)
    np.testing.assert_allclose(chunked.logp_BR, whole.logp_BR, atol=1e-5)
