"""The GPU check: opd_ray's HF rollout engine, HF teacher and DeepSpeed learner, called directly on one GPU.

    python bench/gpu_check.py                                  # one H100/H200: a ~1.2B random-init Llama, bf16
    python bench/gpu_check.py --device cpu --size tiny         # the CPU rehearsal (tests/bench/test_gpu_check.py)

No Ray and no vLLM: each stage's class runs in this process, as its actor would run it. The student and the
teacher are random-init Llamas of the same shape (SmolLM2's tokenizer, 49,152 ids), saved with save_pretrained and
loaded through the same `from_pretrained` path a checkpoint uses. Per stage it reports response tokens/s and the
peak GPU memory; for the learner its MFU (6 N per trained token, prompts included, against the card's dense bf16
peak) at the default `learner.micro_batch_tokens`; and it checks the objective's values computed on the device
against float64 on the CPU from the same log-probs. JSON into bench/results/gpu_check*.json.

What it needs on the GPU machine: torch, transformers, and the wheels `make gpu-wheels` puts in .gpu-wheels/
(DeepSpeed, OmegaConf and their small dependencies): `pip install --no-index --find-links .gpu-wheels deepspeed
omegaconf` then this script. About 3 minutes on an H100 at the defaults.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package, without installing it
sys.path.insert(0, str(ROOT / "bench"))
from evidence import write_new  # noqa: E402

from opd_ray.config.schema import LearnerConfig, ObjectiveConfig, TeacherConfig  # noqa: E402

TOKENIZER = ROOT / "opd_ray" / "assets" / "smollm2_tokenizer"
# (hidden, layers, heads, kv heads, intermediate): "1b" is 1.24B parameters with the 49,152-id vocabulary
SIZES = {"1b": (2048, 16, 32, 8, 8192), "tiny": (64, 2, 4, 2, 128)}
DENSE_BF16_PEAK = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}  # no sparsity


def build_model(out: Path, size: str, seed: int) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv_heads, intermediate = SIZES[size]
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=intermediate,
                         max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def peak_flops(device: str) -> tuple[float, str]:
    """The card's dense bf16 peak (by name), or on the CPU the measured float32 matmul rate."""
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        for key, peak in DENSE_BF16_PEAK.items():
            if key in name:
                return peak, f"{name}: dense bf16 peak of its data sheet"
        return float("nan"), f"{name}: peak unknown (pass --peak-flops)"
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t0, n = time.perf_counter(), 20
    for _ in range(n):
        a @ b
    return 2 * 1024**3 * n / (time.perf_counter() - t0), "CPU: measured float32 matmul rate"


class Stage:
    """Times one stage on the device and records its peak memory."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        self.peak_gib = torch.cuda.max_memory_allocated() / 2**30 if self.device == "cuda" else None


def objective_on_device_vs_cpu(learner, batch, objective: ObjectiveConfig, rows: int = 4) -> dict:
    """The objective's per-token losses from the same student log-probs: on the learner's device (float32)
    against the CPU in float64. The log-probs are the learner's own forward pass on `rows` trajectories."""
    from opd_ray.learner.opd_loss import ShardTensors, token_losses
    from opd_ray.models.loading import autocast
    from opd_ray.models.scoring import response_logp

    micro = batch.rows(slice(0, rows))
    with torch.no_grad(), autocast(learner.compute_dtype, learner.engine.device):
        logp_BRV = response_logp(learner.engine.module, micro, learner.temperature)
    on_device = token_losses(logp_BRV, ShardTensors(micro, logp_BRV.device), objective).float().cpu().double()
    on_cpu = token_losses(logp_BRV.cpu().double(), ShardTensors(micro, "cpu"), objective)
    mask = torch.as_tensor(micro.response_mask_BR)
    diff = (on_device - on_cpu).abs()[mask]
    return {"tokens": int(mask.sum()), "max_abs_diff": float(diff.max()),
            "loss_device": float(on_device[mask].mean()), "loss_cpu_float64": float(on_cpu[mask].mean()),
            "max_abs_loss": float(on_cpu[mask].abs().max())}


