"""Side-by-side table of finished runs: `python bench/summarize_runs.py RUN_DIR... [--json OUT]`.

Prints a Markdown table (gap recovery, accuracies, and the overlap metrics averaged over the first and last
10% of steps) for docs/, and optionally writes the same numbers as JSON.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evidence import write_new  # noqa: E402  (bench/evidence.py)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opd_ray.run.report import RunData  # noqa: E402

COLUMNS = ("overlap_ratio", "top1_agreement", "overlap_mass_student", "overlap_mass_teacher", "entropy_gap")


def second_set_after(summary: dict) -> float | None:
    """A `dataset` run's greedy accuracy after training on its second evaluation set (the lab's is `easy`)."""
    others = [name for name in summary.get("eval", {}) if name != summary.get("primary_set")]
    return summary["eval"][others[0]]["student_after"]["greedy"] if others else None


def summarize(run_dir: Path) -> dict:
    run = RunData(run_dir)
    s = run.summary
    row = {"run": run.name, "objective": s.get("objective"), "k": s.get("k"), "gap_recovery": s.get("gap_recovery"),
           "student_before": s.get("student_before"), "student_after": s.get("student_after"),
           "teacher": s.get("teacher"), "easy_after": s.get("student_easy_after", second_set_after(s)),
           "train_s": s.get("train_s")}
    for key in COLUMNS:
        _, values = run.series(key)
        tenth = max(len(values) // 10, 1)
        row[key] = [round(float(values[:tenth].mean()), 4), round(float(values[-tenth:].mean()), 4)] if len(values) else None
    return row


def markdown(rows: list[dict]) -> str:
    head = ["run", "objective (k)", "hard before → after (teacher)", "gap recovery", "easy after",
            *[f"{c} first → last 10%" for c in COLUMNS], "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        pair = lambda v: "—" if v is None else f"{v[0]:.3f} → {v[1]:.3f}"  # noqa: E731
        lines.append("| " + " | ".join([
            r["run"], f"{r['objective']} ({r['k']})",
            f"{r['student_before']:.3f} → {r['student_after']:.3f} ({r['teacher']:.3f})",
            f"{r['gap_recovery']:.1%}", "—" if r["easy_after"] is None else f"{r['easy_after']:.3f}", *[pair(r[c]) for c in COLUMNS],
            f"{r['train_s']:.0f}"]) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = [summarize(r) for r in args.runs]
    print(markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_new(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
