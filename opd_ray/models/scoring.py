"""Forward passes that score given responses: log-probs at the response positions of prompt+response."""
from __future__ import annotations

import inspect

import numpy as np
import torch


def response_logits(model, prompt_ids_BP, prompt_mask_BP, response_ids_BR, response_mask_BR,
                    vocab_limit: int | None = None) -> torch.Tensor:
    """Logits that predict each response token, shape B×R×V (float32); V is cut to `vocab_limit` when given
    (the ids student and teacher share, opd_ray/models/folders.py). A view of `sequence_logits`' output."""
    n_response = np.shape(response_ids_BR)[1]
    logits = sequence_logits(model, prompt_ids_BP, prompt_mask_BP, response_ids_BR, response_mask_BR, n_response + 1)
    return logits[:, logits.shape[1] - n_response - 1: -1, :vocab_limit].float()


def sequence_logits(model, prompt_ids_BP, prompt_mask_BP, response_ids_BR, response_mask_BR,
                    keep: int | None) -> torch.Tensor:
    """The model's logits over [left-padded prompt | right-padded response], B×L×V, for the last `keep`
    positions only when the model takes `logits_to_keep` (None: every position). Position ids skip the left
    padding. No KV cache: nothing is generated after a scoring pass."""
    prompt_ids, response_ids = torch.tensor(prompt_ids_BP).long(), torch.tensor(response_ids_BR).long()
    mask = torch.cat([torch.tensor(prompt_mask_BP), torch.tensor(response_mask_BR)], dim=1).long()
    ids = torch.cat([prompt_ids, response_ids], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    device = next(model.parameters()).device  # the learner's model lives on the GPU on a cluster
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    extra = {"logits_to_keep": keep} if keep is not None and takes_logits_to_keep(model) else {}
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, **extra).logits


def takes_logits_to_keep(model) -> bool:
    """transformers' causal LMs take `logits_to_keep`; a checkpoint's own code (trust_remote_code) may not."""
    forward = getattr(model, "module", model).forward  # a DeepSpeed engine forwards **kwargs to its module
    return "logits_to_keep" in inspect.signature(forward).parameters


def response_logp(model, batch, temperature: float = 1.0, vocab_limit: int | None = None) -> torch.Tensor:
    """log_softmax(logits / temperature) at the response positions of a TrajectoryBatch, B×R×V float32.

    Only the response positions get logits: the output layer is ~21% of SmolLM2-135M's matmuls, and the prompt's
    logits were computed and thrown away until commit 3eeccf0. With autograd (the learner) the log-softmax is a
    second tensor, which autograd needs, and the logits die when this returns.

    Without autograd (the teacher) on CPU the log-softmax is written over the logits (the kernel reads each row
    before writing it: bit-identical values), so one B×(R+1)×V float32 tensor is all there is; the returned B×R×V
    is a view of it. Temperature 1 divides nothing: `x / 1.0` would be one more copy of the same values.
    """
    args = (batch.prompt_ids_BP, batch.prompt_mask_BP, batch.response_ids_BR, batch.response_mask_BR)
    if torch.is_grad_enabled():
        logits_BRV = response_logits(model, *args, vocab_limit)
        return torch.log_softmax(logits_BRV / temperature if temperature != 1.0 else logits_BRV, dim=-1)
    n_response = batch.response_ids_BR.shape[1]
    logits = sequence_logits(model, *args, n_response + 1)[:, -n_response - 1:, :vocab_limit].float()
    if temperature != 1.0:
        logits = logits.div_(temperature)
    if logits.device.type == "cpu" and logits.is_contiguous():
        logits = torch.log_softmax(logits, dim=-1, out=logits)
    else:  # out= over a strided view would go through a temporary copy anyway
        logits = torch.log_softmax(logits, dim=-1)
    return logits[:, :-1]


def gather_BR(logp_BRV: torch.Tensor, ids_BR) -> torch.Tensor:
    return logp_BRV.gather(-1, torch.as_tensor(ids_BR, device=logp_BRV.device).long()[..., None])[..., 0]


def gather_BRK(logp_BRV: torch.Tensor, ids_BRK) -> torch.Tensor:
    return logp_BRV.gather(-1, torch.as_tensor(ids_BRK, device=logp_BRV.device).long())
