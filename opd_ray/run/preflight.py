"""Everything checked before Ray starts, in one place: the config's values, the models, the student/teacher
contract, the task's data and a resume's config. Each failure is one line that names the field, file, row or
model (ConfigError / DataError / ResumeError); the job turns it into `error: ...` and exit code 2.

    cfg = load_config(path, overrides)        # schema, values, cross-field checks, models' config.json
    check_resume_config(checkpoint, cfg, ...) # only with --resume
    prepared = prepare(cfg)                   # model folders, contract, the task's rows (tokenised)

This module sits on the top floor (`opd_ray/run/`) because it is the one place that may know every package:
the task registry (`TASKS`, `build_task`) lives here, above the task types it chooses between.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from opd_ray.config.errors import ConfigError
from opd_ray.config import teachers
from opd_ray.config.load import as_list, eval_source, read_config, resolve_path, train_source
from opd_ray.config.schema import (
    BACKENDS,
    DTYPES,
    LAB_PROMPTS,
    MOPD_MODES,
    PLACEMENT_STRATEGIES,
    PROMPT_FILE_SUFFIXES,
    QUERY_FIELD,
    STAGE_ORDERS,
    DataConfig,
    OPDConfig,
    PlacementConfig,
)
from opd_ray.data import dataset_task
from opd_ray.data.task import Task
from opd_ray.data.verifiers import check_verifier_spec
from opd_ray.engines.weight_sync import problems as weight_sync_problems
from opd_ray.lab import arith_task
from opd_ray.lab.build import RECIPES
from opd_ray.loop.checkpoint import ResumeError, config_differences, config_fingerprint, read_state, verify_files
from opd_ray.loop.elastic import bounds
from opd_ray.loop.resume import manifest_differences, teacher_manifest
from opd_ray.models.contract import ContractError, failed_summary, pair_checks
from opd_ray.models.folders import (
    check_model_folder,
    end_of_response_ids,
    logit_width,
    model_config,
    resolve_model,
)
from opd_ray.models.loading import (default_attention, load_tokenizer, longest_sequence_tokens,
                                    native_cpu_bf16, native_dtype)
from opd_ray.objective.losses import (
    FULL_VOCAB_KINDS,
    FULL_VOCAB_LIMIT,
    OBJECTIVES,
    STUDENT_SIDE_SUPPORTS,
    SUPPORTS,
    WEIGHTS,
)
from opd_ray.runtime.process import THREAD_POLICIES

DEFAULT_VERIFIER = {"lab_arith": "lab_arith", "dataset": "math"}
TASK_BUILDERS = {"lab_arith": arith_task.build, "dataset": dataset_task.build}
TASKS = tuple(TASK_BUILDERS)


# --------------------------------------------------------------------------------------------- the config


def load_config(path: str | Path, overrides: list[str] = (), resolve_models: bool = True) -> OPDConfig:
    """YAML file + `dotted.key=value` overrides -> a validated OPDConfig object.

    With `resolve_models` (the job, the probe) a hub id in model.* is resolved to a local snapshot here, on the
    driver, and the checks that read the models' config.json run; without it only the schema and the values are
    checked (how the tests load the cluster recipes, whose models are not on this machine).
    """
    cfg = read_config(path, overrides)
    _check(bool(cfg.model.teacher) != bool(cfg.teachers), "model.teacher",
           "give model.teacher (one teacher) or teachers: (several, by name), not both" if cfg.teachers else
           "missing: give model.teacher (one teacher) or teachers: (several, by name)")
    cfg.model.student = resolve_path(cfg.model.student)
    cfg.model.teacher = resolve_path(cfg.model.teacher) if cfg.model.teacher else ""
    for spec in cfg.teachers.values():
        spec.model = resolve_path(spec.model)
    if cfg.data.teacher_prompts and not cfg.data.teacher_prompts.startswith(LAB_PROMPTS):
        cfg.data.teacher_prompts = resolve_path(cfg.data.teacher_prompts)
    normalise_data_files(cfg.data)
    if resolve_models:
        cfg.model.student = resolve_model(cfg.model.student, "model.student")
        if cfg.model.teacher:
            cfg.model.teacher = resolve_model(cfg.model.teacher, "model.teacher")
        for name, spec in cfg.teachers.items():
            spec.model = resolve_model(spec.model, f"teachers.{name}.model")
    validate(cfg, check_models=resolve_models)
    # resolved here, once, so every actor (and the stored config, and the frozen evaluations' key) names one value;
    # the job prints them (`compute_line`) once its input checks have passed
    if cfg.model.dtype == "native":
        cfg.model.dtype = native_dtype()
    if not cfg.model.attn_implementation:
        cfg.model.attn_implementation = default_attention(longest_sequence_tokens(cfg), runs_on_gpu(cfg))
    return cfg


def compute_line(cfg: OPDConfig) -> str:
    """What the models compute in, as resolved on the driver (model.dtype native, an empty attention)."""
    attention = cfg.model.attn_implementation or "the model's default"
    return (f"[opd] models compute in {cfg.model.dtype}, attention {attention} (prompt + response at most "
            f"{longest_sequence_tokens(cfg)} tokens)")


def runs_on_gpu(cfg: OPDConfig) -> bool:
    """Whether any actor of the run asks for a GPU (or the driver has one)."""
    placements = [cfg.placement.rollout, cfg.placement.learner] + [
        view.placement.teacher for view in teachers.views(cfg).values()]
    return torch.cuda.is_available() or any(p.num_gpus > 0 for p in placements)


def per_teacher(cfg: OPDConfig, check) -> None:
    """`check(view)` for every teacher's view of the config (opd_ray/config/teachers.py); in a run of named
    teachers an error names the teacher (`teacher.num_servers` -> `teachers.<name>.num_servers`)."""
    for name, view in teachers.views(cfg).items():
        try:
            check(view)
        except (ConfigError, ContractError) as err:
            if not cfg.teachers:
                raise
            raise type(err)(teacher_field(str(err), name)) from None


def teacher_field(message: str, name: str) -> str:
    for prefix, named in (("model.teacher", f"teachers.{name}.model"), ("teacher.", f"teachers.{name}."),
                          ("placement.teacher.", f"teachers.{name}.placement.")):
        if message.startswith(prefix):
            return named + message[len(prefix):]
    return f"teachers.{name}: {message}"


def normalise_data_files(data: DataConfig) -> None:
    """`data.train_files` and each `data.eval_files` entry become lists; the task's default verifier is filled
    in (the resolved config.yaml shows what ran). Local paths become absolute (the working directory first,
    then the repository), so actors and `ray job submit` read the same files."""
    data.train_files = [train_source(f) for f in as_list(data.train_files)]
    data.eval_files = {name: eval_source(spec) for name, spec in data.eval_files.items()}
    if not data.verifier and data.task in DEFAULT_VERIFIER:
        data.verifier = DEFAULT_VERIFIER[data.task]


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}: {message}")


def validate(cfg: OPDConfig, check_models: bool = True) -> None:
    """Range and cross-field checks; with `check_models`, reads the models' config.json (no weights) for the
    length budget and the vocabulary size."""
    for name in ("run.steps", "data.prompts_per_step", "data.samples_per_prompt", "data.eval_size",
                 "data.train_prompts", "rollout.num_engines", "rollout.max_new_tokens",
                 "objective.k", "learner.num_ranks", "pipeline.queue_size", "data.max_prompt_tokens",
                 "learner.micro_batch_tokens"):
        value = OmegaConf.select(OmegaConf.structured(cfg), name)
        _check(value >= 1, name, f"must be >= 1, got {value}")
    per_teacher(cfg, lambda view: validate_teacher(view, check_models))
    validate_mopd(cfg)
    validate_objective(cfg)
    validate_task(cfg)
    _check(cfg.model.dtype in DTYPES, "model.dtype", f"must be one of {DTYPES}, got {cfg.model.dtype!r}")
    _check(cfg.learner.zero_stage in (0, 1, 2, 3), "learner.zero_stage", f"must be 0-3, got {cfg.learner.zero_stage}")
    _check(cfg.learner.lr > 0, "learner.lr", f"must be > 0, got {cfg.learner.lr}")
    _check(cfg.ckpt.save_every >= 0, "ckpt.save_every", "must be >= 0")
    _check(cfg.ckpt.keep_last >= 1, "ckpt.keep_last", "must be >= 1")
    _check(cfg.learner.max_restarts >= 0, "learner.max_restarts", "must be >= 0")
    _check(cfg.pipeline.max_actor_restarts >= 0, "pipeline.max_actor_restarts", "must be >= 0")
    _check(cfg.learner.warmup_steps >= 0, "learner.warmup_steps", "must be >= 0")
    _check(cfg.rollout.shards_per_engine >= 1, "rollout.shards_per_engine", "must be >= 1")
    _check(cfg.pipeline.max_staleness >= 0, "pipeline.max_staleness", "must be >= 0")
    _check(cfg.pipeline.threads in THREAD_POLICIES, "pipeline.threads",
           f"must be one of {THREAD_POLICIES}, got {cfg.pipeline.threads!r}")
    _check(cfg.rollout.temperature > 0, "rollout.temperature", "must be > 0")
    _check(0.0 <= cfg.data.easy_mix < 1.0, "data.easy_mix", f"must be in [0, 1), got {cfg.data.easy_mix}")
    check_backend(cfg, "rollout")
    out_dir = Path(cfg.run.out_dir)
    _check(out_dir.is_dir() or not out_dir.exists(), "run.out_dir", f"{out_dir} exists and is not a folder")
    validate_placement(cfg.placement)
    for problem in weight_sync_problems(cfg):
        _check(False, "rollout.weight_sync", problem)
    validate_stages(cfg)
    validate_prompt_selection(cfg.data)
    _check(all(0.0 <= d < 1.0 for d in cfg.data.continuation_depths), "data.continuation_depths",
           f"each depth must be in [0, 1), got {cfg.data.continuation_depths}")
    rows = cfg.data.prompts_per_step * cfg.data.samples_per_prompt
    _check(rows >= cfg.learner.num_ranks, "learner.num_ranks",
           f"{cfg.learner.num_ranks} ranks need at least that many sequences per step, got {rows}")
    for lo_hi, name in ((cfg.data.train_n_terms, "data.train_n_terms"), (cfg.data.easy_n_terms, "data.easy_n_terms")):
        _check(len(lo_hi) == 2 and 2 <= lo_hi[0] <= lo_hi[1], name, f"must be [lo, hi] with 2 <= lo <= hi, got {lo_hi}")
    if check_models:
        check_context(cfg, "student")


def check_backend(cfg: OPDConfig, role: str) -> None:
    backend = getattr(cfg, role).backend
    _check(backend in BACKENDS, f"{role}.backend", f"must be one of {BACKENDS}, got {backend!r}")
    _check(backend != "vllm" or importlib.util.find_spec("vllm") is not None, f"{role}.backend",
           "'vllm' needs the vllm package (GPU: pip install '.[gpu]'; CPU: make test-vllm builds .venv-vllm)")


def check_context(cfg: OPDConfig, role: str) -> None:
    budget = cfg.data.max_prompt_tokens + cfg.rollout.max_new_tokens
    context = int(model_json(getattr(cfg.model, role), f"model.{role}").get("max_position_embeddings", 1 << 30))
    _check(budget <= context, "rollout.max_new_tokens",
           f"data.max_prompt_tokens + rollout.max_new_tokens = {budget} exceeds the {role}'s context of {context}")


def validate_teacher(view: OPDConfig, check_models: bool) -> None:
    """One teacher's settings (a view: opd_ray/config/teachers.py), and with `check_models` its model's size."""
    t = view.teacher
    for name in ("num_servers", "micro_batch_tokens"):
        _check(getattr(t, name) >= 1, f"teacher.{name}", f"must be >= 1, got {getattr(t, name)}")
    _check(t.temperature > 0, "teacher.temperature", "must be > 0")
    _check(t.cpus_per_server > 0 or view.placement.teacher.num_gpus > 0, "teacher.cpus_per_server", "must be > 0")
    _check(t.logprob_dtype in ("float16", "float32"), "teacher.logprob_dtype",
           f"must be 'float16' or 'float32', got {t.logprob_dtype!r}")
    if check_models:  # what the backend cannot ship at this vocabulary first: it names the setting to change
        validate_teacher_objective(view)
        check_context(view, "teacher")
    check_backend(view, "teacher")


def validate_mopd(cfg: OPDConfig) -> None:
    """mopd.* and the teacher names data.* refers to."""
    m, known = cfg.mopd, teachers.names(cfg)
    _check(m.mode in MOPD_MODES, "mopd.mode", f"must be one of {MOPD_MODES}, got {m.mode!r}")
    _check(not m.default_teacher or m.default_teacher in known, "mopd.default_teacher",
           f"{m.default_teacher!r} is not one of the teachers {known}")
    _check(0.0 <= m.min_token_share < 1.0, "mopd.min_token_share", f"must be in [0, 1), got {m.min_token_share}")
    for name, source in cfg.data.eval_files.items():
        _check(not source["teacher"] or source["teacher"] in known, f"data.eval_files.{name}.teacher",
               f"{source['teacher']!r} is not one of the teachers {known}")
        _check(bool(source["teacher"] or teachers.default_teacher(cfg)), f"data.eval_files.{name}.teacher",
               f"with several teachers each evaluation set names its domain's teacher (one of {known}), or set "
               "mopd.default_teacher")
    for source in cfg.data.train_files:
        if isinstance(source, dict):
            _check(source["teacher"] in known, "data.train_files",
                   f"{source['files']}: teacher {source['teacher']!r} is not one of the teachers {known}")
    _check(cfg.data.task == "dataset" or bool(teachers.default_teacher(cfg)), "mopd.default_teacher",
           f"task {cfg.data.task!r} names no teacher per prompt: set the teacher of its prompts (one of {known})")
    _check(not cfg.data.teacher_key or cfg.data.task == "dataset", "data.teacher_key",
           "names a field of your rows: task 'dataset' only")
    for name, spec in cfg.teachers.items():
        servers = teachers.view(cfg, name).teacher.num_servers
        lo, hi = bounds(spec, servers)
        _check(1 <= lo <= servers <= hi, f"teachers.{name}.min_servers",
               f"need 1 <= min_servers <= num_servers <= max_servers, got {lo}, {servers}, {hi}")
    _check(m.scale_patience >= 1, "mopd.scale_patience", f"must be >= 1, got {m.scale_patience}")
    if m.mode == "ensemble":
        o = cfg.objective
        _check(o.kind == "sampled_token" or (o.kind == "topk" and o.support == "student"), "mopd.mode",
               "ensemble averages the teachers' log-probs at the sampled token and the student's top-k: it needs "
               f"objective.kind sampled_token, or topk with support student (got {o.kind}, support {o.support})")

def validate_prompt_selection(data: DataConfig) -> None:
    _check(0.0 <= data.other_share <= 1.0, "data.other_share", f"must be in [0, 1], got {data.other_share}")
    _check(0.0 < data.dedup_threshold <= 1.0, "data.dedup_threshold", f"must be in (0, 1], got {data.dedup_threshold}")
    source = data.teacher_prompts
    if not source:
        return
    if source.startswith(LAB_PROMPTS):
        name = source.removeprefix(LAB_PROMPTS)
        _check(name in RECIPES, "data.teacher_prompts", f"no lab model {name!r}; one of {sorted(RECIPES)}")
        return
    path = Path(source)
    _check(path.is_file(), "data.teacher_prompts", f"file not found: {source}")
    _check(path.suffix in PROMPT_FILE_SUFFIXES, "data.teacher_prompts",
           f"{source}: must end in one of {PROMPT_FILE_SUFFIXES}")


def validate_placement(placement: PlacementConfig) -> None:
    _check(placement.strategy in PLACEMENT_STRATEGIES, "placement.strategy",
           f"must be one of {PLACEMENT_STRATEGIES}, got {placement.strategy!r}")
    _check(placement.learner_strategy in PLACEMENT_STRATEGIES[1:], "placement.learner_strategy",
           f"must be one of {PLACEMENT_STRATEGIES[1:]}, got {placement.learner_strategy!r}")
    for role in ("rollout", "teacher", "learner"):
        spec = getattr(placement, role)
        _check(not (spec.prefer_node_labels and placement.strategy), f"placement.{role}.prefer_node_labels",
               "not with placement.strategy: a placement group reserves every actor's node up front (node_labels)")
        _check(not (spec.prefer_node_labels and role == "learner"), "placement.learner.prefer_node_labels",
               "learner ranks are not replaced one by one (the group restarts): use placement.learner.node_labels")
        _check(spec.num_gpus >= 0, f"placement.{role}.num_gpus", f"must be >= 0, got {spec.num_gpus}")
        for name, amount in spec.resources.items():
            _check(name not in ("CPU", "GPU", "memory"), f"placement.{role}.resources.{name}",
                   "CPUs are rollout/teacher/learner.cpus_per_*, GPUs placement.<role>.num_gpus")
            _check(amount > 0, f"placement.{role}.resources.{name}", f"must be > 0, got {amount}")


def validate_stages(cfg: OPDConfig) -> None:
    _check(list(cfg.stages) in STAGE_ORDERS, "stages", f"must be one of {STAGE_ORDERS}, got {list(cfg.stages)}")
    c = cfg.cold_start
    _check(QUERY_FIELD in cfg.data.prompt_template and cfg.data.prompt_template.count(QUERY_FIELD) == 1,
           "data.prompt_template", f"must contain {QUERY_FIELD!r} once, got {cfg.data.prompt_template!r}")
    _check(0.0 <= cfg.data.entropy_collapse_ratio < 1.0, "data.entropy_collapse_ratio",
           f"must be in [0, 1), got {cfg.data.entropy_collapse_ratio}")
    if "cold_start" not in cfg.stages:
        return
    for name in ("prompts", "max_new_tokens", "steps", "batch_size"):
        _check(getattr(c, name) >= 1, f"cold_start.{name}", f"must be >= 1, got {getattr(c, name)}")
    _check(c.retries >= 0, "cold_start.retries", f"must be >= 0, got {c.retries}")
    _check(c.temperature > 0, "cold_start.temperature", f"must be > 0, got {c.temperature}")
    _check(c.lr > 0, "cold_start.lr", f"must be > 0, got {c.lr}")
    _check(c.filters in ("lab", "paper"), "cold_start.filters", f"must be 'lab' or 'paper', got {c.filters!r}")
    _check(0.0 < c.dedup_threshold <= 1.0, "cold_start.dedup_threshold", f"must be in (0, 1], got {c.dedup_threshold}")
    _check(len(c.n_terms) == 2 and 2 <= c.n_terms[0] <= c.n_terms[1], "cold_start.n_terms",
           f"must be [lo, hi] with 2 <= lo <= hi, got {c.n_terms}")
    _check(c.batch_size >= cfg.learner.num_ranks, "cold_start.batch_size",
           f"must be >= learner.num_ranks ({cfg.learner.num_ranks}), got {c.batch_size}")


def validate_task(cfg: OPDConfig) -> None:
    """data.* for the chosen task, and eval.*; the files themselves are read (and their rows checked) when the
    task is built, still before any actor starts (`build_task`, below)."""
    d, e = cfg.data, cfg.eval
    _check(d.task in TASKS, "data.task", f"must be one of {TASKS}, got {d.task!r}")
    problem = check_verifier_spec(d.verifier)
    _check(problem is None, "data.verifier", str(problem))
    _check(d.chat_template in ("auto", "none"), "data.chat_template", f"must be 'auto' or 'none', got {d.chat_template!r}")
    _check(e.avg_k >= 0, "eval.avg_k", f"must be >= 0, got {e.avg_k}")
    _check(e.temperature > 0, "eval.temperature", f"must be > 0, got {e.temperature}")
    _check(0.0 < e.top_p <= 1.0, "eval.top_p", f"must be in (0, 1], got {e.top_p}")
    _check(e.every >= 0, "eval.every", f"must be >= 0, got {e.every}")
    if d.task != "dataset":
        return
    _check(bool(d.train_files), "data.train_files", "task 'dataset' needs at least one training file")
    _check(bool(d.eval_files), "data.eval_files", "task 'dataset' needs at least one evaluation set "
           "(a mapping name -> file(s), e.g. {aime: data/aime.jsonl})")
    for name, source in d.eval_files.items():
        _check(bool(source["files"]), f"data.eval_files.{name}", "names no file")
    _check(not d.teacher_prompts, "data.teacher_prompts", "is for task 'lab_arith'; with task 'dataset' put the "
           "teacher's post-training prompts in data.train_files")


def validate_objective(cfg: OPDConfig) -> None:
    o = cfg.objective
    _check(o.kind in OBJECTIVES, "objective.kind", f"must be one of {OBJECTIVES}, got {o.kind!r}")
    _check(o.support in SUPPORTS, "objective.support", f"must be one of {SUPPORTS}, got {o.support!r}")
    _check(o.weights in WEIGHTS, "objective.weights", f"must be one of {WEIGHTS}, got {o.weights!r}")
    _check(0.0 <= o.beta <= 1.0, "objective.beta", f"must be in [0, 1], got {o.beta}")
    for name in ("outcome_weight", "is_cap", "loss_clamp"):
        _check(getattr(o, name) >= 0, f"objective.{name}", f"must be >= 0, got {getattr(o, name)}")
    _check(o.diagnostics_every >= 1, "objective.diagnostics_every", f"must be >= 1, got {o.diagnostics_every}")
    _check(o.diagnostics_k >= 0, "objective.diagnostics_k", f"must be >= 0 (0: objective.k), got {o.diagnostics_k}")


def validate_teacher_objective(cfg: OPDConfig) -> None:
    """The objective against one teacher's model (a view): k within the shared ids, full-vocabulary objectives
    only at small vocabularies, and what a vLLM teacher can ship."""
    o = cfg.objective
    vocab = int(model_json(cfg.model.teacher, "model.teacher").get("vocab_size", 0))
    shared = min(vocab, int(model_json(cfg.model.student, "model.student").get("vocab_size", 0)))
    _check(o.k <= shared, "objective.k", f"must be <= the {shared} ids student and teacher share "
           f"(model.student, model.teacher), got {o.k}")
    _check(o.diagnostics_k <= shared, "objective.diagnostics_k", f"must be <= the {shared} ids student and teacher "
           f"share (model.student, model.teacher), got {o.diagnostics_k}")
    vllm_teacher = cfg.teacher.backend == "vllm"
    if not (o.kind in FULL_VOCAB_KINDS or vllm_teacher):
        return
    _check(vocab <= FULL_VOCAB_LIMIT or o.kind not in FULL_VOCAB_KINDS, "objective.kind", f"{o.kind!r} ships the "
           f"teacher's full distribution ({vocab} log-probs per token); use topk or forward_kl for large vocabularies")
    if vllm_teacher and vocab > FULL_VOCAB_LIMIT:  # it ships its own top-k and the sampled token only (docs/vllm.md)
        _check(o.kind != "topk" or o.support not in STUDENT_SIDE_SUPPORTS, "objective.support",
               f"{o.support!r} needs the teacher's log-probs at the student's top-k ids, which the vLLM teacher cannot "
               f"ship at a vocabulary of {vocab} (> {FULL_VOCAB_LIMIT}); use teacher.backend=hf (or support teacher)")
        _check(cfg.teacher.temperature == 1.0, "teacher.temperature", f"the vLLM teacher at a vocabulary of {vocab} "
               "ships top-k log-probs at temperature 1 only; use teacher.backend=hf")


def model_json(path: str, field_name: str) -> dict:
    """config.json of a model folder (`opd_ray.models.folders` reads it the same way)."""
    _check((Path(path) / "config.json").is_file(), field_name,
           f"no Hugging Face model folder at {path!r} (missing config.json)")
    return model_config(path)


# ---------------------------------------------------------------------------------- models, task, resume


def check_pairs(cfg: OPDConfig) -> None:
    """Every teacher fits the student (`check_pair`); the error names the teacher."""
    check_model_folder(cfg.model.student, "model.student")
    per_teacher(cfg, check_pair)


def check_pair(cfg: OPDConfig) -> None:
    """Both model folders are complete and the pair honours the contract (`opd_ray.models.contract`); else one
    ContractError line."""
    for role in ("student", "teacher"):
        check_model_folder(getattr(cfg.model, role), f"model.{role}")
    s_tok, t_tok = (load_tokenizer(path, cfg.model.trust_remote_code) for path in (cfg.model.student, cfg.model.teacher))
    ends = [end_of_response_ids(path, tok) for path, tok in ((cfg.model.student, s_tok), (cfg.model.teacher, t_tok))]
    checks = pair_checks(s_tok, t_tok, logit_width(cfg.model.student), logit_width(cfg.model.teacher), *ends)
    if any(not c["pass"] for c in checks.values()):
        raise ContractError(f"model.teacher: the teacher does not fit the student ({failed_summary(checks)}); "
                            f"student {cfg.model.student}, teacher {cfg.model.teacher}")


def build_task(cfg: OPDConfig, tokenizer) -> Task:
    """The task `data.task` names, built from the config and the student's tokenizer (before any actor starts):
    `lab_arith` (opd_ray/lab/arith_task.py) or `dataset` (opd_ray/data/dataset_task.py)."""
    return TASK_BUILDERS[cfg.data.task](cfg, tokenizer)


@dataclass
class Prepared:
    """What the driver checked and built before any actor exists."""
    task: Task
    tokenizer: object  # the student's


def prepare(cfg: OPDConfig) -> Prepared:
    """Model folders and the student/teacher contract, then the task (rows read, rendered, filtered).
    Raises ConfigError / DataError with one line naming the field, file or row."""
    check_pairs(cfg)
    tokenizer = load_tokenizer(cfg.model.student, cfg.model.trust_remote_code)
    task = build_task(cfg, tokenizer)
    sizes = ", ".join(f"{name} {len(examples)}" for name, examples in task.eval_sets.items())
    print(f"[opd] task {task.name}: {len(task.train)} training prompts; evaluation sets: {sizes}; "
          f"verifier {task.verifier}", flush=True)
    for note in task.notes:
        print(f"[opd] {note}", flush=True)
    if cfg.model.dtype == "bfloat16" and not torch.cuda.is_available() and not native_cpu_bf16():
        print("[opd] model.dtype bfloat16: this node's CPU has no bfloat16 matmul instructions (AVX-512 BF16, AMX), "
              "so torch emulates them, several times slower than float32 (docs/speed.md)", flush=True)
    return Prepared(task, tokenizer)


def check_resume_config(checkpoint: Path, cfg: OPDConfig, allow_change: bool) -> None:
    """Refuse a checkpoint whose files differ from what its state.json lists, and a resume under a different
    config unless allowed (either way, print what differs)."""
    verify_files(checkpoint)
    state = read_state(checkpoint)
    diffs = config_differences(state["config"], config_fingerprint(cfg))
    if "teachers" in state:  # checkpoints from before the manifest have none
        diffs += manifest_differences(state["teachers"], teacher_manifest(cfg))
    if not diffs:
        return
    listing = "\n  ".join(diffs)
    if not allow_change:
        raise ResumeError(f"the config differs from the checkpoint's ({checkpoint}):\n  {listing}\n"
                          "pass --allow-config-change to resume anyway")
    print(f"[opd] resuming with a changed config:\n  {listing}", flush=True)
