"""The epoch-based prompt stream that assigns trajectory ids: the loop's one source of prompts."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from opd_ray.trajectory.batch import TrajId


@dataclass
class PromptStream:
    """Walks the prompt set in seeded, shuffled epochs; each (prompt, sample) gets a unique traj_id.

    Prompts whose trajectories were refused (too stale) are handed out again first, under the same ids. A prompt
    is any item (the loop's are `tasks.Example`s); traj_id (epoch, index, sample) names it by its index.
    """

    prompts: list
    samples_per_prompt: int
    seed: int
    epoch: int = 0
    position: int = 0
    retry: list[tuple[TrajId, object]] = field(default_factory=list)

    _epochs: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict, repr=False, compare=False)

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.prompts)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def _order_and_places(self, epoch: int) -> tuple[list[int], list[int]]:
        """The epoch's order (position -> prompt index) and its inverse, for the last few epochs asked about."""
        if epoch not in self._epochs:
            if len(self._epochs) >= 4:  # ids come from the current epoch or the one before (re-issued ones)
                self._epochs.pop(min(self._epochs))
            order, places = self._order(epoch), [0] * len(self.prompts)
            for position, index in enumerate(order):
                places[index] = position
            self._epochs[epoch] = order, places
        return self._epochs[epoch]

    def serial(self, traj_id: TrajId) -> int:
        """The id's place in the order the stream hands ids out (`trajectory.ledger`): epoch by epoch, position
        by position, sample by sample."""
        epoch, index, sample = traj_id
        position = self._order_and_places(epoch)[1][index]
        return (epoch * len(self.prompts) + position) * self.samples_per_prompt + sample

    def traj_id(self, serial: int) -> TrajId:
        """The inverse of `serial`."""
        place, sample = divmod(serial, self.samples_per_prompt)
        epoch, position = divmod(place, len(self.prompts))
        return epoch, self._order_and_places(epoch)[0][position], sample

    def next_batch(self, n_prompts: int) -> list[tuple[TrajId, object]]:
        items, self.retry = self.retry, []
        order = self._order(self.epoch)
        while len(items) < n_prompts * self.samples_per_prompt:
            if self.position == len(order):
                self.epoch, self.position = self.epoch + 1, 0
                order = self._order(self.epoch)
            index = order[self.position]
            self.position += 1
            items += [((self.epoch, index, s), self.prompts[index]) for s in range(self.samples_per_prompt)]
        return items

    def give_back(self, items: list[tuple[TrajId, object]]) -> None:
        self.retry.extend(items)

    def retry_ids(self) -> list[TrajId]:
        return [t for t, _ in self.retry]

    def set_retry(self, traj_ids: list[TrajId]) -> None:
        """Restore the retry list from its ids (a checkpoint stores ids, not prompts)."""
        self.retry = [(tuple(t), self.prompts[t[1]]) for t in traj_ids]
