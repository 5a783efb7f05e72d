"""`opd-ray probe`: will this teacher teach this student? A pre-flight check before any OPD compute.

The paper (docs/design.md, paper §3 and §2) finds OPD works only when (i) student and teacher share a thinking
pattern and (ii) the teacher has capability the student lacks. The probe measures both on a few student
rollouts, in-process with Hugging Face models (no Ray), plus the teacher contract OPD silently relies on:

- condition (i), thinking-pattern compatibility: overlap ratio and overlap mass (top-k, k from the config),
  top-1 agreement, entropy gap and sampled reverse KL at the states the student visits. The criterion is the
  overlap mass (the paper's successful runs keep 97-99% of both models' mass on shared top-k tokens; a teacher
  that wants a different next step leaves mass outside the shared tokens), taken as a share of each model's own
  top-k mass so that a flat (high-entropy) model is not flagged for being flat.
- condition (ii), new capability, measured two ways, and the teacher passes if either shows it:
  - globally, the paper's teacher-continuation advantage (teacher accuracy continuing the student's greedy
    response cut at several depths, minus the student's own accuracy); at depth 0 it is simply "does the
    teacher solve the prompts the student fails";
  - locally, the first-disagreement advantage: substitute the teacher's top-1 token where it first differs
    from the student's greedy answer and let the student finish. This asks what OPD asks (is the teacher right
    where it disagrees with the student, on the student's own states). On the lab it is what separates a
    larger same-data teacher that still fixes the student's errors (OPD gains 43 points) from one that does
    not (docs/recipes.md).
- contract (opd_ray/models/contract.py, the check the job runs too): the same token ids over the shared vocabulary,
  special-token ids and chat-template rendering, embedding tables wide enough; the run's prompt ids decode to
  the same text for both, equal temperatures, and a self-test: the student scored by
  itself through the teacher's scoring path must give KL ~ 0 (catches padding/position/temperature bugs).

    opd-ray probe --config configs/lab_cpu.yaml model.teacher=opd_ray/lab/artifacts/teacher_incompatible --json

The exit status is the verdict (EXIT_STATUS), so `opd-ray probe ... && ray job submit ...` submits only a pair
the probe passes: 0 ok, 3 no_new_capability, 4 pattern_mismatch, 5 contract_violation (2: bad input).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from opd_ray.config import teachers
from opd_ray.config.errors import ConfigError
from opd_ray.config.load import REPO_ROOT
from opd_ray.config.schema import OPDConfig
from opd_ray.data.rows import DataError
from opd_ray.data.task import Example, Verifier, accuracy
from opd_ray.data.verifiers import get_verifier
from opd_ray.data.line_checks import PREFIX_CHECKS
from opd_ray.loop.evaluation import advantage_means, continuation_outcomes, depth_decay
from opd_ray.models.contract import pair_checks
from opd_ray.models.folders import shared_logit_width
from opd_ray.models.loading import eos_token_ids, load_model, load_tokenizer, model_options, torch_dtype
from opd_ray.models.sampling import TextSampler, decode_responses, left_pad, sample, trajectory_seed
from opd_ray.models.scoring import gather_BR, response_logits
from opd_ray.objective import diagnostics as diag
from opd_ray.objective.losses import diagnostics_k
from opd_ray.run.preflight import build_task, load_config

# The sampler (KV cache, one position at a time) and the scorer (one pass) round differently. In float32 they agree
# to ~1e-5. bfloat16 keeps 8 mantissa bits, so a logit near 16 rounds by up to 0.06: measured max 0.0615 on the
# lab with a sampled KL of 8e-5 (docs/speed.md). A padding, position or temperature bug moves log-probs by ~1.
SELF_TEST_TOL = {torch.float32: 1e-3, torch.bfloat16: 0.25}

VERDICTS = ("ok", "no_new_capability", "pattern_mismatch", "contract_violation")


@dataclass
class ProbeSettings:
    n_prompts: int = 128
    # condition (i): both models' shared share of their top-k mass; the paper's working pairs keep 0.97-0.99
    min_overlap_mass: float = 0.95
    # condition (ii), globally: teacher-continuation advantage at depth 0; the paper's working pair showed +0.37
    # at its shallowest prefix, and a teacher that solves under 20 points more than the student alone has
    # little to distil *unless* it is right where the student goes wrong, which the local measure asks
    min_advantage: float = 0.2
    # condition (ii), locally: first-disagreement advantage (accuracy change from taking the teacher's token at
    # the first disagreement); positive when the teacher's corrections help the student on its own states
    min_local_advantage: float = 0.1
    # max |log p_sampler - log p_scorer| per token for the student-vs-itself test; 0: by model.dtype (SELF_TEST_TOL)
    self_test_tol: float = 0.0
    depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75])
    # a line-level check of the student's cut prefixes (opd_ray/data/line_checks.py; "" for none): the report then
    # gives the share of prefixes that had already slipped at each depth, beside the advantage (the paper's S8)
    prefix_check: str = ""
    # probe on the first n_prompts problems of this evaluation set ("": the OPD prompts the teacher would score)
    eval_set: str = ""
    # torch CPU threads while probing: tiny lab models are fastest on one, and on a shared machine more threads
    # spin-wait (measured: 2.4 s with 1 thread vs 91 s with 2 on a loaded 2-core machine)
    threads: int = 1


@dataclass
class ProbeReport:
    verdict: str
    conditions: dict  # name -> {"pass": bool, "why": str}
    metrics: dict[str, float]
    continuation: dict[str, float]
    contract: dict  # check -> {"pass": bool, "detail": str}
    student: str
    teacher: str
    n_prompts: int
    k: int
    seconds: float
    # the continuation advantage against depth: per depth ± SE (and the slipped share), the slope ± SE
    depth_decay: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# ---------------------------------------------------------------- contract
def contract_checks(s_tok, t_tok, s_model, t_model, prompts: list[Example], cfg: OPDConfig) -> dict:
    """The teacher contract (opd_ray/models/contract.py, as the job checks it) plus the probe's own: equal temperatures
    and the run's prompts reading the same for both tokenizers; every entry is {"pass": bool, "detail": str}."""
    checks = pair_checks(s_tok, t_tok, s_model.config.vocab_size, t_model.config.vocab_size,
                         eos_token_ids(s_model, s_tok), eos_token_ids(t_model, t_tok))
    checks["temperature"] = _check(cfg.rollout.temperature == cfg.teacher.temperature,
                                   f"rollout.temperature {cfg.rollout.temperature} vs teacher.temperature "
                                   f"{cfg.teacher.temperature} (log-probs must be compared at one temperature)")
    checks["prompt_round_trip"] = prompt_round_trip(s_tok, t_tok, prompts)
    return checks


