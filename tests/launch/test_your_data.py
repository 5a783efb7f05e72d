"""OPD on the user's models and data through the real job (`launch/opd_job.py`: Ray actors, the DeepSpeed
learner, weight sync): JSONL prompts in a chat template, two evaluation sets, the math verifier; and every
bad input stopped with one line before Ray starts."""
import json
import shutil
import subprocess
import sys

import pytest

from launch import opd_job
from tests.conftest import LAB, ROOT

SUMS = ROOT / "tests" / "data" / "sums"
CONFIG = str(ROOT / "configs" / "lab_cpu.yaml")


def dataset_args(models, out, *extra) -> list[str]:
    return ["--config", CONFIG, f"model.student={models / 'student'}", f"model.teacher={models / 'teacher'}",
            "data.task=dataset", f"data.train_files=[{SUMS / 'train.jsonl'}]",
            f"data.eval_files={{easy: {SUMS / 'easy.jsonl'}, hard: {SUMS / 'hard.jsonl'}}}",
            "data.max_prompt_tokens=96", "rollout.max_new_tokens=12", "run.steps=2", "data.prompts_per_step=4",
            "eval.avg_k=2", "eval.every=1", "data.continuation_depths=[0.0]", "learner.cpus_per_rank=0.5",
            f"run.out_dir={out}", *extra]


def run_dir_of(out) -> "Path":  # noqa: F821
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith('.')]  # the run, not .frozen_evals
    return run_dir


def test_opd_job_on_a_jsonl_dataset_with_two_evaluation_sets(ray_cluster, tiny_smol, tmp_path, capsys):
    """The whole job on a user's JSONL files; `data.verifier` picks the grader (each verifier is tested on its own
    in tests/opd_ray/data/test_verifiers.py)."""
    out = tmp_path / "runs"
    assert opd_job.main(dataset_args(tiny_smol, out, "data.verifier=math")) == 0
    printed = capsys.readouterr().out
    assert "[opd] data.train_files: 3 prompts longer than data.max_prompt_tokens=96 dropped" in printed
    assert "[opd] task dataset: 48 training prompts; evaluation sets: easy 8, hard 8" in printed
    run_dir = run_dir_of(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "dataset" and summary["primary_set"] == "easy" and list(summary["eval"]) == ["easy", "hard"]
    for per_set in summary["eval"].values():
        for who in ("student_before", "student_after", "teacher"):
            assert set(per_set[who]) == {"greedy", "avg@2"} and all(0 <= v <= 1 for v in per_set[who].values())
        assert set(per_set["gap_recovery"]) == {"greedy", "avg@2"}
    assert summary["steps"] == 2 and summary["trajectories"] == 8
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    eval_steps = [r["step"] for r in rows if "eval/hard/avg@2" in r]
    assert eval_steps == [0, 1, 2]  # before, every eval.every=1 step before the end, and at the end
    assert "verifier: math" in (run_dir / "config.yaml").read_text()


@pytest.fixture
def no_ray(monkeypatch):
    """Bad input must stop the job before Ray starts: starting it fails the test."""
    def refuse():
        raise AssertionError("Ray was started for a bad input")
    monkeypatch.setattr(opd_job, "connect_ray", refuse)


def one_line_error(capsys, args) -> str:
    assert opd_job.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("content, expected", [
    (b"", "train.jsonl: file is empty"),
    (b'{"prompt": "What is 1 + 1?", "answer": "2"}\n{"prompt": "x", "answer": \n', "train.jsonl line 2: invalid JSON"),
    (b'{"question": "What is 1 + 1?", "answer": "2"}\n', "train.jsonl line 1: no key 'prompt'"),
    (b'{"prompt": 17, "answer": "2"}\n', "train.jsonl line 1: 'prompt' must be a string or a list of"),
    (b'{"prompt": ["not", "messages"], "answer": "2"}\n', "train.jsonl line 1: prompt[0] must be an object"),
    (b'{"prompt": "What is \xff?", "answer": "2"}\n', "train.jsonl line 1: invalid UTF-8 (byte 0xff"),
])
def test_bad_rows_stop_the_job_before_ray(no_ray, tiny_smol, tmp_path, capsys, content, expected):
    train = tmp_path / "train.jsonl"
    train.write_bytes(content)
    err = one_line_error(capsys, dataset_args(tiny_smol, tmp_path / "runs", f"data.train_files=[{train}]"))
    assert err.startswith("error: data.train_files: ") and expected in err


@pytest.mark.parametrize("swap", [False, True])
def test_mismatched_vocabularies_stop_the_job_before_ray(no_ray, no_weights, tiny_smol, tmp_path, capsys, swap):
    roles = [LAB / "student", tiny_smol / "teacher"]
    student, teacher = roles[::-1] if swap else roles
    err = one_line_error(capsys, ["--config", CONFIG, f"model.student={student}", f"model.teacher={teacher}",
                                  "rollout.max_new_tokens=8", f"run.out_dir={tmp_path}"])
    assert no_weights == []  # the contract reads tokenizers and config files, never the weights
    assert err.startswith("error: model.teacher: the teacher does not fit the student (vocabulary: ")


def test_corrupt_weights_and_offline_hub_ids_stop_the_job_before_ray(no_ray, tiny_smol, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_smol / "teacher", teacher)
    (teacher / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    err = one_line_error(capsys, dataset_args(tiny_smol, tmp_path / "runs", f"model.teacher={teacher}"))
    assert "model.teacher: " in err and "model.safetensors is corrupt: header is not JSON" in err
    err = one_line_error(capsys, dataset_args(tiny_smol, tmp_path / "runs", "model.student=HuggingFaceTB/NoSuchModel"))
    assert "model.student: 'HuggingFaceTB/NoSuchModel' is neither a local folder nor in the Hugging Face cache" in err


def test_a_bad_file_is_one_line_from_the_command_line(tiny_smol, tmp_path):
    """The whole entry script, as a user runs it: no traceback, rc 2, the file named."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    done = subprocess.run([sys.executable, str(ROOT / "launch" / "opd_job.py"),
                           *dataset_args(tiny_smol, tmp_path / "runs", f"data.train_files=[{empty}]")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: data.train_files: {empty}")
    assert "Started a local Ray" not in done.stderr + done.stdout
