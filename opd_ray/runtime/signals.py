"""Preemption and Ctrl-C: SIGTERM (what Slurm sends before it kills a job, and `ray job stop`) or SIGINT stops
the OPD loop after the current step; the loop writes a checkpoint and raises `Stopped`, and the job exits
non-zero, saying how to resume. A second signal aborts at once."""
from __future__ import annotations

import os
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
    """The loop stopped on a signal after `step`, with a checkpoint at `checkpoint`."""

    def __init__(self, signum: int, step: int, checkpoint):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint {checkpoint}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by that signal


class StopOnSignal:
    """`with StopOnSignal() as stop:` ... `if stop.requested:` — handlers only in the main thread (Python's rule);
    elsewhere (a test driving the loop from a thread) signals keep their default action."""

    def __init__(self):
        self.requested: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def handle(self, signum, frame) -> None:
        if self.requested is not None:  # the second signal: abort now, as the default action would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = signum
        print(f"\n[opd] {signal.Signals(signum).name}: stopping after this step and writing a checkpoint "
              f"(send it again to abort at once)", flush=True)
