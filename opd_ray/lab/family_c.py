"""Family C: a capacity-limited SmolLM2 student and two teachers of its tokenizer (issue 25: the paper's S2 and S8).

    python -m opd_ray.lab.family_c --base models/SmolLM2-135M-Instruct --out models      (`make family-c`)

The paper's S2: a teacher from the student's own pipeline that scores higher (a bigger model trained on the same
data) gives OPD little to distil (15.6% gap recovery), a teacher that learned something new gives much (58.6%).
On the lab a same-data teacher still gained 43 points, because the lab student *can* learn every fix its teacher
makes. Here the student cannot: it is SmolLM2 cut to 17 of its 30 layers, so the same-data teacher's extra score is
capacity, which local targets at the student's states cannot install. The sums are of 3-digit terms:

- D: 3-8 terms; D': 9-12 terms, which only the novel teacher sees (the skill "keep chaining past 8 terms");
- smollm2-17l: SmolLM2-135M-Instruct without the 13 layers it misses least, chosen by measurement
  (`choose_layers`: each layer dropped alone, scored by the loss on the first SFT batch, dropped in that order);
  its card keeps the measured losses. SmolLM2 is fragile here: cutting a contiguous block (layers 9-26) gave a loss
  of 10.7 on that batch, near uniform over 49,152 ids, and 200 SFT steps healed it only to 0.54 per token and 0%
  on D. The measured choice starts at 3.95 (the whole model: 0.95);
- familyc-student: smollm2-17l after SFT on D (the card scores it at PLATEAU_STEPS: has it stopped improving?);
- familyc-teacher-same: the full SmolLM2 after the same SFT on D: more capacity, the same data and recipe;
- familyc-teacher-novel: familyc-teacher-same after SFT on half D, half D' (new data the student never saw).

Writes models/familyc_sums/{train,d,d_prime}.jsonl (OPD prompts half D, half D'; the held-out sets) and the
models, each with a card (its SFT and its greedy accuracy on the first CARD_EVAL problems of each set). Each SFT
is one `make family-c` step under 45 minutes on 2 cores; deterministic; a model whose folder holds a card is
skipped, so an interrupted build continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from opd_ray.lab.real_lab import Recipe, Sum, build_missing, build_one, encode, eval_sets, held_out, sample_sums, \
    sft_sums, write_task_files
from opd_ray.lab.sft import pad_batch
from opd_ray.models.loading import load_model, load_tokenizer

TERMS = (100, 999)  # three-digit terms: ~12 tokens a line, so an 8-term chain is ~90 tokens
D, D_PRIME = (3, 8), (9, 12)
N_KEEP = 17  # of SmolLM2's 30 layers
TRUNCATED = "smollm2-17l"
STUDENT, TEACHER_SAME, TEACHER_NOVEL = "familyc-student", "familyc-teacher-same", "familyc-teacher-novel"
# name: (seed, n_terms range, size, term range); the OPD run scores all of them, the cards the first CARD_EVAL
EVAL_SETS = {"d": (720_001, D, 1024, TERMS), "d_prime": (720_002, D_PRIME, 256, TERMS)}
CARD_EVAL = {"d": 256, "d_prime": 128}
EVAL_TOKENS = 160  # a 12-term chain and its box are ~140 tokens
TRAIN_PROMPTS = 2048
PLATEAU_STEPS = (100, 150)  # and the last step, on the card's D problems
TASK_DIR = "familyc_sums"
# name: (recipe, parent: a model of this family, or None for the --base model, or TRUNCATED)
RECIPES = {
    STUDENT: (Recipe(((1.0, D),), steps=200, lr=2e-4, seed=31, terms=TERMS), TRUNCATED),  # a higher lr: it heals
    TEACHER_SAME: (Recipe(((1.0, D),), steps=120, lr=1e-4, seed=31, terms=TERMS), None),
    TEACHER_NOVEL: (Recipe(((0.5, D), (0.5, D_PRIME)), steps=40, lr=1e-4, seed=32, terms=TERMS), TEACHER_SAME),
}


def set_layers(model, layers: list) -> None:
    """Make `model` run exactly `layers` (decoder layers, in order), re-indexed for the KV cache."""
    model.model.layers = torch.nn.ModuleList(layers)
    for new_index, layer in enumerate(layers):
        layer.self_attn.layer_idx = new_index
    model.config.num_hidden_layers = len(layers)


def choose_layers(model, batch: tuple[torch.Tensor, ...], n_keep: int) -> tuple[tuple[int, ...], dict]:
    """The `n_keep` layers to keep: drop each layer alone and score the loss on `batch` = (ids, mask, labels), then
    drop the layers in order of that loss, least harmful first. Returns (kept layers, the measured losses)."""
    ids, mask, labels = batch
    layers = list(model.model.layers)

    def loss_without(dropped: set[int]) -> float:
        set_layers(model, [layer for i, layer in enumerate(layers) if i not in dropped])
        with torch.no_grad():
            return round(model(input_ids=ids, attention_mask=mask, labels=labels).loss.item(), 4)
    alone = {i: loss_without({i}) for i in range(len(layers))}
    dropped = set(sorted(alone, key=alone.get)[: len(layers) - n_keep])
    measured = {"loss_all": loss_without(set()), "loss_dropping_one": alone, "loss_kept": loss_without(dropped)}
    set_layers(model, layers)
    return tuple(i for i in range(len(layers)) if i not in dropped), measured


def truncate(base: Path, out: Path, keep: tuple[int, ...] | int, batch: tuple[torch.Tensor, ...] | None = None
             ) -> dict:
    """Save `base` with only the decoder layers `keep` (in order) into `out`; `keep` = n: the n that `choose_layers`
    picks on `batch`."""
    tokenizer, model = load_tokenizer(str(base)), load_model(str(base))
    layers, measured = list(model.model.layers), {}
    if isinstance(keep, int):
        keep, measured = choose_layers(model, batch, keep)
    if max(keep) >= len(layers):
        raise ValueError(f"keep: layer {max(keep)} of a model with {len(layers)} layers")
    set_layers(model, [layers[i] for i in keep])
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in keep]
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    card = {"name": out.name, "base": str(base), "kept_layers": list(keep), "of_layers": len(layers),
            "parameters": sum(p.numel() for p in model.parameters()), **measured}
    (out / "lab_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def first_sft_batch(base: Path) -> tuple[torch.Tensor, ...]:
    """The student recipe's first SFT batch, tokenized as build_one tokenizes it (the layer choice's yardstick)."""
    tokenizer = load_tokenizer(str(base))
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    recipe = RECIPES[STUDENT][0]
    rows = [encode(tokenizer, s, end_id) for s in sft_sums(recipe, 0, held_out(EVAL_SETS))]
    return pad_batch(rows, tokenizer.pad_token_id)


def train_prompts(seed: int = 0) -> list[Sum]:
    """The OPD prompt set: half D, half D', never a question of the evaluation sets."""
    half = TRAIN_PROMPTS // 2
    sums = sample_sums(30_000 + seed, half, D, TERMS) + sample_sums(40_000 + seed, half, D_PRIME, TERMS)
    random.Random(seed).shuffle(sums)
    banned = held_out(EVAL_SETS)
    return [s for s in sums if s.question not in banned]


