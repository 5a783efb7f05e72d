"""Evaluations of frozen models, computed once and reused across runs.

A teacher's accuracy on an evaluation set, and the starting student's, depend only on the weights, the set, the
decoding settings and the seed. Every run of a sweep (objectives, teachers, seeds of the learner) re-measured them;
on SmolLM2 each took about 5 minutes. Each is now stored under a key that hashes all of those, in
`<run.out_dir>/.frozen_evals/<key>.json`, and a later run with the same key reads it instead of decoding again.
`eval.reuse_frozen: false` forces a fresh evaluation (and refreshes the stored one).

What goes into a key (`FrozenEvals.key`): the role, the SHA-256 of the model's weight files, the backend, dtype and
attention implementation it runs with, the shared logit width, each evaluation problem's prompt ids and answer, the
verifier, and every decoding setting (max_new_tokens, stop strings, eval.avg_k, eval.temperature, eval.top_p,
run.seed). A stored result also records how long it took, so a run can say how much time reuse saved.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from opd_ray.config import teachers
from opd_ray.data.task import Example
from opd_ray.models.folders import shared_logit_width, weights_sha256

KEY_VERSION = 2  # 2: the student's results carry per-problem greedy outcomes; bump when the evaluation itself changes (what it measures, how seeds are drawn)


def examples_digest(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([list(ex.prompt_ids), ex.answer]).encode())
    return digest.hexdigest()


class FrozenEvals:
    """The store of frozen-model evaluations in `root`; `enabled` False: nothing is read (results are still stored)."""

    def __init__(self, root: Path, enabled: bool = True):
        self.root, self.enabled, self.saved_s = Path(root), enabled, 0.0

    @staticmethod
    def key(**parts) -> str:
        return hashlib.sha256(json.dumps({"version": KEY_VERSION, **parts}, sort_keys=True).encode()).hexdigest()

    def measure(self, key: str, compute) -> dict:
        """The stored result of `key`, or `compute()` (stored for next time)."""
        path = self.root / f"{key}.json"
        if self.enabled and path.is_file():
            stored = json.loads(path.read_text())
            self.saved_s += stored["seconds"]
            return stored["result"]
        t0 = time.perf_counter()
        result = compute()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"result": result, "seconds": round(time.perf_counter() - t0, 2)}) + "\n")
            tmp.replace(path)  # atomic: two runs storing the same key at once both leave a whole file
        except OSError as err:  # a store is an optimisation: a full or read-only disk must not stop the run
            tmp.unlink(missing_ok=True)
            print(f"[opd] could not store an evaluation in {self.root} ({err.strerror}); it is measured again next "
                  f"time", flush=True)
        return result


def decoding(cfg, task) -> dict:
    """The settings every evaluation of a run decodes and grades with."""
    return {"max_new_tokens": cfg.rollout.max_new_tokens, "stop": list(cfg.rollout.stop), "avg_k": cfg.eval.avg_k,
            "temperature": cfg.eval.temperature, "top_p": cfg.eval.top_p, "seed": cfg.run.seed,
            "verifier": task.verifier, "dtype": cfg.model.dtype, "attn": cfg.model.attn_implementation,
            "vocab_limit": shared_logit_width(cfg.model.student, *teachers.models(cfg))}


def model_parts(cfg, role: str) -> dict:
    """What identifies the model answering: the student (role "student") or `cfg`'s teacher (a teacher's view)."""
    if role == "student":
        return {"weights": weights_sha256(cfg.model.student), "backend": cfg.rollout.backend,
                "prefill_tokens": cfg.teacher.micro_batch_tokens}
    return {"weights": weights_sha256(cfg.model.teacher), "backend": cfg.teacher.backend,
            "prefill_tokens": cfg.teacher.micro_batch_tokens}


def sets_parts(eval_sets: dict[str, list[Example]]) -> list:
    """The sets in order (an avg@k seed depends on the set's place) with a digest of their problems."""
    return [[name, examples_digest(examples)] for name, examples in eval_sets.items()]