def run(args) -> dict:
    from opd_ray.engines.hf_rollout import HFRollout
    from opd_ray.engines.hf_teacher import HFTeacher
    from opd_ray.learner.deepspeed_rank import DeepSpeedLearner
    from opd_ray.runtime.process import free_port

    options = {"dtype": args.dtype}
    with tempfile.TemporaryDirectory() as tmp:
        student, teacher = (build_model(Path(tmp) / name, args.size, seed) for name, seed in (("s", 1), ("t", 2)))
        rng = np.random.default_rng(0)
        prompts = [rng.integers(100, 40000, args.prompt_len).tolist() for _ in range(args.prompts)]
        traj_ids = [(0, i, 0) for i in range(args.prompts)]
        rollout = HFRollout(str(student), max_new_tokens=args.new_tokens, temperature=1.0, top_k=args.k, run_seed=0,
                            model_options=options)
        rollout.generate(prompts[:2], traj_ids[:2], 0)  # warm-up (kernels, allocator)
        with Stage(args.device) as gen:
            batch = rollout.generate(prompts, traj_ids, 0)
        del rollout
        scorer = HFTeacher(str(teacher), top_k=args.k, temperature=1.0, max_new_tokens=args.new_tokens,
                           model_options=options, micro_batch_tokens=args.teacher_micro_batch_tokens)
        scorer.score(batch.rows(slice(0, 2)))
        with Stage(args.device) as score:
            scored = scorer.score(batch)
        del scorer
        objective = ObjectiveConfig(kind="topk", k=args.k)
        config = LearnerConfig(lr=1e-6, micro_batch_tokens=args.learner_micro_batch_tokens)
        learner = DeepSpeedLearner(str(student), config, objective, rank=0, world_size=1, master_addr="127.0.0.1",
                                   master_port=free_port(), temperature=1.0, seed=0, model_options=options)
        learner.train_step([scored])  # warm-up step
        with Stage(args.device) as train:
            for _ in range(args.learner_steps):
                out = learner.train_step([scored])
        numerics = objective_on_device_vs_cpu(learner, scored, objective)
        n_params = sum(p.numel() for p in learner.engine.module.parameters())
    response_tokens = float(batch.response_mask_BR.sum())
    trained_tokens = response_tokens + float(batch.prompt_mask_BP.sum())
    peak, peak_source = peak_flops(args.device)
    if args.peak_flops:
        peak, peak_source = args.peak_flops, "--peak-flops"
    learner_flop_s = 6 * n_params * trained_tokens * args.learner_steps / train.seconds
    loss = out["sums"]["loss"][0] / out["sums"]["loss"][1]
    return {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu", "torch": torch.__version__,
        "size": args.size, "params": n_params, "dtype": args.dtype, "prompts": args.prompts,
        "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "k": args.k,
        "response_tokens": response_tokens,
        "rollout": {"seconds": gen.seconds, "tokens_per_s": response_tokens / gen.seconds, "peak_gib": gen.peak_gib},
        "teacher": {"seconds": score.seconds, "tokens_per_s": response_tokens / score.seconds,
                    "peak_gib": score.peak_gib, "micro_batch_tokens": args.teacher_micro_batch_tokens},
        "learner": {"seconds_per_step": train.seconds / args.learner_steps,
                    "tokens_per_s": response_tokens * args.learner_steps / train.seconds,
                    "peak_gib": train.peak_gib, "micro_batch_tokens": args.learner_micro_batch_tokens,
                    "flop_s": learner_flop_s, "peak_flop_s": peak, "peak_source": peak_source,
                    "mfu": learner_flop_s / peak, "last_loss": loss, "finite": bool(np.isfinite(loss))},
        "objective_device_vs_cpu": numerics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=tuple(SIZES), default="1b")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--learner-steps", type=int, default=3)
    parser.add_argument("--teacher-micro-batch-tokens", type=int, default=TeacherConfig.micro_batch_tokens)
    parser.add_argument("--learner-micro-batch-tokens", type=int, default=LearnerConfig.micro_batch_tokens)
    parser.add_argument("--peak-flops", type=float, default=None, help="the device's peak, where its name is unknown")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU here (use --device cpu for the rehearsal)")
    result = run(args)
    for stage in ("rollout", "teacher", "learner"):
        s = result[stage]
        memory = "" if s["peak_gib"] is None else f", peak memory {s['peak_gib']:.1f} GiB"
        print(f"{stage}: {s['tokens_per_s']:.0f} response tokens/s{memory}", flush=True)
    print(f"learner MFU {result['learner']['mfu']:.1%} ({result['learner']['peak_source']}); objective on device "
          f"vs CPU float64: max |diff| {result['objective_device_vs_cpu']['max_abs_diff']:.2e}", flush=True)
    write_new(Path(args.out), result)


if __name__ == "__main__":
    main()