def _check(ok: bool, detail: str) -> dict:
    return {"pass": bool(ok), "detail": detail}


def prompt_round_trip(s_tok, t_tok, prompts: list[Example]) -> dict:
    """The teacher reads the student's prompt ids (rendered through the chat template, if any) as the same text."""
    bad = [ex for ex in prompts if t_tok.decode(list(ex.prompt_ids)) != s_tok.decode(list(ex.prompt_ids))]
    return _check(not bad, f"{len(prompts) - len(bad)}/{len(prompts)} prompts round-trip"
                  + (f"; first failure {bad[0].prompt!r}" if bad else ""))


# ---------------------------------------------------------------- rollouts and token-level metrics
@torch.no_grad()
def rollout_metrics(s_model, t_model, tok, prompts: list[Example], verify: Verifier, cfg: OPDConfig, tol: float
                    ) -> tuple[dict, dict]:
    """Sample one student rollout per prompt; score it with the teacher and with the student itself."""
    k, width = diagnostics_k(cfg.objective), min(s_model.config.vocab_size, t_model.config.vocab_size)
    prompt_ids = [list(ex.prompt_ids) for ex in prompts]
    seeds = [trajectory_seed(cfg.run.seed, (0, i, 0), 0) for i in range(len(prompts))]
    out = sample(s_model, prompt_ids, max_new_tokens=cfg.rollout.max_new_tokens, eos_id=eos_token_ids(s_model, tok),
                 pad_id=tok.pad_token_id, seeds=seeds, temperature=cfg.rollout.temperature, top_k=k,
                 vocab_limit=width)
    ids_BP, mask_BP = left_pad(prompt_ids, tok.pad_token_id)
    args = (ids_BP.numpy(), mask_BP.numpy().astype(bool), out.response_ids_BR, out.response_mask_BR, width)
    t_logp = torch.log_softmax(response_logits(t_model, *args) / cfg.teacher.temperature, -1)
    s_logp = torch.log_softmax(response_logits(s_model, *args) / cfg.rollout.temperature, -1)
    t_top_logp, t_top_ids = (x.numpy() for x in t_logp.topk(k, -1))
    m = out.response_mask_BR
    t_sampled = gather_BR(t_logp, out.response_ids_BR).numpy()
    s_rescored = gather_BR(s_logp, out.response_ids_BR).numpy()
    per_token = {
        "overlap_ratio": diag.overlap_ratio_BR(out.topk_ids_BRK, t_top_ids),
        "overlap_mass_student": diag.overlap_mass_BR(out.topk_ids_BRK, out.topk_logp_BRK, t_top_ids),
        "overlap_mass_teacher": diag.overlap_mass_BR(t_top_ids, t_top_logp, out.topk_ids_BRK),
        "top1_agreement": out.topk_ids_BRK[..., 0] == t_top_ids[..., 0],
        "entropy_student": diag.entropy_BR(s_logp).numpy(),
        "entropy_teacher": diag.entropy_BR(t_logp).numpy(),
        "reverse_kl": out.logp_BR - t_sampled,  # the sampled estimator of KL(p || q), as in training
    }
    per_token["entropy_gap"] = np.abs(per_token["entropy_teacher"] - per_token["entropy_student"])
    # the shared tokens' share of each model's own top-k mass: equal to the overlap mass for peaked models (the
    # paper's), but not ~k/V for a flat one, whose own top-k holds little mass however well it agrees
    for side, top_logp in (("student", out.topk_logp_BRK), ("teacher", t_top_logp)):
        own = np.exp(top_logp.astype(np.float64)).sum(-1)
        per_token[f"overlap_share_{side}"] = per_token[f"overlap_mass_{side}"] / np.maximum(own, 1e-12)
    metrics = {name: float((v * m).sum() / m.sum()) for name, v in per_token.items()}
    metrics["student_sampled_accuracy"] = accuracy(verify, prompts, decode_responses(tok, out))
    drift = np.abs(out.logp_BR - s_rescored)[m]
    self_kl = float(((out.logp_BR - s_rescored) * m).sum() / m.sum())
    self_test = _check(drift.max() <= tol, f"student vs itself: sampled KL {self_kl:.2e}, max |Δlog p| "
                       f"{drift.max():.2e} (tolerance {tol:g})")
    return metrics, self_test


