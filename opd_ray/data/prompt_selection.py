"""Prompt preparation for the paper's teacher-aligned prompt recipe (docs/design.md, paper §3.2).

- Template rewriting: strip the template a prompt came in and re-render its content in the teacher's
  post-training template (the paper: DAPO's template -> JustRL's `{q} Please reason step by step, ...`).
- Exact deduplication after normalisation, and embedding-based near-duplicate removal with a configurable
  cosine threshold (the paper: all-mpnet-base-v2, L2-normalised, top-1 neighbour, drop if cosine >= 0.6).
- Selection: the teacher's post-training prompts, with a configurable share of other prompts mixed in (the
  paper warns that aligned content alone collapses student entropy but gives no ratio).

Embeddings: the default `char_ngram` embedder hashes character 3-grams into a term-frequency vector. It needs
no downloaded weights, is deterministic, and on the lab's digit strings a surface-form similarity is the right
notion of "near duplicate" (a sentence model knows nothing about `12+34+56`). On real prompts pass any
`embed(list[str]) -> array` callable, e.g. a sentence-transformers model (`sentence_embedder`).
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

Embedder = Callable[[Sequence[str]], np.ndarray]
QUERY = "{q}"  # the placeholder for a prompt's content in a template


# ---------------------------------------------------------------- templates
def check_template(template: str, field_name: str = "template") -> None:
    if template.count(QUERY) != 1:
        raise ValueError(f"{field_name}: must contain {QUERY!r} exactly once, got {template!r}")


def strip_template(prompt: str, template: str) -> str:
    """The content of `prompt` rendered in `template`; ValueError when the prompt does not fit the template."""
    check_template(template)
    head, tail = template.split(QUERY)
    if not (prompt.startswith(head) and prompt.endswith(tail)) or len(prompt) < len(head) + len(tail):
        raise ValueError(f"prompt {prompt!r} is not in the template {template!r}")
    return prompt[len(head): len(prompt) - len(tail)]


def rewrite_template(prompt: str, source: str, target: str) -> str:
    """Re-render a prompt from the `source` template into the `target` (e.g. the teacher's) template."""
    check_template(target)
    return target.replace(QUERY, strip_template(prompt, source))


# ---------------------------------------------------------------- exact dedup
def normalize(text: str) -> str:
    """What "the same prompt" means for exact dedup: NFKC, case-folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def dedup_exact(prompts: Sequence[str], against: Sequence[str] = ()) -> list[str]:
    """Prompts in order, without repeats and without any prompt of `against` (after normalisation)."""
    seen = {normalize(p) for p in against}
    out = []
    for p in prompts:
        key = normalize(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# ---------------------------------------------------------------- embeddings and near-duplicates
def char_ngram_embed(texts: Sequence[str], n: int = 3, dim: int = 1024) -> np.ndarray:
    """L2-normalised hashed character n-gram counts (of the normalised text, padded with spaces)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        padded = f" {normalize(text)} "
        for i in range(max(1, len(padded) - n + 1)):
            gram = padded[i: i + n].encode()
            bucket = int.from_bytes(hashlib.blake2b(gram, digest_size=8).digest(), "little") % dim
            out[row, bucket] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def sentence_embedder(model_name: str) -> Embedder:
    """A sentence-transformers model as an embedder (cluster use; the lab never needs it)."""
    from sentence_transformers import SentenceTransformer  # optional dependency

    model = SentenceTransformer(model_name)
    return lambda texts: model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def dedup_near(prompts: Sequence[str], threshold: float, against: Sequence[str] = (),
               embed: Embedder = char_ngram_embed, chunk: int = 1024) -> list[str]:
    """Drop a prompt whose cosine similarity to a kept prompt or to any `against` prompt is >= threshold.

    Greedy in input order (the first of a near-duplicate group survives), as the paper's top-1-neighbour rule
    does against its reference set. Similarities are computed in chunks of rows (matrix products), so memory
    stays at chunk × n; fine for tens of thousands of prompts.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold: must be in (0, 1], got {threshold}")
    if not prompts:
        return []
    vectors = _unit_rows(np.asarray(embed(list(prompts)), dtype=np.float32))
    reference = _unit_rows(np.asarray(embed(list(against)), dtype=np.float32)) if against else None
    blocked = np.zeros(len(prompts), dtype=bool)
    if reference is not None:
        for start in range(0, len(prompts), chunk):
            sims = vectors[start: start + chunk] @ reference.T
            blocked[start: start + chunk] = sims.max(axis=1) >= threshold - 1e-6
    neighbours: dict[int, list[int]] = {}  # i -> the later prompts too close to it (sparse: few pairs)
    for start in range(0, len(prompts), chunk):
        sims = vectors[start: start + chunk] @ vectors.T
        for r, c in zip(*np.nonzero(sims >= threshold - 1e-6)):
            if c > start + r:
                neighbours.setdefault(start + int(r), []).append(int(c))
    kept: list[int] = []
    for i in range(len(prompts)):
        if not blocked[i]:
            kept.append(i)
            blocked[neighbours.get(i, [])] = True
    return [prompts[i] for i in kept]


def dedup(prompts: Sequence[str], against: Sequence[str] = (), threshold: float = 1.0,
          embed: Embedder = char_ngram_embed) -> list[str]:
    """Exact dedup, then near-duplicate removal unless `threshold` is 1.0 (exact only)."""
    unique = dedup_exact(prompts, against)
    return unique if threshold >= 1.0 else dedup_near(unique, threshold, against, embed)


# ---------------------------------------------------------------- selection
def select_aligned(aligned: Sequence[str], other: Sequence[str], count: int, other_share: float,
                   seed: int) -> list[str]:
    """`count` prompts: (1 - other_share) from the teacher's own post-training prompts, the rest from `other`
    (deduplicated against the aligned ones), shuffled with `seed`."""
    if not 0.0 <= other_share <= 1.0:
        raise ValueError(f"other_share: must be in [0, 1], got {other_share}")
    rng = random.Random(seed)
    n_other = round(count * other_share)
    pool_aligned = dedup_exact(aligned)
    pool_other = dedup_exact(other, against=pool_aligned)
    if n_other > len(pool_other) or count - n_other > len(pool_aligned):
        raise ValueError(f"count: asked for {count - n_other} aligned + {n_other} other prompts, have "
                         f"{len(pool_aligned)} + {len(pool_other)}")
    chosen = rng.sample(pool_aligned, count - n_other) + rng.sample(pool_other, n_other)
    rng.shuffle(chosen)
    return chosen


# ---------------------------------------------------------------- entropy watch
class EntropyCollapseWatch:
    """`controller.train(on_step=...)` hook: warns once when the student's mean entropy on its rollouts falls
    below `ratio` x its value at the first step. The paper saw teacher-aligned prompt content collapse student
    entropy and advises mixing in other prompts (`select_aligned(other_share=...)`). ratio 0 turns it off."""

    def __init__(self, ratio: float):
        self.ratio, self.initial, self.warned = ratio, None, False

    def __call__(self, state, metrics: dict) -> None:
        entropy = metrics.get("entropy_student")
        if self.ratio <= 0 or entropy is None or self.warned:
            return
        if self.initial is None:
            self.initial = entropy
        elif entropy < self.ratio * self.initial:
            self.warned = True
            print(f"[opd] warning: student entropy collapsed from {self.initial:.4f} to {entropy:.4f} nats/token "
                  f"by step {state.step} (< data.entropy_collapse_ratio = {self.ratio} of the start); consider "
                  f"mixing in prompts from outside the teacher's post-training set", flush=True)


# ---------------------------------------------------------------- teacher-prompt files
def load_teacher_prompts(source: str) -> list[str]:
    """A `data.teacher_prompts` file: .txt (a prompt per line), .jsonl or .parquet (a "prompt" field).
    (`lab:<model>` names a lab model's own prompts: opd_ray/lab/arith_task.py reads those.)"""
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
