"""The run configuration: a typed schema, YAML + dotted CLI overrides (OmegaConf), validated before Ray starts.

Every error names the offending field, e.g. `objective.k: must be >= 1, got 0`.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from opd_ray.config_errors import ConfigError, closest_key_hint, mismatched_key, yaml_error_line
from opd_ray.objectives import FULL_VOCAB_KINDS, FULL_VOCAB_LIMIT, OBJECTIVES, STUDENT_SIDE_SUPPORTS, SUPPORTS, WEIGHTS
from opd_ray.runtime import THREAD_POLICIES

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("hf", "vllm")
PLACEMENT_STRATEGIES = ("", "PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
STAGE_ORDERS = (["opd"], ["cold_start", "opd"], ["cold_start"])  # cold_start alone: only the SFT'd student
QUERY_FIELD = "{q}"
LAB_PROMPTS = "lab:"  # data.teacher_prompts=lab:<model>: a lab model's own post-training prompts
PROMPT_FILE_SUFFIXES = (".txt", ".jsonl", ".parquet")
DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class RunConfig:
    name: str = "opd"
    seed: int = 0
    out_dir: str = "runs"  # each run writes to out_dir/<name>-<timestamp>
    steps: int = 100
    fault: str = ""  # test-only fault injection, see opd_ray/faults.py


@dataclass
class ModelConfig:
    student: str = MISSING  # a Hugging Face folder, or a hub id (resolved once, on the driver: opd_ray/hf_models.py)
    teacher: str = MISSING
    trust_remote_code: bool = False
    dtype: str = "auto"  # auto | float32 | bfloat16; auto: float32 on CPU, the checkpoint's dtype on a GPU
    attn_implementation: str = ""  # passed to from_pretrained (e.g. sdpa, eager, flash_attention_2); "" = default


@dataclass
class DataConfig:
    task: str = "lab_arith"  # lab_arith (the lab's generated arithmetic) | dataset (your files; docs/your-data.md)
    # --- task dataset: the user's files. A path (.jsonl, .json, .parquet, a datasets.save_to_disk folder) or, on a
    # cluster, a hub dataset id with an optional split; a list of them is concatenated (opd_ray/datasets.py)
    train_files: Any = field(default_factory=list)
    # name -> file(s), or {files, prompt_key, answer_key} when a benchmark names its fields differently; each set is
    # reported side by side, the first one is the headline
    eval_files: dict[str, Any] = field(default_factory=dict)
    prompt_key: str = "prompt"  # a string, or a chat `messages` list of {role, content}
    answer_key: str = "answer"  # the reference the verifier compares with
    system_prompt: str = ""  # prepended as a system message (chat template) or as text (none)
    chat_template: str = "auto"  # auto: the tokenizer's chat template when it has one | none: raw text
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {enable_thinking: false} for Qwen3
    verifier: str = ""  # math | exact | lab_arith | module:function; "" = the task's default (opd_ray/verifiers.py)
    # --- task lab_arith
    train_prompts: int = 4096  # size of the OPD prompt set (lab: generated, seeded)
    train_n_terms: list[int] = field(default_factory=lambda: [4, 5])
    easy_mix: float = 0.0  # share of easy-range prompts mixed into OPD batches
    easy_n_terms: list[int] = field(default_factory=lambda: [2, 3])
    eval_size: int = 256  # lab_arith: problems per held-out set
    # teacher-continuation advantage at evaluation: prefix depths as fractions of the student's response
    continuation_depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75])
    prompts_per_step: int = 64
    samples_per_prompt: int = 1
    max_prompt_tokens: int = 24  # longer prompts are dropped (and counted); the length budget of the engines
    prompt_template: str = "{q}"  # OPD prompts are rendered as this, {q} = the task's prompt (opd_ray/prompts.py)
    entropy_collapse_ratio: float = 0.05  # warn when student entropy < this x its first-step value; 0 = off
    # content alignment (the paper's §3.2 b): OPD prompts from the teacher's post-training data. A .txt (one prompt
    # per line), .jsonl or .parquet (a "prompt" field) file, used verbatim, or lab:<model> for a lab model's own
    # SFT prompts. Empty: the task's prompts. See opd_ray/data.py opd_prompt_set.
    teacher_prompts: str = ""
    other_share: float = 0.0  # with teacher_prompts: this share of the OPD set comes from the task's own prompts
    dedup_threshold: float = 1.0  # with teacher_prompts: drop near-duplicates (cosine >= this) within the set and
    #                               of the held-out eval problems; 1.0 = exact duplicates only


@dataclass
class RolloutConfig:
    backend: str = "hf"  # "hf" or "vllm"
    num_engines: int = 1
    max_new_tokens: int = 56
    temperature: float = 1.0  # student log-probs are taken at this temperature too
    cpus_per_engine: float = 1.0
    # each engine's share of a step is sampled as this many shards in turn; the teacher scores a shard as soon as it
    # is sampled, while the engine samples the next (opd_ray/controller.py launch_rollouts)
    shards_per_engine: int = 1
    stop: list[str] = field(default_factory=list)  # a response also ends at these strings (and at every EOS id)
    # how new weights reach the engines: object_store | nccl | ipc | gloo | auto (opd_ray/weight_sync.py, docs/vllm.md)
    weight_sync: str = "object_store"


@dataclass
class TeacherConfig:
    backend: str = "hf"  # "hf" or "vllm" (above 4096 ids only its own top-k: docs/vllm.md)
    num_servers: int = 1
    temperature: float = 1.0  # teacher logits are divided by this before log_softmax
    cpus_per_server: float = 1.0
    logprob_dtype: str = "float16"  # of the log-probs it ships ("float16": the compact payload, or "float32")
    # padded tokens (rows x (prompt + response)) per forward pass of teacher scoring, and of the HF prompt pass of
    # rollout and teacher sampling: bounds their logits (opd_ray/microbatch.py; docs/memory.md)
    micro_batch_tokens: int = 8192


@dataclass
class ObjectiveConfig:
    """The OPD objective (opd_ray/objectives.py). Student and teacher log-probs are taken at temperature
    rollout.temperature and teacher.temperature respectively (both 1.0 by default)."""
    kind: str = "topk"  # sampled_token | topk | full_reverse_kl | forward_kl | gjsd
    k: int = 4  # top-k of the objective and of the overlap metrics (the paper: 16; the lab's vocabulary is 18)
    support: str = "student"  # topk: student | teacher | intersection | union | symdiff
    weights: str = "student"  # topk: renormalised probabilities of student | teacher, or uniform
    beta: float = 0.5  # gjsd: 0 = forward KL(q||p), 1 = reverse KL(p||q)
    outcome_weight: float = 0.0  # adds this x (verifier reward - batch mean) as a sequence-level advantage
    is_cap: float = 0.0  # truncated importance weight min(pi_learner/pi_rollout, cap) per token; 0 = off
    loss_clamp: float = 0.0  # per-token loss clamped to [-c, c]; 0 = off
    diagnostics_every: int = 10  # steps between position-binned entropies and the reward AUROC


@dataclass
class LearnerConfig:
    num_ranks: int = 1
    zero_stage: int = 1
    lr: float = 1e-3
    warmup_steps: int = 0  # linear learning-rate warm-up from 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    cpus_per_rank: float = 1.0
    master_port: int = 0  # 0: pick a free port
    max_restarts: int = 2  # a dead rank restarts the whole group from the last checkpoint, this many times
    gradient_checkpointing: bool = False  # recompute activations in backward (memory for compute)
    # padded tokens (rows x (prompt + response)) per forward/backward pass; a larger shard accumulates gradients
    # over micro-batches (still one optimizer step, the same loss). The default holds a lab step (64 x (24 + 56))
    # in one pass and keeps a SmolLM2 rank (49k ids, fp32; ~1.9 MiB per token) near 14 GB (docs/memory.md)
    micro_batch_tokens: int = 6144


@dataclass
class EvalConfig:
    """Held-out evaluation (opd_ray/evaluation.py): every set greedily and as avg@k (k samples per problem at
    `temperature`, `top_p`: the paper's avg@16 at T=0.7, top-p 0.95), before training, every `every` steps, at
    the end."""
    avg_k: int = 16  # 0: greedy only
    temperature: float = 0.7
    top_p: float = 0.95
    every: int = 0  # steps between evaluations during training; 0: before and after only


@dataclass
class PipelineConfig:
    max_staleness: int = 0  # in policy versions; 0 = synchronous on-policy
    queue_size: int = 2  # bound on rollout batches in flight
    rollout_timeout_s: float = 300.0
    teacher_timeout_s: float = 300.0
    learner_timeout_s: float = 600.0
    sync_timeout_s: float = 120.0
    # a rollout engine or teacher server that dies or misses its timeout is replaced, this many times per actor
    # (opd_ray/fleet.py); past that the run stops naming it
    max_actor_restarts: int = 3
    startup_timeout_s: float = 600.0
    # torch threads per actor (opd_ray/runtime.py): reserved (default) | auto | node. auto: every core of the node while the
    # stages run one after another (max_staleness 0), the reserved cpus_per_* when they overlap
    threads: str = "reserved"


@dataclass
class CheckpointConfig:
    save_every: int = 0  # steps between resume checkpoints (and HF exports); 0: only at the end
    keep_last: int = 2
    export_hf: bool = True  # also write the student as a Hugging Face folder at each checkpoint


@dataclass
class RolePlacement:
    """Where the actors of one role may run. CPUs per actor stay in rollout/teacher/learner.cpus_per_*."""
    num_gpus: float = 0.0  # per actor (per engine, server or rank); 0 on CPU
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per actor, e.g. {rollout_node: 0.01}
    node_labels: dict[str, str] = field(default_factory=dict)  # node labels required (`ray start --labels`)


@dataclass
class PlacementConfig:
    # "": each actor is scheduled on its own; PACK/SPREAD/STRICT_PACK/STRICT_SPREAD: one placement group with a
    # bundle per actor, reserved all at once before any actor starts (nothing starts if the cluster cannot fit it)
    strategy: str = ""
    rollout: RolePlacement = field(default_factory=RolePlacement)
    teacher: RolePlacement = field(default_factory=RolePlacement)
    learner: RolePlacement = field(default_factory=RolePlacement)


@dataclass
class ColdStartConfig:
    """Off-policy cold start (`stages: [cold_start, opd]`, shared/paper-notes.md §3.1): the teacher answers
    `prompts` prompts, the rejection filters drop bad answers, the learner group SFT-trains the student on the rest;
    OPD then starts from that student, on prompts deduplicated against these."""
    prompts: int = 2048
    n_terms: list[int] = field(default_factory=lambda: [2, 5])  # lab: difficulty range of the SFT prompts
    temperature: float = 0.7  # the paper's teacher sampling temperature for cold-start data
    max_new_tokens: int = 56
    retries: int = 3  # prompts whose answers were rejected are sampled again, this many times
    filters: str = "lab"  # rejection thresholds: "lab" (scaled to short texts) or "paper" (opd_ray/filters.py)
    require_correct: bool = False  # also reject answers the task's verifier marks wrong (the paper checks form only)
    steps: int = 150  # SFT optimizer steps
    batch_size: int = 64
    lr: float = 5e-4  # reached after a linear warm-up over the first 10% of the steps
    dedup_threshold: float = 1.0  # OPD vs SFT prompts: 1.0 exact only; < 1 also near-duplicates (cosine)


@dataclass
class OPDConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    ckpt: CheckpointConfig = field(default_factory=CheckpointConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    stages: list[str] = field(default_factory=lambda: ["opd"])  # in order; see STAGES
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)


def load_config(path: str | Path, overrides: list[str] = (), resolve_models: bool = True) -> OPDConfig:
    """YAML file + `dotted.key=value` overrides -> a validated OPDConfig object.

    With `resolve_models` (the job, the probe) a hub id in model.* is resolved to a local snapshot here, on the
    driver, and the checks that read the models' config.json run; without it only the schema and the values are
    checked (how the tests load the cluster recipes, whose models are not on this machine).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    schema = OmegaConf.structured(OPDConfig)
    try:
        loaded = OmegaConf.load(path)
    except yaml.YAMLError as err:
        raise ConfigError(yaml_error_line(err, path)) from None
    try:
        merged = OmegaConf.merge(schema, loaded, OmegaConf.from_dotlist(list(overrides)))
        cfg: OPDConfig = OmegaConf.to_object(merged)
    except yaml.YAMLError as err:  # a value in a dotted override
        raise ConfigError(f"overrides: {yaml_error_line(err, 'a key=value override')}") from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "config"
        message = str(getattr(err, "msg", err)).strip().splitlines()[0]  # OmegaConf appends a multi-line dump
        if isinstance(err, ConfigKeyError) and "Did you mean" not in message:
            message += closest_key_hint(schema, key)
        raise ConfigError(f"{key}: {message} (in {path} or overrides)") from None
    except TypeError as err:  # OmegaConf raises a bare TypeError when a list meets a mapping, or the reverse
        raise ConfigError(f"{mismatched_key(schema, overrides)}: {err} (a list where a mapping is expected, or the "
                          f"reverse; in {path} or overrides)") from None
    cfg.model.student = resolve_path(cfg.model.student)
    cfg.model.teacher = resolve_path(cfg.model.teacher)
    if cfg.data.teacher_prompts and not cfg.data.teacher_prompts.startswith(LAB_PROMPTS):
        cfg.data.teacher_prompts = resolve_path(cfg.data.teacher_prompts)
    normalise_data_files(cfg.data)
    if resolve_models:
        from opd_ray.model_files import resolve_model

        for role in ("student", "teacher"):
            setattr(cfg.model, role, resolve_model(getattr(cfg.model, role), f"model.{role}"))
    validate(cfg, check_models=resolve_models)
    return cfg


def normalise_data_files(data: DataConfig) -> None:
    """`data.train_files` and each `data.eval_files` entry become lists; the task's default verifier is filled
    in (the resolved config.yaml shows what ran). Local paths become absolute (the working directory first,
    then the repository), so actors and `ray job submit` read the same files."""
    from opd_ray.tasks import DEFAULT_VERIFIER

    data.train_files = [local_or_given(f) for f in as_list(data.train_files)]
    data.eval_files = {name: eval_source(spec) for name, spec in data.eval_files.items()}
    if not data.verifier and data.task in DEFAULT_VERIFIER:
        data.verifier = DEFAULT_VERIFIER[data.task]


def as_list(value) -> list:
    return [] if value in (None, "") else ([value] if isinstance(value, str) else list(value))


def eval_source(spec) -> dict:
    """One `data.eval_files` entry as {files: [...], prompt_key, answer_key} (keys "" = data.prompt_key/answer_key)."""
    spec = dict(spec) if isinstance(spec, dict) else {"files": spec}
    unknown = set(spec) - {"files", "prompt_key", "answer_key"}
    if unknown:
        raise ConfigError(f"data.eval_files: unknown key(s) {sorted(unknown)}; an entry is file(s) or "
                          "{files, prompt_key, answer_key}")
    return {"files": [local_or_given(f) for f in as_list(spec.get("files"))],
            "prompt_key": spec.get("prompt_key", ""), "answer_key": spec.get("answer_key", "")}


def local_or_given(name) -> str:
    name = str(name)
    for base in (Path.cwd(), REPO_ROOT):
        if (base / name).exists():
            return str((base / name).resolve())
    return name  # a hub dataset id, or a missing file (the task names it)


def resolve_path(name: str) -> str:
    """Relative model paths are relative to the repository root, so `ray job submit` works from anywhere."""
    candidate = REPO_ROOT / name
    return str(candidate) if not Path(name).is_absolute() and candidate.exists() else name


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{field_name}: {message}")


def validate(cfg: OPDConfig, check_models: bool = True) -> None:
    """Range and cross-field checks; with `check_models`, reads the models' config.json (no weights) for the
    length budget and the vocabulary size."""
    for name in ("run.steps", "data.prompts_per_step", "data.samples_per_prompt", "data.eval_size",
                 "data.train_prompts", "rollout.num_engines", "rollout.max_new_tokens", "teacher.num_servers",
                 "objective.k", "learner.num_ranks", "pipeline.queue_size", "data.max_prompt_tokens",
                 "learner.micro_batch_tokens", "teacher.micro_batch_tokens"):
        value = OmegaConf.select(OmegaConf.structured(cfg), name)
        _check(value >= 1, name, f"must be >= 1, got {value}")
    validate_objective(cfg, check_models)
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
    _check(cfg.teacher.temperature > 0, "teacher.temperature", "must be > 0")
    _check(0.0 <= cfg.data.easy_mix < 1.0, "data.easy_mix", f"must be in [0, 1), got {cfg.data.easy_mix}")
    for role in ("rollout", "teacher"):
        backend = getattr(cfg, role).backend
        _check(backend in BACKENDS, f"{role}.backend", f"must be one of {BACKENDS}, got {backend!r}")
        _check(backend != "vllm" or importlib.util.find_spec("vllm") is not None, f"{role}.backend",
               "'vllm' needs the vllm package (GPU: pip install '.[gpu]'; CPU: make test-vllm builds .venv-vllm)")
    validate_placement(cfg.placement)
    from opd_ray.weight_sync import problems as weight_sync_problems

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
    budget = cfg.data.max_prompt_tokens + cfg.rollout.max_new_tokens
    for role in ("student", "teacher") if check_models else ():
        context = int(model_json(getattr(cfg.model, role), f"model.{role}").get("max_position_embeddings", 1 << 30))
        _check(budget <= context, "rollout.max_new_tokens",
               f"data.max_prompt_tokens + rollout.max_new_tokens = {budget} exceeds the {role}'s context of {context}")


def validate_prompt_selection(data: DataConfig) -> None:
    _check(0.0 <= data.other_share <= 1.0, "data.other_share", f"must be in [0, 1], got {data.other_share}")
    _check(0.0 < data.dedup_threshold <= 1.0, "data.dedup_threshold", f"must be in (0, 1], got {data.dedup_threshold}")
    source = data.teacher_prompts
    if not source:
        return
    if source.startswith(LAB_PROMPTS):
        from opd_ray.lab.build import RECIPES  # the lab's model names (imports torch; only when asked for)

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
    for role in ("rollout", "teacher", "learner"):
        spec = getattr(placement, role)
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
    task is built, still before any actor starts (opd_ray/tasks.py)."""
    from opd_ray.tasks import TASKS
    from opd_ray.verifiers import check_verifier_spec

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


def validate_objective(cfg: OPDConfig, check_models: bool = True) -> None:
    o = cfg.objective
    _check(o.kind in OBJECTIVES, "objective.kind", f"must be one of {OBJECTIVES}, got {o.kind!r}")
    _check(o.support in SUPPORTS, "objective.support", f"must be one of {SUPPORTS}, got {o.support!r}")
    _check(o.weights in WEIGHTS, "objective.weights", f"must be one of {WEIGHTS}, got {o.weights!r}")
    _check(0.0 <= o.beta <= 1.0, "objective.beta", f"must be in [0, 1], got {o.beta}")
    for name in ("outcome_weight", "is_cap", "loss_clamp"):
        _check(getattr(o, name) >= 0, f"objective.{name}", f"must be >= 0, got {getattr(o, name)}")
    _check(o.diagnostics_every >= 1, "objective.diagnostics_every", f"must be >= 1, got {o.diagnostics_every}")
    _check(cfg.teacher.logprob_dtype in ("float16", "float32"), "teacher.logprob_dtype",
           f"must be 'float16' or 'float32', got {cfg.teacher.logprob_dtype!r}")
    vllm_teacher = cfg.teacher.backend == "vllm"
    if not check_models or not (o.kind in FULL_VOCAB_KINDS or vllm_teacher):
        return
    vocab = int(model_json(cfg.model.teacher, "model.teacher").get("vocab_size", 0))
    _check(vocab <= FULL_VOCAB_LIMIT or o.kind not in FULL_VOCAB_KINDS, "objective.kind", f"{o.kind!r} ships the "
           f"teacher's full distribution ({vocab} log-probs per token); use topk or forward_kl for large vocabularies")
    if vllm_teacher and vocab > FULL_VOCAB_LIMIT:  # it ships its own top-k and the sampled token only (docs/vllm.md)
        _check(o.kind != "topk" or o.support not in STUDENT_SIDE_SUPPORTS, "objective.support",
               f"{o.support!r} needs the teacher's log-probs at the student's top-k ids, which the vLLM teacher cannot "
               f"ship at a vocabulary of {vocab} (> {FULL_VOCAB_LIMIT}); use teacher.backend=hf (or support teacher)")
        _check(cfg.teacher.temperature == 1.0, "teacher.temperature", f"the vLLM teacher at a vocabulary of {vocab} "
               "ships top-k log-probs at temperature 1 only; use teacher.backend=hf")


def model_json(path: str, field_name: str) -> dict:
    """config.json of a model folder (opd_ray/model_files.py reads it the same way)."""
    _check((Path(path) / "config.json").is_file(), field_name,
           f"no Hugging Face model folder at {path!r} (missing config.json)")
    from opd_ray.model_files import model_config

    return model_config(path)


def to_yaml(cfg: OPDConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
