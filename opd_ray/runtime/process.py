"""Process-level helpers shared by the actors."""
from __future__ import annotations

import ipaddress
import math
import os
import random
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


# Ray's workers take ports 10002-19999 by default, and the kernel hands out ephemeral ports (bind to port 0, every
# outgoing connection) from ip_local_port_range, 32768 and up on Linux. A port asked for with bind(0) could be given
# to another process before our rank listened on it (a learner's rendezvous failed with EADDRINUSE that way), so
# ports are drawn from the gap between the two, which neither hands out.
SERVICE_PORTS = range(20000, 32768)


def ephemeral_port_floor() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` ("": every interface) at the time of asking, below the ephemeral range."""
    candidates = range(SERVICE_PORTS.start, min(SERVICE_PORTS.stop, ephemeral_port_floor()))
    draw = random.SystemRandom()  # not the seeded `random`: concurrent callers must not draw the same ports
    for port in draw.sample(candidates, k=min(64, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the gap is taken (or missing): let the kernel choose
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
