"""Config loading: every shipped config loads; bad input is rejected before Ray starts, naming the field."""
from pathlib import Path

import pytest

from opd_ray.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
LAB_CFG = ROOT / "configs" / "lab_cpu.yaml"


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads(path):
    """Every recipe loads and validates. Cluster recipes name hub models that are not on this machine: their
    schema and values are checked without resolving the models (resolve_models=False)."""
    import importlib.util

    from omegaconf import OmegaConf

    models = OmegaConf.load(path).model
    local = all((ROOT / m).is_dir() or Path(m).is_dir() for m in (models.student, models.teacher))
    if "vllm" in path.read_text() and importlib.util.find_spec("vllm") is None:
        with pytest.raises(ConfigError, match="backend: 'vllm' needs the vllm package"):
            load_config(path, resolve_models=local)  # outside .venv-vllm the error names the field and the fix
        load_config(path, ["rollout.backend=hf", "teacher.backend=hf"], resolve_models=local)  # the rest is valid
        return
    load_config(path, resolve_models=local)


@pytest.mark.parametrize("override, field", [
    ("objective.bogus=1", "objective.bogus"),  # unknown key
    ("run.steps=many", "run.steps"),  # wrong type
    ("run.steps=0", "run.steps"),  # impossible value
    ("objective.kind=reverse_kl", "objective.kind"),
    ("learner.zero_stage=4", "learner.zero_stage"),
    ("rollout.max_new_tokens=500", "rollout.max_new_tokens"),  # prompt + response longer than the context
    ("model.student=/nonexistent/model", "model.student"),
    ("data.train_n_terms=[5,4]", "data.train_n_terms"),
    ("learner.num_ranks=1000", "learner.num_ranks"),
    ("placement.teacher.node_labels=[a]", "placement.teacher.node_labels"),  # a list where a mapping goes
    ("rollout.shards_per_engine=0", "rollout.shards_per_engine"),
    ("objective.support=both", "objective.support"),
    ("objective.weights=softmax", "objective.weights"),
    ("objective.beta=1.5", "objective.beta"),
    ("teacher.logprob_dtype=bfloat16", "teacher.logprob_dtype"),
    ("learner.micro_batch_tokens=0", "learner.micro_batch_tokens"),
    ("teacher.micro_batch_tokens=-5", "teacher.micro_batch_tokens"),
    ("data.continuation_depths=[0.5,1.0]", "data.continuation_depths"),
    ("data.other_share=1.5", "data.other_share"),
    ("data.dedup_threshold=0", "data.dedup_threshold"),
    ("data.teacher_prompts=/nonexistent/prompts.txt", "data.teacher_prompts"),
    ("data.teacher_prompts=lab:nobody", "data.teacher_prompts"),
    ("data.teacher_prompts=configs/lab_cpu.yaml", "data.teacher_prompts"),  # exists, not a prompt file
])
def test_bad_values_are_rejected_naming_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        load_config(LAB_CFG, [override])
    assert str(err.value).startswith(field), str(err.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_apply():
    cfg = load_config(LAB_CFG, ["run.steps=7", "objective.kind=sampled_token"])
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
        load_config(path, resolve_models=False)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


@pytest.mark.parametrize("override, expected", [
    ("learner.lr_warmup=1", "learner.lr_warmup: Key 'lr_warmup' not in 'LearnerConfig'; did you mean "
                            "'learner.warmup_steps'?"),
    ("objective.supprt=student", "objective.supprt: Key 'supprt' not in 'ObjectiveConfig'. Did you mean: 'support'?"),
    ("zzz=1", "zzz: Key 'zzz' not in 'OPDConfig' (in "),
])
def test_an_unknown_key_is_one_line_with_the_closest_valid_key(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(LAB_CFG, [override], resolve_models=False)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value), str(err.value)


def test_vllm_teacher_at_a_large_vocabulary_refuses_what_it_cannot_ship(smollm2):
    """The vLLM teacher ships only its own top-k and the sampled token above 4096 ids (SmolLM2: 49,152):
    supports that need its log-probs at the student's ids, and temperatures other than 1, stop before Ray."""
    sums = ROOT / "configs" / "sums_smollm2.yaml"
    for overrides, field in ((["teacher.backend=vllm"], "objective.support"),
                             (["teacher.backend=vllm", "objective.support=union"], "objective.support"),
                             (["teacher.backend=vllm", "objective.support=teacher", "teacher.temperature=0.7"],
                              "teacher.temperature")):
        with pytest.raises(ConfigError) as err:
            load_config(sums, overrides)
        message = str(err.value)
        assert message.startswith(field) and "teacher.backend=hf" in message and "\n" not in message, message
    for fine in (["objective.support=teacher"], ["objective.kind=sampled_token"]):
        try:
            load_config(sums, ["teacher.backend=vllm", *fine])
        except ConfigError as err:  # outside .venv-vllm only the missing package may stop it
            assert str(err).startswith("teacher.backend: 'vllm' needs the vllm package"), str(err)
    load_config(sums, ["teacher.backend=hf"])  # the HF teacher ships the student-side values at any vocabulary
