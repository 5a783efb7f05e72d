"""One DeepSpeed learner rank: student forward on scored trajectories -> OPD objective -> backward -> step.

Each rank is a Ray actor (actors/learner.py) that trains on its shard of the batch; DeepSpeed averages the
gradients across ranks (gloo on CPU, NCCL on GPU). The token-mean is global: each rank divides its summed
loss by the token count of the whole batch and multiplies by the world size, undoing DeepSpeed's average.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from opd_ray import diagnostics as diag
from opd_ray import objectives as obj
from opd_ray.config import LearnerConfig, ObjectiveConfig
from opd_ray.faults import maybe_fault
from opd_ray.hf_models import load_model, state_dict_numpy
from opd_ray.scoring import gather_BR, gather_BRK, response_logits
from opd_ray.trajectory import TrajectoryBatch, concat


def init_distributed(rank: int, world_size: int, master_addr: str, master_port: int) -> None:
    os.environ.update(MASTER_ADDR=master_addr, MASTER_PORT=str(master_port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo" if not torch.cuda.is_available() else "nccl",
                               auto_mpi_discovery=False)


class DeepSpeedLearner:
    def __init__(self, model_path: str, learner: LearnerConfig, objective: ObjectiveConfig, *, rank: int,
                 world_size: int, master_addr: str, master_port: int, temperature: float, seed: int,
                 fault: str = "", generation: int = 0):
        import torch._dynamo  # noqa: F401  (zero.Init in some transformers releases imports it lazily; see DESIGN.md)
        import deepspeed

        torch.manual_seed(seed)
        init_distributed(rank, world_size, master_addr, master_port)
        self.rank, self.world_size, self.objective, self.temperature = rank, world_size, objective, temperature
        model = load_model(model_path)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=learner.lr, weight_decay=learner.weight_decay)
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
        self.optimizer_steps = 0
        self.fault, self.generation = fault, generation

    def train_step(self, batches: list[TrajectoryBatch]) -> dict:
        """One optimizer step on this rank's shard of the joined batches.

        Returns metric sums over the shard's tokens (the controller sums ranks and divides by `tokens`),
        the shard's traj_ids, and the rollout/teacher seconds carried by the batches.
        """
        maybe_fault(self.fault, "learner_step", rank=self.rank, step=self.optimizer_steps + 1, gen=self.generation)
        batch = concat(batches)
        n_tokens_global = float(batch.response_mask_BR.sum())
        shard = batch.rows(slice(self.rank, None, self.world_size))
        mask_BR = torch.as_tensor(shard.response_mask_BR).float().to(self.engine.device)
        logits_BRV = response_logits(self.engine.module, shard.prompt_ids_BP, shard.prompt_mask_BP,
                                     shard.response_ids_BR, shard.response_mask_BR)
        logp_BRV = torch.log_softmax(logits_BRV / self.temperature, dim=-1)
        loss_BR = self.per_token_loss(logp_BRV, shard)
        loss = obj.token_mean(loss_BR, mask_BR, n_tokens_global) * self.world_size
        if not torch.isfinite(loss):  # DESIGN invariant 7: report, never let DeepSpeed skip the step silently
            bad = int((~torch.isfinite(loss_BR) & mask_BR.bool()).sum())
            raise FloatingPointError(f"non-finite OPD loss at optimizer step {self.optimizer_steps + 1}: "
                                     f"{bad} valid tokens have NaN/inf per-token loss")
        self.engine.backward(loss)
        self.engine.step()
        self.optimizer_steps += 1
        with torch.no_grad():
            metrics = shard_metric_sums(shard, logp_BRV, mask_BR)
        metrics["loss_sum"] = float(obj.token_mean(loss_BR.detach(), mask_BR, 1.0))
        metrics["grad_norm"] = float(self.engine.get_global_grad_norm() or 0.0)
        return {"sums": metrics, "traj_ids": shard.traj_ids, "stage_s": stage_seconds(batches)}

    def per_token_loss(self, logp_BRV: torch.Tensor, shard: TrajectoryBatch) -> torch.Tensor:
        o, dev = self.objective, logp_BRV.device
        if o.kind == "sampled_token":
            old_BR = torch.as_tensor(shard.student_logp_BR, device=dev)
            adv_BR = obj.sampled_token_advantage(old_BR, torch.as_tensor(shard.teacher_logp_BR, device=dev))
            new_BR = gather_BR(logp_BRV, shard.response_ids_BR)
            return obj.ppo_clipped_loss(new_BR, old_BR, adv_BR, o.clip_low, o.clip_high, o.dual_clip)
        old_BRK = torch.as_tensor(shard.student_topk_logp_BRK, device=dev)
        adv_BRK = obj.student_topk_advantage(old_BRK, torch.as_tensor(shard.teacher_logp_at_student_topk_BRK,
                                                                      device=dev))
        new_BRK = gather_BRK(logp_BRV, shard.student_topk_ids_BRK)
        return obj.ppo_clipped_loss(new_BRK, old_BRK, adv_BRK, o.clip_low, o.clip_high, o.dual_clip).sum(-1)

    def save_pretrained(self, path: str, tokenizer_path: str) -> str | None:
        """Export the student as a Hugging Face folder (safetensors + tokenizer); rank 0 writes."""
        weights = self.full_state_dict()
        if self.rank != 0:
            return None
        from transformers import AutoTokenizer

        module = self.engine.module
        module.save_pretrained(path, state_dict={k: torch.tensor(v) for k, v in weights.items()},
                               safe_serialization=True)
        AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(path)
        return path

    def full_state_dict(self) -> dict[str, np.ndarray]:
        """Full student weights (every rank must call this under ZeRO-3: the gathers are collectives).

        Under ZeRO-3 parameters are gathered one at a time, so at most one full tensor is materialised
        beyond the copy being built.
        """
        module = self.engine.module
        if self.zero_stage != 3:
            return state_dict_numpy(module)
        import deepspeed

        out, persistent = {}, set(module.state_dict().keys())  # skips non-persistent buffers (rotary caches)
        for name, param in module.named_parameters():
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                out[name] = param.detach().cpu().numpy().copy()
        for name, buf in module.named_buffers():
            if name in persistent:
                out[name] = buf.detach().cpu().numpy().copy()
        return out

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


def shard_metric_sums(shard: TrajectoryBatch, logp_BRV: torch.Tensor, mask_BR: torch.Tensor) -> dict[str, float]:
    """Sums over this shard's valid tokens; the group divides by the global token count."""
    m = shard.response_mask_BR
    s_ids, t_ids = shard.student_topk_ids_BRK, shard.teacher_topk_ids_BRK
    per_token = {
        "reverse_kl": shard.student_logp_BR - shard.teacher_logp_BR,  # sampled estimator of KL(p || q)
        "overlap_ratio": diag.overlap_ratio_BR(s_ids, t_ids),
        "overlap_mass_student": diag.overlap_mass_BR(s_ids, shard.student_topk_logp_BRK, t_ids),
        "overlap_mass_teacher": diag.overlap_mass_BR(t_ids, shard.teacher_topk_logp_BRK, s_ids),
        "entropy_student": diag.entropy_BR(logp_BRV).cpu().numpy(),
        "entropy_teacher": shard.teacher_entropy_BR.astype(np.float32),
    }
    sums = {name: float((values * m).sum()) for name, values in per_token.items()}
    sums["entropy_gap"] = float((np.abs(per_token["entropy_teacher"] - per_token["entropy_student"]) * m).sum())
    sums["tokens"] = float(m.sum())
    return sums


def stage_seconds(batches: list[TrajectoryBatch]) -> dict[str, float]:
    """The slowest engine's and server's compute time: shards run in parallel."""
    out: dict[str, float] = {}
    for b in batches:
        for stage, seconds in b.stage_s.items():
            out[stage] = max(out.get(stage, 0.0), seconds)
    return out