def build(name: str, base: Path, out: Path) -> dict:
    recipe, parent = RECIPES[name]
    evals = {k: v[: CARD_EVAL[k]] for k, v in eval_sets(EVAL_SETS).items()}
    plateau = (*PLATEAU_STEPS, recipe.steps) if name == STUDENT else ()
    return build_one(name, out / parent if parent else base, out, recipe, evals=evals, eval_tokens=EVAL_TOKENS,
                     plateau_steps=plateau, banned=held_out(EVAL_SETS))  # no SFT problem is in a whole set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="models/SmolLM2-135M-Instruct", type=Path)
    parser.add_argument("--out", default="models", type=Path)
    parser.add_argument("--only", choices=sorted(RECIPES), nargs="*", default=list(RECIPES),
                        help="build these (in the family's order; a parent must exist or be built first)")
    args = parser.parse_args()
    if not (args.base / "config.json").exists():
        raise SystemExit(f"--base {args.base}: no HF model there; run `make real-models` first")
    torch.set_num_threads(2)
    write_task_files(args.out / TASK_DIR, EVAL_SETS, train_prompts())
    if not (args.out / TRUNCATED / "lab_card.json").exists():
        card = truncate(args.base, args.out / TRUNCATED, N_KEEP, first_sft_batch(args.base))
        print(f"{TRUNCATED}: {len(card['kept_layers'])} of {card['of_layers']} layers, {card['parameters']:,} "
              f"parameters; loss on the first SFT batch {card['loss_kept']} (the whole model: {card['loss_all']})")
    build_missing(args.out, [n for n in RECIPES if n in args.only], lambda name: build(name, args.base, args.out))


if __name__ == "__main__":
    main()
