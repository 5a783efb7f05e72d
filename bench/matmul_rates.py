"""float32 against bfloat16 on this machine's CPU: matmul and linear-layer FLOP rates, and one SmolLM2-135M
learner pass (forward + backward) in float32 against bfloat16 autocast with float32 master weights.

    .venv/bin/python bench/matmul_rates.py [--out bench/results/matmul_rates.json]

Whether `model.dtype: bfloat16` pays on a CPU depends on its instructions: oneDNN has native bfloat16 kernels
for AVX-512 BF16 and AMX; elsewhere torch converts and computes slowly. The JSON records the CPU's flags beside
the rates, so a number is read with the hardware that gave it. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from evidence import write_new  # noqa: E402  (bench/evidence.py)

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_description() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {"model": model or platform.processor(), "flags": {f: f in flags for f in FLAGS},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}


def rate(fn, flops: float, seconds: float = 1.0) -> float:
    """FLOP/s of `fn`, called repeatedly for about `seconds` after two warm-up calls."""
    fn(), fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return flops * n / (time.perf_counter() - t0)


def kernel_rates(threads: int) -> dict:
    torch.set_num_threads(threads)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
        out[f"matmul_1024_{name}"] = rate(lambda: a @ b, 2 * 1024**3)
        # SmolLM2-135M's MLP up-projection over 1024 tokens
        x, w = torch.randn(1024, 576, dtype=dtype), torch.randn(1536, 576, dtype=dtype)
        out[f"linear_576x1536_{name}"] = rate(lambda: F.linear(x, w), 2 * 1024 * 576 * 1536)
    return out


def learner_pass(model_path: Path, threads: int, tokens: int = 4 * 104) -> dict:
    """Seconds of one forward + backward of SmolLM2-135M over `tokens` tokens (rows of 104, a SmolLM2 OPD row),
    float32 against bfloat16 autocast, and the loss of each."""
    from opd_ray.models.loading import autocast, load_model

    torch.set_num_threads(threads)
    model = load_model(str(model_path), dtype="float32")
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (tokens // 104, 104), generator=torch.Generator().manual_seed(0))
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        def step():
            model.zero_grad(set_to_none=True)
            with autocast(dtype, torch.device("cpu")):
                logits = model(input_ids=ids).logits
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            loss.backward()
            return loss.item()
        loss = step()
        t0 = time.perf_counter()
        step()
        name = str(dtype).removeprefix("torch.")
        out[f"seconds_{name}"] = time.perf_counter() - t0
        out[f"loss_{name}"] = loss
    n = sum(p.numel() for p in model.parameters())
    for name in ("float32", "bfloat16"):
        out[f"flop_s_{name}"] = 6 * n * tokens / out[f"seconds_{name}"]
    out.update(params=n, tokens=tokens)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "matmul_rates.json"))
    parser.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct"))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    result = {"cpu": cpu_description(), "cores": cores,
              "kernels": {str(t): kernel_rates(t) for t in sorted({1, cores})}}
    for threads, rates in result["kernels"].items():
        print(f"{threads} threads: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in rates.items()), flush=True)
    if Path(args.model).exists():
        result["smollm2_learner_pass"] = learner_pass(Path(args.model), cores)
        p = result["smollm2_learner_pass"]
        print(f"SmolLM2 forward+backward, {p['tokens']} tokens: float32 {p['seconds_float32']:.2f} s, "
              f"bfloat16 autocast {p['seconds_bfloat16']:.2f} s", flush=True)
    write_new(Path(args.out), result)


if __name__ == "__main__":
    main()
