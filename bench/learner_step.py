"""The learner's step alone, on one real batch: what each of its kernel choices costs.

    .venv/bin/python bench/learner_step.py                       # configs/smollm2_cpu.yaml's pair, bfloat16
    .venv/bin/python bench/learner_step.py --dtype float32 --rounds 1

One batch of `--prompts` training prompts of the config is sampled by the HF rollout engine and scored by the HF
teacher; then the DeepSpeed learner (one rank, gloo) trains on it in each variant, each in a fresh process,
interleaved round by round, timing `train_step` after `--warmup` untimed steps. Known issue (2026-12-08): in a
fresh process every variant ran 7.4-7.8 s a step on SmolLM2 with the system time near a full core (page faults, it
seems), hiding the differences an in-process profile showed; its numbers are not cited until that is understood.
The variants undo the learner's kernel choices one at a time, as the code ran until commit 3eeccf0:

- `before`: the model's default attention (sdpa: torch's CPU flash-attention kernel), AdamW one operation at a
  time over the parameters (foreach), and logits (and their backward) at the prompt positions too;
- `sdpa_attention`, `foreach_adamw`, `prompt_logits`: today's learner with one of the three undone;
- `now`: today's learner (eager attention, which `load_config` picks for a CPU run of sequences up to 256 tokens;
  fused AdamW; response logits only).

Plus the torch profiler's top operators in one step of `before` and of `now`. JSON into bench/results/.
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package, without installing it
sys.path.insert(0, str(ROOT / "bench"))
from evidence import write_new  # noqa: E402

THREADS = len(os.sched_getaffinity(0))  # every core: the stage runs alone at max_staleness 0
VARIANTS = {  # name -> (default attention, foreach AdamW, prompt logits)
    "before": (True, True, True),
    "sdpa_attention": (True, False, False),
    "foreach_adamw": (False, True, False),
    "prompt_logits": (False, False, True),
    "now": (False, False, False),
}


def scored_batch(cfg, prompts: int):
    """`prompts` training prompts sampled by the student's HF engine and scored by the HF teacher."""
    from opd_ray.engines.hf_rollout import HFRollout
    from opd_ray.engines.hf_teacher import HFTeacher
    from opd_ray.models.loading import load_tokenizer, model_options
    from opd_ray.run.preflight import build_task

    task = build_task(cfg, load_tokenizer(cfg.model.student))
    ids = [ex.prompt_ids for ex in task.train[:prompts]]
    options = model_options(cfg)
    rollout = HFRollout(cfg.model.student, max_new_tokens=cfg.rollout.max_new_tokens, temperature=1.0,
                        top_k=cfg.objective.k, run_seed=cfg.run.seed, model_options=options)
    batch = rollout.generate(ids, [(0, i, 0) for i in range(len(ids))], 0)
    del rollout
    teacher = HFTeacher(cfg.model.teacher, top_k=cfg.objective.k, temperature=1.0,
                        max_new_tokens=cfg.rollout.max_new_tokens, model_options=options)
    return teacher.score(batch)


def logp_with_prompt_logits(model, batch, temperature: float = 1.0, vocab_limit: int | None = None):
    """The learner's log-probs as computed until 2026-12-07 (3eeccf0): the output layer over every position."""
    from opd_ray.models.scoring import sequence_logits

    n = batch.response_ids_BR.shape[1]
    logits = sequence_logits(model, batch.prompt_ids_BP, batch.prompt_mask_BP, batch.response_ids_BR,
                             batch.response_mask_BR, None)
    logits = logits[:, logits.shape[1] - n - 1: -1, :vocab_limit].float()
    return torch.log_softmax(logits / temperature if temperature != 1.0 else logits, dim=-1)


@contextlib.contextmanager
def variant(name: str):
    """Today's learner with the choices `name` undoes put back as they were."""
    import deepspeed  # noqa: F401  (imported before torch.optim.AdamW is swapped: DeepSpeed subclasses it)

    from opd_ray.learner import deepspeed_rank

    _, foreach, prompt_logits = VARIANTS[name]
    adamw, logp = torch.optim.AdamW, deepspeed_rank.response_logp

    class ForeachAdamW(adamw):
        def __init__(self, *args, fused=None, **kwargs):
            super().__init__(*args, foreach=True, **kwargs)

    if foreach:
        torch.optim.AdamW = ForeachAdamW
    if prompt_logits:
        deepspeed_rank.response_logp = logp_with_prompt_logits
    try:
        yield
    finally:
        torch.optim.AdamW, deepspeed_rank.response_logp = adamw, logp


