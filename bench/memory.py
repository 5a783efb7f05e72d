"""Peak memory of a learner rank and of a teacher server on the SmolLM2 config, micro-batched against whole-shard.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/memory.py           -> bench/results/memory.json

One OPD step of a DeepSpeed learner rank (ZeRO-1, AdamW, top-k objective, k = 16) and one scoring call of the
HF teacher (k = 16), both on models/SmolLM2-135M-Instruct (49,152 ids, float32), for 8, 32 and 128 sequences.
Prompts are the sums prompts in SmolLM2's chat template (50-140 tokens); responses are 64-128 random token
ids (seeded): memory depends on shapes, not on which tokens they are. The rollout's and teacher's fields the
learner reads are random values of the right shapes and dtypes.

Every case runs in a fresh process; its peak RSS is VmHWM. `micro`: learner.micro_batch_tokens /
teacher.micro_batch_tokens = --budget; `whole`: a budget that covers the shard (one pass, the path before
micro-batches). A whole-shard case whose peak, extrapolated linearly in tokens from the two smaller whole
cases, would pass --limit-gib is recorded as skipped with that estimate instead of run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from evidence import write_new  # noqa: E402  (bench/evidence.py)
from proc_stats import peak_rss_mib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct"
SIZES, K, WHOLE = (8, 32, 128), 16, 1 << 40


def synthetic_batch(rows: int, seed: int = 0):
    import numpy as np

    from opd_ray.models.loading import load_tokenizer
    from opd_ray.models.sampling import left_pad
    from opd_ray.trajectory.batch import TrajectoryBatch

    tok, rng = load_tokenizer(str(MODEL)), np.random.default_rng(seed)
    lines = (ROOT / "tests" / "data" / "sums" / "train.jsonl").read_text().splitlines()
    chats = [[{"role": "user", "content": json.loads(lines[i % len(lines)])["prompt"]}] for i in range(rows)]
    prompts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True) for c in chats]
    prompt_ids, prompt_mask = left_pad([p["input_ids"] if hasattr(p, "keys") else p for p in prompts], tok.pad_token_id)
    lengths = rng.integers(64, 129, rows)
    mask = np.arange(lengths.max())[None, :] < lengths[:, None]
    vocab = len(tok)
    ids = np.where(mask, rng.integers(0, vocab, mask.shape), tok.pad_token_id).astype(np.int32)
    topk = lambda: rng.integers(0, vocab, mask.shape + (K,)).astype(np.int32)  # noqa: E731
    logp = lambda *shape: -rng.exponential(2.0, mask.shape + shape).astype(np.float32)  # noqa: E731
    return TrajectoryBatch(
        traj_ids=[(0, i, 0) for i in range(rows)], policy_version=0, prompt_ids_BP=prompt_ids.numpy().astype(np.int32),
        prompt_mask_BP=prompt_mask.numpy().astype(bool), response_ids_BR=ids, response_mask_BR=mask,
        student_logp_BR=logp(), student_topk_ids_BRK=topk(), student_topk_logp_BRK=-np.sort(-logp(K), -1),
        teacher_logp_BR=logp().astype(np.float16), teacher_logp_at_student_topk_BRK=logp(K).astype(np.float16),
        teacher_topk_ids_BRK=topk(), teacher_topk_logp_BRK=(-np.sort(-logp(K), -1)).astype(np.float16),
        teacher_entropy_BR=rng.uniform(0, 3, mask.shape).astype(np.float16))



def run_case(role: str, rows: int, budget: int) -> dict:
    """One case in this (fresh) process."""
    import torch

    from opd_ray.trajectory import microbatch

    torch.set_num_threads(2)
    batch = synthetic_batch(rows)
    if role == "learner":
        from opd_ray.config.schema import LearnerConfig, ObjectiveConfig
        from opd_ray.learner.deepspeed_rank import DeepSpeedLearner
        from opd_ray.runtime.process import free_port

        worker = DeepSpeedLearner(str(MODEL), LearnerConfig(lr=1e-5, micro_batch_tokens=budget),
                                  ObjectiveConfig(kind="topk", k=K), rank=0, world_size=1, master_addr="127.0.0.1",
                                  master_port=free_port(), temperature=1.0, seed=0)
        call = lambda: worker.train_step([batch])  # noqa: E731
    else:
        from opd_ray.engines.hf_teacher import HFTeacher

        worker = HFTeacher(str(MODEL), top_k=K, temperature=1.0, max_new_tokens=128, micro_batch_tokens=budget)
        call = lambda: worker.score(batch)  # noqa: E731
    loaded = peak_rss_mib()
    t0 = time.perf_counter()
    call()
    return {"role": role, "rows": rows, "budget": budget, "padded_tokens": microbatch.padded_tokens(batch),
            "response_tokens": int(batch.response_mask_BR.sum()), "micro_batches": microbatch.count(batch, budget),
            "peak_rss_mib_loaded": round(loaded, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
            "seconds": round(time.perf_counter() - t0, 2)}


def child(role: str, rows: int, budget: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--case", role, str(rows), str(budget)], capture_output=True,
                         text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not line:
        raise RuntimeError(f"{role} {rows} {budget} failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(line[-1].removeprefix("RESULT "))


def whole_estimate(done: list[dict], tokens: int) -> float:
    """Peak RSS (MiB) at `tokens` padded tokens, linear through the two largest whole-shard cases run."""
    a, b = sorted(done, key=lambda r: r["padded_tokens"])[-2:]
    slope = (b["peak_rss_mib"] - a["peak_rss_mib"]) / (b["padded_tokens"] - a["padded_tokens"])
    return b["peak_rss_mib"] + slope * (tokens - b["padded_tokens"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", nargs=3)
    parser.add_argument("--budget", type=int, default=1024, help="micro_batch_tokens of the micro-batched cases")
    parser.add_argument("--limit-gib", type=float, default=20.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory.json"))
    args = parser.parse_args()
    if args.case:
        role, rows, budget = args.case
        print("RESULT " + json.dumps(run_case(role, int(rows), int(budget))), flush=True)
        return
    results = {"model": str(MODEL.relative_to(ROOT)), "vocab": 49152, "k": K, "budget": args.budget,
               "limit_gib": args.limit_gib, "cpus": os.cpu_count(), "machine": platform.machine(),
               "date": time.strftime("%Y-%m-%d"), "cases": []}
    for role in ("teacher", "learner"):
        whole_done = []
        for rows in SIZES:
            results["cases"].append(child(role, rows, args.budget) | {"path": "micro"})
            print(results["cases"][-1], flush=True)
            tokens = results["cases"][-1]["padded_tokens"]
            estimate = whole_estimate(whole_done, tokens) if len(whole_done) >= 2 else 0.0
            if estimate > args.limit_gib * 1024:
                results["cases"].append({"role": role, "rows": rows, "path": "whole", "padded_tokens": tokens,
                                         "skipped": True, "estimated_peak_rss_mib": round(estimate)})
            else:
                whole_done.append(child(role, rows, WHOLE) | {"path": "whole"})
                results["cases"].append(whole_done[-1])
            print(results["cases"][-1], flush=True)
        micro = [c["peak_rss_mib"] for c in results["cases"] if c["role"] == role and c["path"] == "micro"]
        results[f"{role}_micro_spread"] = round(max(micro) / min(micro) - 1, 4)  # the goal: <= 0.15
    write_new(Path(args.out), results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
