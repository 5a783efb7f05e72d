"""`opd-ray report RUN_DIR`: the paper's views of one run as PNG figures and one self-contained HTML page.

Reads what a run writes (metrics.jsonl, eval_before.json, summary.json) and writes RUN_DIR/report/:
report.html (figures embedded, readable offline and by someone who has not seen the code) and one PNG per view.
`--compare OTHER_RUN ...` adds the overlap curves and gap recovery of other runs side by side.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

import numpy as np

from opd_ray.runtime.metrics import current_rows, read_rows

FIGURES = {  # file stem -> (title, what a reader should look for)
    "overlap": ("Top-k overlap between student and teacher",
                "Overlap ratio |S_p ∩ S_q|/k (Eq. 6) and the probability mass each model puts on the shared tokens "
                "(App. B.1). The paper's mechanism: successful OPD raises the overlap, and the shared tokens carry "
                "97-99% of the mass. Top-1 agreement: the student's most likely token is the teacher's."),
    "overlap_by_entropy": ("Top-k overlap by the teacher's entropy at the position (ours)",
                           "The overlap metrics split by the teacher's entropy (nats): where it is sure (< 0.1) ranks "
                           "2..k hold almost no mass and their overlap is noise; where it spreads its mass (>= 1) the "
                           "paper's mechanism has room to move. Each panel gives the band's share of the tokens."),
    "entropy": ("Entropy at student-visited states",
                "Student and teacher entropy (nats per token) and their gap |H(q) - H(p)| (Eq. 8). A student far "
                "more uncertain (or more collapsed) than the teacher has not aligned yet."),
    "entropy_heatmap": ("Entropy by response position and training step",
                        "Per-position entropy (§6.1): collapse that starts at the end of responses and moves to the "
                        "front shows up as a dark region growing from the right."),
    "optimisation": ("Optimisation diagnostics",
                     "PG loss, global gradient norm, sampled reverse KL, and two token-level signals: the "
                     "overlap-token advantage (Eq. 7; 0 is perfect agreement inside the overlap) and p - q at the "
                     "token of largest |advantage| (App. B.2)."),
    "reward_auroc": ("Does the OPD reward predict correctness?",
                     "AUROC of the sequence-mean reward (1/T) sum_t [log q - log p] against the verifier (§6.2): "
                     "0.5 means the teacher's token-level signal says nothing about whether the answer is right."),
    "accuracy": ("Accuracy and gap recovery",
                 "Held-out accuracy before and after OPD against the teacher; gap recovery = (after - before) / "
                 "(teacher - before). Right: the teacher-continuation advantage (§6.1) - teacher accuracy when it "
                 "continues the student's response after a fraction d of it, minus the student's own accuracy."),
    "teachers": ("Per teacher (several teachers)",
                 "Each teacher's share of the step's tokens, its reverse KL and top-k overlap with the student at the "
                 "states it scored, and how long its shards waited for a free server: a teacher starved of rows, or "
                 "one whose signal does not fall, is hidden in the aggregate curves (docs/multi-teacher.md)."),
    "compare": ("Runs side by side", "Overlap ratio (at each run's own k), top-1 agreement and student overlap "
                "mass of each run, and its gap recovery."),
}


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run directory written by launch/opd_job.py")
    parser.add_argument("--compare", type=Path, nargs="*", default=[], metavar="RUN_DIR",
                        help="other run directories to show side by side (overlap curves, gap recovery)")
    parser.add_argument("--smooth", type=int, default=9, help="moving-average window over steps (default 9)")


def main(args) -> int:
    page = write_report(args.run_dir, args.compare, args.smooth)
    print(f"report: {page}")
    return 0


class RunData:
    """One run directory's records."""

    def __init__(self, run_dir: Path):
        metrics_file = run_dir / "metrics.jsonl"
        if not metrics_file.is_file():
            raise FileNotFoundError(f"{metrics_file}: not a run directory (no metrics.jsonl)")
        self.dir = run_dir
        # the last row of each step: rows a resume or a learner restart ran again are superseded
        self.rows, self.superseded = current_rows(read_rows(metrics_file))
        self.steps = [r for r in self.rows if "overlap_ratio" in r]  # the final eval row has only eval/*
        self.summary = read_json(run_dir / "summary.json")
        self.before = read_json(run_dir / "eval_before.json")
        self.name = run_dir.name

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(r["step"], r[key]) for r in self.steps if isinstance(r.get(key), (int, float))]
        pairs = [(s, v) for s, v in pairs if math.isfinite(v)]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=float)

    def position_rows(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, matrix step x position) of a per-position metric; ragged rows are padded with NaN."""
        rows = [(r["step"], r[key]) for r in self.steps if isinstance(r.get(key), list)]
        if not rows:
            return np.array([]), np.zeros((0, 0))
        width = max(len(v) for _, v in rows)
        matrix = np.full((len(rows), width), np.nan)
        for i, (_, values) in enumerate(rows):
            matrix[i, : len(values)] = [np.nan if v is None else v for v in values]
        return np.array([s for s, _ in rows]), matrix


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    if window <= 1 or len(values) == 0:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)


def plot_lines(ax, run: RunData, keys: dict[str, str], window: int, ylabel: str) -> None:
    for key, label in keys.items():
        steps, values = run.series(key)
        if len(steps):
            line, = ax.plot(steps, smooth(values, window), label=label)
            ax.plot(steps, values, color=line.get_color(), alpha=0.2, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def figure_overlap(plt, run: RunData, window: int):
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_lines(ax, run, {"overlap_ratio": "overlap ratio", "overlap_mass_student": "student overlap mass",
                         "overlap_mass_teacher": "teacher overlap mass", "top1_agreement": "top-1 agreement"},
               window, "fraction")
    ax.set_ylim(0, 1.02)
    return fig


BANDS = {"lt0.1": "teacher entropy < 0.1", "0.1to1": "0.1 to 1", "ge1": "≥ 1 nat"}  # diagnostics.ENTROPY_BANDS


def figure_overlap_by_entropy(plt, run: RunData, window: int):
    fig, axes = plt.subplots(1, len(BANDS), figsize=(13, 4), sharey=True)
    for ax, (band, label) in zip(axes, BANDS.items()):
        plot_lines(ax, run, {f"overlap_ratio/teacher_entropy_{band}": "overlap ratio",
                             f"overlap_mass_student/teacher_entropy_{band}": "student overlap mass",
                             f"overlap_mass_teacher/teacher_entropy_{band}": "teacher overlap mass",
                             f"top1_agreement/teacher_entropy_{band}": "top-1 agreement"}, window, "fraction")
        _, share = run.series(f"teacher_entropy_share/{band}")
        ax.set_title(f"{label}: {share.mean():.1%} of tokens" if len(share) else label, fontsize=9)
        ax.set_ylim(0, 1.02)
    return fig


def figure_entropy(plt, run: RunData, window: int):
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_lines(ax, run, {"entropy_student": "student H(p)", "entropy_teacher": "teacher H(q)",
                         "entropy_gap": "gap |H(q) - H(p)|"}, window, "nats / token")
    return fig


def teacher_names(run: RunData) -> list[str]:
    """The teachers of a run of several (teacher/<name>/* metrics), in order of appearance."""
    names = [k.split("/")[1] for r in run.steps[:1] for k in r if k.startswith("teacher/") and k.count("/") == 2]
    return list(dict.fromkeys(names))


def figure_teachers(plt, run: RunData, window: int):
    names = teacher_names(run)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = (("token_share", "token share"), ("reverse_kl", "reverse KL (nats/token)"),
              ("overlap_ratio", "overlap ratio"), ("queue_wait_s", "queue wait (s)"))
    for ax, (measure, label) in zip(axes, panels):
        plot_lines(ax, run, {f"teacher/{n}/{measure}": n for n in names}, window, label)
    return fig


def figure_entropy_heatmap(plt, run: RunData, window: int):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    mats = [run.position_rows(f"entropy_{who}_by_position") for who in ("student", "teacher")]
    vmax = max([np.nanmax(m) for _, m in mats if m.size] + [1e-6])
    for ax, (steps, matrix), who in zip(axes, mats, ("student", "teacher")):
        if matrix.size:
            image = ax.imshow(matrix, aspect="auto", origin="lower", cmap="magma", vmin=0, vmax=vmax,
                              extent=(-0.5, matrix.shape[1] - 0.5, steps[0], steps[-1] + 1e-9))
            fig.colorbar(image, ax=ax, label="nats")
        else:
            ax.text(0.5, 0.5, "no per-position rows logged", ha="center", transform=ax.transAxes)
        ax.set_title(f"{who} entropy")
        ax.set_xlabel("response position (token)")
    axes[0].set_ylabel("training step")
    return fig


def figure_optimisation(plt, run: RunData, window: int):
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    plot_lines(axes[0, 0], run, {"loss": "PG loss"}, window, "loss")
    plot_lines(axes[0, 1], run, {"grad_norm": "gradient norm"}, window, "L2 norm")
    plot_lines(axes[1, 0], run, {"reverse_kl": "sampled reverse KL"}, window, "nats / token")
    plot_lines(axes[1, 1], run, {"overlap_token_advantage": "overlap-token advantage",
                                 "p_minus_q_at_max_adv": "p - q at max |advantage|"}, window, "value")
    return fig


def figure_reward_auroc(plt, run: RunData, window: int):
    fig, ax = plt.subplots(figsize=(7, 4))
    steps, auroc = run.series("reward_auroc")
    if len(steps):
        ax.plot(steps, auroc, "o-", label="reward AUROC")
    plot_lines(ax, run, {"train_accuracy": "rollout accuracy (train prompts)"}, window, "value")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1.02)
    return fig


def figure_accuracy(plt, run: RunData, window: int):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    s, before = run.summary, run.before
    if s:
        labels, values = [], []
        for name, e in s["eval"].items():  # per evaluation set and measure (greedy, avg@k)
            for measure in e["student_after"]:
                labels += [f"{name} {measure}: {w}" for w in ("before", "after", "teacher")]
                values += [e["student_before"][measure], e["student_after"][measure], e["teacher"][measure]]
        left.bar(labels, values, color=["#999", "#2a7", "#36c"] * (len(values) // 3))
        left.set_ylim(0, 1.05)
        left.tick_params(axis="x", rotation=60, labelsize=7)
        left.set_title(f"{s['primary_set']} (greedy): gap recovery {s['gap_recovery']:.1%}")
    else:
        left.text(0.5, 0.5, "no summary.json yet (run in progress?)", ha="center", transform=left.transAxes)
    for label, cont in (("before OPD", before.get("continuation")), ("after OPD", s.get("continuation_after"))):
        if cont:
            depths = sorted(k for k in cont if k.startswith("depth_"))
            right.plot([float(k[6:]) for k in depths], [cont[k] for k in depths], "o-", label=label)
    right.axhline(0, color="grey", linewidth=1)
    right.set_xlabel("prefix depth d (fraction of the student's response)")
    right.set_ylabel("teacher-continued - student accuracy")
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    return fig


def figure_compare(plt, runs: list[RunData], window: int):
    keys = ("overlap_ratio", "top1_agreement", "overlap_mass_student")
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for run in runs:
        for ax, key in zip(axes, keys):
            steps, values = run.series(key)
            ax.plot(steps, smooth(values, window), label=short_name(run))
            ax.set_title(key.replace("_", " ") + (" (at each run's k)" if key == "overlap_ratio" else ""))
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    recoveries = [r.summary.get("gap_recovery", float("nan")) for r in runs]
    axes[3].bar(range(len(runs)), recoveries)
    axes[3].set_xticks(range(len(runs)), [short_name(r) for r in runs], rotation=30, fontsize=8, ha="right")
    axes[3].axhline(0, color="grey", linewidth=1)
    axes[3].set_title("gap recovery")
    return fig


def short_name(run: RunData) -> str:
    """The run name without the '-<date>-<time>-<pid>' suffix that launch/opd_job.py adds."""
    return re.sub(r"-\d{8}-\d{6}-\d+$", "", run.name)


def write_report(run_dir: Path, compare: list[Path] = (), window: int = 9) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on a cluster node
    import matplotlib.pyplot as plt

    run = RunData(Path(run_dir))
    out = run.dir / "report"
    out.mkdir(exist_ok=True)
    makers = {"overlap": figure_overlap, "entropy": figure_entropy, "entropy_heatmap": figure_entropy_heatmap,
              "optimisation": figure_optimisation, "reward_auroc": figure_reward_auroc, "accuracy": figure_accuracy}
    pngs = {}
    if teacher_names(run):
        makers["teachers"] = figure_teachers
    if len(run.series("teacher_entropy_share/lt0.1")[0]):  # a teacher that ships entropies
        makers["overlap_by_entropy"] = figure_overlap_by_entropy
    for stem, make in makers.items():
        fig = make(plt, run, window)
        pngs[stem] = save(fig, plt, out / f"{stem}.png", FIGURES[stem][0])
    if compare:
        fig = figure_compare(plt, [run] + [RunData(Path(p)) for p in compare], window)
        pngs["compare"] = save(fig, plt, out / "compare.png", FIGURES["compare"][0])
    page = out / "report.html"
    page.write_text(render_html(run, pngs))
    return page


def save(fig, plt, path: Path, title: str) -> Path:
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def headline(run: RunData) -> list[tuple[str, str]]:
    """The numbers a reader wants first: accuracy, gap recovery, and the late-training mechanism metrics."""
    s, rows = run.summary, []
    if s:
        rows += [("objective", f"{s.get('objective')} (k={s.get('k')})"), ("steps", str(s.get("steps"))),
                 ("task", str(s.get("task")))]
        for name, e in s["eval"].items():
            for measure, after in e["student_after"].items():
                rows.append((f"{name} {measure}: student before -> after (teacher), gap recovery",
                             f"{e['student_before'][measure]:.3f} -> {after:.3f} ({e['teacher'][measure]:.3f}), "
                             f"{e['gap_recovery'][measure]:.1%}"))
    last = run.steps[-1] if run.steps else {}
    if last.get("fleet/restarts_rollout") or last.get("fleet/restarts_teacher"):
        rows.append(("replaced actors: rollout engines, teacher servers (re-issued trajectories; last re-admit)",
                     f"{last['fleet/restarts_rollout']}, {last['fleet/restarts_teacher']} "
                     f"({last['fleet/reissued_trajectories']}; {last['fleet/readmit_s_last']:.1f} s)"))
    for key, label in (("overlap_ratio", "overlap ratio"), ("top1_agreement", "top-1 agreement"),
                       ("overlap_mass_student", "student overlap mass"),
                       ("overlap_mass_teacher", "teacher overlap mass"), ("entropy_gap", "entropy gap")):
        steps, values = run.series(key)
        if len(values):
            tenth = max(len(values) // 10, 1)
            rows.append((f"{label}: first -> last 10% of steps",
                         f"{values[:tenth].mean():.3f} -> {values[-tenth:].mean():.3f}"))
    return rows


def render_html(run: RunData, pngs: dict[str, Path]) -> str:
    """One page, no external resources: figures are embedded as data URIs (the PNG files sit beside it)."""
    table = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in headline(run))
    sections = []
    for stem, path in pngs.items():
        title, caption = FIGURES[stem]
        data = base64.b64encode(path.read_bytes()).decode()
        sections.append(f'<section><h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>'
                        f'<img alt="{html.escape(title)}" data-file="{path.name}" src="data:image/png;base64,{data}">'
                        f'</section>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OPD report: {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}} img{{max-width:100%}}
table{{border-collapse:collapse}} th,td{{border:1px solid #ccc;padding:4px 10px;text-align:left}}
section{{margin-top:2em}}</style></head>
<body data-figures="{len(pngs)}">
<h1>On-policy distillation run <code>{html.escape(run.name)}</code></h1>
<p>The student samples responses; the teacher scores every token the student produced; the student is trained
towards the teacher at exactly the states it visits. These views follow "Rethinking On-Policy Distillation of
Large Language Models" (arXiv 2604.13016): faint lines are per-step values, solid lines moving averages.</p>
<table>{table}</table>
{"".join(sections)}
<script>
window.addEventListener("load", function () {{
  var loaded = Array.prototype.filter.call(document.images, function (i) {{ return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute("data-figures-loaded", String(loaded.length));
}});
</script>
</body></html>
"""
