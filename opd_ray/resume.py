"""Saving and restoring the whole loop: learner ranks (DeepSpeed), loop state and data cursor.

Used for `--resume` and for restarting a learner group after a rank died.
"""
from __future__ import annotations

from pathlib import Path

from opd_ray.checkpoint import CheckpointDir, config_fingerprint, read_state
from opd_ray.data import PromptStream
from opd_ray.faults import maybe_fault


def loop_state_dict(state, stream: PromptStream, cfg) -> dict:
    return {
        "step": state.step, "policy_version": state.policy_version, "refused_stale": state.refused_stale,
        "consumed": sorted(list(t) for t in state.consumed),
        "stream": {"epoch": stream.epoch, "position": stream.position,
                   "retry": [list(t) for t in stream.retry_ids()]},
        "config": config_fingerprint(cfg),
    }


def save_checkpoint(actors, state, stream: PromptStream, ckpt: CheckpointDir, cfg, get) -> Path:
    """Every rank writes its DeepSpeed state into tmp_step_N; then state.json, fsync, rename, pointer."""
    timeout = cfg.pipeline.learner_timeout_s
    tmp = ckpt.begin(state.step)
    get(actors.learners.save_checkpoint_refs(str(tmp / "learner")), timeout, "learner")
    if cfg.ckpt.export_hf:
        get(actors.learners.save_pretrained_refs(str(tmp / "hf"), cfg.model.student), timeout, "learner")
    maybe_fault(cfg.run.fault, "ckpt_publish", step=state.step)
    return ckpt.publish(tmp, state.step, loop_state_dict(state, stream, cfg))


def restore(actors, checkpoint: Path, state, stream: PromptStream, cfg, get) -> None:
    """Load every rank's DeepSpeed state and rewind the loop state and data cursor to the checkpoint."""
    saved = read_state(checkpoint)
    steps = get(actors.learners.load_checkpoint_refs(str(Path(checkpoint) / "learner")),
                cfg.pipeline.learner_timeout_s, "learner")
    if set(steps) != {saved["step"]}:
        raise RuntimeError(f"learner ranks restored optimizer steps {steps}, checkpoint says {saved['step']}")
    state.step, state.policy_version = saved["step"], saved["policy_version"]
    state.refused_stale = saved["refused_stale"]
    state.consumed = {tuple(t) for t in saved["consumed"]}
    s = saved["stream"]
    stream.epoch, stream.position = s["epoch"], s["position"]
    stream.set_retry(s["retry"])


def reset(state, stream: PromptStream) -> None:
    """Back to the very start (a learner restart before any checkpoint existed)."""
    state.step = state.policy_version = state.refused_stale = 0
    state.consumed = set()
    stream.epoch, stream.position, stream.retry = 0, 0, []
