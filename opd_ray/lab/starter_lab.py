"""The starter lab: a SmolLM2 pair whose teacher spreads real mass over 16 tokens at some positions (issue 25, S4/S7).

    python -m opd_ray.lab.starter_lab --base models/SmolLM2-135M-Instruct --out models   (`make starter-lab`)

On the real lab's sums both models are near-deterministic (teacher entropy 0.03-0.05 nats/token), so ranks 2-16 of
each top-16 hold ~0.5% of the mass and the top-16 overlap ratio cannot move (0.748 -> 0.755 over a run). Here each
line of the chain opens with a sentence starter drawn from a pool of 20 single-token words:

    "Next, 23+45=68.\\nAlso, 68+67=135.\\nThus, \\boxed{135}."

- the student learned 2-3 term sums with the starters of STUDENT_SET (16 words);
- the teacher continues from the student (as the paper's successful pairs are student + RL) on 2-5 term sums with
  the starters of TEACHER_SET (16 words, 12 of them shared);
- each model draws OWN_SHARE of its starters uniformly from its own set and the rest from the 4 others, so both
  know all 20 and a starter slot holds ~ln 16 = 2.8 nats.

So at a starter slot the two top-16 sets share 12 of 16 ids (ratio 0.75, the paper's ~72%) by construction, and
the verifier only reads the boxed sum. Whether OPD raises that ratio (the paper's S4) is what the run measures.
Writes models/starter_sums/{train,easy,hard}.jsonl and models/smollm2-starters-{student,teacher}, each with a card
that also records its starter distribution at the first response position and, for the pair, the top-16 overlap
there. Deterministic; a model whose folder holds a card is skipped.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from opd_ray.lab.real_lab import (EASY, HARD, Recipe, Sum, build_missing, build_one, eval_sets, prompt_ids,
                                  write_task_files)
from opd_ray.lab.task import running_sum_steps
from opd_ray.models.loading import load_model, load_tokenizer

STARTERS = ("Next", "Then", "Now", "So", "Also", "Again", "Plus", "Adding", "First", "Second", "Third", "Thus",
            "Hence", "Therefore", "Additionally", "Moreover", "Furthermore", "Finally", "Later", "Meanwhile")
STUDENT_SET, TEACHER_SET = STARTERS[:16], STARTERS[4:]  # 12 shared: Also .. Moreover
OWN_SHARE = 0.95
# name: (seed, n_terms range, size). 256 hard problems: gap recovery of a ~0.6 gap to +-5 points (science plan §2).
EVAL_SETS = {"hard": (710_002, HARD, 256), "easy": (710_001, EASY, 64)}
CARD_EVAL = {"hard": 64, "easy": 32}  # the cards score the first rows only; the OPD run scores the whole sets
EVAL_TOKENS = 96  # a 5-term chain with its starters and box is ~62 tokens
TASK_DIR = "starter_sums"
STUDENT, TEACHER = "smollm2-starters-student", "smollm2-starters-teacher"
# (recipe, starter set, the model it continues from: None = --base)
RECIPES = {
    STUDENT: (Recipe(((1.0, EASY),), steps=30, lr=1e-4, seed=22), STUDENT_SET, None),
    TEACHER: (Recipe(((0.3, EASY), (0.7, HARD)), steps=50, lr=1e-4, seed=21), TEACHER_SET, STUDENT),
}


def starter_solution(own: tuple[str, ...]):
    """A response writer for build_one: each line's starter is one of `own` with probability OWN_SHARE, else one
    of the pool's other words."""
    others = tuple(w for w in STARTERS if w not in own)

    def write(problem: Sum, rng: random.Random) -> str:
        def starter() -> str:
            return rng.choice(own if rng.random() < OWN_SHARE else others)
        lines = [f"{starter()}, {a}+{b}={c}." for a, b, c in running_sum_steps(problem.terms)]
        return "\n".join(lines + [f"{starter()}, \\boxed{{{problem.answer}}}."])
    return write


def starter_distribution(model_dir: Path, n_prompts: int = 32) -> dict:
    """The model's mean probability of each starter at the first response position of the first hard prompts,
    the mass on all 20, and the ids of its top-16 there (per prompt)."""
    tokenizer, model = load_tokenizer(str(model_dir)), load_model(str(model_dir))
    ids = [tokenizer.convert_tokens_to_ids(w) for w in STARTERS]
    prompts = [prompt_ids(tokenizer, s) for s in eval_sets(EVAL_SETS)["hard"][:n_prompts]]
    probs, top16 = [], []
    with torch.no_grad():
        for prompt in prompts:
            logits = model(input_ids=torch.tensor([prompt])).logits[0, -1].float()
            p = logits.softmax(-1)
            probs.append(p[ids])
            top16.append(p.topk(16).indices.tolist())
    mean = torch.stack(probs).mean(0)
    return {"starter_prob": {w: round(float(x), 4) for w, x in zip(STARTERS, mean)},
            "starter_mass": round(float(mean.sum()), 4), "top16_ids": top16}


def pair_overlap(student: dict, teacher: dict) -> float:
    """The mean top-16 overlap ratio of the two models at the first response position (the ratio OPD should raise)."""
    shared = [len(set(s) & set(t)) / 16 for s, t in zip(student["top16_ids"], teacher["top16_ids"])]
    return sum(shared) / len(shared)


def build(name: str, base: Path, out: Path) -> dict:
    recipe, own, parent = RECIPES[name]
    evals = {k: v[: CARD_EVAL[k]] for k, v in eval_sets(EVAL_SETS).items()}
    # The SFT bans only these card rows, not the whole OPD sets: one easy problem (#57) reached the student's SFT.
    # Kept as built so that the models rebuild bit for bit (docs/results.md; test_starter_lab.py pins the overlap).
    return build_one(name, out / parent if parent else base, out, recipe, starter_solution(own), evals, EVAL_TOKENS,
                     card_extra=lambda folder: {"starter_set": list(own), **starter_distribution(folder)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="models/SmolLM2-135M-Instruct", type=Path)
    parser.add_argument("--out", default="models", type=Path)
    args = parser.parse_args()
    if not (args.base / "config.json").exists():
        raise SystemExit(f"--base {args.base}: no HF model there; run `make real-models` first")
    torch.set_num_threads(2)
    write_task_files(args.out / TASK_DIR, EVAL_SETS)
    # in order: the teacher continues from the student
    build_missing(args.out, RECIPES, lambda name: build(name, args.base, args.out))
    cards = [json.loads((args.out / name / "lab_card.json").read_text()) for name in RECIPES]
    pair = {"top16_overlap_first_position": pair_overlap(*cards), "by_construction": len(
        set(STUDENT_SET) & set(TEACHER_SET)) / 16}
    (args.out / TASK_DIR / "pair_card.json").write_text(json.dumps(pair, indent=2) + "\n")
    print(f"pair: top-16 overlap at the first response position {pair['top16_overlap_first_position']:.3f} "
          f"(by construction {pair['by_construction']:.2f})")


if __name__ == "__main__":
    main()
