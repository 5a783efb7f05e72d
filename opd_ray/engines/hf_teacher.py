"""The frozen teacher (HF transformers backend): scores student trajectories at the states the student visited."""
from __future__ import annotations

import time

import numpy as np
import torch

from opd_ray.models.loading import eos_token_ids, load_model, load_tokenizer
from opd_ray.models.sampling import TextSampler
from opd_ray.models.scoring import gather_BR, gather_BRK, response_logp
from opd_ray.objective.diagnostics import entropy_BR
from opd_ray.trajectory import microbatch
from opd_ray.trajectory.batch import TrajectoryBatch


class HFTeacher:
    def __init__(self, model_path: str, *, top_k: int, temperature: float, max_new_tokens: int,
                 logprob_dtype: str = "float16", ship_full_vocab: bool = False, model_options: dict | None = None,
                 vocab_limit: int | None = None, stop: list[str] = (),
                 micro_batch_tokens: int | None = None):
        self.model = load_model(model_path, **(model_options or {}))
        self.tokenizer = load_tokenizer(model_path, (model_options or {}).get("trust_remote_code", False))
        self.temperature, self.max_new_tokens, self.vocab_limit = temperature, max_new_tokens, vocab_limit
        self.micro_batch_tokens = micro_batch_tokens
        self.texts = TextSampler(self.model, self.tokenizer, max_new_tokens, eos_token_ids(self.model, self.tokenizer),
                                 tuple(stop), vocab_limit, micro_batch_tokens)
        self.payload = TeacherPayload(top_k, logprob_dtype, ship_full_vocab)

    @torch.no_grad()
    def score(self, batch: TrajectoryBatch) -> TrajectoryBatch:
        """Adds the teacher's log-prob of each sampled token, at the student's top-k ids, and its own top-k.

        Scored in micro-batches of at most `micro_batch_tokens` padded tokens (None: one pass): one micro-batch's
        B×R×V log-probs exist at a time, and only the compact payload of the others is kept.
        """
        t0 = time.perf_counter()
        parts, vocab = [], None
        for rows, micro in microbatch.split(batch, self.micro_batch_tokens):
            logp_BRV = response_logp(self.model, micro, self.temperature, self.vocab_limit)
            check_finite(logp_BRV, micro.response_mask_BR)
            vocab = logp_BRV.shape[-1]
            parts.append((rows, self.payload.fields(logp_BRV, micro)))
            del logp_BRV  # before the next micro-batch's forward pass
        if len(parts) == 1 and len(parts[0][0]) == len(batch):
            fields = parts[0][1]  # the whole batch in one pass: nothing to put back together
        else:
            fields = microbatch.scatter(parts, self.payload.padding(vocab), len(batch), batch.response_ids_BR.shape[1])
        return batch.with_teacher(**fields, stage_s={**batch.stage_s, "teacher": time.perf_counter() - t0})

    def greedy(self, prompts: list[list[int]]) -> list[str]:
        return self.texts(prompts)

    def sample_texts(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float) -> list[str]:
        return self.texts(prompts, seeds, temperature, top_p)


class TeacherPayload:
    """What a teacher ships per response position, from its full log-prob tensor: log-probs of the sampled
    token and at the student's top-k ids, its own top-k (ids int32), its entropy, and optionally the whole
    distribution. Log-probs travel in `logprob_dtype`: float16 halves the bytes; its relative rounding error
    (2^-11) is bounded in tests/opd_ray/objective/test_losses.py.
    """

    def __init__(self, top_k: int, logprob_dtype: str, ship_full_vocab: bool):
        self.top_k, self.ship_full_vocab = top_k, ship_full_vocab
        self.dtype = {"float16": np.float16, "float32": np.float32}[logprob_dtype]

    def fields(self, logp_BRV: torch.Tensor, batch: TrajectoryBatch) -> dict[str, np.ndarray]:
        """The payload of `batch` from its log-probs; `logp_BRV` is overwritten (zeros on padding) to save a copy."""
        return self.fields_of(logp_BRV, batch.response_mask_BR, batch.response_ids_BR, batch.student_topk_ids_BRK)

    def padding(self, vocab: int) -> dict[str, np.ndarray]:
        """The payload at one padding position, as `fields` writes it (for putting micro-batches back together)."""
        k = min(self.top_k, vocab)
        fields = self.fields_of(torch.zeros(1, 1, vocab), np.zeros((1, 1), bool), np.zeros((1, 1), np.int32),
                                np.zeros((1, 1, k), np.int32))
        return {name: value[0, 0] for name, value in fields.items()}

    def fields_of(self, logp_BRV: torch.Tensor, mask_BR, response_ids_BR, student_topk_ids_BRK) -> dict[str, np.ndarray]:
        valid_BR = torch.as_tensor(np.asarray(mask_BR, dtype=bool), device=logp_BRV.device)
        logp_BRV = logp_BRV.masked_fill_(~valid_BR[..., None], 0.0)  # padding: no -inf/NaN
        top_logp, top_ids = logp_BRV.topk(min(self.top_k, logp_BRV.shape[-1]), dim=-1)
        pack = lambda t: t.detach().float().cpu().numpy().astype(self.dtype)  # noqa: E731
        out = {
            "teacher_logp_BR": pack(gather_BR(logp_BRV, response_ids_BR)),
            "teacher_logp_at_student_topk_BRK": pack(gather_BRK(logp_BRV, student_topk_ids_BRK)),
            "teacher_topk_ids_BRK": top_ids.to(torch.int32).cpu().numpy(),
            "teacher_topk_logp_BRK": pack(top_logp),
            "teacher_entropy_BR": pack(entropy_BR(logp_BRV, torch.float64)),
        }
        if self.ship_full_vocab:
            out["teacher_full_logp_BRV"] = pack(logp_BRV)
        return out


def check_finite_fields(fields: dict, mask_BR: np.ndarray) -> None:
    """The same rule for a shipped payload (the vLLM teacher's, built from the engine's own top-k): NaN or +inf
    in a log-prob field at a valid position is reported, never shipped."""
    valid_BR = np.asarray(mask_BR, dtype=bool)
    for name, value in fields.items():
        if value is None or not np.issubdtype(np.asarray(value).dtype, np.floating):
            continue
        bad = np.isnan(value) | np.isposinf(value)
        bad_BR = bad.reshape(bad.shape[:2] + (-1,)).any(-1) & valid_BR
        if bad_BR.any():
            raise FloatingPointError(f"teacher {name} is NaN/inf at {int(bad_BR.sum())} valid positions")


def check_finite(logp_BRV: torch.Tensor, mask_BR: np.ndarray) -> None:
    """NaN (or +inf) at a valid position is a numerics bug: report it, never mask it (docs/design.md invariant 7)."""
    bad = torch.isnan(logp_BRV).any(-1) | torch.isposinf(logp_BRV).any(-1)
    # a copy: batches from the object store are read-only
    bad &= torch.from_numpy(np.array(mask_BR, dtype=bool)).to(bad.device)
    if bool(bad.any()):
        raise FloatingPointError(f"teacher log-probs are NaN/inf at {int(bad.sum())} valid positions")
