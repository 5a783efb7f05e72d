"""Process-level helpers shared by the actors."""
from __future__ import annotations

import ipaddress
import math
import os
import socket

import psutil
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


def interface_towards(address: str) -> str | None:
    """The name of this node's network interface that reaches `address` (None for loopback, or when not found).

    Gloo's ranks connect to each other at the address their *host name* resolves to, which on many clusters (and
    in network namespaces) is 127.0.0.1: ranks on other nodes are then refused. The route to the rendezvous
    address names the interface the other ranks can reach (GLOO_SOCKET_IFNAME)."""
    ip = socket.gethostbyname(address)
    if ipaddress.ip_address(ip).is_loopback:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((ip, 9))  # UDP: no packet is sent; the kernel only picks the route and its source address
        local = probe.getsockname()[0]
    return next((name for name, addresses in psutil.net_if_addrs().items()
                 if any(a.address == local for a in addresses)), None)
