"""Process-level helpers shared by the actors."""
from __future__ import annotations

import math
import os
import socket

import torch

THREAD_POLICIES = ("auto", "reserved", "node")


def actor_threads(reserved_cpus: float, role_size: int, policy: str, max_staleness: int) -> int:
    """torch intra-op threads for one actor (pipeline.threads). Ray's CPU reservation places actors; it is not a
    thread budget, and an actor that computes alone on a node should use all of it.
    - "reserved": floor of the reserved CPUs (at least 1), so actors that run at once never oversubscribe;
    - "node": the cores this process may run on, shared by the `role_size` actors of its role (they run at once);
    - "auto": "node" when the stages run one after another (pipeline.max_staleness 0), "reserved" when the next
      batch's rollout and scoring overlap the learner.
    """
    if policy == "auto":
        policy = "node" if max_staleness == 0 else "reserved"
    if policy == "reserved":
        return max(1, math.floor(reserved_cpus))
    return max(1, len(os.sched_getaffinity(0)) // max(1, role_size))


def limit_threads(cpus: float, role_size: int = 1, pipeline=None) -> int:
    """Set torch's intra-op threads for this actor by `pipeline.threads` (default: the reserved CPUs)."""
    policy, staleness = ("reserved", 0) if pipeline is None else (pipeline.threads, pipeline.max_staleness)
    threads = actor_threads(cpus, role_size, policy, staleness)
    torch.set_num_threads(threads)
    return threads


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` ("": every interface) at the time of asking."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
