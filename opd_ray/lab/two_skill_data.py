"""The two-teacher lab's data (configs/lab_mopd.yaml, docs/multi-teacher.md), as the files a user would bring.

Two skills, each with its specialist teacher: `sum` (lab `teacher`) and `digits` (lab `teacher_digits`). The
student (`student_mopd`) learned the easy range of both and a little of each hard range. Training rows name
their teacher in a `teacher` field (`data.teacher_key: teacher`); each evaluation set is tied to its domain's
teacher in the config.

    python -m opd_ray.lab.two_skill_data --out opd_ray/lab/artifacts/two_skill     (part of `make lab-mopd`)

Deterministic: seeded draws, no held-out problem in the training rows.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from opd_ray.lab.build import DIGITS_HARD, EASY, HARD, digits_eval_sets, eval_sets
from opd_ray.lab.task import sample_problems

TEACHER_OF_SKILL = {"sum": "sum", "digits": "digits"}
TRAIN_PER_SKILL = 2048
EASY_SHARE = 0.1  # of each skill's rows: keeps the student from forgetting the easy range
EVAL_HARD, EVAL_EASY = 256, 128


def training_rows(seed: int = 0) -> list[dict]:
    """TRAIN_PER_SKILL rows per skill (hard range, plus EASY_SHARE easy), shuffled, none held out."""
    held_out = {p.prompt for sets in (eval_sets(), digits_eval_sets()) for s in sets for p in s}
    rows = []
    for offset, (skill, hard) in enumerate((("sum", HARD), ("digits", DIGITS_HARD))):
        n_easy = round(TRAIN_PER_SKILL * EASY_SHARE)
        base = 40_000 + 1_000 * offset + seed
        problems = sample_problems(base, TRAIN_PER_SKILL - n_easy, hard, skill)
        problems += sample_problems(base + 500, n_easy, EASY, skill)
        rows += [{"prompt": p.prompt, "answer": str(p.answer), "teacher": TEACHER_OF_SKILL[skill]}
                 for p in problems if p.prompt not in held_out]
    random.Random(seed).shuffle(rows)
    return rows


def evaluation_rows() -> dict[str, list[dict]]:
    """Held-out sets per skill and range: sum_hard, digits_hard (EVAL_HARD each), sum_easy, digits_easy."""
    (sum_easy, sum_hard), (digits_easy, digits_hard) = eval_sets(), digits_eval_sets()
    sets = {"sum_hard": sum_hard[:EVAL_HARD], "digits_hard": digits_hard[:EVAL_HARD],
            "sum_easy": sum_easy[:EVAL_EASY], "digits_easy": digits_easy[:EVAL_EASY]}
    return {name: [{"prompt": p.prompt, "answer": str(p.answer)} for p in problems] for name, problems in sets.items()}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="opd_ray/lab/artifacts/two_skill")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", training_rows())
    for name, rows in evaluation_rows().items():
        write_jsonl(out / f"{name}.jsonl", rows)
    print(f"[lab] two-skill data in {out}: " + ", ".join(sorted(p.name for p in out.glob("*.jsonl"))))


if __name__ == "__main__":
    main()
