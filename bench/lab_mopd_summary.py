"""The two-teacher lab's runs side by side: `python bench/lab_mopd_summary.py RUN_DIR... [--json OUT]`.

Per run and evaluation set: greedy accuracy before and after with its standard error (sqrt(p(1-p)/n), n problems),
the domain teacher's accuracy, and the gap recovery with its standard error (SE(after) / gap); per teacher, its
token share and, over the last 10% of steps, its reverse KL and overlap ratio.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml
from evidence import write_new

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opd_ray.run.report import RunData, teacher_names  # noqa: E402


def set_sizes(run: RunData) -> dict[str, int]:
    files = run.config["data"]["eval_files"]
    return {name: sum(1 for f in spec["files"] for _ in open(f)) for name, spec in files.items()}


def standard_error(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def mean_of(rows: list[dict], key: str) -> float | None:
    """The mean of `key` over the rows that have it (None: a teacher that scored nothing in those steps)."""
    values = [r[key] for r in rows if key in r]
    return round(sum(values) / len(values), 4) if values else None


def summarize(run_dir: Path) -> dict:
    run = RunData(run_dir)
    run.config = yaml.safe_load((run.dir / "config.yaml").read_text())
    sizes, sets = set_sizes(run), {}
    for name, e in run.summary["eval"].items():
        before, after, teacher = (e[k]["greedy"] for k in ("student_before", "student_after", "teacher"))
        gap, n = teacher - before, sizes[name]
        sets[name] = {"n": n, "before": before, "after": after, "teacher": teacher,
                      "after_se": round(standard_error(after, n), 4), "change": round(after - before, 4),
                      "gap_recovery": round((after - before) / gap, 4) if gap > 0 else None,
                      "gap_recovery_se": round(standard_error(after, n) / gap, 4) if gap > 0 else None}
    last = run.steps[-max(1, len(run.steps) // 10):]
    per_teacher = {}
    for name in teacher_names(run):
        per_teacher[name] = {m: mean_of(last, f"teacher/{name}/{m}") for m in
                             ("token_share", "reverse_kl", "overlap_ratio", "overlap_mass_teacher", "queue_wait_s")}
        per_teacher[name]["token_share_all_steps"] = round(
            sum(r.get(f"teacher/{name}/token_share", 0.0) for r in run.steps) / len(run.steps), 4)
    return {"run": run.name, "seed": run.config["run"]["seed"], "steps": run.summary["steps"], "train_s": run.summary["train_s"],
            "wall_s": run.summary["wall_s"], "sets": sets, "teachers": per_teacher}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [summarize(r) for r in args.runs]
    for row in rows:
        cells = "; ".join(f"{n} {s['before']:.3f} -> {s['after']:.3f} ± {s['after_se']:.3f} (gap recovery "
                          f"{'n/a' if s['gap_recovery'] is None else format(s['gap_recovery'], '.1%')})"
                          for n, s in row["sets"].items() if n.endswith("hard"))
        print(f"{row['run']}: {cells}")
    if args.json:
        write_new(args.json, {"runs": rows})


if __name__ == "__main__":
    main()
