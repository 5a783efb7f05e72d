"""Test-only fault injection into the real components (never set in a recipe).

`run.fault` holds one spec, `POINT:key=value,...`, or several joined by `;` (each fires on its own cue), e.g.
    learner_step:rank=1,step=3,gen=0,action=exit   rank 1 of learner generation 0 exits at its 3rd step
    learner_weights:rank=0,step=2,gen=0,action=exit   rank 0 exits while it gathers the weights after step 2
    ckpt_publish:step=4,action=sleep,seconds=60     the driver sleeps before publishing checkpoint 4
    rollout_sync:engine=0,version=3,gen=0,action=exit   engine 0 exits while it loads weights v3 (gen: its
                                                     replacement count, so that a replacement does not fail too)
    teacher_score:server=0,gen=0,call=3,action=sleep,seconds=60   teacher 0 hangs on its 3rd scoring call
    teacher_score:teacher=digits,version=0-5,action=sleep,seconds=2   teacher digits is slow while v0-v5 are scored
    rollout_generate:engine=0,gen=0,call=3,action=sleep,seconds=60   engine 0 hangs on its 3rd generate call
    rollout_eval:engine=0,gen=0,version=2,action=exit   engine 0 exits in an evaluation call while it serves v2
Every key but `action` and `seconds` must match the call site's context for the fault to fire; a value `lo-hi`
matches the integers in that range. Several specs, e.g. one death per evaluation, each in the next replacement:
    rollout_eval:engine=0,gen=0,version=0,action=exit;rollout_eval:engine=0,gen=1,version=1,action=exit
"""
from __future__ import annotations

import os
import time


def parse(spec: str) -> tuple[str, dict[str, str]]:
    point, _, rest = spec.partition(":")
    return point, dict(kv.split("=", 1) for kv in rest.split(",") if kv)


def matches(value, wanted: str) -> bool:
    """`wanted` is a value, or an inclusive integer range `lo-hi` (e.g. version=0-5)."""
    lo, dash, hi = wanted.partition("-")
    if dash and lo.isdigit() and hi.isdigit():
        return str(value).isdigit() and int(lo) <= int(value) <= int(hi)
    return str(value) == wanted


def maybe_fault(spec: str, point: str, **context) -> None:
    """Fire the first of `spec`'s `;`-joined specs whose point is `point` and whose keys all match `context`."""
    for one in filter(None, spec.split(";")):
        where, args = parse(one)
        if where == point and all(matches(context.get(k), v) for k, v in args.items()
                                  if k not in ("action", "seconds")):
            fire(args, point, context)
            return


def fire(args: dict[str, str], point: str, context: dict) -> None:
    action = args.get("action", "raise")
    if action == "exit":
        os._exit(17)
    if action == "sleep":
        time.sleep(float(args.get("seconds", "60")))
        return
    raise RuntimeError(f"injected fault at {point} {context}")