def greedy_generator(model, tok, max_new_tokens: int, cfg: OPDConfig) -> TextSampler:
    """prompt token ids -> greedy response texts (the evaluation module's `Generate`)."""
    return TextSampler(model, tok, max_new_tokens, eos_token_ids(model, tok), tuple(cfg.rollout.stop),
                       shared_logit_width(cfg.model.student, cfg.model.teacher))


@torch.no_grad()
def first_disagreement_advantage(s_model, t_model, tok, prompts: list[Example], verify: Verifier, cfg: OPDConfig
                                 ) -> dict:
    """Local knowledge, the signal OPD actually uses: in the student's greedy answer, take the first token
    where the teacher's top-1 differs, substitute the teacher's token, let the *student* finish greedily.
    Returns the accuracy change (substituted minus original) and the share of answers with a disagreement.
    Condition (ii)'s local measure (an addition of ours, not a metric of the paper)."""
    max_new_tokens, width = cfg.rollout.max_new_tokens, min(s_model.config.vocab_size, t_model.config.vocab_size)
    prompt_ids = [list(ex.prompt_ids) for ex in prompts]
    out = sample(s_model, prompt_ids, max_new_tokens=max_new_tokens, eos_id=eos_token_ids(s_model, tok),
                 pad_id=tok.pad_token_id, seeds=None, vocab_limit=width)
    ids_BP, mask_BP = left_pad(prompt_ids, tok.pad_token_id)
    t_top1 = response_logits(t_model, ids_BP.numpy(), mask_BP.numpy().astype(bool), out.response_ids_BR,
                             out.response_mask_BR, width).argmax(-1).numpy()
    original = decode_responses(tok, out)
    differs = (t_top1 != out.response_ids_BR) & out.response_mask_BR
    rows = [i for i in range(len(prompts)) if differs[i].any()]
    prefixes = {i: out.response_ids_BR[i, : differs[i].argmax()].tolist() + [int(t_top1[i, differs[i].argmax()])]
                for i in rows}
    continued = greedy_generator(s_model, tok, max_new_tokens, cfg)([prompt_ids[i] + prefixes[i] for i in rows]) \
        if rows else []
    substituted = list(original)
    for i, rest in zip(rows, continued):
        substituted[i] = tok.decode(prefixes[i], skip_special_tokens=True) + rest
    return {"first_disagreement_advantage": accuracy(verify, prompts, substituted) - accuracy(verify, prompts, original),
            "answers_with_disagreement": len(rows) / len(prompts)}


