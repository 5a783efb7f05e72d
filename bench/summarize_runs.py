"""Side-by-side table of finished runs: `python bench/summarize_runs.py RUN_DIR... [--json OUT]`.

Prints a Markdown table (gap recovery, accuracies, and the overlap metrics averaged over the first and last
10% of steps) for docs/, and optionally writes the same numbers as JSON, with more: the overlap metrics per band
of the teacher's entropy (BANDED), each window's standard error over its steps, and the paired before/after
statistics of the primary set.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from evidence import write_new  # noqa: E402  (bench/evidence.py)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opd_ray.run.report import RunData  # noqa: E402

COLUMNS = ("overlap_ratio", "top1_agreement", "overlap_mass_student", "overlap_mass_teacher", "entropy_gap")
# per band of the teacher's entropy (ours, not the paper's): where the teacher spreads its mass (ge1) and not (lt0.1)
BANDED = tuple(f"{m}/teacher_entropy_{b}" for m in ("overlap_ratio", "overlap_mass_student", "overlap_mass_teacher",
                                                     "top1_agreement") for b in ("lt0.1", "0.1to1", "ge1")) + tuple(
    f"teacher_entropy_share/{b}" for b in ("lt0.1", "0.1to1", "ge1"))


def second_set_after(summary: dict) -> float | None:
    """A `dataset` run's greedy accuracy after training on its second evaluation set (the lab's is `easy`)."""
    others = [name for name in summary.get("eval", {}) if name != summary.get("primary_set")]
    return summary["eval"][others[0]]["student_after"]["greedy"] if others else None


def run_settings(run_dir: Path) -> dict:
    """The settings that distinguish runs of one config here: the dtype it computed in and its staleness."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else OmegaConf.create()
    return {"dtype": OmegaConf.select(cfg, "model.dtype"),
            "max_staleness": OmegaConf.select(cfg, "pipeline.max_staleness")}


def summarize(run_dir: Path) -> dict:
    run = RunData(run_dir)
    s = run.summary
    row = {"run": run.name, "objective": s.get("objective"), "k": s.get("k"), "gap_recovery": s.get("gap_recovery"),
           "student_before": s.get("student_before"), "student_after": s.get("student_after"),
           "teacher": s.get("teacher"), "easy_after": s.get("student_easy_after", second_set_after(s)),
           "train_s": s.get("train_s"), "wall_s": s.get("wall_s"), **run_settings(run_dir)}
    for key in COLUMNS:
        _, values = run.series(key)
        tenth = max(len(values) // 10, 1)
        row[key] = [round(float(values[:tenth].mean()), 4), round(float(values[-tenth:].mean()), 4)] if len(values) else None
    row["windows"] = {key: windows(run, key) for key in COLUMNS + BANDED}
    row["primary_stats"] = s.get("primary_stats")
    row["paired_stats"] = s.get("paired_stats")  # every evaluation set's (S2 reads D and D' both)
    return row


def windows(run: RunData, key: str) -> dict | None:
    """The metric's mean over the first and the last 10% of steps, each with its standard error over those steps
    (`series` leaves out steps whose band held no token), and the change with its standard error."""
    _, values = run.series(key)
    if not len(values):
        return None
    tenth = max(len(values) // 10, 1)
    parts = {}
    for name, part in (("first", values[:tenth]), ("last", values[-tenth:])):
        se = float(part.std(ddof=1) / math.sqrt(len(part))) if len(part) > 1 else float("nan")
        parts[name] = {"mean": round(float(part.mean()), 4), "se": round(se, 4), "steps": len(part)}
    change = parts["last"]["mean"] - parts["first"]["mean"]
    return parts | {"change": round(change, 4),
                    "change_se": round(math.sqrt(parts["first"]["se"] ** 2 + parts["last"]["se"] ** 2), 4)}


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
