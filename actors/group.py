"""Creating the actors of a run, named by role and index (rollout-0, teacher-0, learner-0, ...)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import ray

from actors.learner import LearnerRank
from actors.placement import Placement, check_cluster_fits
from actors.rollout import RolloutEngine
from actors.teacher import TeacherServer
from opd_ray.config import teachers
from opd_ray.config.schema import OPDConfig


class LearnerGroup:
    """N DeepSpeed ranks trained in lockstep; each rank sees the whole batch and takes its own shard."""

    def __init__(self, cfg: OPDConfig, name_prefix: str = "learner", generation: int = 0,
                 placement: Placement | None = None):
        n = cfg.learner.num_ranks
        self.cfg, self.name_prefix, self.generation = cfg, name_prefix, generation
        self.owns_placement = placement is None  # a group started alone (the cold start) gives its own back
        self.placement = placement or Placement(cfg)  # a restarted group reuses the same bundles
        addr, port = self.placement.learner_rendezvous(cfg.pipeline.startup_timeout_s)
        if cfg.learner.master_port:
            port = cfg.learner.master_port + generation
        self.zero_stage = cfg.learner.zero_stage
        suffix = f"-g{generation}" if generation else ""  # a restarted group gets fresh actor names
        self.ranks = [
            LearnerRank.options(name=f"{name_prefix}-{r}{suffix}", **self.placement.options("learner", r))
            .remote(cfg, r, n, addr, port, generation)
            for r in range(n)
        ]

    def restarted(self) -> "LearnerGroup":
        """Kill every rank (a broken collective cannot heal) and start a new group, generation + 1."""
        for rank in self.ranks:
            ray.kill(rank, no_restart=True)
        group = LearnerGroup(self.cfg, self.name_prefix, self.generation + 1, self.placement)
        group.owns_placement = self.owns_placement
        return group

    def kill(self) -> None:
        """End every rank; give back the placement group if this group made it (two ranks or more)."""
        for rank in self.ranks:
            ray.kill(rank, no_restart=True)
        if self.owns_placement:
            self.placement.release()

    def save_checkpoint_refs(self, path: str):
        return [r.save_checkpoint.remote(path) for r in self.ranks]

    def load_checkpoint_refs(self, path: str):
        return [r.load_checkpoint.remote(path) for r in self.ranks]

    def ready_refs(self):
        return [r.ready.remote() for r in self.ranks]

    def train_step_refs(self, scored_refs):
        return [r.train_step.remote(*scored_refs) for r in self.ranks]

    def sft_step_refs(self, batch_ref):
        """One supervised step (cold start): every rank takes its shard of the same batch."""
        return [r.sft_step.remote(batch_ref) for r in self.ranks]

    def save_pretrained_refs(self, path: str, tokenizer_path: str):
        """Every rank joins (the ZeRO-3 gather is a collective); rank 0 writes the folder."""
        return [r.save_pretrained.remote(path, tokenizer_path) for r in self.ranks]

    def weights_digest_refs(self):
        """Each rank's SHA-256 of its weights (None under ZeRO-3)."""
        return [r.weights_digest.remote() for r in self.ranks]

    def weights_ref(self):
        """An object ref to the full weights; under ZeRO-3 every rank joins the gather, rank 0's copy is used."""
        if self.zero_stage == 3:
            refs = [r.full_state_dict.remote() for r in self.ranks]
            return refs[0], refs[1:]
        return self.ranks[0].full_state_dict.remote(), []


