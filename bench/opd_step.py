"""What one OPD step costs: s/step, tokens/s, seconds per stage, cores busy per actor, achieved FLOP rate.

    .venv/bin/python bench/opd_step.py [--runs 3] [--steps 30] [--out bench/results/opd_step.json]
    .venv/bin/python bench/opd_step.py --compare-repo /tmp/old   # the lab default, this code vs another checkout
    .venv/bin/python bench/opd_step.py --size smollm2 [--runs 3 --steps 8]   # configs/smollm2_cpu.yaml (make real-lab)

For the lab default and for a ~10x larger random-init student/teacher pair, it runs the real job
(launch/opd_job.py, its actors, Ray) `--runs` times and reads the per-step metrics (metrics.jsonl). While the job
trains, it samples the CPU time of every Ray actor process under the job (psutil), so "cores busy" is CPU seconds
per wall second per actor over the training steps. The FLOP rate counts 2*N_student per generated token,
2*N_teacher per scored token and 6*N_student per trained token (response tokens; the prompts are short here),
divided by the step time, and is set against a float32 matmul's rate on this machine at the same thread count.
It then times the lab default on a grid of 3 batch sizes x 3 response lengths. Run it on an idle machine.

`--size smollm2` times the real-LLM work instead (configs/smollm2_cpu.yaml: SmolLM2-135M student and teacher,
16 prompts x 64 new tokens) at `pipeline.max_staleness` 0 and 1, with evaluation cut to 4 problems, beside the
float32 and bfloat16 matmul rates and the peak resident memory of each role; then its own 3 x 3 cost grid, at the
config's own defaults or `--grid-case`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from evidence import write_new  # noqa: E402  (bench/evidence.py)

ROOT = Path(__file__).resolve().parents[1]


def job_command(repo: Path, config: str = "configs/lab_cpu.yaml") -> list[str]:
    return [sys.executable, str(repo / "launch" / "opd_job.py"), "--config", str(repo / config)]

QUIET = ["data.eval_size=16", "eval.avg_k=0", "data.continuation_depths=[]", "ckpt.export_hf=false"]
LARGER = {"student": (320, 5, 5, 960), "teacher": (320, 6, 5, 1280)}  # (hidden, layers, heads, intermediate)


def build_larger_pair(out: Path) -> dict[str, Path]:
    """Random-init lab-shaped models ~10x the lab's parameters, with the lab tokenizer."""
    from opd_ray.lab import tiny_models
    from opd_ray.lab.tokenizer import build_tokenizer

    tokenizer, paths = build_tokenizer(), {}
    for name, seed in (("student", 1), ("teacher", 2)):
        tiny_models.SIZES[name] = LARGER[name]
        model = tiny_models.build_model(name, tokenizer, seed)
        model.save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
        paths[name] = out / name
    return paths


def parameters(path: Path) -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())


def actor_role(proc: psutil.Process) -> str | None:
    try:
        title = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for cls, role in (("RolloutEngine", "rollout"), ("TeacherServer", "teacher"), ("LearnerRank", "learner")):
        if f"ray::{cls}" in title:
            return role
    return None


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds so far; 0 for a process that ended since it was listed (an actor being replaced)."""
    try:
        return sum(proc.cpu_times()[:2])
    except psutil.NoSuchProcess:
        return 0.0


def cpu_by_role(root: psutil.Process) -> dict[str, float]:
    """CPU seconds so far of each actor process under `root`, summed by role; the driver counted as well."""
    out = {"driver": cpu_seconds(root)}
    for proc in root.children(recursive=True):
        role = actor_role(proc)
        if role:
            out[role] = out.get(role, 0.0) + cpu_seconds(proc)
    return out


def rss_by_role(root: psutil.Process) -> dict[str, float]:
    """Resident memory (GiB) of each role's processes now, summed by role."""
    out: dict[str, float] = {}
    for proc in root.children(recursive=True):
        role = actor_role(proc)
        with contextlib.suppress(psutil.NoSuchProcess):  # an actor that ended since it was listed
            if role:
                out[role] = out.get(role, 0.0) + proc.memory_info().rss / 2**30
    return out


