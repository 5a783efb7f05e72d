"""The run configuration's typed schema: one dataclass per section, every field with a comment.

`opd_ray.config.load.read_config` fills it from YAML and dotted overrides; the values are checked against each
other and against the models and data in `opd_ray.run.preflight`, before Ray starts. This package knows
nothing of OPD's code: the allowed values below are the schema's own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

BACKENDS = ("hf", "vllm")
PLACEMENT_STRATEGIES = ("", "PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
STAGE_ORDERS = (["opd"], ["cold_start", "opd"], ["cold_start"])  # cold_start alone: only the SFT'd student
QUERY_FIELD = "{q}"
LAB_PROMPTS = "lab:"  # data.teacher_prompts=lab:<model>: a lab model's own post-training prompts
PROMPT_FILE_SUFFIXES = (".txt", ".jsonl", ".parquet")
DTYPES = ("auto", "native", "float32", "bfloat16")
MOPD_MODES = ("routing", "ensemble")


@dataclass
class RunConfig:
    name: str = "opd"
    seed: int = 0
    out_dir: str = "runs"  # each run writes to out_dir/<name>-<timestamp>
    steps: int = 100
    fault: str = ""  # test-only fault injection, see opd_ray/runtime/faults.py


@dataclass
class ModelConfig:
    student: str = MISSING  # a Hugging Face folder, or a hub id (resolved once, on the driver: models/folders.py)
    teacher: str = ""  # the one-teacher shorthand (a teacher named `default`); several teachers: `teachers:`
    trust_remote_code: bool = False
    # auto | native | float32 | bfloat16. auto: float32 on a CPU, bfloat16 on a GPU. native: bfloat16 wherever the
    # hardware computes it natively (a GPU; a CPU with AVX-512 BF16 or AMX), else float32; resolved once, on the driver
    dtype: str = "auto"
    attn_implementation: str = ""  # passed to from_pretrained (e.g. sdpa, eager, flash_attention_2); "" = default


@dataclass
class DataConfig:
    task: str = "lab_arith"  # lab_arith (the lab's generated arithmetic) | dataset (your files; docs/your-data.md)
    # --- task dataset: the user's files. A path (.jsonl, .json, .parquet, a datasets.save_to_disk folder) or, on a
    # cluster, a hub dataset id with an optional split; a list of them is concatenated (opd_ray/data/rows.py)
    train_files: Any = field(default_factory=list)
    # name -> file(s), or {files, prompt_key, answer_key} when a benchmark names its fields differently; each set is
    # reported side by side, the first one is the headline
    eval_files: dict[str, Any] = field(default_factory=dict)
    # several teachers (`teachers:`): the row field that names a row's teacher; a train_files entry may instead be
    # {files, teacher}; rows that name none go to mopd.default_teacher (docs/multi-teacher.md)
    teacher_key: str = ""
    prompt_key: str = "prompt"  # a string, or a chat `messages` list of {role, content}
    answer_key: str = "answer"  # the reference the verifier compares with
    system_prompt: str = ""  # prepended as a system message (chat template) or as text (none)
    chat_template: str = "auto"  # auto: the tokenizer's chat template when it has one | none: raw text
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {enable_thinking: false} for Qwen3
    verifier: str = ""  # math | exact | lab_arith | module:function; "" = the task's default (data/verifiers.py)
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
    prompt_template: str = "{q}"  # OPD prompts are rendered as this, {q} = the task's prompt (data/prompt_selection.py)
    entropy_collapse_ratio: float = 0.05  # warn when student entropy < this x its first-step value; 0 = off
    # content alignment (the paper's §3.2 b): OPD prompts from the teacher's post-training data. A .txt (one prompt
    # per line), .jsonl or .parquet (a "prompt" field) file, used verbatim, or lab:<model> for a lab model's own
    # SFT prompts. Empty: the task's prompts. See opd_ray/lab/arith_task.py opd_prompt_set.
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
    # is sampled, while the engine samples the next (opd_ray/loop/controller.py launch_rollouts)
    shards_per_engine: int = 1
    stop: list[str] = field(default_factory=list)  # a response also ends at these strings (and at every EOS id)
    # how new weights reach the engines: object_store | nccl | ipc | gloo | auto (engines/weight_sync.py, docs/vllm.md)
    weight_sync: str = "object_store"


@dataclass
class TeacherConfig:
    backend: str = "hf"  # "hf" or "vllm" (above 4096 ids only its own top-k: docs/vllm.md)
    num_servers: int = 1
    temperature: float = 1.0  # teacher logits are divided by this before log_softmax
    cpus_per_server: float = 1.0
    logprob_dtype: str = "float16"  # of the log-probs it ships ("float16": the compact payload, or "float32")
    # padded tokens (rows x (prompt + response)) per forward pass of teacher scoring, and of the HF prompt pass of
    # rollout and teacher sampling: bounds their logits (opd_ray/trajectory/microbatch.py; docs/memory.md)
    micro_batch_tokens: int = 8192


@dataclass
class NamedTeacher:
    """One entry of `teachers:` (opd_ray/config/teachers.py). Every field left unset (null) takes the value of
    the `teacher:` section, so shared settings are written once."""
    model: str = MISSING  # a Hugging Face folder or hub id, as model.teacher
    backend: str | None = None
    num_servers: int | None = None
    temperature: float | None = None
    cpus_per_server: float | None = None
    logprob_dtype: str | None = None
    micro_batch_tokens: int | None = None
    placement: RolePlacement | None = None  # null: placement.teacher
    # an elastic pool (opd_ray/loop/elastic.py): between min_servers and max_servers, sized from its measured load;
    # null: num_servers, fixed
    min_servers: int | None = None
    max_servers: int | None = None


@dataclass
class MOPDConfig:
    """Several teachers for one student (docs/multi-teacher.md)."""
    # routing: each sample is scored by the teacher its row names (NeMo-RL, TRL, verl); ensemble: every teacher
    # scores every sample and the per-token signals are averaged (slime's averaged advantages; N x teacher compute)
    mode: str = "routing"
    default_teacher: str = ""  # the teacher of rows that name none; "": such a row is an error
    min_token_share: float = 0.0  # warn once, naming the teacher, when its share of a step's tokens falls below this
    # elastic teacher pools (teachers.<name>.min_servers/max_servers; opd_ray/loop/elastic.py): a server is added
    # when a sampled shard waited for a free server for this share of the step, `scale_patience` steps running...
    scale_up_wait_share: float = 0.25
    # ...and one is removed when the pool's servers were busy less than this share of the step, for twice as long
    scale_down_busy_share: float = 0.15
    scale_patience: int = 2


@dataclass
class ObjectiveConfig:
    """The OPD objective (opd_ray/objective/losses.py). Student and teacher log-probs are taken at temperature
    rollout.temperature and teacher.temperature respectively (both 1.0 by default)."""
    kind: str = "topk"  # sampled_token | topk | full_reverse_kl | forward_kl | gjsd
    k: int = 4  # top-k of the objective (the paper: 16; the lab's vocabulary is 18)
    # top-k of the overlap diagnostics (ratio, mass, top-1, ...); 0: k. Engines and teachers ship max(k, this) ids,
    # so a top-1 or sampled-token run still reports the overlap at the paper's k=16
    diagnostics_k: int = 0
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
    """Held-out evaluation (opd_ray/loop/evaluation.py): every set greedily and as avg@k (k samples per problem at
    `temperature`, `top_p`: the paper's avg@16 at T=0.7, top-p 0.95), before training, every `every` steps, at
    the end."""
    avg_k: int = 16  # 0: greedy only
    temperature: float = 0.7
    top_p: float = 0.95
    every: int = 0  # steps between evaluations during training; 0: before and after only
    # the teachers' and the starting student's evaluations are stored in <run.out_dir>/.frozen_evals, keyed by the
    # weights, the sets and the decoding, and reused by later runs (opd_ray/loop/frozen_evals.py); false: measure
    reuse_frozen: bool = True


@dataclass
class PipelineConfig:
    max_staleness: int = 0  # in policy versions; 0 = synchronous on-policy
    queue_size: int = 2  # bound on rollout batches in flight
    rollout_timeout_s: float = 300.0
    teacher_timeout_s: float = 300.0
    learner_timeout_s: float = 600.0
    sync_timeout_s: float = 120.0
    # a rollout engine or teacher server that dies or misses its timeout is replaced, this many times per actor
    # (opd_ray/loop/fleet.py); past that the run stops naming it
    max_actor_restarts: int = 3
    startup_timeout_s: float = 600.0
    # torch threads per actor (runtime/process.py): reserved (default) | auto | node. auto: every core of the node while the
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
    # node labels preferred: each actor of the role starts on such a node, but its replacement (after a death,
    # a hang, or the loss of its node) goes wherever it fits; node_labels still apply. Not with placement.strategy
    prefer_node_labels: dict[str, str] = field(default_factory=dict)


@dataclass
class PlacementConfig:
    # "": each actor is scheduled on its own; PACK/SPREAD/STRICT_PACK/STRICT_SPREAD: one placement group with a
    # bundle per actor, reserved all at once before any actor starts (nothing starts if the cluster cannot fit it)
    strategy: str = ""
    # without `strategy`, a learner of several ranks is still one placement group of its own, reserved before any
    # rank starts, so that rank 0's node (where the ranks meet) is known: PACK puts the ranks on one node when one
    # has room, else spreads them; STRICT_SPREAD / STRICT_PACK force it
    learner_strategy: str = "PACK"
    rollout: RolePlacement = field(default_factory=RolePlacement)
    teacher: RolePlacement = field(default_factory=RolePlacement)
    learner: RolePlacement = field(default_factory=RolePlacement)


@dataclass
class ColdStartConfig:
    """Off-policy cold start (`stages: [cold_start, opd]`, docs/design.md, paper §3.1): the teacher answers
    `prompts` prompts, the rejection filters drop bad answers, the learner group SFT-trains the student on the rest;
    OPD then starts from that student, on prompts deduplicated against these."""
    prompts: int = 2048
    n_terms: list[int] = field(default_factory=lambda: [2, 5])  # lab: difficulty range of the SFT prompts
    temperature: float = 0.7  # the paper's teacher sampling temperature for cold-start data
    max_new_tokens: int = 56
    retries: int = 3  # prompts whose answers were rejected are sampled again, this many times
    filters: str = "lab"  # rejection thresholds: "lab" (scaled to short texts) or "paper" (data/rejection_filters.py)
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
    teachers: dict[str, NamedTeacher] = field(default_factory=dict)  # name -> teacher; {} = model.teacher alone
    mopd: MOPDConfig = field(default_factory=MOPDConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    ckpt: CheckpointConfig = field(default_factory=CheckpointConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    stages: list[str] = field(default_factory=lambda: ["opd"])  # in order; see STAGES
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)


