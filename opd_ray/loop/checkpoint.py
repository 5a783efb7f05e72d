"""Atomic checkpoints for exact resume (docs/design.md invariant 5).

Layout under `<run_dir>/checkpoints/`:
    step_N/learner/...   DeepSpeed engine state of every rank (model, optimizer, scheduler, RNG)
    step_N/state.json    step, policy_version, data cursor, consumed traj_ids (trajectory/ledger.py), config fingerprint, and the
                         SHA-256 of every other file of the checkpoint (`verify_files` checks them before a resume:
                         DeepSpeed's load unpickles, so a tampered or half-copied checkpoint must not reach it)
    latest               pointer file: the name of the newest published checkpoint
A checkpoint is written into `tmp_step_N/`, fsynced, renamed to `step_N/`, and only then does `latest`
move (atomic replace). Older checkpoints are deleted after that, keeping the newest `keep_last`.
A `tmp_step_*` left behind by a crash is never read and is removed on the next start.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from omegaconf import OmegaConf

POINTER, STATE, FILES = "latest", "state.json", "files"
# Fields that may change between a run and its resume without changing what is trained (placement: where actors run).
RESUMABLE_CHANGES = ("run.steps", "run.out_dir", "run.name", "run.fault", "ckpt.", "pipeline.", "placement.")


class ResumeError(RuntimeError):
    """A requested resume cannot be honoured (nothing to resume, a failed load, a changed config)."""


class DiskFullError(RuntimeError):
    """A checkpoint does not fit on its disk; the message names the path, the sizes and how to resume."""


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def checkpoint_estimate(ckpt: "CheckpointDir", model_path: str) -> int:
    """Bytes the next checkpoint will take: the last one's size, else 4 x the model's weight files (weights,
    AdamW's two moments, the Hugging Face export)."""
    latest = ckpt.latest()
    if latest is not None:
        return tree_bytes(latest)
    weights = [f for pattern in ("*.safetensors", "*.bin") for f in Path(model_path).glob(pattern)]
    return 4 * sum(f.stat().st_size for f in weights)


def check_free_space(ckpt: "CheckpointDir", needed: int) -> None:
    free = shutil.disk_usage(ckpt.root).free
    if free < needed:
        raise DiskFullError(disk_full_message(ckpt, f"{free / 1e6:.1f} MB free, a checkpoint needs about "
                                                    f"{needed / 1e6:.1f} MB"))


def disk_full_message(ckpt: "CheckpointDir", detail: str) -> str:
    latest = ckpt.latest()
    keep = (f"the last complete checkpoint {latest} is kept: free space there, then run again with --resume auto"
            if latest else "no checkpoint was written yet: free space there, then start again")
    return f"ckpt: the disk of {ckpt.root} is full ({detail}); {keep}"


def config_fingerprint(cfg) -> dict[str, str]:
    """The flattened config minus the fields in RESUMABLE_CHANGES, as {dotted.key: value}."""
    flat: dict[str, str] = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            elif not any(name == f or (f.endswith(".") and name.startswith(f)) for f in RESUMABLE_CHANGES):
                flat[name] = json.dumps(value)

    walk(OmegaConf.to_container(OmegaConf.structured(cfg)), "")
    return flat


def config_differences(saved: dict[str, str], current: dict[str, str]) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k, '<absent>')} -> {current.get(k, '<absent>')}" for k in keys
            if saved.get(k) != current.get(k)]


