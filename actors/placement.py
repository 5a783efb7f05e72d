"""Where each actor runs: Ray resource requests per role from `placement.*`, optionally as one placement group.

Without a strategy every actor asks Ray for its CPUs (rollout/teacher/learner.cpus_per_*), its GPUs
(placement.<role>.num_gpus), its custom resources and node labels, and Ray places it. With a strategy
(PACK, SPREAD, STRICT_PACK, STRICT_SPREAD) the same requests become the bundles of one placement group,
reserved all at once: on a cluster that cannot hold the whole run, nothing starts and the error says so.

The learner ranks meet at rank 0's node (torch.distributed's rendezvous), which must be known before any rank
starts. So a learner of several ranks is always in a placement group: the whole run's, or, without a strategy, one
of its own (`placement.learner_strategy`). The rendezvous port is found free on that node, not on the driver's.
"""
from __future__ import annotations

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from opd_ray.config import teachers
from opd_ray.config.errors import ConfigError
from opd_ray.config.schema import OPDConfig
from opd_ray.runtime.process import free_port

def roles(cfg: OPDConfig) -> list[str]:
    """Every actor role of the run: rollout, one per teacher (opd_ray/config/teachers.py), learner."""
    return ["rollout", *(teachers.role(name) for name in teachers.names(cfg)), "learner"]


def role_config(cfg: OPDConfig, role: str) -> tuple[OPDConfig, str]:
    """(config, section) that set `role`'s actors: a teacher pool's are its teacher's view, section `teacher`."""
    if teachers.is_teacher_role(role):
        return teachers.view(cfg, teachers.name_of(role)), "teacher"
    return cfg, role


def role_count(cfg: OPDConfig, role: str) -> int:
    cfg, section = role_config(cfg, role)
    return {"rollout": cfg.rollout.num_engines, "teacher": cfg.teacher.num_servers,
            "learner": cfg.learner.num_ranks}[section]


def role_cpus(cfg: OPDConfig, role: str) -> float:
    cfg, section = role_config(cfg, role)
    return {"rollout": cfg.rollout.cpus_per_engine, "teacher": cfg.teacher.cpus_per_server,
            "learner": cfg.learner.cpus_per_rank}[section]


def role_placement(cfg: OPDConfig, role: str):
    """placement.<role> (a named teacher's own, when it sets one)."""
    cfg, section = role_config(cfg, role)
    return getattr(cfg.placement, section)


def actor_request(cfg: OPDConfig, role: str) -> dict[str, float]:
    """The resources one actor of `role` reserves, as a placement-group bundle."""
    spec = role_placement(cfg, role)
    request = {"CPU": role_cpus(cfg, role), **spec.resources}
    if spec.num_gpus:
        request["GPU"] = spec.num_gpus
    return request


def check_cluster_fits(cfg: OPDConfig) -> None:
    """Fail fast, naming the field, instead of waiting forever for actors the cluster cannot place."""
    have = ray.cluster_resources()
    need: dict[str, float] = {}
    field_of: dict[str, str] = {"CPU": "rollout/teacher/learner cpus_per_*", "GPU": "placement.<role>.num_gpus"}
    for role in roles(cfg):
        for name, amount in actor_request(cfg, role).items():
            need[name] = need.get(name, 0.0) + amount * role_count(cfg, role)
            field_of.setdefault(name, f"placement.{role}.resources.{name}")
    for name, amount in need.items():
        if amount > have.get(name, 0.0) + 1e-9:
            raise ConfigError(f"{field_of[name]}: the run needs {amount:g} {name}, the Ray cluster has "
                              f"{have.get(name, 0.0):g}")
    node_labels = [n.get("Labels", {}) for n in ray.nodes() if n["Alive"]]
    for role in roles(cfg):
        spec = role_placement(cfg, role)
        for field, wanted in (("node_labels", spec.node_labels), ("prefer_node_labels", spec.prefer_node_labels)):
            if wanted and not any(all(labels.get(k) == v for k, v in wanted.items()) for labels in node_labels):
                raise ConfigError(f"placement.{role}.{field}: no node of the Ray cluster has the labels {dict(wanted)}")


@ray.remote(num_cpus=0)
def free_port_on_this_node() -> int:
    return free_port(host="")  # every interface: the other ranks dial the node's address


class Placement:
    """Scheduling options for the actor (role, index); holds the placement group, if any, for restarts."""

    def __init__(self, cfg: OPDConfig, name: str = "opd"):
        self.cfg, self.group, self.bundle_of = cfg, None, {}
        if cfg.placement.strategy:
            grouped, strategy, group_name = roles(cfg), cfg.placement.strategy, f"{name}-actors"
        elif cfg.learner.num_ranks > 1:
            grouped, strategy, group_name = ("learner",), cfg.placement.learner_strategy, f"{name}-learner"
        else:
            return
        bundles, selectors = [], []
        for role in grouped:
            for index in range(role_count(cfg, role)):
                self.bundle_of[(role, index)] = len(bundles)
                bundles.append(actor_request(cfg, role))
                selectors.append(dict(role_placement(cfg, role).node_labels))
        self.group = placement_group(bundles, strategy=strategy, name=group_name,
                                     bundle_label_selector=selectors if any(selectors) else None)

    def wait(self, timeout_s: float) -> None:
        if self.group is not None and not self.group.wait(timeout_s):
            field = "placement.strategy" if self.cfg.placement.strategy else "placement.learner_strategy"
            raise ConfigError(f"{field}: the Ray cluster could not reserve the placement group "
                              f"({self.group.bundle_specs}) within {timeout_s:.0f} s (pipeline.startup_timeout_s)")

    def in_group(self, role: str, index: int) -> PlacementGroupSchedulingStrategy | None:
        if (role, index) not in self.bundle_of:
            return None
        return PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=self.bundle_of[(role, index)])

    def options(self, role: str, index: int, replacement: bool = False) -> dict:
        """Keyword arguments for `ActorClass.options(...)`. A `replacement` ignores placement.<role>.prefer_node_labels:
        it goes wherever it fits, so that the loss of the preferred node does not stop the run."""
        spec = role_placement(self.cfg, role)
        options = dict(num_cpus=role_cpus(self.cfg, role), num_gpus=spec.num_gpus,
                       resources=dict(spec.resources) or None)
        bundle = self.in_group(role, index)
        labels = dict(spec.node_labels) | ({} if replacement else dict(spec.prefer_node_labels))
        if bundle is not None:
            options["scheduling_strategy"] = bundle
        elif labels:
            options["label_selector"] = labels
        return options

    def learner_rendezvous(self, timeout_s: float) -> tuple[str, int]:
        """(address, port) where the ranks meet: rank 0's node, and a port free there. A lone rank, outside any
        placement group, meets itself on loopback."""
        bundle = self.in_group("learner", 0)
        if bundle is None:
            return "127.0.0.1", free_port()
        node_id = placement_group_table(self.group)["bundles_to_node_id"][self.bundle_of[("learner", 0)]]
        address = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id)
        return address, ray.get(free_port_on_this_node.options(scheduling_strategy=bundle).remote(), timeout=timeout_s)

    def release(self) -> None:
        if self.group is not None:
            remove_placement_group(self.group)
            self.group = None
