"""Exactly-once bookkeeping in bounded memory (docs/design.md invariant 1).

The prompt stream hands trajectory ids out in one fixed order, so each id has a *serial*: its place in that order
(`PromptStream.serial`). Ids are consumed almost in that order: out of it only by the batches in flight (sampled
ahead, or refused as stale and handed out again). So the ledger keeps a floor below which every serial was
consumed, and the few consumed serials above it. Its size follows what is in flight, not the length of the run:
a checkpoint's state.json stays the same size at step 200 and at step 20,000.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class ConsumedTwice(RuntimeError):
    """The learner was about to train on a trajectory a second time: the exactly-once invariant is broken."""


@dataclass
class ConsumedLedger:
    floor: int = 0  # every serial below it was consumed
    above: set[int] = field(default_factory=set)  # the consumed serials at or above the floor
    count: int = 0  # serials consumed in all

    def __contains__(self, serial: int) -> bool:
        return serial < self.floor or serial in self.above

    def consume(self, serials: list[int]) -> None:
        """Record a trained batch; raise ConsumedTwice, recording nothing, if any serial was consumed before."""
        batch, again = set(), []
        for serial in serials:
            if serial in self or serial in batch:
                again.append(serial)
            batch.add(serial)
        if again:
            raise ConsumedTwice(f"trajectory serials consumed twice: {again[:5]}")
        self.above |= batch
        self.count += len(batch)
        while self.floor in self.above:  # the run of consumed serials from the floor up is folded into it
            self.above.remove(self.floor)
            self.floor += 1

    def state_dict(self) -> dict:
        return {"floor": self.floor, "above": sorted(self.above), "count": self.count}

    @classmethod
    def from_state_dict(cls, saved: dict) -> "ConsumedLedger":
        return cls(int(saved["floor"]), {int(s) for s in saved["above"]}, int(saved["count"]))
