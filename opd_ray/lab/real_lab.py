"""The real lab: SmolLM2-135M-Instruct fine-tuned into a teacher and a student on sums asked in words.

    python -m opd_ray.lab.real_lab --base models/SmolLM2-135M-Instruct --out models      (what `make real-lab` runs)

It writes, into the git-ignored models/:
- models/sums_chat/{train,easy,hard}.jsonl: the OPD prompts and the two held-out evaluation sets, as chat
  messages with a reference answer (the `dataset` task reads them; configs/smollm2_cpu.yaml);
- models/smollm2-sums-teacher: the released model after SFT on 2-5 term sums;
- models/smollm2-sums-student: the released model after a light SFT on 2-3 term sums only: it knows the format
  and the skill but has never chained more than two additions (a partly competent student, the paper's
  setting), so OPD has a gap to close on 4-5 terms.

A problem asks "What is 23 plus 45 plus 67?"; the chain of thought adds one term per line and boxes the sum
("23+45=68\\n68+67=135\\n\\boxed{135}"), so math-verify grades it. The released model has never seen this
format. Everything is seeded and runs on 2 threads, so a rebuild gives the same weights; a model whose
folder already holds a card is skipped.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from opd_ray.data.verifiers import math_verify_reward
from opd_ray.lab.sft import pad_batch, sft_loop
from opd_ray.lab.task import running_sum_steps
from opd_ray.models.loading import eos_token_ids, load_model, load_tokenizer
from opd_ray.models.sampling import decode_responses, sample

SYSTEM_PROMPT = "Add the numbers step by step."  # short: SmolLM2's default system prompt costs ~30 tokens
EASY, HARD = (2, 3), (4, 5)
# name: (seed, n_terms range, size); held out: no training draw can equal one of them
EVAL_SETS = {"hard": (700_002, HARD, 64), "easy": (700_001, EASY, 32)}
TRAIN_PROMPTS = 2048
SFT_BATCH = 16


@dataclass(frozen=True)
class Recipe:
    mixture: tuple[tuple[float, tuple[int, int]], ...]  # (weight, n_terms range)
    steps: int
    lr: float
    seed: int
    terms: tuple[int, int] = (10, 99)  # each term's range: two digits in the real lab


RECIPES = {
    # measured: 40 such steps took the released model from 6% to 81% greedy on 32 hard problems (~16 s a step)
    "smollm2-sums-student": Recipe(((1.0, EASY),), steps=25, lr=1e-4, seed=12),
    "smollm2-sums-teacher": Recipe(((0.3, EASY), (0.7, HARD)), steps=60, lr=1e-4, seed=11),
}


@dataclass(frozen=True)
class Sum:
    terms: tuple[int, ...]

    @property
    def question(self) -> str:
        return "What is " + " plus ".join(map(str, self.terms)) + "?"

    @property
    def answer(self) -> int:
        return sum(self.terms)

    @property
    def solution(self) -> str:
        lines = [f"{a}+{b}={c}" for a, b, c in running_sum_steps(self.terms)]
        return "\n".join(lines) + f"\n\\boxed{{{self.answer}}}"

    def messages(self) -> list[dict]:
        """The prompt as the `dataset` task reads it (configs/smollm2_cpu.yaml adds SYSTEM_PROMPT)."""
        return [{"role": "user", "content": self.question}]


def reverse_solution(problem: Sum, rng: random.Random) -> str:
    """The chain of thought right to left ("67+45=112\\n112+23=135\\n\\boxed{135}"): the same skill and answer,
    another order of lines (the lab's teacher_incompatible, on SmolLM2)."""
    return Sum(tuple(reversed(problem.terms))).solution


INCOMPATIBLE = "smollm2-sums-teacher-r2l"
# Built only when asked (`make real-lab-r2l`): name -> (recipe, the model it continues from, response writer)
DERIVED = {INCOMPATIBLE: (Recipe(((0.3, EASY), (0.7, HARD)), steps=40, lr=1e-4, seed=13), "smollm2-sums-teacher",
                          reverse_solution)}


def sample_sums(seed: int, count: int, n_terms: tuple[int, int], terms: tuple[int, int] = (10, 99)) -> list[Sum]:
    rng = random.Random(seed)
    return [Sum(tuple(rng.randint(*terms) for _ in range(rng.randint(*n_terms)))) for _ in range(count)]


def eval_sets(specs: dict | None = None) -> dict[str, list[Sum]]:
    """The held-out evaluation sets of `specs` ({name: (seed, n_terms range, size[, term range])}; default
    EVAL_SETS)."""
    return {name: sample_sums(seed, size, n_terms, *terms) for name, (seed, n_terms, size, *terms)
            in (specs or EVAL_SETS).items()}


def held_out(specs: dict | None = None) -> frozenset[str]:
    return frozenset(s.question for sums in eval_sets(specs).values() for s in sums)


def train_prompts(seed: int = 0, specs: dict | None = None) -> list[Sum]:
    """The OPD prompt set: the hard range and 10% easy, never a question of the evaluation sets `specs`."""
    n_easy = TRAIN_PROMPTS // 10
    sums = sample_sums(10_000 + seed, TRAIN_PROMPTS - n_easy, HARD) + sample_sums(20_000 + seed, n_easy, EASY)
    random.Random(seed).shuffle(sums)
    banned = held_out(specs)
    return [s for s in sums if s.question not in banned]


def write_task_files(out: Path, specs: dict | None = None, train: list[Sum] | None = None) -> None:
    """train.jsonl (`train`, default train_prompts) and one file per evaluation set of `specs` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name, sums in {"train": train if train is not None else train_prompts(specs=specs),
                       **eval_sets(specs)}.items():
        rows = [json.dumps({"prompt": s.messages(), "answer": str(s.answer)}) for s in sums]
        (out / f"{name}.jsonl").write_text("\n".join(rows) + "\n")


def prompt_ids(tokenizer, problem: Sum) -> list[int]:
    """The prompt exactly as the `dataset` task renders it with data.system_prompt = SYSTEM_PROMPT."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, *problem.messages()]
    return list(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False))