def logged_steps(run_root: Path) -> int:
    files = list(run_root.glob("*/metrics.jsonl"))
    if not files:
        return 0
    return sum(1 for line in files[0].read_text().splitlines() if '"time/step_s"' in line)


def run_job(overrides: list[str], steps: int, skip: int = 3, repo: Path = ROOT, config: str = "configs/lab_cpu.yaml",
            quiet: list[str] = QUIET) -> dict:
    """One job of `repo`'s code; the CPU window opens after `skip` steps (start-up) and closes at the last."""
    with tempfile.TemporaryDirectory() as tmp:
        args = job_command(repo, config) + quiet + [f"run.steps={steps}", f"run.out_dir={tmp}", *overrides]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=repo,
                                env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)})
        root, window, peak_rss = psutil.Process(proc.pid), {}, {}
        while proc.poll() is None:
            for role, gib in rss_by_role(root).items():
                peak_rss[role] = max(peak_rss.get(role, 0.0), gib)
            done = logged_steps(Path(tmp))
            if done >= skip and "start" not in window:
                window["start"] = (time.monotonic(), cpu_by_role(root))
            if done >= steps and "end" not in window:
                window["end"] = (time.monotonic(), cpu_by_role(root))
            time.sleep(0.05)
        if proc.returncode != 0:
            raise SystemExit(f"the job failed ({' '.join(overrides)}): {proc.stderr.read()[-2000:]}")
        rows = [json.loads(line) for line in next(Path(tmp).glob("*/metrics.jsonl")).read_text().splitlines()]
    rows = [r for r in rows if "time/step_s" in r][skip:]
    stats = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k.startswith("time/")}
    stats["tokens_per_step"] = statistics.median(r["tokens"] for r in rows)
    stats["tokens_per_s"] = stats["tokens_per_step"] / stats["time/step_s"]
    if "start" in window and "end" in window:
        (t0, c0), (t1, c1) = window["start"], window["end"]
        stats["cores_busy"] = {role: round((c1.get(role, 0.0) - c0.get(role, 0.0)) / (t1 - t0), 3) for role in c1}
        stats["cores_busy_total"] = round(sum(stats["cores_busy"].values()), 3)
    stats["peak_rss_gib"] = {role: round(gib, 3) for role, gib in peak_rss.items()}
    return stats


def matmul_flops(threads: int, n: int = 512, repeats: int = 50) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(5):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def summarize(runs: list[dict], n_student: int, n_teacher: int, peak: float) -> dict:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float)}
    tokens = med["tokens_per_step"]
    flops = (2 * n_student + 2 * n_teacher + 6 * n_student) * tokens / med["time/step_s"]
    return {"median": med, "runs": runs, "params_student": n_student, "params_teacher": n_teacher,
            "achieved_flop_s": flops, "matmul_flop_s": peak, "utilisation": flops / peak}


def compare(other: Path, runs: int, steps: int, out: Path) -> None:
    """The lab default, this checkout and `other`, interleaved run by run on the same machine."""
    results = {"this": [], "other": []}
    for _ in range(runs):
        results["other"].append(run_job([], steps, repo=other))
        results["this"].append(run_job([], steps))
        print(f"other {results['other'][-1]['tokens_per_s']:.0f} tokens/s, "
              f"this {results['this'][-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    med = {side: {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "time/step_s", "cores_busy_total")}
           for side, rs in results.items()}
    ratio = med["this"]["tokens_per_s"] / med["other"]["tokens_per_s"]
    print(f"tokens/s ratio (median of {runs} interleaved runs each): {ratio:.2f}x", flush=True)
    write_new(out, {"other_commit": git_commit(other),
        "steps": steps, "median": med, "tokens_per_s_ratio": ratio, "runs": results})


