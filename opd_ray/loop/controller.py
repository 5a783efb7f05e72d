"""The OPD control loop. It owns the data stream, the policy version and the trajectory queue, and drives
the actors it is given (any objects with the same `.remote` methods): rollout -> teacher -> learner -> sync.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import ray
from tqdm import tqdm

from opd_ray.config import teachers
from opd_ray.config.schema import OPDConfig
from opd_ray.engines import weight_sync
from opd_ray.loop import elastic, fleet, resume, teacher_accounting
from opd_ray.loop.checkpoint import CheckpointDir
from opd_ray.loop.prompt_stream import PromptStream
from opd_ray.objective import diagnostics as diag
from opd_ray.runtime.metrics import MetricsSink, StageTimer
from opd_ray.runtime.remote import get
from opd_ray.runtime.signals import StopOnSignal, Stopped
from opd_ray.trajectory.batch import TrajectoryBatch, TrajId
from opd_ray.trajectory.ledger import ConsumedLedger


@dataclass
class InFlight:
    """One step's worth of trajectories in the object store, as shards (one per engine), not yet consumed."""
    shards: list[fleet.Shard]
    policy_version: int

    @property
    def items(self) -> list[tuple[TrajId, object]]:
        """Each trajectory once (an ensemble sends every shard's trajectories to every teacher)."""
        return list({traj_id: (traj_id, ex) for shard in self.shards for traj_id, ex in shard.items}.values())

    @property
    def scored_refs(self) -> list:
        return [shard.scored_ref for shard in self.shards]


@dataclass
class LoopState:
    policy_version: int = 0
    step: int = 0
    consumed: ConsumedLedger = field(default_factory=ConsumedLedger)  # exactly-once, in bounded memory
    refused_stale: int = 0
    stale_engines: set[int] = field(default_factory=set)  # engines whose last sync failed or timed out
    failed_syncs: int = 0
    health: fleet.FleetHealth = field(default_factory=fleet.FleetHealth)  # replaced actors, re-issued trajectories