@dataclass
class Actors:
    rollouts: list
    teacher_pools: dict[str, list]  # teacher role (opd_ray/config/teachers.py) -> its servers, in config order
    learners: LearnerGroup
    cfg: OPDConfig | None = None  # what `replace` needs to start a same actor again
    prefix: str = ""
    placement: Placement | None = None
    generations: dict = field(default_factory=dict)  # (role, index) -> how many times it was replaced

    @property
    def teachers(self) -> list:
        """The first teacher's servers: in a one-teacher run, all of them."""
        return next(iter(self.teacher_pools.values()))

    def name(self, role: str, index: int) -> str:
        return f"{self.prefix}{role.replace(':', '-')}-{index}"  # teacher:math -> teacher-math-0

    def pool(self, role: str) -> list:
        """The actors of a role: the rollout engines, or one teacher's servers."""
        return self.rollouts if role == "rollout" else self.teacher_pools[role]

    def roles(self) -> list[str]:
        """The replaceable roles: rollout and every teacher's pool."""
        return ["rollout", *self.teacher_pools]

    def all_teachers(self) -> list:
        return [server for pool in self.teacher_pools.values() for server in pool]

    def replace(self, role: str, index: int) -> None:
        """Kill rollout/teacher actor `index` and start a new one of the same name and placement (opd_ray/loop/fleet.py
        refits a new engine before it gets prompts)."""
        pool = self.pool(role)
        ray.kill(pool[index], no_restart=True)
        generation = self.generations[(role, index)] = self.generations.get((role, index), 0) + 1
        pool[index] = start_actor(self.cfg, role, index, self.name(role, index), self.placement, generation)

    def new_server(self, role: str):
        """A new server for teacher pool `role`, at the next index (an elastic pool grows; the caller adds it to
        the pool once it answered its health probe)."""
        index = len(self.pool(role))
        return start_actor(self.cfg, role, index, self.name(role, index), self.placement)

    def remove_server(self, role: str) -> None:
        """End the newest server of teacher pool `role` (an elastic pool shrinks)."""
        ray.kill(self.pool(role).pop(), no_restart=True)

    def ready_refs(self):
        return ([e.policy_version.remote() for e in self.rollouts] + [t.ready.remote() for t in self.all_teachers()]
                + self.learners.ready_refs())

    def node_ips(self, get, timeout_s: float) -> dict[str, str]:
        """Where each actor runs: name -> its Ray node's address (`get` is the controller's bounded ray.get)."""
        named = ([(self.name(role, i), actor) for role in self.roles() for i, actor in enumerate(self.pool(role))]
                 + [(f"{self.learners.name_prefix}-{r}", rank) for r, rank in enumerate(self.learners.ranks)])
        ips = get([actor.node_ip.remote() for _, actor in named], timeout_s, "actor nodes")
        return {name: ip for (name, _), ip in zip(named, ips)}

    def kill(self) -> None:
        """End every actor of the run (their names become free for the next run in this Ray) and give back the
        placement group, if any, so its reserved CPUs and GPUs return to the cluster."""
        for actor in self.rollouts + self.all_teachers() + self.learners.ranks:
            ray.kill(actor, no_restart=True)
        if self.placement is not None:
            self.placement.release()


def create_actors(cfg: OPDConfig, name_prefix: str = "") -> Actors:
    """Check the cluster can hold the run, reserve the placement group (if `placement.strategy`), start every
    actor where `placement.*` asks (the caller waits for `ready_refs()` with a timeout)."""
    check_cluster_fits(cfg)
    placement = Placement(cfg, f"{name_prefix}opd")
    placement.wait(cfg.pipeline.startup_timeout_s)
    rollouts = [start_actor(cfg, "rollout", i, f"{name_prefix}rollout-{i}", placement)
                for i in range(cfg.rollout.num_engines)]
    pools = {}
    for name, view in teachers.views(cfg).items():
        role = teachers.role(name)
        pools[role] = [start_actor(cfg, role, i, f"{name_prefix}{role.replace(':', '-')}-{i}", placement)
                       for i in range(view.teacher.num_servers)]
    return Actors(rollouts, pools, LearnerGroup(cfg, f"{name_prefix}learner", placement=placement), cfg,
                  name_prefix, placement)


def start_actor(cfg: OPDConfig, role: str, index: int, name: str, placement: Placement, generation: int = 0,
                wait_s: float = 30.0):
    """A rollout engine or a teacher's server (`role` teacher or teacher:<name>) named `name`. A name stays taken for a moment after its actor was
    killed: retry until Ray has freed it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            options = placement.options(role, index, replacement=generation > 0)
            if role == "rollout":
                return RolloutEngine.options(name=name, **options).remote(cfg, index, generation)
            teacher = teachers.name_of(role)
            return TeacherServer.options(name=name, **options).remote(teachers.view(cfg, teacher), index, generation,
                                                                      teacher)
        except ValueError:  # "The name ... is already taken"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