def encode(tokenizer, problem: Sum, end_id: int, solution: str | None = None) -> tuple[list[int], int]:
    """(prompt + solution + end-of-turn ids, prompt length); `solution` defaults to the problem's own chain."""
    prompt = prompt_ids(tokenizer, problem)
    text = problem.solution if solution is None else solution
    return prompt + tokenizer(text, add_special_tokens=False)["input_ids"] + [end_id], len(prompt)


def sft_sums(recipe: Recipe, step: int, banned: frozenset[str]) -> list[Sum]:
    """The batch of SFT step `step`: each row's range drawn by weight, then a seeded problem; never a `banned`
    (held-out) question."""
    rng = random.Random(recipe.seed * 1_000_003 + step)
    weights = [w for w, _ in recipe.mixture]
    batch = []
    while len(batch) < SFT_BATCH:
        n_terms = rng.choices([r for _, r in recipe.mixture], weights)[0]
        s = Sum(tuple(rng.randint(*recipe.terms) for _ in range(rng.randint(*n_terms))))
        if s.question not in banned:
            batch.append(s)
    return batch


def accuracy(model, tokenizer, sums: list[Sum], batch: int = 32, max_new_tokens: int = 64) -> float:
    """Greedy accuracy, graded by math-verify as the OPD run grades it."""
    eos, correct = eos_token_ids(model, tokenizer), 0
    for lo in range(0, len(sums), batch):
        chunk = sums[lo: lo + batch]
        with torch.no_grad():
            out = sample(model, [prompt_ids(tokenizer, s) for s in chunk], max_new_tokens=max_new_tokens, eos_id=eos,
                         pad_id=tokenizer.pad_token_id, seeds=None)
        correct += sum(math_verify_reward(r, str(s.answer)) for s, r in zip(chunk, decode_responses(tokenizer, out)))
    return correct / len(sums)


# A response writer: (problem, the step's seeded rng) -> the SFT target text. The real lab's is the plain chain.
Solution = Callable[[Sum, random.Random], str]