class TrajectoryQueue:
    """A bounded queue of in-flight rollout batches. With max_staleness s, at most s+1 batches are in flight
    (rollouts for later steps run while the learner trains); a batch older than s versions is refused.

    No batch is launched ahead across a checkpoint step (`ckpt.save_every`): the first batch after a checkpoint
    is sampled from the checkpointed weights, so a resume, or a learner restart from that checkpoint, replays
    the uninterrupted run exactly. It costs one pipeline bubble per save_every steps.
    """

    def __init__(self, cfg: OPDConfig):
        self.depth = min(cfg.pipeline.queue_size, cfg.pipeline.max_staleness + 1)
        self.max_staleness = cfg.pipeline.max_staleness
        self.save_every = cfg.ckpt.save_every
        self.items: deque[InFlight] = deque()

    def has_room(self, steps_done: int) -> bool:
        """Room for the batch that trains at step steps_done + 1 + len(items)?"""
        ahead = len(self.items)
        if ahead >= self.depth:
            return False
        every = self.save_every
        return not (every and ahead and (steps_done + ahead) // every > steps_done // every)

    def put(self, item: InFlight) -> None:
        self.items.append(item)

    def pop_fresh(self, version: int, on_stale) -> InFlight | None:
        """The oldest batch within [version - max_staleness, version]; stale ones go to `on_stale`."""
        while self.items:
            item = self.items.popleft()
            if version - item.policy_version <= self.max_staleness:
                return item
            on_stale(item)
        return None


def launch_rollouts(actors, stream: PromptStream, cfg: OPDConfig, version: int,
                    stale: set[int] = frozenset()) -> InFlight:
    """Split the next prompts (`tasks.Example`s) into `rollout.shards_per_engine` shards per up-to-date engine and
    chain each shard into a teacher; nothing waits. An engine samples its shards in turn, so a teacher scores one
    while the engine samples the next. The engines also verify each response against its example's answer.

    Several teachers (opd_ray/config/teachers.py): routing splits each teacher's rows (`Example.teacher`) into
    shards of their own, scored by that teacher's pool while the other pools score theirs; an ensemble chains
    every shard into every teacher."""
    items = stream.next_batch(cfg.data.prompts_per_step)
    engines = [i for i in range(len(actors.rollouts)) if i not in stale]
    n = len(engines) * cfg.rollout.shards_per_engine
    if cfg.mopd.mode == "ensemble":
        parts = [(items[k::n], None) for k in range(n) if items[k::n]]
    else:
        parts = [(rows[k::n], name) for name, rows in by_teacher(items).items() for k in range(n) if rows[k::n]]
    shards = []
    for k, (rows, name) in enumerate(parts):
        engine = engines[k % len(engines)]
        traj_ref = fleet.generate(actors, rows, engine, version)
        for role in [teachers.role(name)] if name else [teachers.role(t) for t in teachers.names(cfg)]:
            shards.append(fleet.chain(actors, rows, engine, traj_ref, role, k % len(actors.pool(role)), cfg))
    return InFlight(shards, version)


def by_teacher(items: list[tuple[TrajId, object]]) -> dict[str, list[tuple[TrajId, object]]]:
    """The items grouped by the teacher their example names, in order of first appearance."""
    groups: dict[str, list] = {}
    for traj_id, ex in items:
        groups.setdefault(ex.teacher, []).append((traj_id, ex))
    return groups


def sync_weights(actors, version: int, cfg: OPDConfig, state: LoopState | None = None) -> None:
    """Push the learner's weights (one object-store copy, or a broadcast: `rollout.weight_sync`) to every engine;
    each confirms the new version.

    With a `state`, an engine that died is replaced and refit at once (opd_ray/loop/fleet.py); one that fails or
    misses `pipeline.sync_timeout_s` is marked stale: it gets no rollouts until a later sync reaches it (engines
    refuse to sample while their own sync is incomplete). When every engine is stale, the hung ones are replaced.
    Without a state (start-up, resume), every engine must confirm.
    """
    if weight_sync.resolve(cfg) == "object_store":
        weights_ref, extra_refs = actors.learners.weights_ref()
        load_refs = [e.load_weights.remote(weights_ref, version) for e in actors.rollouts]
        get(extra_refs, cfg.pipeline.sync_timeout_s, "sync")  # ZeRO-3: the other ranks' share of the gather
    else:  # rollout.weight_sync: a broadcast through vLLM's weight-transfer API; refs to the engines' versions
        load_refs = weight_sync.broadcast(actors, version, cfg, strict=state is None)
    if state is None:
        served = get(load_refs, cfg.pipeline.sync_timeout_s, "sync")
        if served != [version] * len(actors.rollouts):
            raise RuntimeError(f"weight sync: engines report versions {served}, expected {version}")
        return
    ray.wait(load_refs, num_returns=len(load_refs), timeout=cfg.pipeline.sync_timeout_s)
    dead = died(load_refs, actors.rollouts)
    for i, err in dead:  # a dead engine is replaced and refit now, not left stale for ever
        fleet.replace_engine(actors, i, err, version, state.health, cfg)
    replaced = {i for i, _ in dead}
    state.stale_engines = {i for i, ref in enumerate(load_refs) if i not in replaced and not synced(ref, version)}
    state.failed_syncs += len(state.stale_engines)
    if len(state.stale_engines) == len(actors.rollouts):  # nobody left to sample: the hung ones are replaced
        for i in sorted(state.stale_engines):
            fleet.replace_engine(actors, i, None, version, state.health, cfg)
        state.stale_engines = set()


def died(refs, engines) -> list[tuple[int, Exception]]:
    """(index, error) of the finished refs whose engine died. Another actor's death (a learner rank that died
    while it produced the weights every `load_weights` depends on) is raised, not blamed on the engines: the
    training loop restarts the learner group for it."""
    out = []
    for i, ref in enumerate(refs):
        if ray.wait([ref], timeout=0)[0]:
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as err:
                if err.actor_id not in (None, engines[i]._actor_id.hex()):
                    raise
                out.append((i, err))
    return out


def synced(ref, version: int) -> bool:
    ready, _ = ray.wait([ref], timeout=0)
    if not ready:
        return False
    try:
        return ray.get(ref) == version
    except ray.exceptions.RayError as err:
        print(f"[opd] weight sync failed on an engine, marked stale: {err}", flush=True)
        return False


def reduce_rank_results(results: list[dict], step: int, cfg: OPDConfig
                        ) -> tuple[dict, list[TrajId], dict[str, float]]:
    """Add the ranks' [sum, count] pairs and divide. Per-position arrays are kept every diagnostics_every steps."""
    metrics = {}
    for name in results[0]["sums"]:
        total = sum(np.asarray(r["sums"][name][0], dtype=np.float64) for r in results)
        count = sum(np.asarray(r["sums"][name][1], dtype=np.float64) for r in results)
        mean = np.where(count > 0, total / np.maximum(count, 1e-12), np.nan)
        if mean.ndim == 0:
            metrics[name] = float(mean)
        elif step % cfg.objective.diagnostics_every == 0:
            metrics[name] = [round(float(v), 5) for v in mean]
    metrics["tokens"] = sum(r["tokens"] for r in results)
    traj_ids = [t for r in results for t in r["traj_ids"]]
    return metrics, traj_ids, results[0]["stage_s"]


def batch_diagnostics(batches: list[TrajectoryBatch], step: int, cfg: OPDConfig) -> dict:
    """Sequence-level diagnostics from the scored batches (every diagnostics_every steps: the reward AUROC)."""
    out = {"teacher_payload_bytes_per_token": float(np.mean([b.payload_bytes_per_token() for b in batches]))}
    correct_B = [b.outcome_correct_B for b in batches]
    if all(c is not None for c in correct_B):
        out["train_accuracy"] = float(np.concatenate(correct_B).mean())
        if step % cfg.objective.diagnostics_every == 0:
            reward_B = np.concatenate([diag.sequence_mean_reward_B(b.student_logp_BR, b.teacher_logp_BR,
                                                                   b.response_mask_BR) for b in batches])
            out["reward_auroc"] = diag.auroc(reward_B, np.concatenate(correct_B))
    return out


def opd_step(state: LoopState, actors, queue: TrajectoryQueue, stream: PromptStream, cfg: OPDConfig
             ) -> dict[str, float]:
    """One OPD step: take fresh scored trajectories, train on them, sync the new weights to the engines."""
    p, timer, t0 = cfg.pipeline, StageTimer(), time.perf_counter()
    with timer("wait_trajectories"):
        item = None
        while item is None:  # refilling after refusals yields batches of the current version
            while queue.has_room(state.step):  # keep up to max_staleness + 1 batches in flight
                queue.put(launch_rollouts(actors, stream, cfg, state.policy_version, state.stale_engines))
            item = queue.pop_fresh(state.policy_version, on_stale=lambda it: refuse(state, stream, it))
        # a dead or hung engine/teacher is replaced and its shard re-issued under the same ids (opd_ray/loop/fleet.py)
        batches = fleet.collect(actors, item.shards, state.policy_version, state.health, state.stale_engines, cfg)
        teacher_accounting.check_routing(item.shards, batches, cfg)  # each row scored by its own teacher
    with timer("learner"):
        results = get(actors.learners.train_step_refs(item.scored_refs), p.learner_timeout_s, "learner")
    metrics, trained_ids, stage_s = reduce_rank_results(results, state.step + 1, cfg)
    metrics.update(batch_diagnostics(batches, state.step + 1, cfg))
    metrics.update(teacher_accounting.step_metrics(batches, state.health, cfg))
    mark_consumed(state, stream, item, trained_ids)
    state.policy_version += 1
    state.step += 1
    with timer("sync"):
        sync_weights(actors, state.policy_version, cfg, state)
    wall = time.perf_counter() - t0
    metrics.update({f"time/{k}_s": v for k, v in {**stage_s, **timer.seconds, "step": wall}.items()})
    metrics.update(tokens_per_s=metrics["tokens"] / wall, policy_version=state.policy_version,
                   staleness=state.policy_version - 1 - item.policy_version, refused_stale=state.refused_stale,
                   engines_fresh=len(actors.rollouts) - len(state.stale_engines), failed_syncs=state.failed_syncs,
                   queue_depth=len(queue.items), **state.health.metrics())
    return metrics


def refuse(state: LoopState, stream: PromptStream, item: InFlight) -> None:
    state.refused_stale += len(item.items)
    stream.give_back(item.items)


def mark_consumed(state: LoopState, stream: PromptStream, item: InFlight, trained_ids: list[TrajId]) -> None:
    """Exactly-once (docs/design.md invariant 1): the learner trained on exactly this batch, and on no id twice
    (`trajectory.ledger`: raises ConsumedTwice)."""
    expected = [t for t, _ in item.items]
    if sorted(trained_ids) != sorted(expected):
        raise RuntimeError(f"learner trained on {len(trained_ids)} ids, expected the batch's {len(expected)}")
    state.consumed.consume([stream.serial(t) for t in expected])


def train(actors, stream: PromptStream, cfg: OPDConfig, sink: MetricsSink, state: LoopState,
          ckpt: CheckpointDir | None = None, on_step=None) -> LoopState:
    """Run OPD steps until `run.steps`, logging each step, checkpointing every `ckpt.save_every` steps.

    If a learner rank dies, the whole group restarts from the last checkpoint (up to learner.max_restarts).
    SIGTERM or SIGINT stops the loop after the current step with a checkpoint (`signals.Stopped`).
    """
    queue, restarts, pools = TrajectoryQueue(cfg), 0, elastic.ElasticTeachers(cfg)
    with tqdm(total=cfg.run.steps, initial=state.step, desc="OPD", unit="step", dynamic_ncols=True) as bar, \
            StopOnSignal() as stop:
        while state.step < cfg.run.steps:
            try:
                metrics = opd_step(state, actors, queue, stream, cfg)
            except ray.exceptions.RayActorError as err:
                restarts += 1
                if restarts > cfg.learner.max_restarts or not is_learner_failure(actors, err):
                    raise
                queue = TrajectoryQueue(cfg)  # in-flight rollouts belong to the abandoned timeline
                restart_learners(actors, state, stream, ckpt, cfg)
                sink.mark_rewind(state.step, f"learner group restarted (generation {actors.learners.generation})")
                bar.n = state.step
                continue
            metrics |= pools.resize(actors, [s for it in queue.items for s in it.shards], metrics)
            sink.log(state.step, metrics)
            bar.update(1)
            bar.set_postfix(kl=f"{metrics['reverse_kl']:.3f}", overlap=f"{metrics['overlap_ratio']:.3f}",
                            tok_s=f"{metrics['tokens_per_s']:.0f}")
            saved = None
            if ckpt is not None and cfg.ckpt.save_every and state.step % cfg.ckpt.save_every == 0:
                saved = resume.save_checkpoint(actors, state, stream, ckpt, cfg, get)
            if on_step is not None:
                on_step(state, metrics)
            if stop.requested is not None and state.step < cfg.run.steps:
                for item in queue.items:  # sampled ahead, never trained: handed out again after the resume
                    stream.give_back(item.items)
                if saved is None and ckpt is not None:
                    saved = resume.save_checkpoint(actors, state, stream, ckpt, cfg, get)
                raise Stopped(stop.requested, state.step, saved)
    return state


def is_learner_failure(actors, err: ray.exceptions.RayActorError) -> bool:
    return err.actor_id in {rank._actor_id.hex() for rank in actors.learners.ranks}


def restart_learners(actors, state: LoopState, stream: PromptStream, ckpt: CheckpointDir | None,
                     cfg: OPDConfig) -> None:
    """New learner group; load the last checkpoint (or start over); re-sync weights before any rollout."""
    actors.learners = actors.learners.restarted()
    get(actors.learners.ready_refs(), cfg.pipeline.startup_timeout_s, "startup")
    latest = ckpt.latest() if ckpt is not None else None
    if latest is None:
        resume.reset(state, stream)
    else:
        resume.restore(actors, latest, state, stream, cfg, get)
    print(f"[opd] learner group restarted (generation {actors.learners.generation}) from "
          f"{latest or 'the initial weights'} at step {state.step}", flush=True)
    sync_weights(actors, state.policy_version, cfg)
