"""The frozen teacher (HF transformers backend): scores student trajectories at the states the student visited."""
from __future__ import annotations

import time

import numpy as np
import torch

from opd_ray.diagnostics import entropy_BR
from opd_ray.hf_models import load_model, load_tokenizer
from opd_ray.sampling import decode_responses, sample
from opd_ray.scoring import gather_BR, gather_BRK, response_logits, to_f32
from opd_ray.trajectory import TrajectoryBatch


class HFTeacher:
    def __init__(self, model_path: str, *, top_k: int, temperature: float, max_new_tokens: int,
                 trust_remote_code: bool = False):
        self.model = load_model(model_path, trust_remote_code)
        self.tokenizer = load_tokenizer(model_path, trust_remote_code)
        self.top_k, self.temperature, self.max_new_tokens = top_k, temperature, max_new_tokens

    @torch.no_grad()
    def score(self, batch: TrajectoryBatch) -> TrajectoryBatch:
        """Adds the teacher's log-prob of each sampled token, at the student's top-k ids, and its own top-k."""
        t0 = time.perf_counter()
        logits_BRV = response_logits(self.model, batch.prompt_ids_BP, batch.prompt_mask_BP,
                                     batch.response_ids_BR, batch.response_mask_BR)
        logp_BRV = torch.log_softmax(logits_BRV / self.temperature, dim=-1)
        check_finite(logp_BRV, batch.response_mask_BR)
        top_logp, top_ids = logp_BRV.topk(min(self.top_k, logp_BRV.shape[-1]), dim=-1)
        return batch.with_teacher(
            teacher_logp_BR=to_f32(gather_BR(logp_BRV, batch.response_ids_BR)),
            teacher_logp_at_student_topk_BRK=to_f32(gather_BRK(logp_BRV, batch.student_topk_ids_BRK)),
            teacher_topk_ids_BRK=top_ids.to(torch.int32).numpy(),
            teacher_topk_logp_BRK=top_logp.numpy().astype(np.float16),
            teacher_entropy_BR=entropy_BR(logp_BRV).numpy().astype(np.float16),
            stage_s={**batch.stage_s, "teacher": time.perf_counter() - t0},
        )

    def greedy(self, prompts: list[list[int]]) -> list[str]:
        tok = self.tokenizer
        out = sample(self.model, prompts, max_new_tokens=self.max_new_tokens, eos_id=tok.eos_token_id,
                     pad_id=tok.pad_token_id, seeds=None)
        return decode_responses(tok, out)


def check_finite(logp_BRV: torch.Tensor, mask_BR: np.ndarray) -> None:
    """NaN (or +inf) at a valid position is a numerics bug: report it, never mask it (DESIGN invariant 7)."""
    bad = torch.isnan(logp_BRV).any(-1) | torch.isposinf(logp_BRV).any(-1)
    bad &= torch.as_tensor(mask_BR)
    if bool(bad.any()):
        raise FloatingPointError(f"teacher log-probs are NaN/inf at {int(bad.sum())} valid positions")