# ---------------------------------------------------------------- verdict
def decide(contract: dict, metrics: dict, continuation: dict, settings: ProbeSettings) -> tuple[str, dict]:
    """Conditions in the order they block OPD: a broken contract makes every number meaningless; a pattern
    mismatch makes the teacher's signal unusable however capable it is; then novelty."""
    failed = [name for name, c in contract.items() if not c["pass"]]
    mass = min(metrics["overlap_share_student"], metrics["overlap_share_teacher"])
    advantage, local = continuation["depth_0"], metrics.get("first_disagreement_advantage", float("nan"))
    compatible = mass >= settings.min_overlap_mass
    shown = [name for name, ok in (("global", advantage >= settings.min_advantage),
                                   ("local", local >= settings.min_local_advantage)) if ok]
    novel = bool(shown)
    contract_line = {"pass": not failed, "why": "all checks pass" if not failed else f"failed: {', '.join(failed)}"}
    if failed and math.isnan(mass):  # the models were never compared: nothing below can be measured
        skipped = {"pass": None, "why": "not measured: with this contract failure scoring compares unrelated tokens"}
        return "contract_violation", {"contract": contract_line, "thinking_pattern": skipped,
                                      "new_capability": dict(skipped)}
    conditions = {
        "contract": contract_line,
        "thinking_pattern": {"pass": compatible, "why": (
            f"overlap mass share {mass:.3f} (min of student {metrics['overlap_share_student']:.3f}, teacher "
            f"{metrics['overlap_share_teacher']:.3f}) vs threshold {settings.min_overlap_mass}; overlap mass "
            f"student {metrics['overlap_mass_student']:.3f}, teacher {metrics['overlap_mass_teacher']:.3f}; "
            f"overlap ratio {metrics['overlap_ratio']:.3f}, top-1 agreement "
            f"{metrics['top1_agreement']:.3f}, sampled reverse KL {metrics['reverse_kl']:.3f}, entropy gap "
            f"{metrics['entropy_gap']:.3f}")},
        "new_capability": {"pass": novel, "shown_by": "+".join(shown) or "neither", "why": (
            f"global: teacher-continuation advantage {advantage:+.3f} at depth 0 vs threshold "
            f"{settings.min_advantage} (student greedy accuracy {continuation['student_accuracy']:.3f}; deeper: "
            + ", ".join(f"{k.removeprefix('depth_')}: {v:+.3f}" for k, v in continuation.items()
                        if k.startswith("depth_") and k != "depth_0")
            + f"); local: the teacher's token at the first disagreement changes the student's accuracy by "
            f"{local:+.3f} vs threshold {settings.min_local_advantage}; passes if either does")},
    }
    for verdict, condition in (("contract_violation", "contract"), ("pattern_mismatch", "thinking_pattern"),
                               ("no_new_capability", "new_capability")):
        if not conditions[condition]["pass"]:
            return verdict, conditions
    return "ok", conditions


def run_probe(cfg: OPDConfig, settings: ProbeSettings = ProbeSettings(), prompts: list[Example] | None = None,
              teacher: str = teachers.DEFAULT) -> ProbeReport:
    """The Python API: probe cfg.model.teacher against cfg.model.student on `prompts` (default: the first
    `settings.n_prompts` of the run's OPD prompts routed to `teacher`, or of the evaluation set settings.eval_set). `cfg` is that teacher's view
    (opd_ray/config/teachers.py): a one-teacher config is its own."""
    t0, threads = time.time(), torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run_probe(cfg, settings, prompts, t0, teacher)
    finally:
        torch.set_num_threads(threads)


