"""Size of a checkpoint's state.json, and of the driver's record of consumed ids, after 200 and 20,000 steps.

    .venv/bin/python bench/checkpoint_state_size.py     -> bench/results/checkpoint_state_size.json

The lab default's prompt stream (configs/lab_cpu.yaml: its training prompts, 64 per step, max_staleness 1) is
consumed as the controller consumes it: two batches in flight, the oldest trained first, and one batch in
twenty refused as stale and handed out again, so that ids arrive out of order. No actor runs: what is measured is
the bookkeeping, the same `resume.loop_state_dict` a checkpoint writes. "listing" is what state.json held before
the ledger: every consumed traj_id, and the driver's set of them.
"""
from __future__ import annotations

import json
import random
import sys
import tracemalloc
from collections import deque
from pathlib import Path

from evidence import write_new  # bench/evidence.py

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opd_ray.loop.prompt_stream import PromptStream  # noqa: E402
from opd_ray.loop.resume import loop_state_dict  # noqa: E402
from opd_ray.models.loading import load_tokenizer  # noqa: E402
from opd_ray.run.preflight import build_task, load_config  # noqa: E402
from opd_ray.trajectory.ledger import ConsumedLedger  # noqa: E402


class State:  # the fields of controller.LoopState that a checkpoint reads
    def __init__(self):
        self.step = self.policy_version = self.refused_stale = 0
        self.consumed = ConsumedLedger()


def allocated(build) -> int:
    """Bytes Python allocates to build an object (and keeps while it lives), by tracemalloc."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()  # noqa: F841  (alive until the measurement)
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return size


def measure(cfg, prompts: list, steps: int, refuse_every: int = 20) -> dict:
    """Consume `steps` batches; sizes of state.json and of the record of ids, with the ledger and with a listing."""
    rng, stream, state = random.Random(0), PromptStream(prompts, cfg.data.samples_per_prompt, cfg.run.seed), State()
    in_flight = deque()
    while state.step < steps:
        while len(in_flight) < cfg.pipeline.max_staleness + 1:
            in_flight.append(stream.next_batch(cfg.data.prompts_per_step))
        batch = in_flight.popleft()
        if rng.randrange(refuse_every) == 0:
            stream.give_back(batch)
            state.refused_stale += len(batch)
            continue
        state.consumed.consume([stream.serial(t) for t, _ in batch])
        state.step += 1
        state.policy_version += 1
    serials = [*range(state.consumed.floor), *state.consumed.above]
    saved = loop_state_dict(state, stream, cfg)
    listing = sorted(list(stream.traj_id(s)) for s in serials)
    return {"steps": steps, "ids_consumed": state.consumed.count, "ids_above_floor": len(state.consumed.above),
            "state_json_bytes": len(json.dumps(saved)),
            "state_json_bytes_listing": len(json.dumps({**saved, "consumed": listing})),
            "driver_record_bytes": allocated(lambda: ConsumedLedger.from_state_dict(saved["consumed"])),
            "driver_record_bytes_listing": allocated(lambda: {tuple(t) for t in listing})}


def main() -> None:
    cfg = load_config(ROOT / "configs" / "lab_cpu.yaml", [])
    prompts = build_task(cfg, load_tokenizer(cfg.model.student)).train
    rows = [measure(cfg, prompts, steps) for steps in (200, 20_000)]
    for row in rows:
        print(json.dumps(row))
    write_new(ROOT / "bench" / "results" / "checkpoint_state_size.json",
              {"config": "configs/lab_cpu.yaml", "prompts": len(prompts), "prompts_per_step": cfg.data.prompts_per_step,
               "max_staleness": cfg.pipeline.max_staleness, "refused_batches": "1 in 20", "results": rows,
               "note": "driver_record_bytes: what Python allocates for the record (tracemalloc); *_listing: every "
                       "consumed traj_id, listed in state.json and kept in a set on the driver, as before the ledger"})


if __name__ == "__main__":
    main()
