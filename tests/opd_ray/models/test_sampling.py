"""Sampling: per-trajectory determinism, and log-probs that agree with a plain forward pass."""
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from opd_ray.models.sampling import sample, trajectory_seed
from opd_ray.models.scoring import gather_BR, response_logits


def test_seed_depends_on_every_part():
    base = trajectory_seed(0, (0, 1, 0), 3)
    assert base == trajectory_seed(0, (0, 1, 0), 3)
    others = {trajectory_seed(1, (0, 1, 0), 3), trajectory_seed(0, (0, 2, 0), 3), trajectory_seed(0, (0, 1, 0), 4)}
    assert base not in others and len(others) == 3


def test_row_is_reproducible_whatever_its_batch(tiny_lab):
    model = AutoModelForCausalLM.from_pretrained(tiny_lab / "student").eval()
    tok = AutoTokenizer.from_pretrained(tiny_lab / "student")
    prompts = [tok(p)["input_ids"] for p in ("12+34:", "10+20+30+40:", "55+66+77:")]
    kw = dict(max_new_tokens=12, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    full = sample(model, prompts, seeds=[7, 8, 9], **kw)
    alone = sample(model, prompts[1:2], seeds=[8], **kw)
    n = alone.response_mask_BR[0].sum()
    assert np.array_equal(full.response_ids_BR[1][:n], alone.response_ids_BR[0][:n])
    assert np.allclose(full.logp_BR[1][:n], alone.logp_BR[0][:n], atol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # eager: what a CPU run of short sequences resolves to
def test_sampler_logprobs_match_a_scoring_forward(tiny_lab, attention):
    model = AutoModelForCausalLM.from_pretrained(tiny_lab / "student", attn_implementation=attention).eval()
    assert model.config._attn_implementation == attention
    tok = AutoTokenizer.from_pretrained(tiny_lab / "student")
    prompts = [tok(p)["input_ids"] for p in ("12+34:", "10+20+30+40:")]
    out = sample(model, prompts, max_new_tokens=10, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                 seeds=[1, 2])
    from opd_ray.models.sampling import left_pad

    ids, mask = left_pad(prompts, tok.pad_token_id)
    with torch.no_grad():
        logp = torch.log_softmax(response_logits(model, ids.numpy(), mask.numpy(), out.response_ids_BR,
                                                 out.response_mask_BR), -1)
    scored = gather_BR(logp, out.response_ids_BR).numpy()
    m = out.response_mask_BR
    assert np.allclose(scored[m], out.logp_BR[m], atol=1e-4)


def test_nucleus_keeps_the_smallest_set_holding_top_p():
    from opd_ray.models.sampling import nucleus_logp

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]], dtype=torch.float64)
    kept = nucleus_logp(probs.log(), 0.75).exp()
    np.testing.assert_allclose(kept[0].numpy(), [0.5 / 0.8, 0.3 / 0.8, 0, 0], atol=1e-12)  # 0.5 < 0.75 <= 0.8
    np.testing.assert_allclose(kept[1].numpy(), [1, 0, 0, 0], atol=1e-12)  # the top token alone holds 0.97
    np.testing.assert_allclose(nucleus_logp(probs.log(), 1.0).exp().numpy(), probs.numpy(), atol=1e-12)


def test_every_eos_id_ends_a_row_and_stop_strings_cut_it(tiny_lab):
    from opd_ray.models.sampling import truncate_at_stops

    model = AutoModelForCausalLM.from_pretrained(tiny_lab / "student").eval()
    tok = AutoTokenizer.from_pretrained(tiny_lab / "student")
    prompts = [tok(p)["input_ids"] for p in ("12+34:", "55+66+77:")]
    kw = dict(max_new_tokens=16, pad_id=tok.pad_token_id, seeds=[1, 2])
    plain = sample(model, prompts, eos_id=tok.eos_token_id, **kw)
    first = int(plain.response_ids_BR[0, 0])  # make the first sampled token of row 0 an end token too
    ended = sample(model, prompts, eos_id=[tok.eos_token_id, first], **kw)
    assert ended.response_mask_BR[0].sum() == 1 and ended.response_ids_BR[0, 0] == first
    text = tok.decode(plain.response_ids_BR[1][plain.response_mask_BR[1]].tolist())
    stop = text[3:5]  # a string that occurs in row 1's response: the row ends at the token completing it
    cut = truncate_at_stops(sample(model, prompts, eos_id=tok.eos_token_id, **kw), tok, [stop], tok.pad_token_id)
    n = int(cut.response_mask_BR[1].sum())
    assert stop in tok.decode(cut.response_ids_BR[1][:n].tolist())
    assert stop not in tok.decode(cut.response_ids_BR[1][: n - 1].tolist())
    assert (cut.response_ids_BR[1][n:] == tok.pad_token_id).all() and (cut.logp_BR[1][n:] == 0).all()


