"""Saving and restoring the whole loop: learner ranks (DeepSpeed), loop state and data cursor.

Used for `--resume` and for restarting a learner group after a rank died.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import ray

from opd_ray.config import teachers
from opd_ray.loop.checkpoint import (
    CheckpointDir,
    DiskFullError,
    check_free_space,
    checkpoint_estimate,
    config_fingerprint,
    disk_full_message,
    read_state,
)
from opd_ray.loop.prompt_stream import PromptStream
from opd_ray.models.folders import model_config, weights_sha256
from opd_ray.runtime.faults import maybe_fault
from opd_ray.trajectory.ledger import ConsumedLedger


def loop_state_dict(state, stream: PromptStream, cfg) -> dict:
    return {
        "step": state.step, "policy_version": state.policy_version, "refused_stale": state.refused_stale,
        "consumed": state.consumed.state_dict(),  # bounded: trajectory/ledger.py
        "stream": {"epoch": stream.epoch, "position": stream.position,
                   "retry": [list(t) for t in stream.retry_ids()]},
        "config": config_fingerprint(cfg),
        "teachers": teacher_manifest(cfg),
    }


def teacher_manifest(cfg) -> list[dict]:
    """What scored this run's trajectories: per teacher its name, model, weights' SHA-256 and dtype. A resume with
    another set of teachers, or with weights changed under the same path, is refused (run/preflight.py)."""
    return [{"name": name, "model": view.model.teacher, "sha256": weights_sha256(view.model.teacher),
             "dtype": str(checkpoint_dtype(view.model.teacher) or view.model.dtype)}
            for name, view in teachers.views(cfg).items()]


def checkpoint_dtype(path: str) -> str | None:
    config = model_config(path)
    return config.get("torch_dtype") or config.get("dtype")


def manifest_differences(saved: list[dict], current: list[dict]) -> list[str]:
    """One line per teacher added, removed or changed (model, weights, dtype) since the checkpoint."""
    old, new = ({t["name"]: t for t in m} for m in (saved, current))
    lines = [f"teacher {n}: removed (was {old[n]['model']})" for n in old if n not in new]
    lines += [f"teacher {n}: added ({new[n]['model']})" for n in new if n not in old]
    for n in (n for n in new if n in old):
        lines += [f"teacher {n}: {key} {old[n][key]} -> {new[n][key]}" for key in ("model", "sha256", "dtype")
                  if old[n][key] != new[n][key]]
    return lines


def save_checkpoint(actors, state, stream: PromptStream, ckpt: CheckpointDir, cfg, get) -> Path:
    """Every rank writes its DeepSpeed state into tmp_step_N; then state.json, fsync, rename, pointer.

    The free space is checked first (the last checkpoint's size is the estimate). A write that still runs out of
    space leaves no partial checkpoint behind, and the error names the disk; the last complete one is kept.
    """
    timeout, needed = cfg.pipeline.learner_timeout_s, checkpoint_estimate(ckpt, cfg.model.student)
    check_free_space(ckpt, needed)
    tmp = ckpt.begin(state.step)
    try:
        get(actors.learners.save_checkpoint_refs(str(tmp / "learner")), timeout, "learner")
        if cfg.ckpt.export_hf:
            get(actors.learners.save_pretrained_refs(str(tmp / "hf"), cfg.model.student), timeout, "learner")
        maybe_fault(cfg.run.fault, "ckpt_publish", step=state.step)
        return ckpt.publish(tmp, state.step, loop_state_dict(state, stream, cfg))
    except (OSError, ray.exceptions.RayTaskError) as err:
        free = shutil.disk_usage(ckpt.root).free
        if "No space left" not in str(err) and free > 1 << 20:
            raise  # not the disk (DeepSpeed's own message on a full disk is "basic_ios::clear: iostream error")
        shutil.rmtree(tmp, ignore_errors=True)
        raise DiskFullError(disk_full_message(ckpt, f"writing {tmp} failed with {free / 1e6:.1f} MB left")) from None


def restore(actors, checkpoint: Path, state, stream: PromptStream, cfg, get) -> None:
    """Load every rank's DeepSpeed state and rewind the loop state and data cursor to the checkpoint."""
    saved = read_state(checkpoint)
    steps = get(actors.learners.load_checkpoint_refs(str(Path(checkpoint) / "learner")),
                cfg.pipeline.learner_timeout_s, "learner")
    if set(steps) != {saved["step"]}:
        raise RuntimeError(f"learner ranks restored optimizer steps {steps}, checkpoint says {saved['step']}")
    state.step, state.policy_version = saved["step"], saved["policy_version"]
    state.refused_stale = saved["refused_stale"]
    state.consumed = consumed_ledger(saved["consumed"], stream)
    s = saved["stream"]
    stream.epoch, stream.position = s["epoch"], s["position"]
    stream.set_retry(s["retry"])


def consumed_ledger(saved, stream: PromptStream) -> ConsumedLedger:
    """state.json's record of consumed ids; a checkpoint written before the ledger lists every id."""
    if isinstance(saved, dict):
        return ConsumedLedger.from_state_dict(saved)
    ledger = ConsumedLedger()
    ledger.consume([stream.serial(tuple(t)) for t in saved])
    return ledger


def reset(state, stream: PromptStream) -> None:
    """Back to the very start (a learner restart before any checkpoint existed)."""
    state.step = state.policy_version = state.refused_stale = 0
    state.consumed = ConsumedLedger()
    stream.epoch, stream.position, stream.retry = 0, 0, []
