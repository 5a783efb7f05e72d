"""How often the cold-start rejection filters fire on lab teacher answers, by sampling temperature.

    python bench/lab_filters.py [--json bench/results/lab_filters.json]

The cold-start stage samples the teacher at 0.7 (the paper's C.1), where the lab teacher never degenerates.
Hotter sampling is how real teachers produce the truncated, looping and unformatted answers the paper's
filters were written for; this measures each filter's rejections (the first failing check per answer, as the
stage counts them) and how many *kept* answers are still wrong, for the lab-scaled and the paper's thresholds.
Same prompts (`cold_start_prompts`), sampler (`opd_ray.models.sampling.sample`) and filters as the stage.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from evidence import write_new  # noqa: E402  (bench/evidence.py)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opd_ray.data.rejection_filters import (
    FILTERS,  # noqa: E402
    filter_responses,  # noqa: E402
)
from opd_ray.lab.arith_task import cold_start_prompts  # noqa: E402
from opd_ray.lab.task import verify  # noqa: E402
from opd_ray.models.loading import load_model, load_tokenizer  # noqa: E402
from opd_ray.models.sampling import decode_responses, sample, trajectory_seed  # noqa: E402
from opd_ray.run.preflight import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="opd_ray/lab/artifacts/teacher")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--n", type=int, default=1024, help="prompts per temperature")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "lab_cpu.yaml", [f"model.teacher={args.teacher}"])
    prompts = cold_start_prompts(cfg)[: args.n]
    tok, model = load_tokenizer(cfg.model.teacher), load_model(cfg.model.teacher)
    ids = [tok(p)["input_ids"] for p in prompts]
    rows = []
    for temperature in args.temperatures:
        t0 = time.time()
        seeds = [trajectory_seed(cfg.run.seed, (0, i, 0), 0) for i in range(len(prompts))]
        with torch.no_grad():
            out = sample(model, ids, max_new_tokens=cfg.cold_start.max_new_tokens, eos_id=tok.eos_token_id,
                         pad_id=tok.pad_token_id, seeds=seeds, temperature=temperature)
        texts = decode_responses(tok, out)
        truncated = (~((out.response_ids_BR == tok.eos_token_id) & out.response_mask_BR).any(axis=1)).tolist()
        row = {"temperature": temperature, "answers": len(texts),
               "correct": sum(verify(p, t) for p, t in zip(prompts, texts)) / len(texts)}
        for name, filters in FILTERS.items():
            keep, reasons = filter_responses(texts, truncated, filters)
            kept = [t for t, k in zip(texts, keep) if k]
            kept_prompts = [p for p, k in zip(prompts, keep) if k]
            row[name] = {"kept": len(kept), "rejections": dict(reasons),
                         "kept_wrong": sum(not verify(p, t) for p, t in zip(kept_prompts, kept))}
        rows.append(row)
        print(f"T={temperature}: correct {row['correct']:.3f}; lab filters keep {row['lab']['kept']} "
              f"(rejected {row['lab']['rejections']}, kept but wrong {row['lab']['kept_wrong']}); paper filters "
              f"keep {row['paper']['kept']} (rejected {row['paper']['rejections']}) [{time.time() - t0:.0f} s]")
    if args.json:
        write_new(args.json, {"teacher": args.teacher, "rows": rows})


if __name__ == "__main__":
    main()