def cost_growth(extra: list[str], steps: int) -> list[dict]:
    """The lab default's step at 3 batch sizes x 3 response lengths: s/step, tokens/step, and s per 1k tokens
    (flat or falling along a row or column means the cost grows linearly or better)."""
    grid = []
    for prompts in (16, 32, 64):
        for new_tokens in (14, 28, 56):
            stats = run_job([f"data.prompts_per_step={prompts}", f"rollout.max_new_tokens={new_tokens}", *extra], steps)
            grid.append({"prompts_per_step": prompts, "max_new_tokens": new_tokens, "s_per_step": stats["time/step_s"],
                         "tokens_per_step": stats["tokens_per_step"],
                         "s_per_1k_tokens": 1000 * stats["time/step_s"] / stats["tokens_per_step"]})
            print(f"prompts {prompts} x {new_tokens} new tokens: {stats['time/step_s']:.3f} s/step, "
                  f"{grid[-1]['s_per_1k_tokens']:.3f} s per 1k tokens", flush=True)
    return grid


SMOLLM2 = "configs/smollm2_cpu.yaml"
# name -> overrides; each names its dtype and staleness, whatever the config's defaults are (the float32,
# staleness-0 cases are the config's defaults before 2026-12-07). vllm_rollout needs .venv-vllm (docs/vllm.md)
SMOLLM2_CASES = {
    "staleness_0": ["pipeline.max_staleness=0", "model.dtype=float32"],
    "staleness_1": ["pipeline.max_staleness=1", "model.dtype=float32"],
    "vllm_rollout": ["pipeline.max_staleness=0", "model.dtype=float32", "rollout.backend=vllm"],
    # bfloat16 weights in the engines and the teacher, bfloat16 autocast over float32 master weights in the learner;
    # pays only on a CPU with AVX-512 BF16 or AMX (bench/matmul_rates.py)
    "bfloat16_staleness_0": ["pipeline.max_staleness=0", "model.dtype=bfloat16"],
    "bfloat16_staleness_1": ["pipeline.max_staleness=1", "model.dtype=bfloat16"],
    "bfloat16_vllm_rollout": ["pipeline.max_staleness=0", "model.dtype=bfloat16", "rollout.backend=vllm"],
}
# --pair: whose weights do the work. sums: the fine-tuned pair (`make real-lab`, ~27 min); instruct: the released
# SmolLM2-135M-Instruct as student and teacher (`make real-models` only): the same shapes and arithmetic per token,
# but its responses run to max_new_tokens more often, so compare tokens/s, and only within one pair
PAIRS = {"sums": ("smollm2-sums-student", "smollm2-sums-teacher"),
         "instruct": ("SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct")}


def smollm2_quiet(tmp: Path) -> list[str]:
    """Both evaluation sets cut to the same 4 hard problems, greedy only, no export: the bench times the steps."""
    rows = (ROOT / "models" / "sums_chat" / "hard.jsonl").read_text().splitlines()[:4]
    (tmp / "eval4.jsonl").write_text("\n".join(rows) + "\n")
    return [f"data.eval_files.{name}={tmp / 'eval4.jsonl'}" for name in ("hard", "easy")] + [
        "eval.avg_k=0", "ckpt.export_hf=false"]


def mean_prompt_tokens(config: str, overrides: list[str], rows: int = 256) -> float:
    """The rendered prompts' mean length in tokens (they are trained and scored too, not only the responses)."""
    from opd_ray.models.loading import load_tokenizer
    from opd_ray.run.preflight import build_task, load_config

    cfg = load_config(ROOT / config, overrides)
    task = build_task(cfg, load_tokenizer(cfg.model.student))
    return statistics.mean(len(ex.prompt_ids) for ex in task.train[:rows])


def smollm2_flops(stats: dict, n: int, prompt_tokens: float, prompts: int) -> float:
    """FLOP per step: 2N per generated token and per prompt token prefilled, 2N per token the teacher scores,
    6N per token trained (prompts and responses); N = the student's (= the teacher's) parameters."""
    return (2 + 2 + 6) * n * (stats["tokens_per_step"] + prompt_tokens * prompts)


