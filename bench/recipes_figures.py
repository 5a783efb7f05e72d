"""Side-by-side curves of OPD runs for docs/recipes.md: overlap mass, overlap ratio, sampled reverse KL, entropy.

    python bench/recipes_figures.py --out docs/figures/recipes_incompatible.png \\
        "plain OPD=runs/rc_incompat_plain-..." "cold start + OPD=runs/rc_incompat_coldstart-..."

Prints a markdown table of each run's summary and of the curves every `--every` steps.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = ("overlap_mass_student", "overlap_ratio", "reverse_kl", "entropy_student")


def load_run(run_dir: Path) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "overlap_ratio" in r]  # the final line holds eval/* values only
    summary_file = run_dir / "summary.json"
    return steps, json.loads(summary_file.read_text()) if summary_file.is_file() else {}


def plot(runs: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2))
    for ax, metric in zip(axes, METRICS):
        for label, steps in runs.items():
            ax.plot([r["step"] for r in steps], [r[metric] for r in steps], label=label)
        ax.set_title(metric)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def curve_table(runs: dict[str, list[dict]], every: int) -> str:
    lines = ["| run | step | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for label, steps in runs.items():
        for r in steps:
            if r["step"] == 1 or r["step"] % every == 0:
                lines.append(f"| {label} | {r['step']} | " + " | ".join(f"{r[m]:.3f}" for m in METRICS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--every", type=int, default=25)
    args = parser.parse_args()
    runs, summaries = {}, {}
    for spec in args.runs:
        label, path = spec.split("=", 1)
        runs[label], summaries[label] = load_run(Path(path))
    plot(runs, args.out)
    print("| run | hard before -> after | teacher | gap recovery | from original student | easy after | train s |")
    print("|---|---|---|---|---|---|---|")
    for label, s in summaries.items():
        original = s.get("gap_recovery_from_original")
        print(f"| {label} | {s.get('student_before', float('nan')):.3f} -> {s.get('student_after', float('nan')):.3f} "
              f"| {s.get('teacher', float('nan')):.3f} | {s.get('gap_recovery', float('nan')):.1%} | "
              f"{'' if original is None else f'{original:.1%}'} | {s.get('student_easy_after', float('nan')):.3f} | "
              f"{s.get('train_s', '')} |")
    print()
    print(curve_table(runs, args.every))


if __name__ == "__main__":
    main()
