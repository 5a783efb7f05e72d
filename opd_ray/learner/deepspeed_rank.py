"""One DeepSpeed learner rank: student forward on scored trajectories -> OPD objective -> backward -> step.

Each rank is a Ray actor (actors/learner.py) that trains on its shard of the batch; DeepSpeed averages the
gradients across ranks (gloo on CPU, NCCL on GPU). The token-mean is global: each rank divides its summed
loss by the token count of the whole batch and multiplies by the world size, undoing DeepSpeed's average.
A shard larger than `learner.micro_batch_tokens` is split into micro-batches whose gradients accumulate
(opd_ray/trajectory/microbatch.py): still one optimizer step per OPD step, the same loss and the same metrics.

`model.dtype: bfloat16` trains in mixed precision: the parameters stay float32 (the master weights that the
optimizer, checkpoints and weight sync see) and the forward pass runs under bfloat16 autocast; log-softmax, the
objective and the diagnostics are float32 (docs/speed.md, "bfloat16").
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

from opd_ray.config.schema import LearnerConfig, ObjectiveConfig
from opd_ray.learner.opd_loss import ShardTensors, diagnostic_sums, token_losses
from opd_ray.models.loading import autocast, load_model, state_dict_numpy, torch_dtype
from opd_ray.models.scoring import gather_BR, response_logp
from opd_ray.objective import losses as obj
from opd_ray.runtime.faults import maybe_fault
from opd_ray.runtime.process import interface_towards
from opd_ray.trajectory import microbatch
from opd_ray.trajectory.batch import TrajectoryBatch, concat, merge_teachers


def init_distributed(rank: int, world_size: int, master_addr: str, master_port: int) -> None:
    os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    interface = interface_towards(master_addr) if world_size > 1 else None
    if interface is not None:  # a setting of the user's (or the cluster's) wins
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
    import deepspeed  # lazy: DeepSpeed is heavy; only learner ranks need it

    deepspeed.init_distributed(dist_backend="gloo" if not torch.cuda.is_available() else "nccl",
                               auto_mpi_discovery=False)


class DeepSpeedLearner:
    def __init__(self, model_path: str, learner: LearnerConfig, objective: ObjectiveConfig, *, rank: int,
                 world_size: int, master_addr: str, master_port: int, temperature: float, seed: int,
                 fault: str = "", generation: int = 0, model_options: dict | None = None,
                 vocab_limit: int | None = None):
        # zero.Init in some transformers releases imports torch._dynamo lazily (docs/design.md, "Real components")
        import torch._dynamo  # noqa: F401, I001  (before deepspeed, as it always ran)
        import deepspeed  # lazy: DeepSpeed is heavy; only learner ranks need it

        torch.manual_seed(seed)
        init_distributed(rank, world_size, master_addr, master_port)
        self.rank, self.world_size, self.objective, self.temperature = rank, world_size, objective, temperature
        options = dict(model_options or {})
        self.compute_dtype = torch_dtype(options.pop("dtype", "float32"))
        model = load_model(model_path, **options, dtype="float32")  # float32 master weights, whatever computes
        self.trust_remote_code = (model_options or {}).get("trust_remote_code", False)
        self.vocab_limit = vocab_limit  # the ids student and teacher share (opd_ray/models/folders.py)
        if learner.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        # fused: one kernel over all parameters, not one pass per operation (torch.profiler, one SmolLM2 step on 2
        # CPU cores: the foreach step 0.43 s over 134.5M float32 parameters, the fused kernel 0.08 s; docs/speed.md)
        optimizer = torch.optim.AdamW(model.parameters(), lr=learner.lr, weight_decay=learner.weight_decay,
                                      fused=True)
        ds_config = {
            "train_micro_batch_size_per_gpu": 1,  # nominal: we hand DeepSpeed one shard per step
            "gradient_accumulation_steps": 1,
            "gradient_clipping": learner.grad_clip,
            "zero_optimization": {"stage": learner.zero_stage},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 1 << 30,
        }
        if learner.warmup_steps > 0:  # DeepSpeed's WarmupLR takes its first step at warmup_min_lr
            ds_config["scheduler"] = {"type": "WarmupLR", "params": {
                "warmup_min_lr": 0.0, "warmup_max_lr": learner.lr, "warmup_num_steps": learner.warmup_steps,
                "warmup_type": "linear"}}
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
        self.zero_stage = learner.zero_stage
        self.micro_batch_tokens = learner.micro_batch_tokens
        self.optimizer_steps = 0
        self.fault, self.generation = fault, generation

    def train_step(self, batches: list[TrajectoryBatch]) -> dict:
        """One optimizer step on this rank's shard of the joined batches.

        Returns [sum, count] pairs of the step's metrics over the shard (the controller adds the ranks' pairs
        and divides), the shard's traj_ids, and the rollout/teacher seconds carried by the batches.
        """
        maybe_fault(self.fault, "learner_step", rank=self.rank, step=self.optimizer_steps + 1, gen=self.generation)
        batch = concat(merge_teachers(batches))  # ensemble: one batch per trajectory set (routing: as given)
        if batch.outcome_correct_B is not None:  # the baseline is the whole step's batch, not this shard's
            batch.outcome_advantage_B = obj.outcome_advantage_B(torch.as_tensor(batch.outcome_correct_B)).numpy()
        shard = batch.rows(slice(self.rank, None, self.world_size))
        sums: dict[str, list] = {}
        for part in self.accumulate(batch, self.opd_loss):
            microbatch.add_sums(sums, part)
        sums = microbatch.pad_positions(sums, shard.response_ids_BR.shape[1])
        sums["grad_norm"] = [float(self.engine.get_global_grad_norm() or 0.0), 1.0]  # global: same on every rank
        return {"sums": sums, "traj_ids": shard.traj_ids, "stage_s": stage_seconds(batches),
                "tokens": float(shard.response_mask_BR.sum())}

    def opd_loss(self, micro: TrajectoryBatch, n_tokens_global: float) -> tuple[torch.Tensor, dict]:
        """One micro-batch's share of the OPD loss (its summed token losses over the global token count) and
        its metric sums."""
        tensors = ShardTensors(micro, self.engine.device, self.objective.k)
        mask_BR = tensors.mask_BR.float()
        # through the engine, not its module: DeepSpeed's forward counts micro-steps (ZeRO-3 otherwise overwrites
        # the gradient partitions of earlier micro-batches instead of adding to them)
        with autocast(self.compute_dtype, self.engine.device):
            logp_BRV = response_logp(self.engine, micro, self.temperature, self.vocab_limit)  # float32
        loss_BR = token_losses(logp_BRV, tensors, self.objective)
        loss = obj.token_mean(loss_BR, mask_BR, n_tokens_global) * self.world_size
        if not torch.isfinite(loss):  # docs/design.md invariant 7: report, never let DeepSpeed skip the step silently
            bad = int((~torch.isfinite(loss_BR) & mask_BR.bool()).sum())
            raise FloatingPointError(f"non-finite OPD loss at optimizer step {self.optimizer_steps + 1}: "
                                     f"{bad} valid tokens have NaN/inf per-token loss")
        with torch.no_grad():
            sums = diagnostic_sums(logp_BRV.detach(), tensors, micro, obj.diagnostics_k(self.objective))
        sums["loss"] = [float(obj.token_mean(loss_BR.detach(), mask_BR, 1.0)), float(mask_BR.sum())]
        return loss, sums

    def sft_step(self, batch: TrajectoryBatch) -> dict:
        """One supervised step on this rank's shard (the off-policy cold start, opd_ray/run/cold_start.py):
        token-mean negative log-likelihood of the responses (the teacher's answers) given their prompts, at
        temperature 1, with the same global token-mean as `train_step`. Returns the shard's NLL sum and tokens."""
        parts = self.accumulate(batch, self.sft_loss)
        return {"nll_sum": sum(p["nll_sum"] for p in parts), "tokens": sum(p["tokens"] for p in parts)}

    def sft_loss(self, micro: TrajectoryBatch, n_tokens_global: float) -> tuple[torch.Tensor, dict]:
        with autocast(self.compute_dtype, self.engine.device):  # the engine's forward: see opd_loss
            logp_BRV = response_logp(self.engine, micro, 1.0, self.vocab_limit)
        mask_BR = torch.as_tensor(micro.response_mask_BR, device=logp_BRV.device).float()
        nll_BR = -gather_BR(logp_BRV, micro.response_ids_BR)
        loss = obj.token_mean(nll_BR, mask_BR, n_tokens_global) * self.world_size
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite SFT loss at optimizer step {self.optimizer_steps + 1}")
        return loss, {"nll_sum": float(obj.token_mean(nll_BR.detach(), mask_BR, 1.0)), "tokens": float(mask_BR.sum())}

    def accumulate(self, batch: TrajectoryBatch, loss_of) -> list[dict]:
        """Backward over this rank's shard of `batch` in micro-batches of at most `learner.micro_batch_tokens`
        padded tokens, then one optimizer step; returns the metrics `loss_of(micro, n_tokens_global)` gave for
        each micro-batch.

        Each micro-batch's loss is its summed token loss over the whole batch's token count, so the accumulated
        gradient is the unsplit one. DeepSpeed reduces gradients at the accumulation boundary, which is set on
        the last backward only. Every rank runs as many passes as the rank with the most micro-batches: ZeRO-2/3
        communicate in every backward (ZeRO-3 in every forward too), so a rank with fewer passes repeats one of
        its rows with weight 0.
        """
        n_tokens_global = float(batch.response_mask_BR.sum())
        shards = [batch.rows(slice(r, None, self.world_size)) for r in range(self.world_size)]
        passes = max(microbatch.count(s, self.micro_batch_tokens) for s in shards)
        mine = [micro for _, micro in microbatch.split(shards[self.rank], self.micro_batch_tokens)]
        metrics = []
        for i in range(passes):
            filler = i >= len(mine)  # keeps this rank in step with the others' collectives
            micro = microbatch.trimmed(mine[0].rows(slice(0, 1))) if filler else mine[i]
            loss, extra = loss_of(micro, n_tokens_global)
            if filler:
                loss = loss * 0.0
            else:
                metrics.append(extra)
            self.engine.set_gradient_accumulation_boundary(i == passes - 1)
            self.engine.backward(loss)
        self.engine.step()
        self.optimizer_steps += 1
        return metrics

    def save_pretrained(self, path: str, tokenizer_path: str) -> str | None:
        """Export the student as a Hugging Face folder (safetensors + tokenizer); rank 0 writes."""
        weights = self.full_state_dict()
        if self.rank != 0:
            return None
        from transformers import AutoTokenizer

        module = self.engine.module
        module.save_pretrained(path, state_dict={k: torch.tensor(v) for k, v in weights.items()},
                               safe_serialization=True)
        AutoTokenizer.from_pretrained(tokenizer_path, trust_remote_code=self.trust_remote_code).save_pretrained(path)
        return path

    def full_state_dict(self) -> dict[str, np.ndarray]:
        """Full student weights (every rank must call this under ZeRO-3: the gathers are collectives).

        Under ZeRO-3 parameters are gathered one at a time, so at most one full tensor is materialised
        beyond the copy being built.
        """
        maybe_fault(self.fault, "learner_weights", rank=self.rank, step=self.optimizer_steps, gen=self.generation)
        module = self.engine.module
        if self.zero_stage != 3:
            return state_dict_numpy(module)
        import deepspeed  # lazy: DeepSpeed is heavy; only learner ranks need it

        out, persistent = {}, set(module.state_dict().keys())  # skips non-persistent buffers (rotary caches)
        # remove_duplicate=False: a tied head is sent as `lm_head.weight` too, as state_dict has it (vLLM needs it)
        for name, param in module.named_parameters(remove_duplicate=False):
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                out[name] = param.detach().cpu().numpy().copy()
        for name, buf in module.named_buffers():
            if name in persistent:
                out[name] = buf.detach().cpu().numpy().copy()
        return out

    def weights_digest(self) -> str | None:
        """SHA-256 of this rank's copy of the weights, in parameter order; None under ZeRO-3 (each rank holds a
        shard). Under ZeRO-1/2 every rank holds them all, and ranks that trained in step hold the same bytes."""
        if self.zero_stage == 3:
            return None
        digest = hashlib.sha256()
        for name, value in self.engine.module.state_dict().items():
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def save_checkpoint(self, path: str) -> str:
        """DeepSpeed engine state (weights, optimizer, scheduler) of this rank + its RNG, under `path`."""
        self.engine.save_checkpoint(path, tag="state", client_state={
            "optimizer_steps": self.optimizer_steps, "torch_rng": torch.get_rng_state()},
            save_latest=False)
        return path

    def load_checkpoint(self, path: str) -> int:
        load_path, client = self.engine.load_checkpoint(path, tag="state", load_optimizer_states=True,
                                                        load_lr_scheduler_states=True)
        if load_path is None:  # DeepSpeed returns None instead of raising when it finds nothing
            raise FileNotFoundError(f"DeepSpeed found no checkpoint under {path}")
        self.optimizer_steps = int(client["optimizer_steps"])
        torch.set_rng_state(client["torch_rng"])
        return self.optimizer_steps


def stage_seconds(batches: list[TrajectoryBatch]) -> dict[str, float]:
    """The slowest engine's and server's compute time (and teacher queue wait): shards run in parallel. Clock
    stamps (`sampled_at`) are not durations."""
    out: dict[str, float] = {}
    for b in batches:
        for stage, seconds in b.stage_s.items():
            if not stage.endswith("_at"):
                out[stage] = max(out.get(stage, 0.0), seconds)
    return out
