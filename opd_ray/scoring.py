"""Forward passes that score given responses: log-probs at the response positions of prompt+response."""
from __future__ import annotations

import numpy as np
import torch


def response_logits(model, prompt_ids_BP, prompt_mask_BP, response_ids_BR, response_mask_BR,
                    vocab_limit: int | None = None) -> torch.Tensor:
    """Logits that predict each response token, shape B×R×V (float32); V is cut to `vocab_limit` when given
    (the ids student and teacher share, opd_ray/model_files.py).

    The sequence is [left-padded prompt | right-padded response]; position ids skip the left padding.
    """
    prompt_ids, response_ids = torch.tensor(prompt_ids_BP).long(), torch.tensor(response_ids_BR).long()
    mask = torch.cat([torch.tensor(prompt_mask_BP), torch.tensor(response_mask_BR)], dim=1).long()
    ids = torch.cat([prompt_ids, response_ids], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    device = next(model.parameters()).device  # the learner's model lives on the GPU on a cluster
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    n_prompt = prompt_ids.shape[1]
    return logits[:, n_prompt - 1: -1, :vocab_limit].float()


def gather_BR(logp_BRV: torch.Tensor, ids_BR) -> torch.Tensor:
    return logp_BRV.gather(-1, torch.as_tensor(ids_BR, device=logp_BRV.device).long()[..., None])[..., 0]


def gather_BRK(logp_BRV: torch.Tensor, ids_BRK) -> torch.Tensor:
    return logp_BRV.gather(-1, torch.as_tensor(ids_BRK, device=logp_BRV.device).long())


def to_f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(np.float32)
