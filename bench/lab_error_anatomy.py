"""Where the lab student goes wrong on hard problems, and which teachers know the right token there.

    python bench/lab_error_anatomy.py [--json bench/results/lab_error_anatomy.json]

For each model, greedy answers on the 256 held-out hard problems; a wrong answer's *first* deviation from the
reference chain (in the model's own chain-of-thought format) is classified by where it falls in its `a+b=c;` step:
- copy: left of `=`, the running sum or the next term copied wrongly from the prompt or the previous step;
- arithmetic: right of `=`, the sum itself;
- other: anything else (the `#answer`, stopping early or late).
Then, at the student's first error, each teacher's top-1 next token (given the student's correct prefix) is
compared with the reference: the share it gets right is the local knowledge OPD can pass on at exactly the
states where the student fails. docs/recipes.md uses it to explain why the same-data teacher transfers.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from evidence import write_new  # noqa: E402  (bench/evidence.py)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opd_ray.lab.build import eval_sets  # noqa: E402
from opd_ray.lab.task import verify  # noqa: E402
from opd_ray.models.loading import load_model, load_tokenizer  # noqa: E402
from opd_ray.models.sampling import decode_responses, sample  # noqa: E402

LAB = Path(__file__).resolve().parent.parent / "opd_ray" / "lab" / "artifacts"
MODELS = ("student", "teacher", "teacher_samedata", "teacher_incompatible")


def first_deviation(response: str, reference: str) -> int:
    """Character index of the first difference (the lab tokenizer has one token per character)."""
    return next((i for i, (a, b) in enumerate(zip(response, reference)) if a != b), min(len(response), len(reference)))


def error_kind(reference: str, index: int) -> str:
    if index >= len(reference) or reference[index] == "#" or "#" in reference[:index]:
        return "other"
    step = reference[:index].rsplit(";", 1)[-1]  # the part of the current step before the error
    return "arithmetic" if "=" in step else "copy"


@torch.no_grad()
def greedy(model, tok, prompts: list[str]) -> list[str]:
    out = sample(model, [tok(p)["input_ids"] for p in prompts], max_new_tokens=64, eos_id=tok.eos_token_id,
                 pad_id=tok.pad_token_id, seeds=None)
    return decode_responses(tok, out)


@torch.no_grad()
def top1_after(model, tok, prompt: str, prefix: str) -> str:
    ids = torch.tensor([tok(prompt)["input_ids"] + tok(prefix, add_special_tokens=False)["input_ids"]])
    return tok.decode([int(model(input_ids=ids).logits[0, -1].argmax())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="held-out hard problems")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--also", nargs="*", default=[], metavar="NAME=HF_DIR",
                        help="more models to classify, e.g. a run's exported student (runs/.../checkpoints/step_N/hf)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    problems = eval_sets(args.n)[1]
    prompts, references = [p.prompt for p in problems], [p.solution for p in problems]
    tok = load_tokenizer(str(LAB / "student"), False)
    paths = {name: LAB / name for name in MODELS} | dict((n, Path(p)) for n, p in (a.split("=", 1) for a in args.also))
    models = {name: load_model(str(path), False).eval() for name, path in paths.items()}
    result = {"n": len(problems), "models": {}, "at_student_errors": {}}
    errors = []  # (problem index, deviation index) of the student's wrong answers
    for name, model in models.items():
        kinds = Counter()
        card = paths[name] / "lab_card.json"
        cot = json.loads(card.read_text()).get("cot", "forward") if card.is_file() else "forward"
        for i, response in enumerate(greedy(model, tok, prompts)):
            if verify(prompts[i], response):
                kinds["correct"] += 1
                continue
            own = problems[i].solution_in(cot)  # a wrong answer, against the chain in the model's own format
            index = first_deviation(response, own)
            kinds[error_kind(own, index)] += 1
            if name == "student":
                errors.append((i, index))
        result["models"][name] = {"accuracy": kinds["correct"] / len(problems), **dict(kinds)}
        print(f"{name:22s} accuracy {kinds['correct'] / len(problems):.3f}   first errors: copy {kinds['copy']}, "
              f"arithmetic {kinds['arithmetic']}, other {kinds['other']}")
    for name, model in models.items():
        if name not in MODELS[1:]:  # the teachers only
            continue
        right = sum(top1_after(model, tok, prompts[i], references[i][:j]) == references[i][j] for i, j in errors)
        result["at_student_errors"][name] = right / max(len(errors), 1)
        print(f"at the student's {len(errors)} first errors, {name} predicts the right token {right / len(errors):.3f}")
    if args.json:
        write_new(args.json, result)


if __name__ == "__main__":
    main()
