"""A full disk under the checkpoints: one line naming the disk, no partial checkpoint left, the last complete one
kept; once space is freed, `--resume auto` continues from it. The disk is a real small tmpfs (needs root)."""
import os
import subprocess

import pytest

from tests.launch.test_crash_resume import job

CHECKPOINT_MB = 13  # one checkpoint of the tiny lab pair (DeepSpeed state + HF export), measured


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()

    def resize(mb: int, remount: bool = False):
        opts = f"{'remount,' if remount else ''}size={mb}m"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mount)], capture_output=True)
        if done.returncode and not remount:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        assert done.returncode == 0, done.stderr
    yield mount, resize
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow  # two whole jobs, killed and resumed: the slow tier, which CI runs (make test-slow)
@pytest.mark.parametrize("size_mb, failed_step, kept", [
    (20, 4, "step_2"),  # the second checkpoint does not fit: refused before writing
    (12, 2, None),  # the first one runs out of space while being written (the estimate was too small)
])
def test_a_full_disk_is_one_line_and_resume_auto_continues(tiny_lab, small_disk, size_mb, failed_step, kept):
    mount, resize = small_disk
    resize(size_mb)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = job(tiny_lab, mount / "runs", "ckpt.keep_last=1", "eval.avg_k=0", "data.continuation_depths=[]")
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 1, first.stdout[-2000:] + first.stderr[-2000:]
    errors = [line for line in first.stderr.splitlines() if line.startswith("error: ")]  # Ray's log lines follow it
    assert len(errors) == 1, first.stderr[-3000:]
    error = errors[0]
    assert error.startswith(f"error: ckpt: the disk of {mount / 'runs'}") and " is full (" in error, error
    (run_dir,) = [p for p in (mount / "runs").iterdir() if not p.name.startswith('.')]  # the run, not .frozen_evals
    assert not list(run_dir.glob("checkpoints/tmp_step_*"))  # no partial checkpoint left behind
    if kept:
        assert f"the last complete checkpoint {run_dir / 'checkpoints' / kept} is kept" in error
        assert (run_dir / "checkpoints" / "latest").read_text().strip() == kept
    else:
        assert "no checkpoint was written yet" in error
    if not kept:
        return  # nothing to resume: a new run after freeing space is a plain run, which other tests cover
    resize(4 * CHECKPOINT_MB + 16, remount=True)  # space freed
    second = subprocess.run(args + ["--resume", "auto"], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"resumed from {run_dir / 'checkpoints' / kept} at step 2" in second.stdout
