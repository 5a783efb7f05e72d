"""Reading a config: YAML + dotted overrides into the typed schema, `base:` files, and one-line errors that name
the field, file, line and column (opd_ray/config/load.py)."""
import pytest

from opd_ray.config.errors import ConfigError
from opd_ray.config.load import read_config, to_yaml
from tests.conftest import LAB_CFG, ROOT


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_config(tmp_path / "nope.yaml")


def test_overrides_apply():
    cfg = read_config(LAB_CFG, ["run.steps=7", "objective.kind=sampled_token"])
    assert cfg.run.steps == 7 and cfg.objective.kind == "sampled_token"


@pytest.mark.parametrize("text, expected", [
    ("run:\n\tsteps: 3\n", r":2:1: invalid YAML: found character that cannot start any token .*"
                            r"\(a tab: YAML indents with spaces\)$"),
    ("run:\n  steps: [3, 4\n", r":3:1: invalid YAML: did not find expected ',' or '\]' \(while parsing a flow "
                                r"sequence at line 2, column 10\)$"),
])
def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as err:
        read_config(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


@pytest.mark.parametrize("override, expected", [
    ("learner.lr_warmup=1", "learner.lr_warmup: Key 'lr_warmup' not in 'LearnerConfig'; did you mean "
                            "'learner.warmup_steps'?"),
    ("objective.supprt=student", "objective.supprt: Key 'supprt' not in 'ObjectiveConfig'. Did you mean: 'support'?"),
    ("zzz=1", "zzz: Key 'zzz' not in 'OPDConfig' (in "),
])
def test_an_unknown_key_is_one_line_with_the_closest_valid_key(override, expected):
    with pytest.raises(ConfigError) as err:
        read_config(LAB_CFG, [override])
    assert str(err.value).startswith(expected) and "\n" not in str(err.value), str(err.value)


def test_a_base_config_is_merged_under_the_file(tmp_path):
    """`base:` starts from another file; the file's own keys and the overrides win, in that order."""
    (tmp_path / "a.yaml").write_text("model: {student: s, teacher: t}\nrun: {steps: 3, seed: 5}\nrollout: {backend: hf}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nrun: {steps: 4}\n")
    cfg = read_config(tmp_path / "b.yaml", ["run.seed=6"])
    assert (cfg.run.steps, cfg.run.seed, cfg.rollout.backend) == (4, 6, "hf")


def test_the_vllm_lab_config_is_the_lab_default_plus_the_backends():
    """configs/lab_cpu_vllm.yaml cannot drift from the lab default: it differs only where it says so."""
    vllm = read_config(ROOT / "configs" / "lab_cpu_vllm.yaml")
    assert (vllm.rollout.backend, vllm.teacher.backend) == ("vllm", "vllm")
    vllm.rollout.backend = vllm.teacher.backend = "hf"
    vllm.run.name = read_config(LAB_CFG).run.name
    assert to_yaml(vllm) == to_yaml(read_config(LAB_CFG))


@pytest.mark.parametrize("text, expected", [("base: missing.yaml\n", "config file not found: .*missing.yaml \\(the base of"),
                                            ("base: b.yaml\n", "base: .*b.yaml is its own base")])
def test_a_bad_base_is_one_line(tmp_path, text, expected):
    (tmp_path / "b.yaml").write_text(text)
    with pytest.raises(ConfigError, match=expected) as err:
        read_config(tmp_path / "b.yaml")
    assert "\n" not in str(err.value)


def test_a_mapping_override_replaces_the_files_mapping():
    """`data.eval_files={mine: [...]}` means "these sets", not "these sets too"; a dotted key adds one."""
    smol = ROOT / "configs" / "smollm2_cpu.yaml"
    assert list(read_config(smol).data.eval_files) == ["hard", "easy"]
    assert read_config(smol, ["data.eval_files={mine: [my.jsonl]}"]).data.eval_files == {"mine": ["my.jsonl"]}
    assert list(read_config(smol, ["data.eval_files.mine=my.jsonl"]).data.eval_files) == ["hard", "easy", "mine"]
    # a section (a typed config, not a mapping field) still takes only the keys it is given
    placed = read_config(LAB_CFG, ["placement.rollout={num_gpus: 1}", "placement.rollout.resources={a: 1}"])
    assert placed.placement.rollout.num_gpus == 1 and placed.placement.rollout.resources == {"a": 1}
