"""Where each actor runs: Ray resource requests per role from `placement.*`, optionally as one placement group.

Without a strategy every actor asks Ray for its CPUs (rollout/teacher/learner.cpus_per_*), its GPUs
(placement.<role>.num_gpus), its custom resources and node labels, and Ray places it. With a strategy
(PACK, SPREAD, STRICT_PACK, STRICT_SPREAD) the same requests become the bundles of one placement group,
reserved all at once: on a cluster that cannot hold the whole run, nothing starts and the error says so.
"""
from __future__ import annotations

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from opd_ray.config.errors import ConfigError
from opd_ray.config.schema import OPDConfig

ROLES = ("rollout", "teacher", "learner")


def role_count(cfg: OPDConfig, role: str) -> int:
    return {"rollout": cfg.rollout.num_engines, "teacher": cfg.teacher.num_servers,
            "learner": cfg.learner.num_ranks}[role]


def role_cpus(cfg: OPDConfig, role: str) -> float:
    return {"rollout": cfg.rollout.cpus_per_engine, "teacher": cfg.teacher.cpus_per_server,
            "learner": cfg.learner.cpus_per_rank}[role]


def actor_request(cfg: OPDConfig, role: str) -> dict[str, float]:
    """The resources one actor of `role` reserves, as a placement-group bundle."""
    spec = getattr(cfg.placement, role)
    request = {"CPU": role_cpus(cfg, role), **spec.resources}
    if spec.num_gpus:
        request["GPU"] = spec.num_gpus
    return request


def check_cluster_fits(cfg: OPDConfig) -> None:
    """Fail fast, naming the field, instead of waiting forever for actors the cluster cannot place."""
    have = ray.cluster_resources()
    need: dict[str, float] = {}
    field_of: dict[str, str] = {"CPU": "rollout/teacher/learner cpus_per_*", "GPU": "placement.<role>.num_gpus"}
    for role in ROLES:
        for name, amount in actor_request(cfg, role).items():
            need[name] = need.get(name, 0.0) + amount * role_count(cfg, role)
            field_of.setdefault(name, f"placement.{role}.resources.{name}")
    for name, amount in need.items():
        if amount > have.get(name, 0.0) + 1e-9:
            raise ConfigError(f"{field_of[name]}: the run needs {amount:g} {name}, the Ray cluster has "
                              f"{have.get(name, 0.0):g}")
    node_labels = [n.get("Labels", {}) for n in ray.nodes() if n["Alive"]]
    for role in ROLES:
        wanted = getattr(cfg.placement, role).node_labels
        if wanted and not any(all(labels.get(k) == v for k, v in wanted.items()) for labels in node_labels):
            raise ConfigError(f"placement.{role}.node_labels: no node of the Ray cluster has the labels {dict(wanted)}")


class Placement:
    """Scheduling options for the actor (role, index); holds the placement group, if any, for restarts."""

    def __init__(self, cfg: OPDConfig, name: str = "opd"):
        self.cfg, self.group, self.bundle_of = cfg, None, {}
        if not cfg.placement.strategy:
            return
        bundles, selectors = [], []
        for role in ROLES:
            for index in range(role_count(cfg, role)):
                self.bundle_of[(role, index)] = len(bundles)
                bundles.append(actor_request(cfg, role))
                selectors.append(dict(getattr(cfg.placement, role).node_labels))
        self.group = placement_group(bundles, strategy=cfg.placement.strategy, name=f"{name}-actors",
                                     bundle_label_selector=selectors if any(selectors) else None)

    def wait(self, timeout_s: float) -> None:
        if self.group is not None and not self.group.wait(timeout_s):
            raise ConfigError(f"placement.strategy: the Ray cluster could not reserve the placement group "
                              f"({self.cfg.placement.strategy}, bundles {self.group.bundle_specs}) within "
                              f"{timeout_s:.0f} s (pipeline.startup_timeout_s)")

    def options(self, role: str, index: int) -> dict:
        """Keyword arguments for `ActorClass.options(...)`."""
        spec = getattr(self.cfg.placement, role)
        options = dict(num_cpus=role_cpus(self.cfg, role), num_gpus=spec.num_gpus,
                       resources=dict(spec.resources) or None)
        if self.group is not None:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                self.group, placement_group_bundle_index=self.bundle_of[(role, index)])
        elif spec.node_labels:
            options["label_selector"] = dict(spec.node_labels)
        return options

    def learner_master_addr(self) -> str:
        """Rank 0's node address, for the ranks' rendezvous. Without a placement group: loopback, right when the
        ranks share a node (one machine, or resources/labels that pin them to one); spreading ranks over nodes
        needs a placement strategy, so that rank 0's node is known before any rank starts."""
        if self.group is None:
            return "127.0.0.1"
        node_id = placement_group_table(self.group)["bundles_to_node_id"][self.bundle_of[("learner", 0)]]
        return next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id)

    def release(self) -> None:
        if self.group is not None:
            remove_placement_group(self.group)
            self.group = None
