"""Arms of one experiment compared on the same problems: `python bench/paper/compare_arms.py RUN_DIR... --json OUT`.

The arms (S7's objectives, S2's teachers) start from the same student and are evaluated on the same held-out
problems, so their differences are paired problem by problem: far tighter than two separate standard errors.
Per arm: the primary set's accuracy after training ± SE and its gap recovery ± SE. Arms of one objective at several
seeds form a group: its outcomes are averaged per problem over the seeds, and the spread between seeds is given
beside it (the problem-level SE does not include it). Then every group against the first: the paired difference of
gap recovery ± SE. Outcomes come from summary.json, or from <run>/after_outcomes.json for older runs
(bench/paper/after_outcomes.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from opd_ray.loop.evaluation import mean, sem

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for evidence.py
from evidence import write_new  # noqa: E402


def load_arm(run_dir: Path, by: tuple[str, ...] = ()) -> dict:
    """One run's outcomes; its group is its objective and teacher, plus the config keys in `by` (`--by`)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    before = json.loads((run_dir / "eval_before.json").read_text())
    after = summary.get("student_after_correct") or json.loads((run_dir / "after_outcomes.json").read_text())
    cfg = OmegaConf.load(run_dir / "config.yaml")
    p = summary["primary_set"]
    kind = cfg["objective"]["kind"]
    group = "sampled-token" if kind == "sampled_token" else f"{kind}-{cfg['objective']['k']}"
    group += f" teacher={Path(cfg['model']['teacher']).name}" + "".join(
        f" {key}={OmegaConf.select(cfg, key)}" for key in by)
    return {"run": run_dir.name, "group": group,
            "seed": cfg["run"]["seed"], "before": before["student_correct"][p], "after": after[p],
            "teacher": summary["teacher"], "easy_after": {k: v["student_after"]["greedy"]
                                                          for k, v in summary["eval"].items() if k != p}}


def recovery(after: list[float], before: list[float], teacher: float) -> dict:
    """Gap recovery from per-problem outcomes, ± its SE (the teacher's accuracy taken as fixed)."""
    gap = teacher - mean(before)
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    return {"after": mean(after), "after_se": sem(after), "gap_recovery": mean(diffs) / gap,
            "gap_recovery_se": sem(diffs) / gap}


def compare(arms: list[dict]) -> dict:
    before, teacher = arms[0]["before"], arms[0]["teacher"]
    if any(a["before"] != before for a in arms):
        raise SystemExit("the arms did not start from the same student on the same problems")
    groups: dict[str, list[dict]] = {}
    for arm in arms:
        groups.setdefault(arm["group"], []).append(arm)
    rows = {a["run"]: {"group": a["group"], "seed": a["seed"], **recovery(a["after"], before, a["teacher"]),
                       "other_sets_after": a["easy_after"]} for a in arms}
    averaged = {g: [mean(col) for col in zip(*(a["after"] for a in members))] for g, members in groups.items()}
    out = {"n": len(before), "student_before": mean(before), "teacher": teacher, "arms": rows, "groups": {}}
    reference = next(iter(groups))
    for g, members in groups.items():
        per_seed = [rows[a["run"]]["gap_recovery"] for a in members]
        diffs = [x - y for x, y in zip(averaged[g], averaged[reference])]
        gap = teacher - mean(before)
        out["groups"][g] = {"seeds": [a["seed"] for a in members], **recovery(averaged[g], before, teacher),
                            "gap_recovery_per_seed": per_seed,
                            "seed_spread": max(per_seed) - min(per_seed) if len(per_seed) > 1 else None,
                            f"minus {reference}": None if g == reference else {
                                "gap_recovery": mean(diffs) / gap, "gap_recovery_se": sem(diffs) / gap}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories; the first one's group is the reference")
    parser.add_argument("--json", type=Path, help="also write the comparison here (a new file)")
    parser.add_argument("--by", nargs="*", default=[], help="config keys that also split the groups "
                        "(e.g. model.dtype pipeline.max_staleness)")
    args = parser.parse_args()
    result = compare([load_arm(r, tuple(args.by)) for r in args.runs])
    for g, row in result["groups"].items():
        vs = next(v for k, v in row.items() if k.startswith("minus "))
        print(f"{g:<40} seeds {row['seeds']}: gap recovery {row['gap_recovery']:.1%} ± {row['gap_recovery_se']:.1%}"
              + (f", seeds {', '.join(f'{x:.1%}' for x in row['gap_recovery_per_seed'])}" if row["seed_spread"] else "")
              + (f"; minus the first: {vs['gap_recovery']:+.1%} ± {vs['gap_recovery_se']:.1%} (paired)" if vs else ""))
    if args.json:
        write_new(args.json, result)


if __name__ == "__main__":
    main()