def git_commit(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def case_repos(specs: list[str], cases: dict) -> dict[str, Path]:
    """--case-repo NAME=PATH: the case NAME runs PATH's code (its launch/ and opd_ray/); every other case runs
    this checkout's. PATH needs its own `models` (a link to this one's will do): the jobs run in their checkout."""
    repos = {name: ROOT for name in cases}
    for spec in specs:
        name, _, path = spec.partition("=")
        if name not in cases or not path:
            raise SystemExit(f"--case-repo {spec!r}: expected NAME=PATH with NAME one of --cases {list(cases)}")
        repos[name] = Path(path).resolve()
        if not (repos[name] / "models").exists():
            raise SystemExit(f"--case-repo {spec!r}: {repos[name] / 'models'} is missing (link this checkout's)")
    return repos


def smollm2(args) -> None:
    """The SmolLM2 work in each of `--cases` (interleaved, `--runs` each), then its cost grid."""
    from matmul_rates import cpu_description, kernel_rates  # noqa: E402  (bench/matmul_rates.py)

    cores = len(os.sched_getaffinity(0))
    rates = kernel_rates(cores)
    student, teacher = (ROOT / "models" / name for name in PAIRS[args.pair])
    if not student.exists():
        raise SystemExit(f"{student} is missing: run `make {'real-lab' if args.pair == 'sums' else 'real-models'}`")
    if not (ROOT / "models" / "sums_chat" / "hard.jsonl").exists():  # the prompts, without building the pair
        from opd_ray.lab.real_lab import write_task_files
        write_task_files(ROOT / "models" / "sums_chat")
    os.chdir(ROOT)  # the jobs run in ROOT too: the model overrides stay relative, and the JSON holds no machine path
    args.extra = [f"model.{role}={path.relative_to(ROOT)}" for role, path in (("student", student),
                                                                           ("teacher", teacher))] + args.extra
    n, prompt_tokens = parameters(student), mean_prompt_tokens(SMOLLM2, args.extra)
    result = {"machine": {"cores": cores, "torch": torch.__version__, "rates_flop_s": rates,
                          "cpu": cpu_description()},
              "pair": args.pair, "params": n, "mean_prompt_tokens": prompt_tokens, "extra_overrides": args.extra}
    cases = {name: SMOLLM2_CASES[name] for name in args.cases}
    repos = case_repos(args.case_repo, cases)
    result["case_repos"] = {name: {"commit": git_commit(repo), "this_checkout": repo == ROOT}
                            for name, repo in repos.items()}
    runs = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as tmp:
        quiet = smollm2_quiet(Path(tmp))
        for _ in range(args.runs):
            for name, overrides in cases.items():
                stats = run_job([*overrides, *args.extra], args.steps, skip=2, repo=repos[name], config=SMOLLM2,
                                quiet=quiet)
                runs[name].append(stats)
                print(f"{name}: {stats['time/step_s']:.2f} s/step, {stats['tokens_per_s']:.1f} tokens/s, "
                      f"cores busy {stats.get('cores_busy_total')}", flush=True)
        for name, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], float)}
            flop_s = smollm2_flops(med, n, prompt_tokens, 16) / med["time/step_s"]
            result[name] = {"median": med, "runs": rs, "achieved_flop_s": flop_s,
                            "of_float32_linear": flop_s / rates["linear_576x1536_float32"],
                            "of_bfloat16_linear": flop_s / rates["linear_576x1536_bfloat16"]}
        grid = []
        for prompts in ((8, 16, 32) if args.grid else ()):
            for new_tokens in (32, 64, 128):
                stats = run_job([f"data.prompts_per_step={prompts}", f"rollout.max_new_tokens={new_tokens}",
                                 *SMOLLM2_CASES.get(args.grid_case, []), *args.extra], args.grid_steps, skip=1,
                                config=SMOLLM2, quiet=quiet)
                grid.append({"prompts_per_step": prompts, "max_new_tokens": new_tokens,
                             "s_per_step": stats["time/step_s"], "tokens_per_step": stats["tokens_per_step"],
                             "s_per_1k_tokens": 1000 * stats["time/step_s"] / stats["tokens_per_step"],
                             "peak_rss_gib": stats["peak_rss_gib"]})
                print(f"prompts {prompts} x {new_tokens} new tokens: {stats['time/step_s']:.2f} s/step, "
                      f"{grid[-1]['s_per_1k_tokens']:.2f} s per 1k tokens", flush=True)
        result["cost_growth"] = grid or None
        result["cost_growth_case"] = args.grid_case or "the config's defaults"
    write_new(Path(args.out), result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "opd_step.json"))
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for every job (e.g. pipeline.threads=reserved)")
    parser.add_argument("--compare-repo", help="another checkout (e.g. the previous commit): interleaved lab runs")
    parser.add_argument("--size", choices=("lab", "smollm2"), default="lab",
                        help="lab: the lab default and a 10x pair; smollm2: configs/smollm2_cpu.yaml")
    parser.add_argument("--cases", nargs="*", choices=tuple(SMOLLM2_CASES), default=["staleness_0", "staleness_1"],
                        help="--size smollm2: the settings run side by side, interleaved")
    parser.add_argument("--case-repo", action="append", default=[], metavar="NAME=PATH",
                        help="--size smollm2: run case NAME with another checkout's code (e.g. the landed main)")
    parser.add_argument("--pair", choices=tuple(PAIRS), default="sums", help="--size smollm2: whose weights (PAIRS)")
    parser.add_argument("--no-grid", dest="grid", action="store_false", help="--size smollm2: skip the cost grid")
    parser.add_argument("--grid-case", choices=tuple(SMOLLM2_CASES), help="--size smollm2: the grid's setting "
                        "(default: the config's own)")
    parser.add_argument("--grid-steps", type=int, default=3, help="--size smollm2: steps per grid cell (first dropped)")
    args = parser.parse_args()
    args.out = str(Path(args.out).resolve())  # --size smollm2 moves into the repository before it writes
    if args.size == "smollm2":
        args.steps = 8 if args.steps == parser.get_default("steps") else args.steps
        if args.out == parser.get_default("out"):
            args.out = str(ROOT / "bench" / "results" / "opd_step_smollm2.json")
        return smollm2(args)
    if args.compare_repo:
        return compare(Path(args.compare_repo), args.runs, args.steps, ROOT / "bench" / "results" / "opd_step_vs.json")
    cores = len(os.sched_getaffinity(0))
    peak = matmul_flops(cores)
    lab = ROOT / "opd_ray" / "lab" / "artifacts"
    result = {"machine": {"cores": cores, "torch": torch.__version__, "matmul_flop_s": {
        str(t): matmul_flops(t) for t in sorted({1, cores})}}, "extra_overrides": args.extra}
    with tempfile.TemporaryDirectory() as tmp:
        larger = build_larger_pair(Path(tmp))
        cases = {"lab": (lab / "student", lab / "teacher", args.steps),
                 "larger_x10": (larger["student"], larger["teacher"], max(8, args.steps // 3))}
        for name, (student, teacher, steps) in cases.items():
            runs = [run_job([f"model.student={student}", f"model.teacher={teacher}", *args.extra], steps)
                    for _ in range(args.runs)]
            result[name] = summarize(runs, parameters(student), parameters(teacher), peak)
            print(f"{name}: {result[name]['median']['time/step_s']:.3f} s/step, "
                  f"{result[name]['median']['tokens_per_s']:.0f} tokens/s, utilisation "
                  f"{result[name]['utilisation']:.1%}", flush=True)
    result["cost_growth"] = cost_growth(args.extra, max(10, args.steps // 2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_new(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