def build_one(name: str, base: Path, out: Path, recipe: Recipe | None = None, solution: Solution | None = None,
              evals: dict[str, list[Sum]] | None = None, eval_tokens: int = 64,
              card_extra: Callable[[Path], dict] | None = None, plateau_steps: tuple[int, ...] = (),
              banned: frozenset[str] | None = None) -> dict:
    """SFT `base` by `recipe` (default RECIPES[name]) on the texts `solution` writes, score it greedily on `evals`
    (default this lab's sets), and save it with its card into out/name; `card_extra(saved folder)` adds to the
    card before it is written (the card marks the build done). At each of `plateau_steps` the model is also scored
    on the first set of `evals` (`plateau_acc` on the card: has the SFT stopped improving it?). No SFT problem is a
    question of `banned` (default: those of `evals`)."""
    recipe, evals = recipe or RECIPES[name], evals or eval_sets()
    torch.manual_seed(recipe.seed)
    tokenizer, model = load_tokenizer(str(base)), load_model(str(base))
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")  # the chat template's end of turn, SmolLM2's EOS
    t0 = time.time()
    banned = banned if banned is not None else frozenset(s.question for sums in evals.values() for s in sums)

    def batch_at(step: int):
        rng = random.Random(recipe.seed * 7_919 + step)
        rows = [encode(tokenizer, s, end_id, solution(s, rng) if solution else None)
                for s in sft_sums(recipe, step, banned)]
        return pad_batch(rows, tokenizer.pad_token_id)

    first_set, plateau = next(iter(evals.values())), {}

    def after_step(done: int) -> None:
        if done in plateau_steps:
            plateau[done] = accuracy(model, tokenizer, first_set, max_new_tokens=eval_tokens)
    losses = sft_loop(model, batch_at, steps=recipe.steps, lr=recipe.lr, desc=name, log_every=10, weight_decay=0.0,
                      after_step=after_step if plateau_steps else None)
    card = {"name": name, "base": str(base), "sft_steps": recipe.steps, "sft_batch": SFT_BATCH, "lr": recipe.lr,
            "mixture": recipe.mixture, "terms": recipe.terms, "seed": recipe.seed, "first_loss": losses[0],
            "final_loss": losses[-1], "train_s": round(time.time() - t0, 1)} | (
        {"plateau_acc": plateau} if plateau_steps else {})
    t0 = time.time()
    card.update({f"{k}_acc": accuracy(model, tokenizer, v, max_new_tokens=eval_tokens) for k, v in evals.items()},
                eval_s=round(time.time() - t0, 1))
    model.save_pretrained(out / name, safe_serialization=True)
    tokenizer.save_pretrained(out / name)
    card |= card_extra(out / name) if card_extra else {}
    (out / name / "lab_card.json").write_text(json.dumps(card, indent=2) + "\n")  # last: marks the build done
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="models/SmolLM2-135M-Instruct", type=Path)
    parser.add_argument("--out", default="models", type=Path)
    parser.add_argument("--only", choices=sorted(RECIPES | DERIVED), nargs="*", default=list(RECIPES),
                        help=f"default: the pair; {INCOMPATIBLE} (right to left) continues from the teacher")
    args = parser.parse_args()
    if not (args.base / "config.json").exists():
        raise SystemExit(f"--base {args.base}: no HF model there; run `make real-models` first")
    torch.set_num_threads(2)
    write_task_files(args.out / "sums_chat")

    def build(name: str) -> dict:
        if name not in DERIVED:
            return build_one(name, args.base, args.out)
        recipe, parent, solution = DERIVED[name]
        if not (args.out / parent / "lab_card.json").exists():
            raise SystemExit(f"{name} continues from {args.out / parent}: build it first (`make real-lab`)")
        return build_one(name, args.out / parent, args.out, recipe, solution, card_extra=right_to_left_share)
    build_missing(args.out, args.only, build)


def right_to_left_share(model_dir: Path, n: int = 32) -> dict:
    """The share of greedy answers to the first `n` hard problems whose first line adds the last two terms."""
    tokenizer, model = load_tokenizer(str(model_dir)), load_model(str(model_dir))
    sums = eval_sets()["hard"][:n]
    with torch.no_grad():
        out = sample(model, [prompt_ids(tokenizer, s) for s in sums], max_new_tokens=16,
                     eos_id=eos_token_ids(model, tokenizer), pad_id=tokenizer.pad_token_id, seeds=None)
    firsts = [text.split("\n")[0] for text in decode_responses(tokenizer, out)]
    return {"right_to_left_share": sum(f.startswith(f"{s.terms[-1]}+{s.terms[-2]}=") for s, f in zip(sums, firsts)) / n}


def build_missing(out: Path, names, build: Callable[[str], dict]) -> None:
    """`build(name)` each model in order whose folder under `out` holds no card yet, printing its card's scores."""
    for name in names:
        if (out / name / "lab_card.json").exists():
            print(f"{name}: exists in {out / name}, skipped")
            continue
        card = build(name)
        scores = "  ".join(f"{key.removesuffix('_acc')} {value:.3f}" for key, value in card.items()
                           if key.endswith("_acc") and isinstance(value, float))
        print(f"{name}: {scores}  (SFT {card['train_s']} s, eval {card['eval_s']} s)")


if __name__ == "__main__":
    main()
