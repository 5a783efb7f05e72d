"""A bounded `ray.get`: every remote wait in the project has a timeout, and a hang names its stage."""
from __future__ import annotations

import time

import ray


class PipelineTimeout(TimeoutError):
    """A remote stage did not answer within its configured timeout."""


def get(refs, timeout_s: float, stage: str):
    """ray.get with the stage's timeout; a hang becomes an error that names the stage.

    For a list, the first failed ref raises at once: when one learner rank dies, the others block in a
    collective, and waiting for them in order would hang until the timeout.
    """
    if not isinstance(refs, list):
        return get([refs], timeout_s, stage)[0]
    deadline, pending = time.monotonic() + timeout_s, list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise PipelineTimeout(f"{stage} did not finish within {timeout_s:.0f} s (pipeline.{stage}_timeout_s)")
        ray.get(ready)  # raises the remote error, if any
    return ray.get(refs)
