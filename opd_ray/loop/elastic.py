"""Elastic teacher pools: each teacher with `min_servers < max_servers` is sized from its measured load.

After each step the controller reads the step's per-teacher accounting (opd_ray/loop/teacher_accounting.py):
- *pressure*: the longest a sampled shard waited for a free server of that teacher, as a share of the step
  (`teacher/<name>/queue_wait_s / time/step_s`). A shard that waits means the pool has too few servers.
- *utilisation*: the pool's busy seconds over (servers x step seconds). A pool that sits idle has too many.

A server is added when pressure stays at or above `mopd.scale_up_wait_share` for `mopd.scale_patience` steps
running, the pool is below `max_servers`, and the cluster has the CPUs for one more; it serves only after it
answered a health probe (`ready`). The newest server is removed when utilisation stays below
`mopd.scale_down_busy_share` for twice as many steps and the pool is above `min_servers`, once no shard in flight
is on it. After a change the counts restart (hysteresis: no flapping on one noisy step). Each decision is a line in
the log and `teacher/<name>/servers` a metric every step. A dead or hung server of an elastic pool is replaced as
any other (opd_ray/loop/fleet.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import ray

from opd_ray.config import teachers
from opd_ray.runtime.remote import get


@dataclass
class PoolLoad:
    """Consecutive steps a pool was under pressure, or idle."""
    pressed: int = 0
    idle: int = 0


class ElasticTeachers:
    def __init__(self, cfg):
        self.cfg, self.load = cfg, {}
        for name, view in teachers.views(cfg).items():
            spec = cfg.teachers.get(name) if cfg.teachers else None
            lo, hi = bounds(spec, view.teacher.num_servers)
            if hi > lo:
                self.load[name] = PoolLoad()

    def resize(self, actors, in_flight_shards, metrics: dict) -> dict[str, float]:
        """Add or remove at most one server per elastic pool after a step; returns teacher/<name>/servers."""
        out, m = {}, self.cfg.mopd
        step_s = max(metrics.get("time/step_s", 0.0), 1e-9)
        for name, load in self.load.items():
            role, view = teachers.role(name), teachers.view(self.cfg, name)
            lo, hi = bounds(self.cfg.teachers[name], view.teacher.num_servers)
            servers = len(actors.pool(role))
            wait_share = metrics.get(f"teacher/{name}/queue_wait_s", 0.0) / step_s
            busy_share = metrics.get(f"teacher/{name}/busy_s", 0.0) / (servers * step_s)
            load.pressed = load.pressed + 1 if wait_share >= m.scale_up_wait_share else 0
            load.idle = load.idle + 1 if busy_share < m.scale_down_busy_share else 0
            if load.pressed >= m.scale_patience and servers < hi and has_room(view):
                start_server(actors, role, self.cfg)
                print(f"[opd] teacher {name}: {servers} -> {servers + 1} servers (a shard waited "
                      f"{wait_share:.0%} of the step)", flush=True)
                self.load[name] = PoolLoad()
            elif load.idle >= 2 * m.scale_patience and servers > lo and not in_use(in_flight_shards, role, servers - 1):
                actors.remove_server(role)
                print(f"[opd] teacher {name}: {servers} -> {servers - 1} servers (busy {busy_share:.0%} of the step)",
                      flush=True)
                self.load[name] = PoolLoad()
            out[f"teacher/{name}/servers"] = float(len(actors.pool(role)))
        return out


def bounds(spec, num_servers: int) -> tuple[int, int]:
    """(min_servers, max_servers) of a teacher; unset: num_servers (a fixed pool)."""
    lo = spec.min_servers if spec is not None and spec.min_servers is not None else num_servers
    hi = spec.max_servers if spec is not None and spec.max_servers is not None else num_servers
    return lo, hi


def has_room(view) -> bool:
    """Does the cluster have the CPUs (and GPUs) for one more server of this teacher?"""
    free = ray.available_resources()
    return (free.get("CPU", 0.0) + 1e-9 >= view.teacher.cpus_per_server
            and free.get("GPU", 0.0) + 1e-9 >= view.placement.teacher.num_gpus)


def start_server(actors, role: str, cfg) -> None:
    """A new server at the end of the pool, handed shards only after its health probe answered."""
    server = actors.new_server(role)
    get([server.ready.remote()], cfg.pipeline.startup_timeout_s, "startup")
    actors.pool(role).append(server)


def in_use(shards, role: str, index: int) -> bool:
    return any(s.teacher_role == role and s.teacher == index for s in shards)