def fsync_tree(path: Path) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            with open(Path(root) / name, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointDir:
    def __init__(self, root: Path, keep_last: int = 2):
        self.root, self.keep_last = Path(root), keep_last
        self.root.mkdir(parents=True, exist_ok=True)

    def begin(self, step: int) -> Path:
        tmp = self.root / f"tmp_step_{step}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        return tmp

    def publish(self, tmp: Path, step: int, state: dict) -> Path:
        """state.json, fsync, rename tmp -> step_N, move the pointer, then prune old checkpoints."""
        (tmp / STATE).write_text(json.dumps({**state, FILES: file_hashes(tmp)}) + "\n")
        fsync_tree(tmp)
        final = self.root / f"step_{step}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(self.root)
        pointer_tmp = self.root / f".{POINTER}.tmp"
        pointer_tmp.write_text(final.name + "\n")
        with open(pointer_tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(pointer_tmp, self.root / POINTER)
        fsync_dir(self.root)
        self.prune()
        return final

    def complete(self) -> list[Path]:
        done = [p for p in self.root.glob("step_*") if (p / STATE).is_file()]
        return sorted(done, key=lambda p: int(p.name.removeprefix("step_")))

    def latest(self) -> Path | None:
        """The checkpoint the pointer names, or (pointer lost) the newest complete one."""
        pointer = self.root / POINTER
        if pointer.is_file():
            named = self.root / pointer.read_text().strip()
            if (named / STATE).is_file():
                return named
        done = self.complete()
        return done[-1] if done else None

    def prune(self) -> None:
        for old in self.complete()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def clean_partial(self) -> list[str]:
        removed = []
        for tmp in self.root.glob("tmp_step_*"):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp.name)
        return removed


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under a checkpoint folder but state.json, by path relative to it."""
    hashes = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and p.name != STATE):
        with open(path, "rb") as f:
            hashes[path.relative_to(root).as_posix()] = hashlib.file_digest(f, "sha256").hexdigest()
    return hashes


def verify_files(checkpoint: Path) -> None:
    """The checkpoint's files are exactly those its state.json lists, byte for byte; else one ResumeError line.
    Run before any of them is loaded: DeepSpeed's `load_checkpoint` unpickles, and a pickle can run code."""
    listed = read_state(checkpoint).get(FILES)
    if listed is None:
        raise ResumeError(f"{checkpoint}: state.json lists no file hashes (a checkpoint of an older opd_ray), so "
                          "its files cannot be checked before DeepSpeed unpickles them; resume from a newer one")
    actual = file_hashes(checkpoint)
    problems = [f"{name} is missing" for name in sorted(set(listed) - set(actual))]
    problems += [f"{name} is not listed" for name in sorted(set(actual) - set(listed))]
    problems += [f"{name} changed" for name in sorted(set(listed) & set(actual)) if listed[name] != actual[name]]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ResumeError(f"{checkpoint} does not match its state.json: {problems[0]}{more}; a tampered or "
                          "half-copied checkpoint is not loaded (DeepSpeed's load unpickles)")


def read_state(checkpoint: Path) -> dict:
    path = Path(checkpoint) / STATE
    if not path.is_file():
        raise ResumeError(f"{checkpoint} is not a complete checkpoint (no {STATE})")
    return json.loads(path.read_text())


def find_resume_checkpoint(resume: str, out_dir: Path, run_name: str) -> Path:
    """`auto`: the newest published checkpoint of any run named `run_name` under out_dir; else a path."""
    if resume != "auto":
        path = Path(resume)
        if (path / POINTER).is_file() or path.name == "checkpoints":
            found = CheckpointDir(path if path.name == "checkpoints" else path).latest()
        elif (path / "checkpoints").is_dir():
            found = CheckpointDir(path / "checkpoints").latest()
        else:
            found = path if (path / STATE).is_file() else None
        if found is None:
            raise ResumeError(f"--resume {resume}: no complete checkpoint there")
        return found
    candidates = []
    for run_dir in Path(out_dir).glob(f"{run_name}-*"):
        if (run_dir / "checkpoints").is_dir():
            latest = CheckpointDir(run_dir / "checkpoints").latest()
            if latest is not None:
                candidates.append(latest)
    if not candidates:
        raise ResumeError(f"--resume auto: no complete checkpoint of a run named {run_name!r} under {out_dir}")
    return max(candidates, key=lambda p: (p.stat().st_mtime, p.name))