def probe_teachers(cfg: OPDConfig, settings: ProbeSettings = ProbeSettings(), prompts: list[Example] | None = None
                   ) -> dict[str, ProbeReport]:
    """Every teacher of the run against the student, each on its own rows: a verdict per teacher."""
    return {name: run_probe(view, settings, prompts, name) for name, view in teachers.views(cfg).items()}


def _run_probe(cfg: OPDConfig, settings: ProbeSettings, prompts: list[Example] | None, t0: float,
               teacher: str) -> ProbeReport:
    torch.manual_seed(cfg.run.seed)
    s_tok, t_tok = (load_tokenizer(p, cfg.model.trust_remote_code) for p in (cfg.model.student, cfg.model.teacher))
    task = build_task(cfg, s_tok)
    if settings.eval_set and settings.eval_set not in task.eval_sets:
        raise DataError(f"--eval-set: no evaluation set {settings.eval_set!r}; this run's are "
                        f"{', '.join(task.eval_sets)}")
    own = task.eval_sets[settings.eval_set] if settings.eval_set else [
        ex for ex in task.train if ex.teacher == teacher]  # the rows OPD would send to this teacher
    prompts = prompts if prompts is not None else own[: settings.n_prompts]
    if not prompts:
        raise ValueError("prompts: the probe needs at least one prompt")
    verify = get_verifier(task.verifier)
    s_model, t_model = (load_model(p, **model_options(cfg)) for p in (cfg.model.student, cfg.model.teacher))
    contract = contract_checks(s_tok, t_tok, s_model, t_model, prompts, cfg)
    if not (contract["vocabulary"]["pass"] and contract["embedding_tables"]["pass"]):
        # scoring with a different vocabulary would compare unrelated tokens: stop at the contract
        metrics = {name: float("nan") for name in ("overlap_ratio", "overlap_mass_student", "overlap_mass_teacher",
                                                    "overlap_share_student", "overlap_share_teacher",
                                                    "top1_agreement", "reverse_kl", "entropy_gap")}
        continuation, decay = {"student_accuracy": float("nan"), "depth_0": float("nan")}, {}
    else:
        tol = settings.self_test_tol or SELF_TEST_TOL[torch_dtype(cfg.model.dtype)]
        metrics, contract["self_test"] = rollout_metrics(s_model, t_model, s_tok, prompts, verify, cfg, tol)
        n = cfg.rollout.max_new_tokens
        outcomes = continuation_outcomes(greedy_generator(s_model, s_tok, n, cfg),
                                         greedy_generator(t_model, s_tok, n, cfg), prompts, s_tok, verify,
                                         settings.depths, PREFIX_CHECKS.get(settings.prefix_check))
        continuation = advantage_means(outcomes)
        decay = depth_decay(outcomes) if len(prompts) > 1 and len(settings.depths) > 1 else {}
        metrics.update(first_disagreement_advantage(s_model, t_model, s_tok, prompts, verify, cfg))
    verdict, conditions = decide(contract, metrics, continuation, settings)
    return ProbeReport(verdict, conditions, metrics, continuation, contract, shown_path(cfg.model.student),
                       shown_path(cfg.model.teacher), len(prompts), diagnostics_k(cfg.objective),
                       round(time.time() - t0, 1), decay)


