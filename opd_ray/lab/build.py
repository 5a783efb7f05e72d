"""Build the lab: tokenizer, student and teacher, trained with SFT and saved with `save_pretrained`.

    python -m opd_ray.lab.build --out opd_ray/lab/artifacts      (what `make lab` runs)

Deterministic (fixed seeds, one thread per model); the two models train in parallel processes.
The student sees mostly easy problems (2-3 terms) and a few hard ones (4-5 terms), so it solves some hard
problems; the teacher trains on both ranges and solves most. OPD should close that gap.

Two more teachers reproduce the paper's failure conditions (docs/design.md, paper §3.1–3.2):
- teacher_samedata: teacher-sized, trained on the student's own mixture only: larger, but no new capability;
- teacher_incompatible: the teacher fine-tuned to write its chain of thought right to left (task.COT_FORMATS):
  the same capability, a different thinking pattern, the same tokenizer.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from opd_ray.lab.sft import accuracy, sft_problems, train_sft
from opd_ray.lab.task import sample_problems
from opd_ray.lab.tiny_models import build_model
from opd_ray.lab.tokenizer import build_tokenizer

EASY, HARD = (2, 3), (4, 5)
DIGITS_HARD = (5, 6)  # the digits skill's hard range: longer chains of easier steps
SFT_BATCH = 64
EVAL_SEED_EASY, EVAL_SEED_HARD = 900_001, 900_002  # the held-out sets; training seeds never reach them
RECIPES = {
    # name: (model size, SFT mixture [(weight, n_terms range)], steps, seed)
    "student": ("student", [(0.95, EASY), (0.05, HARD)], 2500, 1),
    "teacher": ("teacher", [(0.5, EASY), (0.5, HARD)], 2500, 2),
    "teacher_samedata": ("teacher", [(0.95, EASY), (0.05, HARD)], 1800, 3),
    "teacher_incompatible": ("teacher", [(0.5, EASY), (0.5, HARD)], 600, 4),
    # the two-teacher lab (configs/lab_mopd.yaml): a student partly competent at both skills, and a specialist
    # teacher for the digits skill (the sum specialist is `teacher`, which never saw a digits prompt)
    # (its hard accuracies jump between checkpoints and seeds: 0.09-0.998 on sums, 0.53-0.99 on digits for full
    # schedules of 3000-4000 steps. Stopped at 2000 of 3000 steps it is partly competent at both: see VARIANTS)
    "student_mopd": ("student", [(0.4625, EASY, "sum"), (0.0375, HARD, "sum"), (0.48, EASY, "digits"),
                                 (0.02, DIGITS_HARD, "digits")], 3000, 5),
    "teacher_digits": ("teacher", [(0.5, EASY, "digits"), (0.5, DIGITS_HARD, "digits")], 2500, 6),
}
TWO_SKILL_RECIPES = ("student_mopd", "teacher_digits")  # `make lab-mopd`; their cards also give digits accuracy
# Recipes that start from another recipe's weights (built in a second phase) or use another CoT format / lr.
VARIANTS = {
    "teacher_incompatible": {"init_from": "teacher", "cot": "reverse", "lr": 1e-3},
    "student_mopd": {"stop_at": 2000},  # the 3000-step schedule stopped at step 2000: an under-trained student
}


def post_training_prompts(name: str) -> list[str]:
    """The distinct prompts a lab model was post-trained on (its SFT data, regenerated exactly, in order; a
    fine-tuned variant adds its base's): what the paper's content alignment selects OPD prompts from."""
    size, mixture, steps, seed = RECIPES[name]
    base = VARIANTS.get(name, {}).get("init_from")
    problems = sft_problems(mixture, steps=steps, batch_size=SFT_BATCH, seed=seed)
    prompts = (post_training_prompts(base) if base else []) + [p.prompt for p in problems]
    return list(dict.fromkeys(prompts))


def eval_sets(n: int = 512):
    return sample_problems(EVAL_SEED_EASY, n, EASY), sample_problems(EVAL_SEED_HARD, n, HARD)


def digits_eval_sets(n: int = 512):
    """The digits skill's held-out (easy, hard) sets."""
    return (sample_problems(EVAL_SEED_EASY + 10, n, EASY, "digits"),
            sample_problems(EVAL_SEED_HARD + 10, n, DIGITS_HARD, "digits"))


def train_one(name: str, out_dir: str, steps_scale: float) -> dict:
    torch.set_num_threads(1)
    size, mixture, steps, seed = RECIPES[name]
    variant = VARIANTS.get(name, {})
    steps = max(1, int(steps * steps_scale))
    tokenizer = build_tokenizer()
    if "init_from" in variant:  # fine-tune a built model: keeps its capability, changes what the variant says
        model = LlamaForCausalLM.from_pretrained(Path(out_dir) / variant["init_from"], dtype=torch.float32)
    else:
        model = build_model(size, tokenizer, seed)
    t0 = time.time()
    cot = variant.get("cot", "forward")
    stop_at = variant.get("stop_at") and max(1, int(variant["stop_at"] * steps_scale))
    losses = train_sft(model, tokenizer, mixture, steps=steps, batch_size=SFT_BATCH, lr=variant.get("lr", 3e-3),
                       seed=seed, desc=name, cot=cot, stop_at=stop_at)
    easy, hard = eval_sets()
    card = {
        "name": name, "size": size, "parameters": sum(p.numel() for p in model.parameters()),
        "sft_steps": stop_at or steps, "sft_schedule_steps": steps, "sft_mixture": mixture, "seed": seed,
        "final_loss": losses[-1], "cot": cot,
        "init_from": variant.get("init_from"),
        "train_s": round(time.time() - t0, 1),
        "easy_acc": accuracy(model, tokenizer, easy), "hard_acc": accuracy(model, tokenizer, hard),
    }
    if name in TWO_SKILL_RECIPES:
        d_easy, d_hard = digits_eval_sets()
        card |= {"digits_easy_acc": accuracy(model, tokenizer, d_easy),
                 "digits_hard_acc": accuracy(model, tokenizer, d_hard)}
    model.save_pretrained(Path(out_dir) / name, safe_serialization=True)
    tokenizer.save_pretrained(Path(out_dir) / name)
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="opd_ray/lab/artifacts")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="scale SFT steps (tests use a tiny value)")
    parser.add_argument("--only", choices=sorted(RECIPES), nargs="*", default=sorted(RECIPES))
    parser.add_argument("--skip-existing", action="store_true", help="leave models that are already built")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save_pretrained(out / "tokenizer")
    cards = []
    if args.skip_existing:
        args.only = [n for n in args.only if not (out / n / "model.safetensors").is_file()]
    fine_tunes = [n for n in args.only if "init_from" in VARIANTS.get(n, {})]
    for names in ([n for n in args.only if n not in fine_tunes], fine_tunes):  # fine-tunes wait for their base
        if names:
            with mp.get_context("spawn").Pool(len(names)) as pool:
                cards += pool.starmap(train_one, [(name, str(out), args.steps_scale) for name in names])
    for card in cards:
        (out / card["name"] / "lab_card.json").write_text(json.dumps(card, indent=2) + "\n")
        digits = f"  digits easy {card['digits_easy_acc']:.3f} hard {card['digits_hard_acc']:.3f}" \
            if "digits_easy_acc" in card else ""
        print(f"{card['name']}: easy {card['easy_acc']:.3f}  hard {card['hard_acc']:.3f}{digits}  ({card['train_s']} s)")


if __name__ == "__main__":
    main()