def test_position_uniforms_are_stateless_and_uniform():
    from opd_ray.models.sampling import position_uniforms

    seeds = np.array([trajectory_seed(0, (0, i, 0), 1) for i in range(20_000)], dtype=np.uint64)
    u = position_uniforms(seeds, 3).numpy()
    assert ((u >= 0) & (u < 1)).all()
    np.testing.assert_array_equal(position_uniforms(seeds[7:9], 3).numpy(), u[7:9])  # no state: any subset
    assert not np.array_equal(position_uniforms(seeds, 4).numpy(), u)  # every position draws anew
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    chi2 = ((counts - 2_000) ** 2 / 2_000).sum()
    assert chi2 < 27.9, counts  # chi-square, 9 degrees of freedom, p = 0.001


def test_inverse_cdf_draws_follow_the_softmax_chi_square():
    """Many trajectories at one position, on a 6-token distribution: frequencies against softmax (float64)."""
    from opd_ray.models.sampling import inverse_cdf_sample, nucleus_logp, position_uniforms

    logits_V = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], dtype=torch.float64)
    probs_V = torch.softmax(logits_V, -1)
    n = 40_000
    seeds = np.array([trajectory_seed(5, (1, i, 0), 2) for i in range(n)], dtype=np.uint64)
    probs_NV = probs_V.float().expand(n, -1)
    drawn = inverse_cdf_sample(probs_NV, position_uniforms(seeds, 0)).numpy()
    counts = np.bincount(drawn, minlength=6)
    expected = probs_V.numpy() * n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 20.5, (counts, expected)  # chi-square, 5 degrees of freedom, p = 0.001
    nucleus = nucleus_logp(probs_NV.log(), 0.8).exp()  # tokens outside the nucleus are never drawn
    kept = inverse_cdf_sample(nucleus, position_uniforms(seeds, 0)).numpy()
    assert set(np.unique(kept)) == {0, 1, 2}


def test_a_trajectory_samples_the_same_tokens_in_any_batch_and_row(tiny_lab):
    """Invariant 2 with the counter-based stream: a row's tokens depend on its seed only, not on its neighbours,
    their number or its row index."""
    model = AutoModelForCausalLM.from_pretrained(tiny_lab / "student").eval()
    tok = AutoTokenizer.from_pretrained(tiny_lab / "student")
    texts = ["12+34:", "10+20+30+40:", "55+66+77:", "1+2:"]
    prompts = [tok(p)["input_ids"] for p in texts]
    kw = dict(max_new_tokens=12, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    seeds = [trajectory_seed(0, (0, i, 0), 0) for i in range(4)]
    full = sample(model, prompts, seeds=seeds, **kw)
    order = [2, 0, 3, 1]
    shuffled = sample(model, [prompts[i] for i in order], seeds=[seeds[i] for i in order], **kw)
    for row, i in enumerate(order):
        n = full.response_mask_BR[i].sum()
        assert n == shuffled.response_mask_BR[row].sum()
        np.testing.assert_array_equal(full.response_ids_BR[i][:n], shuffled.response_ids_BR[row][:n])
    other = sample(model, prompts[:1], seeds=[seeds[0] + 1], **kw)  # another seed: another trajectory
    assert not np.array_equal(other.response_ids_BR[0], full.response_ids_BR[0][:other.response_ids_BR.shape[1]])
