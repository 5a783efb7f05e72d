"""Process-level helpers shared by the actors."""
from __future__ import annotations

import math
import socket

import torch


def limit_threads(cpus: float) -> None:
    """Match torch's intra-op threads to the CPUs Ray reserved for this actor, so actors don't oversubscribe."""
    torch.set_num_threads(max(1, math.floor(cpus)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
