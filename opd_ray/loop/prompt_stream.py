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

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.prompts)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

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
