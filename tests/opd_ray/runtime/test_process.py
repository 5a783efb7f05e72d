"""pipeline.threads: how many torch threads an actor computes with."""
import os

import pytest

from opd_ray.runtime.process import actor_threads

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("policy, staleness, reserved, role_size, expected", [
    ("reserved", 0, 0.5, 1, 1),  # a fraction of a CPU still computes on one thread
    ("reserved", 0, 3.7, 1, 3),
    ("node", 1, 0.5, 1, CORES),  # the node's cores, whatever the reservation
    ("node", 0, 0.5, CORES, 1),  # shared by the role's actors, which run at once
    ("auto", 0, 0.5, 1, CORES),  # stages one after another: each has the node while it runs
    ("auto", 1, 0.5, 1, 1),  # stages overlap: the reservation splits the cores
])
def test_thread_policy(policy, staleness, reserved, role_size, expected):
    assert actor_threads(reserved, role_size, policy, staleness) == expected


def test_node_policy_follows_the_cores_this_process_may_use():
    """Slurm and cgroups give a job fewer cores than the machine has: "node" counts the affinity mask, not nproc."""
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert actor_threads(0.5, 1, "node", 0) == 1
    finally:
        os.sched_setaffinity(0, before)


def test_free_port_is_below_the_ephemeral_range_and_skips_ports_in_use(monkeypatch):
    """The port comes from the gap between Ray's worker ports and the kernel's ephemeral range (so no other
    process's bind(0) takes it before the rank listens), and a port already bound there is never returned."""
    import socket

    from opd_ray.runtime import process

    port = process.free_port()
    assert process.SERVICE_PORTS.start <= port < min(process.SERVICE_PORTS.stop, process.ephemeral_port_floor())
    base = next(p for p in range(process.SERVICE_PORTS.start, process.SERVICE_PORTS.stop - 3, 3)
                if all(bindable(q) for q in range(p, p + 3)))
    held = [socket.socket(), socket.socket()]
    for s, p in zip(held, (base, base + 1)):
        s.bind(("127.0.0.1", p))
    monkeypatch.setattr(process, "SERVICE_PORTS", range(base, base + 3))  # two of its three ports are taken
    try:
        assert {process.free_port() for _ in range(10)} == {base + 2}
    finally:
        for s in held:
            s.close()


def bindable(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
