"""Fleet health: rollout engines and teacher servers that die or hang are replaced, and their work re-issued.

docs/design.md invariant 3. A step's rollouts travel as *shards*: one engine's share of the prompts (or a part of it:
`rollout.shards_per_engine`), chained into one teacher. When a shard fails,

- the culprit is named: the engine if its `generate` never finished, else the teacher (a death carries the
  dead actor's id; a hang is a missed `pipeline.rollout_timeout_s` + `pipeline.teacher_timeout_s`);
- the shard is re-issued at once, under the same traj_ids, to a surviving engine and teacher (the seeds derive
  from (run seed, traj_id, policy version), so at the same version the samples are the same);
- the culprit is killed and replaced by a new actor of the same name and placement (`actors.replace`); a new
  engine is refit with the current weights before it gets any prompt;
- past `pipeline.max_actor_restarts` replacements of one actor the run stops, naming it and its last failure.

The learner still consumes every id exactly once: the controller checks the ids it trained on.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import ray

from opd_ray.config import teachers
from opd_ray.engines import weight_sync
from opd_ray.trajectory.batch import TrajectoryBatch, TrajId


class FleetError(RuntimeError):
    """An actor failed more often than pipeline.max_actor_restarts allows, or no actor of a role is left."""


class ReplacementDied(FleetError):
    """A replacement died before it was ready (for example on a node that was being lost); another one is started
    while pipeline.startup_timeout_s lasts."""


@dataclass
class Shard:
    """One engine's share of a step's prompts (or a part of it), chained into one server of one teacher."""
    items: list[tuple[TrajId, object]]  # (traj_id, tasks.Example)
    engine: int
    teacher: int  # the server's index in its teacher's pool
    traj_ref: object
    scored_ref: object
    deadline: float  # monotonic seconds by which the scored batch must be back
    actor_ids: tuple[str, str] = ("", "")  # (engine, teacher) at launch: a failure of a since-replaced actor is old
    teacher_role: str = teachers.TEACHER_ROLE  # the pool: teacher (one teacher) or teacher:<name>


@dataclass
class FleetHealth:
    """What failed, what was replaced, how long re-admission took (the fleet/* metrics)."""
    restarts: Counter = field(default_factory=Counter)  # actor name -> replacements
    restarts_by_role: Counter = field(default_factory=Counter)
    reissued: int = 0  # trajectories re-issued after a failure
    readmit_s: list[float] = field(default_factory=list)  # failure noticed -> replacement serving again
    last_failure: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict:
        teacher_roles = {role: n for role, n in self.restarts_by_role.items() if teachers.is_teacher_role(role)}
        out = {"fleet/restarts_rollout": self.restarts_by_role["rollout"],
               "fleet/restarts_teacher": sum(teacher_roles.values()),
               "fleet/reissued_trajectories": self.reissued,
               "fleet/readmit_s_last": self.readmit_s[-1] if self.readmit_s else 0.0}
        if self.last_failure:  # text: in metrics.jsonl (TensorBoard and Ray take the numbers only)
            out["fleet/last_failure"] = list(self.last_failure.values())[-1]
        return out


def launch_shard(actors, items, engine: int, teacher: int, version: int, cfg,
                 teacher_role: str = teachers.TEACHER_ROLE) -> Shard:
    """Sample `items` on `engine` and chain the trajectories into server `teacher` of the pool `teacher_role`."""
    traj_ref = generate(actors, items, engine, version)
    return chain(actors, items, engine, traj_ref, teacher_role, teacher, cfg)


def generate(actors, items, engine: int, version: int):
    prompt_ids = [list(ex.prompt_ids) for _, ex in items]
    return actors.rollouts[engine].generate.remote(prompt_ids, [t for t, _ in items], version,
                                                   [ex.answer for _, ex in items])


def chain(actors, items, engine: int, traj_ref, teacher_role: str, teacher: int, cfg) -> Shard:
    """A shard whose trajectories (`traj_ref`, being sampled) go to server `teacher` of pool `teacher_role`."""
    p, server = cfg.pipeline, actors.pool(teacher_role)[teacher]
    return Shard(items, engine, teacher, traj_ref, server.score.remote(traj_ref),
                 time.monotonic() + p.rollout_timeout_s + p.teacher_timeout_s,
                 (actors.rollouts[engine]._actor_id.hex(), server._actor_id.hex()), teacher_role)


def culprit(actors, shard: Shard, err: Exception | None) -> tuple[str, int]:
    """(role, index) of the actor a failed or late shard is blamed on."""
    dead = getattr(err, "actor_id", None)
    if dead is not None:
        if dead == shard.actor_ids[0]:
            return "rollout", shard.engine
        if dead == shard.actor_ids[1]:
            return shard.teacher_role, shard.teacher
    generated, _ = ray.wait([shard.traj_ref], timeout=0)
    if not generated:
        return "rollout", shard.engine
    try:
        ray.get(shard.traj_ref)
    except ray.exceptions.RayError:
        return "rollout", shard.engine
    return shard.teacher_role, shard.teacher


def describe(actors, role: str, index: int, err: Exception | None, cfg) -> str:
    name = actors.name(role, index)
    if err is None:  # a hang
        method, limit = ("generate", cfg.pipeline.rollout_timeout_s) if role == "rollout" else \
            ("score", cfg.pipeline.rollout_timeout_s + cfg.pipeline.teacher_timeout_s)
        return f"{name} did not answer {method} within {limit:.0f} s"
    cause = getattr(err, "cause", None) or err  # a dependent task's error wraps the dead actor's
    return f"{name} died ({type(cause).__name__})"


def collect(actors, shards: list[Shard], version: int, health: FleetHealth, stale: set[int], cfg
            ) -> list[TrajectoryBatch]:
    """Every shard's scored batch, in shard order; failed or late shards are re-issued after their culprit is
    replaced (at most pipeline.max_actor_restarts times per actor). `stale`: engines not to send prompts to."""
    batches: dict[int, TrajectoryBatch] = {}
    while len(batches) < len(shards):
        pending = {id(s.scored_ref): i for i, s in enumerate(shards) if i not in batches}
        refs = [shards[i].scored_ref for i in pending.values()]
        wait_s = max(0.0, min(shards[i].deadline for i in pending.values()) - time.monotonic())
        ready, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
        if not ready:  # the earliest deadline passed: that shard hung
            i = min(pending.values(), key=lambda j: shards[j].deadline)
            shards[i] = recover(actors, shards[i], None, version, health, stale, cfg)
            continue
        i = pending[id(ready[0])]
        try:
            batches[i] = ray.get(ready[0])
        except ray.exceptions.RayActorError as err:
            shards[i] = recover(actors, shards[i], err, version, health, stale, cfg)
    return [batches[i] for i in range(len(shards))]


def recover(actors, shard: Shard, err: Exception | None, version: int, health: FleetHealth, stale: set[int],
            cfg) -> Shard:
    """Blame, re-issue the shard on a survivor (or on the replacement if none is left), replace the culprit;
    returns the re-issued shard. A teacher's failure only redoes the scoring of the engine's trajectories."""
    t0 = time.monotonic()
    role, index = culprit(actors, shard, err)
    pool = actors.pool(role)
    launched_on = shard.actor_ids[0 if role == "rollout" else 1]
    if launched_on != pool[index]._actor_id.hex():  # sampled ahead (max_staleness) on an actor replaced since
        print(f"[opd] a shard launched on the replaced {actors.name(role, index)} is re-issued: "
              f"{len(shard.items)} trajectories", flush=True)
        health.reissued += len(shard.items)
        if role != "rollout":
            return rescore(actors, shard, index, cfg)
        return launch_shard(actors, shard.items, index, shard.teacher, version, cfg, shard.teacher_role)
    record_failure(actors, role, index, describe(actors, role, index, err, cfg), health, cfg)
    print(f"[opd] {health.last_failure[actors.name(role, index)]}: replacing it; {len(shard.items)} "
          f"trajectories re-issued", flush=True)
    survivors = [i for i in range(len(pool)) if i != index and not (role == "rollout" and i in stale)]

    def replace_culprit():
        replace(actors, role, index, version, cfg)
        if role == "rollout":
            stale.discard(index)  # refit: it serves the current version

    if not survivors:  # nobody can carry the shard meanwhile: wait for the replacement
        replace_culprit()
    carrier = survivors[0] if survivors else index
    if role != "rollout":  # only the scoring is redone, by the same teacher's survivor or replacement
        reissued = rescore(actors, shard, carrier, cfg)
    else:
        reissued = launch_shard(actors, shard.items, carrier, shard.teacher, version, cfg, shard.teacher_role)
    if survivors:  # the survivor works while the replacement starts
        replace_culprit()
    health.reissued += len(shard.items)
    health.readmit_s.append(time.monotonic() - t0)
    return reissued


def rescore(actors, shard: Shard, teacher: int, cfg) -> Shard:
    """The shard's trajectories scored again, by server `teacher` of the shard's own teacher."""
    server = actors.pool(shard.teacher_role)[teacher]
    return Shard(shard.items, shard.engine, teacher, shard.traj_ref, server.score.remote(shard.traj_ref),
                 time.monotonic() + cfg.pipeline.teacher_timeout_s, (shard.actor_ids[0], server._actor_id.hex()),
                 shard.teacher_role)


def record_failure(actors, role: str, index: int, why: str, health: FleetHealth, cfg) -> None:
    """Count the failure; past pipeline.max_actor_restarts, stop the run naming the actor and its failure."""
    name = actors.name(role, index)
    health.restarts[name] += 1
    health.restarts_by_role[role] += 1
    health.last_failure[name] = why
    if health.restarts[name] > cfg.pipeline.max_actor_restarts:
        raise FleetError(f"{name} failed {health.restarts[name]} times, more than pipeline.max_actor_restarts="
                         f"{cfg.pipeline.max_actor_restarts}; last failure: {why}")


def replace_engine(actors, index: int, err: Exception | None, version: int, health: FleetHealth, cfg) -> None:
    """An engine that died (`err`) or hung (None) during a weight sync: replaced and refit at `version`."""
    replace_failed(actors, "rollout", index, err, f"load_weights within {cfg.pipeline.sync_timeout_s:.0f} s",
                   "the weight sync", version, health, cfg)


def replace_failed(actors, role: str, index: int, err: Exception | None, missed: str, during: str, version: int,
                   health: FleetHealth, cfg) -> None:
    """Outside a shard (a weight sync, an evaluation): an actor that died (`err`) or did not answer (`missed`: what,
    within how long) is counted against pipeline.max_actor_restarts and replaced (an engine refit at `version`)."""
    t0 = time.monotonic()
    why = describe(actors, role, index, err, cfg) if err is not None else \
        f"{actors.name(role, index)} did not answer {missed}"
    record_failure(actors, role, index, why, health, cfg)
    print(f"[opd] {why} during {during}: replacing it", flush=True)
    replace(actors, role, index, version, cfg)
    health.readmit_s.append(time.monotonic() - t0)


def replace(actors, role: str, index: int, version: int, cfg) -> None:
    """Kill the actor, start a new one of the same name and placement; a new engine is refit with the current
    weights (version `version`) before it is handed any prompt."""
    if role == "rollout" and weight_sync.resolve(cfg) != "object_store":
        raise FleetError(f"{actors.name(role, index)} failed: replacing an engine needs "
                         f"rollout.weight_sync=object_store (a broadcast group cannot take in a new member)")
    deadline = time.monotonic() + cfg.pipeline.startup_timeout_s
    while True:
        actors.replace(role, index)
        handle = actors.pool(role)[index]
        try:
            wait_started(actors.name(role, index), handle.policy_version.remote() if role == "rollout" else
                         handle.ready.remote(), dict(role_placement(cfg, role).node_labels), cfg)
            break
        except ReplacementDied as err:  # placed on a node that was dying before Ray declared it dead
            if time.monotonic() > deadline:
                raise
            print(f"[opd] {err}: starting another one", flush=True)
    if role == "rollout":
        refit(actors, index, version, cfg)


def role_placement(cfg, role: str):
    """placement.<role>; a named teacher's own placement when it sets one (opd_ray/config/teachers.py)."""
    if teachers.is_teacher_role(role):
        return teachers.view(cfg, teachers.name_of(role)).placement.teacher
    return getattr(cfg.placement, role)


def wait_started(name: str, ready_ref, node_labels: dict, cfg, poll_s: float = 2.0) -> None:
    """Wait for a replacement to start, at most pipeline.startup_timeout_s. One pinned by placement.<role>.node_labels
    to a node that has left the cluster (a dead node) could never start: stop the run as soon as Ray reports no
    alive node with those labels, instead of waiting out the timeout."""
    def check_placeable():
        alive = [node.get("Labels", {}) for node in ray.nodes() if node["Alive"]]
        if node_labels and not any(all(lab.get(k) == v for k, v in node_labels.items()) for lab in alive):
            raise FleetError(f"{name} cannot be replaced: no alive Ray node has its node_labels {node_labels} "
                             f"(placement.*; its node left the cluster)")

    deadline = time.monotonic() + cfg.pipeline.startup_timeout_s
    while not ray.wait([ready_ref], timeout=poll_s)[0]:
        check_placeable()
        if time.monotonic() > deadline:
            raise FleetError(f"{name}: its replacement did not start within pipeline.startup_timeout_s="
                             f"{cfg.pipeline.startup_timeout_s:.0f} s")
    try:
        ray.get(ready_ref)
    except ray.exceptions.RayActorError as err:  # e.g. placed on a dying node before Ray declared it dead
        time.sleep(poll_s)  # let a node death reach the node table, so the error can say so
        check_placeable()
        raise ReplacementDied(f"{name}: its replacement died while starting ({type(err).__name__})") from err


def refit(actors, index: int, version: int, cfg) -> None:
    """The learner's current weights into engine `index`, through the object store; it serves `version` after."""
    weights_ref, extra_refs = actors.learners.weights_ref()
    served = actors.rollouts[index].load_weights.remote(weights_ref, version)
    ray.get(extra_refs, timeout=cfg.pipeline.sync_timeout_s)
    if ray.get(served, timeout=cfg.pipeline.sync_timeout_s) != version:
        raise FleetError(f"{actors.name('rollout', index)}: the refit did not take version {version}")


class GuardedServers:
    """One role's actors (the up-to-date engines, or the teachers) for the calls outside a training step, i.e.
    evaluation, under the training step's rule: a call whose actor dies or misses its timeout is blamed on that
    actor, which is replaced (a new engine refit at `version`), and the call is made again on the replacement, at
    most pipeline.max_actor_restarts times per actor. Greedy decoding and seeded samples do not depend on which
    actor answers, so a recovered evaluation gives the numbers a fault-free one would."""

    def __init__(self, actors, role: str, version: int, health: FleetHealth, cfg, stale: set[int] = frozenset()):
        self.actors, self.role, self.version, self.health, self.cfg = actors, role, version, health, cfg
        self.indices = [i for i in range(len(actors.pool(role))) if i not in stale]  # a stale engine serves an old version

    def __len__(self) -> int:
        return len(self.indices)

    def handle(self, index: int):
        return self.actors.pool(self.role)[index]

    def map(self, method: str, args: list[tuple], timeout_s: float) -> list:
        """`method(*args[j])` on the j-th server, all at once; results in order, failed calls recovered."""
        calls = {j: self.call(j, method, a, timeout_s) for j, a in enumerate(args)}
        results = [None] * len(args)
        while calls:
            by_ref = {id(ref): j for j, (ref, _) in calls.items()}
            wait_s = max(0.0, min(deadline for _, deadline in calls.values()) - time.monotonic())
            ready, _ = ray.wait([ref for ref, _ in calls.values()], num_returns=1, timeout=wait_s)
            if not ready:  # the earliest deadline passed: that actor hung
                j = min(calls, key=lambda c: calls[c][1])
                self.recover(j, None, timeout_s)
                calls[j] = self.call(j, method, args[j], timeout_s)
                continue
            j = by_ref[id(ready[0])]
            try:
                results[j] = ray.get(ready[0])
            except ray.exceptions.RayActorError as err:
                if err.actor_id not in (None, self.handle(self.indices[j])._actor_id.hex()):
                    raise  # another actor's death (a learner rank during a refit): not this server's
                self.recover(j, err, timeout_s)
                calls[j] = self.call(j, method, args[j], timeout_s)
            else:
                del calls[j]
        return results

    def call(self, j: int, method: str, args: tuple, timeout_s: float) -> tuple[object, float]:
        return getattr(self.handle(self.indices[j]), method).remote(*args), time.monotonic() + timeout_s

    def recover(self, j: int, err: Exception | None, timeout_s: float) -> None:
        """Replace the j-th server; the caller asks the replacement again."""
        replace_failed(self.actors, self.role, self.indices[j], err, f"an evaluation call within {timeout_s:.0f} s",
                       "an evaluation", self.version, self.health, self.cfg)
