"""Several named teachers: each teacher's view of the config, routing bound to rows, and the refusals before Ray
(an unknown teacher in a row, a teacher of another vocabulary, a resume with a changed teacher set)."""
import json
import shutil

import pytest

from opd_ray.config import teachers
from opd_ray.config.errors import ConfigError
from opd_ray.data.rows import DataError
from opd_ray.lab.task import sample_problems
from opd_ray.loop.checkpoint import CheckpointDir, ResumeError, config_fingerprint
from opd_ray.loop.resume import teacher_manifest
from opd_ray.models.contract import ContractError
from opd_ray.models.loading import load_tokenizer
from opd_ray.run.preflight import build_task, check_pairs, check_resume_config, load_config
from tests.conftest import ROOT


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def two_skill_files(tmp_path):
    """Rows of both skills, each naming its teacher; one held-out set per skill."""
    sums, digits = sample_problems(1, 12, (2, 3)), sample_problems(2, 12, (2, 3), "digits")
    rows = [{"prompt": p.prompt, "answer": str(p.answer), "teacher": t} for ps, t in ((sums, "sum"), (digits, "digits"))
            for p in ps]
    write_rows(tmp_path / "train.jsonl", rows[::2] + rows[1::2])
    for name, ps in (("sum_eval", sample_problems(3, 4, (2, 3))), ("digits_eval", sample_problems(4, 4, (2, 3), "digits"))):
        write_rows(tmp_path / f"{name}.jsonl", [{"prompt": p.prompt, "answer": str(p.answer)} for p in ps])
    return tmp_path


def mopd_cfg(models, files, *overrides):
    return load_config(ROOT / "configs" / "lab_mopd.yaml", [
        f"model.student={models / 'student'}", f"teachers.sum.model={models / 'teacher'}",
        f"teachers.digits.model={models / 'teacher'}", f"data.train_files={files / 'train.jsonl'}",
        f"data.eval_files={{sum_eval: {{files: {files / 'sum_eval.jsonl'}, teacher: sum}}, "
        f"digits_eval: {{files: {files / 'digits_eval.jsonl'}, teacher: digits}}}}", *overrides])


def test_a_named_teacher_takes_unset_fields_from_the_teacher_section(tiny_lab, two_skill_files):
    cfg = mopd_cfg(tiny_lab, two_skill_files, "teachers.digits.num_servers=2", "teacher.micro_batch_tokens=512")
    views = teachers.views(cfg)
    assert list(views) == ["sum", "digits"] and teachers.is_multi(cfg)
    assert views["digits"].teacher.num_servers == 2 and views["sum"].teacher.num_servers == 1
    assert {v.teacher.micro_batch_tokens for v in views.values()} == {512}
    assert {v.teacher.cpus_per_server for v in views.values()} == {0.25}  # from lab_mopd.yaml's teacher section
    assert views["sum"].model.teacher == str(tiny_lab / "teacher") and cfg.model.teacher == ""
    assert [teachers.role(n) for n in views] == ["teacher:sum", "teacher:digits"]
    one = load_config(ROOT / "configs" / "lab_cpu.yaml")
    assert teachers.names(one) == ["default"] and teachers.view(one, "default") is one
    assert teachers.role("default") == "teacher" and teachers.name_of("teacher:sum") == "sum"


def test_each_training_row_is_bound_to_the_teacher_it_names(tiny_lab, two_skill_files):
    cfg = mopd_cfg(tiny_lab, two_skill_files)
    task = build_task(cfg, load_tokenizer(cfg.model.student))
    assert {ex.teacher for ex in task.train} == {"sum", "digits"}
    for ex in task.train:  # the digits skill's prompts separate terms with ';'
        assert ex.teacher == ("digits" if ";" in ex.prompt else "sum")
    assert task.eval_teachers == {"sum_eval": "sum", "digits_eval": "digits"}


