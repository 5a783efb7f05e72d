"""Forward passes that score given responses: log-probs at the response positions of prompt+response."""
from __future__ import annotations

import inspect

import numpy as np
import torch


def response_logits(model, prompt_ids_BP, prompt_mask_BP, response_ids_BR, response_mask_BR,
                    vocab_limit: int | None = None, prompt_logits: bool = False) -> torch.Tensor:
    """Logits that predict each response token, shape B×R×V (float32); V is cut to `vocab_limit` when given
    (the ids student and teacher share, opd_ray/model_files.py).

    The sequence is [left-padded prompt | right-padded response]; position ids skip the left padding. Only the
    R + 1 last positions get logits (`logits_to_keep`, when the model takes it): the prompt's own B×P×V would
    be computed and thrown away. `prompt_logits` computes them all the same (the learner: see `response_logp`).
    """
    prompt_ids, response_ids = torch.tensor(prompt_ids_BP).long(), torch.tensor(response_ids_BR).long()
    mask = torch.cat([torch.tensor(prompt_mask_BP), torch.tensor(response_mask_BR)], dim=1).long()
    ids = torch.cat([prompt_ids, response_ids], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    device = next(model.parameters()).device  # the learner's model lives on the GPU on a cluster
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    n_response = response_ids.shape[1]
    keep = {"logits_to_keep": n_response + 1} if takes_logits_to_keep(model) and not prompt_logits else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **keep).logits
    return logits[:, logits.shape[1] - n_response - 1: -1, :vocab_limit].float()


def takes_logits_to_keep(model) -> bool:
    """transformers' causal LMs take `logits_to_keep`; a checkpoint's own code (trust_remote_code) may not."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def response_logp(model, batch, temperature: float = 1.0, vocab_limit: int | None = None,
                  in_place: bool = False) -> torch.Tensor:
    """log_softmax(logits / temperature) at the response positions of a TrajectoryBatch, B×R×V float32.

    One B×R×V float32 tensor outlives the call. Without autograd (`in_place`, the teacher) the log-softmax is
    written over the logits themselves (on CPU, where the kernel reads each row before writing it: the result
    is bit-identical); with autograd it needs its own output, and the logits die when this returns.
    Temperature 1 divides nothing: `x / 1.0` would be one more B×R×V copy of the same values.

    With autograd the logits of the prompt positions are computed too: the output layer's gradient then sums
    over the same rows as it always did, so a run reproduces earlier runs bit for bit (the budget of
    `learner.micro_batch_tokens` counts prompt tokens, so memory stays bounded). Without autograd keeping only
    the response positions changes no value.
    """
    logits_BRV = response_logits(model, batch.prompt_ids_BP, batch.prompt_mask_BP, batch.response_ids_BR,
                                 batch.response_mask_BR, vocab_limit, prompt_logits=torch.is_grad_enabled())
    if temperature != 1.0:
        logits_BRV = logits_BRV.div_(temperature) if in_place else logits_BRV / temperature
    if in_place and logits_BRV.device.type == "cpu":
        return torch.log_softmax(logits_BRV, dim=-1, out=logits_BRV)
    return torch.log_softmax(logits_BRV, dim=-1)


def gather_BR(logp_BRV: torch.Tensor, ids_BR) -> torch.Tensor:
    return logp_BRV.gather(-1, torch.as_tensor(ids_BR, device=logp_BRV.device).long()[..., None])[..., 0]


def gather_BRK(logp_BRV: torch.Tensor, ids_BRK) -> torch.Tensor:
    return logp_BRV.gather(-1, torch.as_tensor(ids_BRK, device=logp_BRV.device).long())


def to_f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(np.float32)
