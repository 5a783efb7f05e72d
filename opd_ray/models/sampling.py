"""Batched autoregressive sampling with per-token log-probs, for any HF causal LM.

We write the loop instead of calling `model.generate` because every trajectory needs its own random stream:
the seed of row i derives from (run seed, traj_id, policy_version) (docs/design.md invariant 2), so a trajectory
is reproducible no matter which batch or engine it lands in. `generate` draws from one global stream.

The stream is counter-based: the uniform that picks row i's token at response position t is a hash of (seed_i, t)
(`position_uniforms`), and the token is where it falls in the row's cumulative distribution (inverse-CDF). One
batched searchsorted per position replaces a torch.multinomial per row, and a row's draw depends on its own seed
and position only, never on the batch around it. One uniform per row is cheaper than Gumbel-max's one per
vocabulary entry, and as exact: the CDF is summed in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from opd_ray.models.scoring import takes_logits_to_keep


@dataclass
class SampleOutput:
    """Responses right-padded to the longest one. B rows, R response positions, k top-k entries."""

    response_ids_BR: np.ndarray  # int32, pad_id after the end
    response_mask_BR: np.ndarray  # bool, True on generated tokens (eos included)
    logp_BR: np.ndarray  # float32, log-prob of the sampled token under the sampling distribution
    topk_ids_BRK: np.ndarray  # int32, the sampler's top-k ids at each position
    topk_logp_BRK: np.ndarray  # float32, their log-probs (full-vocabulary normalised)
    entropy_BR: np.ndarray | None = None  # float32, the sampling distribution's entropy (nats); 0 after the end


def trajectory_seed(run_seed: int, traj_id: tuple[int, ...], policy_version: int) -> int:
    """A stable 63-bit seed from (run seed, traj_id, policy_version); Python's hash() is salted per process."""
    h = np.uint64(1469598103934665603)
    for part in (run_seed, *traj_id, policy_version):
        h = np.uint64((int(h) ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211 % (1 << 64))
    return int(h) & 0x7FFFFFFFFFFFFFFF


def position_uniforms(seeds_B: np.ndarray, position: int) -> torch.Tensor:
    """A uniform in [0, 1) per row from (row seed, position): splitmix64 of seed + (position + 1) * golden gamma.
    Stateless, so a row's draws do not depend on which rows share its batch."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps modulo 2**64 on purpose
        z = seeds_B + np.uint64(position + 1) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return torch.from_numpy((z >> np.uint64(11)).astype(np.float64) * 2.0**-53)  # the top 53 bits


def inverse_cdf_sample(probs_BV: torch.Tensor, uniforms_B: torch.Tensor) -> torch.Tensor:
    """Token ids with P(id = v) = probs_BV[:, v] / row sum, one uniform per row. `right=True` finds the first id whose
    cumulative mass exceeds the target, so an id of probability 0 (outside a nucleus) is never drawn."""
    cdf_BV = probs_BV.double().cumsum(-1)
    target_B1 = uniforms_B[:, None] * cdf_BV[:, -1:]
    return torch.searchsorted(cdf_BV, target_B1, right=True)[:, 0].clamp(max=probs_BV.shape[-1] - 1)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[i, width - len(seq):] = 1
    return ids, mask


def nucleus_logp(logp_BV: torch.Tensor, top_p: float) -> torch.Tensor:
    """Log-probs renormalised on the smallest set of tokens holding `top_p` of the mass (evaluation sampling)."""
    sorted_logp, order = logp_BV.sort(dim=-1, descending=True)
    mass_before = sorted_logp.exp().cumsum(-1) - sorted_logp.exp()  # the top token is always kept
    sorted_logp = sorted_logp.masked_fill(mass_before >= top_p, float("-inf"))
    return torch.full_like(logp_BV, float("-inf")).scatter(-1, order, sorted_logp).log_softmax(-1)


@torch.no_grad()
def sample(
    model,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_id: int | list[int],
    pad_id: int,
    seeds: list[int] | None,
    temperature: float = 1.0,
    top_k: int = 4,
    top_p: float = 1.0,
    vocab_limit: int | None = None,
    prefill_tokens: int | None = None,
) -> SampleOutput:
    """Sample (or decode greedily when `seeds` is None) up to `max_new_tokens` tokens per prompt.

    A row ends at any id in `eos_id` (Qwen's generation config lists two). `vocab_limit` keeps the first ids of the
    logits only (the ids student and teacher share, opd_ray/models/folders.py). `top_p` < 1 samples from the nucleus
    (evaluation); the returned log-probs are always those of the full tempered distribution. `prefill_tokens`
    bounds the prompt pass (see `prefill`). Rows that ended leave the batch (`ActiveRows`), so the decode passes
    cost what the live rows need; after its end a row holds pad ids, log-prob 0 and a placeholder top-k.
    """
    device = next(model.parameters()).device  # the whole loop runs where the model is; arrays come back at the end
    ids_BP, mask_BP = (t.to(device) for t in left_pad(prompts, pad_id))
    eos_E = torch.tensor([eos_id] if isinstance(eos_id, int) else sorted(set(eos_id)), dtype=torch.long, device=device)
    position_BP = (mask_BP.cumsum(-1) - 1).clamp(min=0)
    cache, logits_AV = prefill(model, ids_BP, mask_BP, position_BP, prefill_tokens)
    logits_AV = logits_AV[:, :vocab_limit].float()
    rows = ActiveRows(cache, mask_BP, position_BP[:, -1:] + 1, seeds, pad_id)
    out = Responses(len(prompts), max_new_tokens, min(top_k, logits_AV.shape[-1]), logits_AV.shape[-1], pad_id,
                    device)
    for position in range(max_new_tokens):
        logp_AV = torch.log_softmax(logits_AV / temperature, dim=-1)
        if rows.seeds_A is None:
            tok_A = logp_AV.argmax(-1)
        else:
            probs_AV = (logp_AV if top_p >= 1.0 else nucleus_logp(logp_AV, top_p)).exp()
            tok_A = inverse_cdf_sample(probs_AV, position_uniforms(rows.seeds_A, position).to(device))
        live_A = ~rows.ended_A
        out.record(rows.index_A[live_A], position, tok_A[live_A], logp_AV[live_A])
        rows.ended_A |= torch.isin(tok_A, eos_E)
        if bool(rows.ended_A.all()):
            break
        logits_AV = rows.step(model, rows.next_input(tok_A))[:, -1, :vocab_limit].float()
    return out.output()


class ActiveRows:
    """The rows still in the decode batch: their original index, KV cache, attention mask, next position, seed.

    Rows that ended are dropped from all of these (the cache's batch axis included) once they are at least an
    eighth of the batch, so the index_select is paid a few times per batch, not at every end. Until then, and
    for caches other than plain DynamicCache layers (sliding windows, linear attention), which keep every row, an
    ended row decodes pad tokens whose results are never recorded.
    """

    def __init__(self, cache, mask_AT: torch.Tensor, next_pos_A1: torch.Tensor, seeds: list[int] | None, pad_id: int):
        from transformers.cache_utils import DynamicLayer

        self.cache, self.mask_AT, self.next_pos_A1, self.pad_id = cache, mask_AT, next_pos_A1, pad_id
        self.seeds_A = None if seeds is None else np.array(seeds, dtype=np.uint64)
        self.index_A = torch.arange(len(mask_AT), device=mask_AT.device)
        self.ended_A = torch.zeros(len(mask_AT), dtype=torch.bool, device=mask_AT.device)
        self.can_drop = all(type(layer) is DynamicLayer for layer in cache.layers)

    def next_input(self, tok_A: torch.Tensor) -> torch.Tensor:
        """Each kept row's next input token (pad for an ended row), after dropping ended rows if enough ended."""
        if self.can_drop and int(self.ended_A.sum()) * 8 >= len(self.ended_A):
            keep_A = (~self.ended_A).nonzero()[:, 0]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[keep_A], layer.values[keep_A]
            self.mask_AT, self.next_pos_A1 = self.mask_AT[keep_A], self.next_pos_A1[keep_A]
            self.index_A, self.ended_A, tok_A = self.index_A[keep_A], self.ended_A[keep_A], tok_A[keep_A]
            if self.seeds_A is not None:
                self.seeds_A = self.seeds_A[keep_A.cpu().numpy()]
        return torch.where(self.ended_A, torch.full_like(tok_A, self.pad_id), tok_A)

    def step(self, model, tok_A: torch.Tensor) -> torch.Tensor:
        """One decode pass of the kept rows; their logits (A×1×V)."""
        self.mask_AT = torch.cat([self.mask_AT, self.mask_AT.new_ones((len(self.mask_AT), 1))], dim=1)
        out = model(input_ids=tok_A[:, None], attention_mask=self.mask_AT, position_ids=self.next_pos_A1,
                    past_key_values=self.cache, use_cache=True)
        self.cache, self.next_pos_A1 = out.past_key_values, self.next_pos_A1 + 1
        return out.logits


class Responses:
    """A whole batch's output arrays, filled one position at a time at the rows still decoding. After a row's end
    it holds pad ids, log-prob 0 and distinct top-k ids at a uniform log-prob (masked arithmetic stays finite)."""

    def __init__(self, batch: int, max_new_tokens: int, k: int, vocab: int, pad_id: int, device=None):
        self.ids_BR = torch.full((batch, max_new_tokens), pad_id, dtype=torch.int32, device=device)
        self.mask_BR = torch.zeros((batch, max_new_tokens), dtype=torch.bool, device=device)
        self.logp_BR = torch.zeros((batch, max_new_tokens), device=device)
        self.topk_ids_BRK = torch.arange(k, dtype=torch.int32, device=device).repeat(batch, max_new_tokens, 1)
        self.topk_logp_BRK = torch.full((batch, max_new_tokens, k), -float(np.log(vocab)), device=device)
        self.entropy_BR = torch.zeros((batch, max_new_tokens), device=device)
        self.length = 0

    def record(self, rows_L: torch.Tensor, position: int, tok_L: torch.Tensor, logp_LV: torch.Tensor) -> None:
        topk_logp_LK, topk_ids_LK = logp_LV.topk(self.topk_ids_BRK.shape[-1], dim=-1)
        self.ids_BR[rows_L, position] = tok_L.to(torch.int32)
        self.mask_BR[rows_L, position] = True
        self.logp_BR[rows_L, position] = logp_LV.gather(-1, tok_L[:, None])[:, 0]
        self.topk_ids_BRK[rows_L, position] = topk_ids_LK.to(torch.int32)
        self.topk_logp_BRK[rows_L, position] = topk_logp_LK
        self.entropy_BR[rows_L, position] = -(logp_LV.exp() * logp_LV.clamp_min(-1e30)).sum(-1)  # -inf logits: 0
        self.length = position + 1

    def output(self) -> SampleOutput:
        r = self.length
        host = lambda t: t[:, :r].cpu().numpy()  # noqa: E731
        return SampleOutput(
            response_ids_BR=host(self.ids_BR), response_mask_BR=host(self.mask_BR),
            logp_BR=host(self.logp_BR).astype(np.float32), topk_ids_BRK=host(self.topk_ids_BRK),
            topk_logp_BRK=host(self.topk_logp_BRK), entropy_BR=host(self.entropy_BR).astype(np.float32))


def prefill(model, ids_BP, mask_BP, position_BP, budget: int | None):
    """The prompt pass: the KV cache of every row, and the logits of the last position only (B×V, never B×P×V).

    With a token budget below rows × P, rows go through in chunks of at most `budget` tokens and their caches
    are joined along the batch axis; this bounds the pass's activations (attention scores grow with P²).
    Only plain DynamicCache layers can be joined: another cache kind (sliding windows, linear attention)
    takes the whole batch in one pass.
    """
    from transformers.cache_utils import DynamicLayer

    keep = {"logits_to_keep": 1} if takes_logits_to_keep(model) else {}
    rows = len(ids_BP) if not budget else max(1, budget // max(ids_BP.shape[1], 1))
    outs = []
    for lo in range(0, len(ids_BP), rows):
        sl = slice(lo, lo + rows)
        out = model(input_ids=ids_BP[sl], attention_mask=mask_BP[sl], position_ids=position_BP[sl], use_cache=True,
                    **keep)
        outs.append((out.past_key_values, out.logits[:, -1]))
        if len(outs) == 1 and rows < len(ids_BP) and not all(type(layer) is DynamicLayer
                                                             for layer in out.past_key_values.layers):
            return prefill(model, ids_BP, mask_BP, position_BP, None)
    cache = outs[0][0]
    for i, layer in enumerate(cache.layers if len(outs) > 1 else ()):
        layer.keys = torch.cat([c.layers[i].keys for c, _ in outs])
        layer.values = torch.cat([c.layers[i].values for c, _ in outs])
    return cache, torch.cat([logits for _, logits in outs])


def truncate_at_stops(out: SampleOutput, tokenizer, stops: list[str], pad_id: int) -> SampleOutput:
    """End each response at the token that completes the first `rollout.stop` string (in place).

    Found by bisection on decoded prefixes: a prefix that contains a stop string stays so when it grows.
    """
    if not stops:
        return out
    for b, (ids, mask) in enumerate(zip(out.response_ids_BR, out.response_mask_BR)):
        n = int(mask.sum())
        has_stop = lambda r: any(s in tokenizer.decode(ids[:r].tolist()) for s in stops)  # noqa: E731
        if n == 0 or not has_stop(n):
            continue
        lo, hi = 1, n  # the shortest prefix with a stop string lies in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if has_stop(mid) else (mid + 1, hi)
        out.response_mask_BR[b, lo:] = False
        out.response_ids_BR[b, lo:] = pad_id
        out.logp_BR[b, lo:] = 0.0
        if out.entropy_BR is not None:
            out.entropy_BR[b, lo:] = 0.0
    return out


@dataclass
class TextSampler:
    """Texts from a model for evaluation and the cold start: greedy (no seeds) or sampled with per-row seeds.
    Shared by the HF rollout engine and the HF teacher."""
    model: object
    tokenizer: object
    max_new_tokens: int
    eos_ids: list[int]
    stops: tuple[str, ...] = ()
    vocab_limit: int | None = None
    prefill_tokens: int | None = None  # token budget of the prompt pass (teacher.micro_batch_tokens)

    def __call__(self, prompts: list[list[int]], seeds: list[int] | None = None, temperature: float = 1.0,
                 top_p: float = 1.0) -> list[str]:
        pad = self.tokenizer.pad_token_id
        out = sample(self.model, prompts, max_new_tokens=self.max_new_tokens, eos_id=self.eos_ids, pad_id=pad,
                     seeds=seeds, temperature=temperature, top_p=top_p, vocab_limit=self.vocab_limit,
                     prefill_tokens=self.prefill_tokens)
        return decode_responses(self.tokenizer, truncate_at_stops(out, self.tokenizer, list(self.stops), pad))


def decode_responses(tokenizer, out: SampleOutput) -> list[str]:
    return [
        tokenizer.decode(ids[mask].tolist(), skip_special_tokens=True)
        for ids, mask in zip(out.response_ids_BR, out.response_mask_BR)
    ]