def test_a_file_names_the_teacher_of_its_rows(tiny_lab, two_skill_files):
    files = two_skill_files
    cfg = mopd_cfg(tiny_lab, files, "data.teacher_key=''",
                   f"data.train_files=[{{files: {files / 'train.jsonl'}, teacher: digits}}]")
    task = build_task(cfg, load_tokenizer(cfg.model.student))
    assert {ex.teacher for ex in task.train} == {"digits"}


def test_a_row_naming_an_unknown_teacher_is_one_line_naming_file_and_line(tiny_lab, two_skill_files):
    rows = (two_skill_files / "train.jsonl").read_text().splitlines()
    rows[2] = json.dumps({**json.loads(rows[2]), "teacher": "maths"})
    (two_skill_files / "train.jsonl").write_text("\n".join(rows) + "\n")
    cfg = mopd_cfg(tiny_lab, two_skill_files)
    with pytest.raises(DataError, match=r"^data.train_files: .*train.jsonl line 3: teacher 'maths' is not one of "
                                        r"the teachers \['sum', 'digits'\]$"):
        build_task(cfg, load_tokenizer(cfg.model.student))


@pytest.mark.parametrize("override, message", [
    ("data.eval_files.sum_eval.teacher=maths", r"^data.eval_files.sum_eval.teacher: 'maths' is not one of"),
    ("mopd.default_teacher=maths", r"^mopd.default_teacher: 'maths' is not one of the teachers"),
    ("mopd.mode=ensemble objective.support=teacher", r"^mopd.mode: ensemble averages .* support teacher\)$"),
    ("teachers.digits.num_servers=0", r"^teachers.digits.num_servers: must be >= 1, got 0$"),
    ("teachers.digits.max_servers=0", r"^teachers.digits.min_servers: need 1 <= min_servers <= num_servers"),
    ("model.teacher=x", r"^model.teacher: give model.teacher \(one teacher\) or teachers: .*not both$"),
])
def test_bad_teacher_settings_are_one_line_naming_the_field(tiny_lab, two_skill_files, override, message):
    with pytest.raises(ConfigError, match=message):
        mopd_cfg(tiny_lab, two_skill_files, *override.split())


def test_a_teacher_of_another_vocabulary_is_refused_naming_the_teacher(tiny_lab, tiny_smol, two_skill_files):
    cfg = mopd_cfg(tiny_lab, two_skill_files, f"teachers.digits.model={tiny_smol / 'teacher'}")
    with pytest.raises(ContractError, match=r"^teachers.digits.model: the teacher does not fit the student "):
        check_pairs(cfg)


def test_a_resume_with_a_changed_teacher_set_is_refused_listing_the_differences(tiny_lab, two_skill_files, tmp_path):
    digits = tmp_path / "digits_teacher"
    shutil.copytree(tiny_lab / "teacher", digits)
    cfg = mopd_cfg(tiny_lab, two_skill_files, f"teachers.digits.model={digits}")
    ckpt = CheckpointDir(tmp_path / "checkpoints")
    saved = ckpt.publish(ckpt.begin(2), 2, {"config": config_fingerprint(cfg), "teachers": teacher_manifest(cfg)})
    check_resume_config(saved, cfg, allow_change=False)  # the same teachers: accepted
    one = mopd_cfg(tiny_lab, two_skill_files, "teachers={sum: {model: " + str(tiny_lab / "teacher") + "}}",
                   "data.eval_files.digits_eval.teacher=sum", "data.teacher_key=''")
    with pytest.raises(ResumeError) as err:  # a teacher fewer
        check_resume_config(saved, one, allow_change=False)
    assert "teachers.digits.model:" in str(err.value) and "teacher digits: removed" in str(err.value)
    assert "--allow-config-change" in str(err.value)
    weights = digits / "model.safetensors"  # new weights under the same path: only the manifest can tell
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(ResumeError, match=r"(?s)teacher digits: sha256 [0-9a-f]{64} -> [0-9a-f]{64}"):
        check_resume_config(saved, cfg, allow_change=False)
    check_resume_config(saved, cfg, allow_change=True)  # allowed: printed, not refused
