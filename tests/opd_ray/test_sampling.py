"""Sampling: per-trajectory determinism, and log-probs that agree with a plain forward pass."""
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from opd_ray.sampling import sample, trajectory_seed
from opd_ray.scoring import gather_BR, response_logits


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


def test_sampler_logprobs_match_a_scoring_forward(tiny_lab):
    model = AutoModelForCausalLM.from_pretrained(tiny_lab / "student").eval()
    tok = AutoTokenizer.from_pretrained(tiny_lab / "student")
    prompts = [tok(p)["input_ids"] for p in ("12+34:", "10+20+30+40:")]
    out = sample(model, prompts, max_new_tokens=10, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                 seeds=[1, 2])
    from opd_ray.sampling import left_pad

    ids, mask = left_pad(prompts, tok.pad_token_id)
    with torch.no_grad():
        logp = torch.log_softmax(response_logits(model, ids.numpy(), mask.numpy(), out.response_ids_BR,
                                                 out.response_mask_BR), -1)
    scored = gather_BR(logp, out.response_ids_BR).numpy()
    m = out.response_mask_BR
    assert np.allclose(scored[m], out.logp_BR[m], atol=1e-4)


def test_nucleus_keeps_the_smallest_set_holding_top_p():
    from opd_ray.sampling import nucleus_logp

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]], dtype=torch.float64)
    kept = nucleus_logp(probs.log(), 0.75).exp()
    np.testing.assert_allclose(kept[0].numpy(), [0.5 / 0.8, 0.3 / 0.8, 0, 0], atol=1e-12)  # 0.5 < 0.75 <= 0.8
    np.testing.assert_allclose(kept[1].numpy(), [1, 0, 0, 0], atol=1e-12)  # the top token alone holds 0.97
    np.testing.assert_allclose(nucleus_logp(probs.log(), 1.0).exp().numpy(), probs.numpy(), atol=1e-12)


def test_every_eos_id_ends_a_row_and_stop_strings_cut_it(tiny_lab):
    from opd_ray.sampling import truncate_at_stops

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