def shown_path(path: str) -> str:
    """A model path as the report shows it: relative to the repository when inside it, so reports are portable."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:  # outside the repository, or a hub name
        return path


def render(report: ProbeReport) -> str:
    """The readable verdict: one line per condition, then the numbers behind it."""
    lines = [f"probe: {report.teacher} -> {report.student} ({report.n_prompts} prompts, k={report.k}, "
             f"{report.seconds} s)"]
    labels = {"contract": "teacher contract", "thinking_pattern": "(i) thinking-pattern compatibility",
              "new_capability": "(ii) new capability"}
    for name, c in report.conditions.items():
        mark = "SKIP" if c["pass"] is None else "PASS" if c["pass"] else "FAIL"
        lines.append(f"  {mark}  {labels[name]}: {c['why']}")
    for name, c in report.contract.items():
        lines.append(f"        {'ok ' if c['pass'] else 'BAD'} {name}: {c['detail']}")
    advice = {
        "ok": "OPD should work with this pair.",
        "pattern_mismatch": "thinking-pattern mismatch: start with an off-policy cold start "
                            "(stages: [cold_start, opd]) or prompts in the teacher's template (docs/recipes.md).",
        "no_new_capability": "no new capability: the teacher knows little the student does not; expect little "
                             "gain from OPD. Use a teacher post-trained beyond the student (e.g. by RL).",
        "contract_violation": "contract violation: fix the pairing before training (see the BAD lines).",
    }
    if report.depth_decay:
        lines.append(f"  depth decay: {render_decay(report.depth_decay)}")
    lines.append(f"verdict: {report.verdict} -- {advice[report.verdict]}")
    if report.verdict == "ok" and report.conditions["new_capability"].get("shown_by") == "local":
        lines.append("  note: new capability shows locally only: the teacher corrects the student at its own states "
                     "but solves few more problems alone; its own errors can transfer too (docs/recipes.md §2)")
    return "\n".join(lines)


def render_decay(decay: dict) -> str:
    """One line: the advantage ± SE at each depth (with the slipped share where checked), then the slope ± SE."""
    parts = []
    for depth, row in decay["depths"].items():
        slipped = f", slipped {row['slipped_share']:.2f}" if "slipped_share" in row else ""
        parts.append(f"{depth}: {row['advantage']:+.3f} ± {row['advantage_se']:.3f}{slipped}")
    return (f"{'; '.join(parts)}; slope {decay['slope']:+.3f} ± {decay['slope_se']:.3f} per unit depth "
            f"({decay['n']} prompts)")


# ---------------------------------------------------------------- CLI
EXIT_STATUS = {"ok": 0, "no_new_capability": 3, "pattern_mismatch": 4, "contract_violation": 5}  # 2: bad input


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("exit status: " + ", ".join(f"{code} {verdict}" for verdict, code in EXIT_STATUS.items())
                     + ", 2 bad input")
    parser.add_argument("--config", default="configs/lab_cpu.yaml", help="run config: models, k, temperatures, data")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. model.teacher=PATH")
    parser.add_argument("--eval-set", default="", help="probe on the first --n-prompts problems of this held-out "
                        "evaluation set (data.eval_files) instead of the OPD prompts the teacher would score")
    parser.add_argument("--n-prompts", type=int, default=ProbeSettings.n_prompts)
    parser.add_argument("--depths", type=float, nargs="+", default=ProbeSettings().depths,
                        help="prefix depths (fractions of the student's response) for the continuation advantage")
    parser.add_argument("--prefix-check", choices=sorted(PREFIX_CHECKS), default="",
                        help="also report the share of the student's cut prefixes that already hold an error")
    parser.add_argument("--min-overlap-mass", type=float, default=ProbeSettings.min_overlap_mass)
    parser.add_argument("--min-advantage", type=float, default=ProbeSettings.min_advantage,
                        help="condition (ii), global: teacher-continuation advantage at depth 0")
    parser.add_argument("--min-local-advantage", type=float, default=ProbeSettings.min_local_advantage,
                        help="condition (ii), local: first-disagreement advantage")
    parser.add_argument("--threads", type=int, default=ProbeSettings.threads, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}")
        return 2
    settings = ProbeSettings(n_prompts=args.n_prompts, min_overlap_mass=args.min_overlap_mass,
                             min_advantage=args.min_advantage, min_local_advantage=args.min_local_advantage,
                             depths=list(args.depths), prefix_check=args.prefix_check, eval_set=args.eval_set,
                             threads=args.threads)
    try:
        reports = probe_teachers(cfg, settings)
    except DataError as err:  # a bad row of the config's data: one line, as the job says it
        print(f"error: {err}")
        return 2
    if not teachers.is_multi(cfg):
        report = reports[teachers.DEFAULT]
        print(report.to_json() if args.json else render(report))
        return EXIT_STATUS[report.verdict]
    if args.json:
        print(json.dumps({name: json.loads(r.to_json()) for name, r in reports.items()}))
    else:
        print("\n\n".join(f"teacher {name}:\n{render(r)}" for name, r in reports.items()))
    return max(EXIT_STATUS[r.verdict] for r in reports.values())  # the worst teacher's verdict