def make_learner(cfg, name: str):
    from opd_ray.learner.deepspeed_rank import DeepSpeedLearner
    from opd_ray.models.loading import model_options
    from opd_ray.runtime.process import free_port

    options = model_options(cfg)
    if VARIANTS[name][0]:
        options["attn_implementation"] = ""  # the model's own default
    return DeepSpeedLearner(cfg.model.student, cfg.learner, cfg.objective, rank=0, world_size=1,
                            master_addr="127.0.0.1", master_port=free_port(), temperature=1.0, seed=cfg.run.seed,
                            model_options=options)


def in_fresh_process(fn, *args):
    """`fn(*args)` in a new process: each learner starts from a clean allocator, and its memory (a SmolLM2 learner
    holds ~7 GiB that DeepSpeed's engine does not give back) goes when the process ends."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def time_steps(cfg, name: str, batch, steps: int, warmup: int) -> dict:
    torch.set_num_threads(THREADS)
    with variant(name):
        learner = make_learner(cfg, name)
        for _ in range(warmup):  # kernels, optimizer state, and the allocator: a fresh process page-faults at first
            learner.train_step([batch])
        seconds = []
        for _ in range(steps):
            t0 = time.perf_counter()
            learner.train_step([batch])
            seconds.append(time.perf_counter() - t0)
    return {"attention": learner.engine.module.config._attn_implementation, "seconds": seconds}


def top_operators(cfg, name: str, batch, n: int = 10) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(THREADS)
    with variant(name):
        learner = make_learner(cfg, name)
        for _ in range(3):
            learner.train_step([batch])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            learner.train_step([batch])
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:n]
    return [{"op": e.key, "self_s": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count} for e in events]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/smollm2_cpu.yaml")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the variants")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, per variant and round")
    parser.add_argument("--variants", nargs="*", choices=tuple(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "learner_step.json"))
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    args = parser.parse_args()
    from opd_ray.run.preflight import load_config

    cfg = load_config(ROOT / args.config, [f"model.dtype={args.dtype}", *args.overrides])
    torch.set_num_threads(THREADS)
    batch = scored_batch(cfg, args.prompts)  # the engines with the config's attention (eager here, as in a run)
    runs = {name: [] for name in args.variants}
    for _ in range(args.rounds):
        for name in args.variants:
            runs[name].append(in_fresh_process(time_steps, cfg, name, batch, args.steps, args.warmup))
            print(f"{name}: {statistics.median(runs[name][-1]['seconds']):.2f} s/step", flush=True)
    result = {"config": args.config, "dtype": args.dtype, "overrides": args.overrides, "warmup_steps": args.warmup,
              "threads": torch.get_num_threads(),
              "attention_resolved": cfg.model.attn_implementation,
              "rows": len(batch), "prompt_tokens": int(batch.prompt_mask_BP.sum()),
              "response_tokens": int(batch.response_mask_BR.sum()),
              "padded_tokens": int(len(batch) * (batch.prompt_ids_BP.shape[1] + batch.response_ids_BR.shape[1])),
              "variants": {name: {"median_s": statistics.median(s for r in rs for s in r["seconds"]),
                                  "attention": rs[0]["attention"], "runs": rs} for name, rs in runs.items()}}
    if "before" in runs and "now" in runs:
        variants = result["variants"]
        result["speedup_now_over_before"] = variants["before"]["median_s"] / variants["now"]["median_s"]
    if args.profile:
        result["top_operators"] = {name: in_fresh_process(top_operators, cfg, name, batch)
                                   for name in ("before", "now")}
    for name, v in result["variants"].items():
        print(f"{name}: median {v['median_s']:.2f} s/step ({v['attention'] or 'default'} attention)")
    write_new(Path(args.out), result)


if __name__ == "__main__":
    main()
