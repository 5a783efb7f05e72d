"""The epoch-based prompt stream that assigns trajectory ids, and the teacher-prompt files of content alignment."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from opd_ray.config import LAB_PROMPTS
from opd_ray.trajectory import TrajId


def load_teacher_prompts(source: str) -> list[str]:
    """`data.teacher_prompts`: lab:<model>, or a .txt (a prompt per line), .jsonl or .parquet ("prompt") file."""
    if source.startswith(LAB_PROMPTS):
        from opd_ray.lab import build as lab_build

        return lab_build.post_training_prompts(source.removeprefix(LAB_PROMPTS))
    path = Path(source)
    if path.suffix == ".txt":
        prompts = [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        prompts = [_prompt_field(row, path, i) for i, row in enumerate(rows, 1)]
    else:
        table = pq.read_table(path)
        if "prompt" not in table.column_names:
            raise ValueError(f"data.teacher_prompts: {path} has no 'prompt' column (columns: {table.column_names})")
        prompts = [str(p) for p in table.column("prompt").to_pylist() if p]
    if not prompts:
        raise ValueError(f"data.teacher_prompts: {path} holds no prompts")
    return prompts


def _prompt_field(row, path: Path, line: int) -> str:
    if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
        raise ValueError(f"data.teacher_prompts: {path} line {line} has no string field 'prompt'")
    return row["prompt"]


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
