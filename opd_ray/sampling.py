"""Batched autoregressive sampling with per-token log-probs, for any HF causal LM.

We write the loop instead of calling `model.generate` because every trajectory needs its own random stream:
the seed of row i derives from (run seed, traj_id, policy_version) (DESIGN.md invariant 2), so a trajectory
is reproducible no matter which batch or engine it lands in. `generate` draws from one global stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SampleOutput:
    """Responses right-padded to the longest one. B rows, R response positions, k top-k entries."""

    response_ids_BR: np.ndarray  # int32, pad_id after the end
    response_mask_BR: np.ndarray  # bool, True on generated tokens (eos included)
    logp_BR: np.ndarray  # float32, log-prob of the sampled token under the sampling distribution
    topk_ids_BRK: np.ndarray  # int32, the sampler's top-k ids at each position
    topk_logp_BRK: np.ndarray  # float32, their log-probs (full-vocabulary normalised)


def trajectory_seed(run_seed: int, traj_id: tuple[int, ...], policy_version: int) -> int:
    """A stable 63-bit seed from (run seed, traj_id, policy_version); Python's hash() is salted per process."""
    h = np.uint64(1469598103934665603)
    for part in (run_seed, *traj_id, policy_version):
        h = np.uint64((int(h) ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211 % (1 << 64))
    return int(h) & 0x7FFFFFFFFFFFFFFF


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[i, width - len(seq):] = 1
    return ids, mask


@torch.no_grad()
def sample(
    model,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    seeds: list[int] | None,
    temperature: float = 1.0,
    top_k: int = 4,
) -> SampleOutput:
    """Sample (or decode greedily when `seeds` is None) up to `max_new_tokens` tokens per prompt."""
    ids_BP, mask_BP = left_pad(prompts, pad_id)
    batch = ids_BP.shape[0]
    gens = None if seeds is None else [torch.Generator().manual_seed(s) for s in seeds]
    position_BP = (mask_BP.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids_BP, attention_mask=mask_BP, position_ids=position_BP, use_cache=True)
    cache, attn = out.past_key_values, mask_BP
    next_pos_B1 = position_BP[:, -1:] + 1
    logits_BV = out.logits[:, -1, :].float()
    done_B = torch.zeros(batch, dtype=torch.bool)
    toks, logps, tk_ids, tk_logps, alive = [], [], [], [], []
    for _ in range(max_new_tokens):
        logp_BV = torch.log_softmax(logits_BV / temperature, dim=-1)
        if gens is None:
            tok_B = logp_BV.argmax(-1)
        else:
            probs_BV = logp_BV.exp()
            tok_B = torch.stack([torch.multinomial(probs_BV[i], 1, generator=gens[i])[0] for i in range(batch)])
        tok_B = torch.where(done_B, torch.full_like(tok_B, pad_id), tok_B)
        kv, ki = logp_BV.topk(min(top_k, logp_BV.shape[-1]), dim=-1)
        alive.append(~done_B)
        toks.append(tok_B)
        logps.append(logp_BV.gather(-1, tok_B[:, None])[:, 0].masked_fill(done_B, 0.0))
        tk_ids.append(ki)
        tk_logps.append(kv)
        done_B = done_B | (tok_B == eos_id)
        if bool(done_B.all()):
            break
        attn = torch.cat([attn, torch.ones((batch, 1), dtype=attn.dtype)], dim=1)
        out = model(input_ids=tok_B[:, None], attention_mask=attn, position_ids=next_pos_B1,
                    past_key_values=cache, use_cache=True)
        cache, next_pos_B1 = out.past_key_values, next_pos_B1 + 1
        logits_BV = out.logits[:, -1, :].float()
    return SampleOutput(
        response_ids_BR=torch.stack(toks, 1).to(torch.int32).numpy(),
        response_mask_BR=torch.stack(alive, 1).numpy(),
        logp_BR=torch.stack(logps, 1).numpy().astype(np.float32),
        topk_ids_BRK=torch.stack(tk_ids, 1).to(torch.int32).numpy(),
        topk_logp_BRK=torch.stack(tk_logps, 1).numpy().astype(np.float32),
    )


def decode_responses(tokenizer, out: SampleOutput) -> list[str]:
    return [
        tokenizer.decode(ids[mask].tolist(), skip_special_tokens=True)
        for ids, mask in zip(out.response_ids_BR, out.response_mask_BR)
    ]
