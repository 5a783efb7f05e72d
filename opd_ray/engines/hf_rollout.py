"""The student rollout engine (HF transformers backend): sampling with per-token log-probs, versioned weights."""
from __future__ import annotations

import time

import numpy as np
import torch

from opd_ray.models.loading import eos_token_ids, load_model, load_tokenizer
from opd_ray.models.sampling import TextSampler, left_pad, sample, trajectory_seed, truncate_at_stops
from opd_ray.trajectory.batch import TrajectoryBatch, TrajId


class StaleEngineError(RuntimeError):
    """The engine's weights are not the version the caller asked to sample from."""


class HFRollout:
    def __init__(self, model_path: str, *, max_new_tokens: int, temperature: float, top_k: int, run_seed: int,
                 model_options: dict | None = None, vocab_limit: int | None = None, stop: list[str] = (),
                 prefill_tokens: int | None = None):
        self.model = load_model(model_path, **(model_options or {}))
        self.tokenizer = load_tokenizer(model_path, (model_options or {}).get("trust_remote_code", False))
        self.max_new_tokens, self.temperature, self.top_k, self.run_seed = max_new_tokens, temperature, top_k, run_seed
        self.texts = TextSampler(self.model, self.tokenizer, max_new_tokens, eos_token_ids(self.model, self.tokenizer),
                                 tuple(stop), vocab_limit, prefill_tokens)
        self.policy_version: int | None = 0  # None: stale (a sync failed or is in progress)

    def generate(self, prompts: list[list[int]], traj_ids: list[TrajId], policy_version: int) -> TrajectoryBatch:
        """Sample one response per prompt; refuses to sample from weights other than `policy_version`."""
        if policy_version != self.policy_version:
            raise StaleEngineError(f"engine serves v{self.policy_version}, asked for v{policy_version}")
        t0 = time.perf_counter()
        seeds = [trajectory_seed(self.run_seed, t, policy_version) for t in traj_ids]
        tok, texts = self.tokenizer, self.texts
        out = sample(self.model, prompts, max_new_tokens=self.max_new_tokens, eos_id=texts.eos_ids,
                     pad_id=tok.pad_token_id, seeds=seeds, temperature=self.temperature, top_k=self.top_k,
                     vocab_limit=texts.vocab_limit, prefill_tokens=texts.prefill_tokens)
        out = truncate_at_stops(out, tok, list(texts.stops), tok.pad_token_id)
        prompt_ids, prompt_mask = left_pad(prompts, tok.pad_token_id)
        return TrajectoryBatch(
            traj_ids=list(traj_ids), policy_version=policy_version,
            prompt_ids_BP=prompt_ids.numpy().astype(np.int32), prompt_mask_BP=prompt_mask.numpy().astype(bool),
            response_ids_BR=out.response_ids_BR, response_mask_BR=out.response_mask_BR,
            student_logp_BR=out.logp_BR, student_topk_ids_BRK=out.topk_ids_BRK,
            student_topk_logp_BRK=out.topk_logp_BRK, student_entropy_BR=out.entropy_BR,
            stage_s={"rollout": time.perf_counter() - t0, "sampled_at": time.time()},
        )

    def greedy(self, prompts: list[list[int]]) -> list[str]:
        return self.texts(prompts)

    def sample_texts(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float) -> list[str]:
        """Evaluation samples (avg@k): one per prompt, each with its own seed."""
        return self.texts(prompts, seeds, temperature, top_p)

    def load_weights(self, state_dict: dict[str, np.ndarray], policy_version: int) -> int:
        """Load new weights; the engine is stale (refuses to sample) until this succeeds."""
        self.policy_version = None
        tensors = {k: torch.tensor(v) for k, v in state_dict.items()}
        missing, unexpected = self.model.load_state_dict(tensors, strict=False)
        if unexpected or [k for k in missing if k != "lm_head.weight"]:  # lm_head may be tied to the embedding
            raise ValueError(f"weight sync mismatch: missing {missing}, unexpected {unexpected}")
        self.policy_version = policy_version
        return policy_version
