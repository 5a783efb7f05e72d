"""Atomic checkpoint directory, config fingerprints and resume lookup (no Ray)."""
import hashlib
import json

import pytest

from opd_ray.loop.checkpoint import (
    CheckpointDir,
    ResumeError,
    config_differences,
    config_fingerprint,
    find_resume_checkpoint,
    read_state,
    verify_files,
)
from opd_ray.loop.prompt_stream import PromptStream
from opd_ray.run.preflight import load_config
from tests.conftest import LAB_CFG


def publish(ckpt, step):
    tmp = ckpt.begin(step)
    (tmp / "learner").mkdir()
    (tmp / "learner" / "weights.bin").write_bytes(b"x" * 10)
    return ckpt.publish(tmp, step, {"step": step})


def test_publish_moves_pointer_and_keeps_last_k(tmp_path):
    ckpt = CheckpointDir(tmp_path, keep_last=2)
    for step in (2, 4, 6):
        publish(ckpt, step)
    assert [p.name for p in ckpt.complete()] == ["step_4", "step_6"]
    assert (tmp_path / "latest").read_text().strip() == "step_6"
    assert ckpt.latest().name == "step_6" and read_state(ckpt.latest())["step"] == 6


def test_partial_checkpoint_is_never_chosen_and_is_cleaned(tmp_path):
    ckpt = CheckpointDir(tmp_path)
    publish(ckpt, 2)
    tmp = ckpt.begin(4)  # a crash after the learner wrote, before publish
    (tmp / "learner").mkdir()
    assert ckpt.latest().name == "step_2"
    assert ckpt.clean_partial() == ["tmp_step_4"] and not tmp.exists()


def test_lost_pointer_falls_back_to_newest_complete(tmp_path):
    ckpt = CheckpointDir(tmp_path, keep_last=3)
    publish(ckpt, 2)
    publish(ckpt, 10)
    (tmp_path / "latest").unlink()
    assert ckpt.latest().name == "step_10"  # numeric order, not lexical


def test_resume_that_finds_nothing_is_an_error(tmp_path):
    with pytest.raises(ResumeError, match="no complete checkpoint"):
        find_resume_checkpoint("auto", tmp_path, "lab_cpu")
    with pytest.raises(ResumeError):
        find_resume_checkpoint(str(tmp_path), tmp_path, "lab_cpu")


def test_resume_auto_picks_the_run_named_and_its_latest(tmp_path):
    publish(CheckpointDir(tmp_path / "other-1" / "checkpoints"), 8)
    publish(CheckpointDir(tmp_path / "lab_cpu-1" / "checkpoints"), 2)
    found = find_resume_checkpoint("auto", tmp_path, "lab_cpu")
    assert found == tmp_path / "lab_cpu-1" / "checkpoints" / "step_2"
    assert find_resume_checkpoint(str(tmp_path / "lab_cpu-1"), tmp_path, "x") == found


def test_fingerprint_ignores_run_length_but_not_the_objective():
    base = config_fingerprint(load_config(LAB_CFG))
    longer = config_fingerprint(load_config(LAB_CFG, ["run.steps=999", "pipeline.learner_timeout_s=5"]))
    assert config_differences(base, longer) == []
    other = config_fingerprint(load_config(LAB_CFG, ["objective.kind=sampled_token"]))
    assert config_differences(base, other) == ['objective.kind: "topk" -> "sampled_token"']
    json.dumps(base)  # stored in state.json


def test_stream_at_an_epoch_boundary_continues_with_the_next_epoch():
    stream = PromptStream(["a", "b", "c", "d"], samples_per_prompt=1, seed=0)
    stream.next_batch(4)
    assert (stream.epoch, stream.position) == (0, 4)  # what a checkpoint at the boundary records
    resumed = PromptStream(["a", "b", "c", "d"], 1, 0, epoch=0, position=4)
    assert {t[0] for t, _ in resumed.next_batch(4)} == {1}


def test_a_checkpoint_whose_files_differ_from_its_state_is_refused_before_loading(tmp_path):
    """state.json lists a SHA-256 per file; --resume checks them before DeepSpeed unpickles anything."""
    ckpt = CheckpointDir(tmp_path / "checkpoints")
    good = publish(ckpt, 2)
    assert read_state(good)["files"] == {"learner/weights.bin": hashlib.sha256(b"x" * 10).hexdigest()}
    verify_files(good)  # untouched: passes
    tampers = {"weights.bin changed": lambda d: (d / "learner" / "weights.bin").write_bytes(b"y" * 10),
               "weights.bin is missing": lambda d: (d / "learner" / "weights.bin").unlink(),
               "extra.pkl is not listed": lambda d: (d / "learner" / "extra.pkl").write_bytes(b"code")}
    for case, (problem, tamper) in enumerate(tampers.items()):
        bad = publish(CheckpointDir(tmp_path / f"case{case}"), 2)
        tamper(bad)
        with pytest.raises(ResumeError, match=f"does not match its state.json: learner/{problem}") as err:
            verify_files(bad)
        assert "\n" not in str(err.value)
    old = publish(CheckpointDir(tmp_path / "old"), 2)
    (old / "state.json").write_text(json.dumps({"step": 2}))  # written before checkpoints listed their files
    with pytest.raises(ResumeError, match="lists no file hashes"):
        verify_files(old)
