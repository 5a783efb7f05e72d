"""Per-problem greedy outcomes after training, for runs that finished before summary.json kept them.

    python bench/paper/after_outcomes.py runs/paper/s4-main-* runs/paper/s7-top1-* ...

The run's final HF export is decoded greedily on the run's evaluation sets by the rollout engine the job uses
(HFRollout with the run's own settings), in the job's chunks of 128, and graded by the run's verifier. Each set's
accuracy must equal the one the run reported; the outcomes go to <run>/after_outcomes.json (a run that already
holds them in summary.json is skipped). bench/paper/compare_arms.py pairs the arms on them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from opd_ray.config import teachers
from opd_ray.data.verifiers import get_verifier
from opd_ray.engines.hf_rollout import HFRollout
from opd_ray.loop.evaluation import CHUNK
from opd_ray.models.folders import shared_logit_width
from opd_ray.models.loading import load_tokenizer, model_options
from opd_ray.objective.losses import payload_k
from opd_ray.run.preflight import build_task, load_config


def outcomes(run_dir: Path) -> dict[str, list[float]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = load_config(run_dir / "config.yaml", [f"model.student={summary['student_export']}"])
    task = build_task(cfg, load_tokenizer(cfg.model.student))
    engine = HFRollout(cfg.model.student, max_new_tokens=cfg.rollout.max_new_tokens,
                       temperature=cfg.rollout.temperature, top_k=payload_k(cfg.objective), run_seed=cfg.run.seed,
                       model_options=model_options(cfg), stop=cfg.rollout.stop,
                       vocab_limit=shared_logit_width(cfg.model.student, *teachers.models(cfg)),
                       prefill_tokens=cfg.teacher.micro_batch_tokens)
    verify, out = get_verifier(task.verifier), {}
    for name, examples in task.eval_sets.items():
        texts = []
        for lo in range(0, len(examples), CHUNK):
            texts += engine.greedy([list(ex.prompt_ids) for ex in examples[lo: lo + CHUNK]])
        out[name] = [float(verify(text, ex.answer)) for ex, text in zip(examples, texts, strict=True)]
        reported = summary["eval"][name]["student_after"]["greedy"]
        if sum(out[name]) / len(out[name]) != reported:
            raise SystemExit(f"{run_dir}: {name} decodes to {sum(out[name]) / len(out[name]):.4f}, the run "
                             f"reported {reported:.4f}; the outcomes would not be the run's")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for run_dir in args.runs:
        summary = json.loads((run_dir / "summary.json").read_text())
        if "student_after_correct" in summary or (run_dir / "after_outcomes.json").exists():
            print(f"{run_dir}: has its outcomes")
            continue
        (run_dir / "after_outcomes.json").write_text(json.dumps(outcomes(run_dir)) + "\n")
        print(f"{run_dir}: outcomes written, accuracies match the run's")


if __name__ == "__main__":
    main()
