"""The vLLM teacher at a real vocabulary: full-vocabulary `prompt_logprobs` (before) against `prompt_logprobs=k`
(after), on SmolLM2-135M-Instruct (49,152 ids), k = 16.

    VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1 \
        .venv-vllm/bin/python bench/vllm_teacher_payload.py      -> bench/results/vllm_teacher_payload.json

SmolLM2 samples responses to the sums prompts (ChatML, HF sampling, seeded); the vLLM teacher scores the
same batch once per mode, each in a fresh process (peak RSS is per process). Per mode:
- entries per scored position that vLLM returns (prompt positions are scored too: vLLM has no start offset);
- their Python size per response token: what the engine hands the teacher (measured on a sample of
  positions, times the number of positions);
- the payload the teacher ships per response token (`TrajectoryBatch.payload_bytes_per_token`, float16);
- teacher seconds per response token (median of `--repeats` calls after a warm-up call; "before": one call);
- the process's peak RSS (VmHWM).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evidence import write_new  # noqa: E402  (bench/evidence.py)
from proc_stats import peak_rss_mib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct"
K = 16


def make_batch(rows: int, new_tokens: int):
    """SmolLM2's own samples for the first `rows` sums prompts, in its chat template."""
    from opd_ray.engines.hf_rollout import HFRollout

    rollout = HFRollout(str(MODEL), max_new_tokens=new_tokens, temperature=1.0, top_k=K, run_seed=0)
    lines = (ROOT / "tests" / "data" / "sums" / "train.jsonl").read_text().splitlines()[:rows]
    prompts = [rollout.tokenizer.apply_chat_template([{"role": "user", "content": json.loads(line)["prompt"]}],
                                                     add_generation_prompt=True, tokenize=True) for line in lines]
    prompts = [p["input_ids"] if isinstance(p, dict) or hasattr(p, "keys") else p for p in prompts]
    return rollout.generate(prompts, [(0, i, 0) for i in range(rows)], 0)


def python_bytes(entries: dict) -> int:
    """sys.getsizeof over one position's {token id: Logprob} dict and what it holds (small ints counted too)."""
    size = sys.getsizeof(entries)
    for token, e in entries.items():
        size += sys.getsizeof(token) + sys.getsizeof(e) + sys.getsizeof(e.logprob) + sys.getsizeof(e.rank)
        size += sys.getsizeof(e.decoded_token) if e.decoded_token is not None else 0
    return size



def measure(mode: str, batch_file: str, repeats: int) -> dict:
    """One mode in this (fresh) process: 'before' = full vocabulary, 'after' = top-k only."""
    from opd_ray.engines.vllm_engines import VLLMTeacher

    batch = pickle.loads(Path(batch_file).read_bytes())
    tokens = int(batch.response_mask_BR.sum())
    # before: the path every vocabulary took before this change (which also needed max_logprobs raised: vLLM
    # 0.32 refuses more than 20 entries per position by default, so at 49k ids it stopped at the first score)
    teacher = VLLMTeacher(str(MODEL), top_k=K, temperature=1.0, max_new_tokens=64, max_model_len=512,
                          full_vocab=mode == "before")
    rss_loaded = peak_rss_mib()
    teacher.score(batch.rows(slice(0, 1)))  # warm-up
    times = []
    for _ in range(1 if mode == "before" else repeats):
        t0 = time.perf_counter()
        scored = teacher.score(batch)
        times.append(time.perf_counter() - t0)
    rss_scored = peak_rss_mib()  # before the call below, which fetches the same entries once more
    rows, logprobs = teacher.prompt_logprobs(batch, -1 if mode == "before" else K)
    positions = [entries for per_row in logprobs for entries in per_row if entries is not None]
    sample = positions[:: max(1, len(positions) // 8)][:8]
    bytes_per_position = statistics.mean(python_bytes(e) for e in sample)
    return {"mode": mode, "rows": len(batch), "response_tokens": tokens, "scored_positions": len(positions),
            "entries_per_position": statistics.mean(len(e) for e in sample),
            "vllm_output_bytes_per_token": bytes_per_position * len(positions) / tokens,
            "shipped_payload_bytes_per_token": scored.payload_bytes_per_token(),
            "shipped_fields": sorted(n for n in vars(scored) if n.startswith("teacher_") and getattr(scored, n) is not None),
            "teacher_s_per_token": statistics.median(times) / tokens, "teacher_s": times,
            "peak_rss_mib_model_loaded": rss_loaded, "peak_rss_mib": rss_scored}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=["before", "after"])
    parser.add_argument("--batch-file")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "vllm_teacher_payload.json"))
    args = parser.parse_args()
    if args.mode:  # a child: one measurement, as one JSON line
        print("RESULT " + json.dumps(measure(args.mode, args.batch_file, args.repeats)))
        return
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        batch_file = Path(tmp) / "batch.pkl"
        batch_file.write_bytes(pickle.dumps(make_batch(args.rows, args.new_tokens)))
        results = {}
        for mode in ("after", "before"):
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--batch-file", str(batch_file),
                                  "--repeats", str(args.repeats)], capture_output=True, text=True, env=os.environ)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode or not line:
                raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
            results[mode] = json.loads(line[-1].removeprefix("RESULT "))
            print(mode, {k: v for k, v in results[mode].items() if k != "shipped_fields"}, flush=True)
    import vllm

    report = {"model": str(MODEL.relative_to(ROOT)), "vocab": 49152, "k": K, "machine": platform.machine(),
              "cpus": os.cpu_count(), "vllm": vllm.__version__, "date": time.strftime("%Y-%m-%d"), **results}
    write_new(Path(args.out), report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
