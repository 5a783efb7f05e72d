"""The checks before Ray starts: every shipped config loads and validates; a bad value is one line naming the field."""
from pathlib import Path

import pytest

from opd_ray.config.errors import ConfigError
from opd_ray.config.load import read_config
from opd_ray.run.preflight import load_config
from tests.conftest import LAB_CFG, ROOT


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads(path):
    """Every recipe loads and validates. Cluster recipes name hub models that are not on this machine: their
    schema and values are checked without resolving the models (resolve_models=False)."""
    import importlib.util

    models = read_config(path).model
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
    ("objective.k=64", "objective.k"),  # above the lab's 18 ids
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


def test_a_top_k_above_the_vocabulary_names_its_size():
    with pytest.raises(ConfigError, match=r"^objective.k: must be <= the 18 ids student and teacher share"):
        load_config(LAB_CFG, ["objective.k=64"])


def test_an_out_dir_that_is_a_file_is_one_line(tmp_path):
    taken = tmp_path / "runs"
    taken.write_text("not a folder")
    with pytest.raises(ConfigError, match=f"^run.out_dir: {taken} exists and is not a folder$"):
        load_config(LAB_CFG, [f"run.out_dir={taken}"])
    assert taken.read_text() == "not a folder"  # nothing already written is touched


def test_native_dtype_is_resolved_once_on_the_driver():
    """`model.dtype: native` becomes one concrete dtype before any actor starts: bfloat16 where this node's hardware
    has bfloat16 matmuls (a GPU, AVX-512 BF16, AMX), float32 elsewhere. Checked against torch's own CPU queries."""
    import torch

    native = torch.cuda.is_available() or torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    cfg = load_config(LAB_CFG, ["model.dtype=native"])
    assert cfg.model.dtype == ("bfloat16" if native else "float32")
    assert load_config(LAB_CFG).model.dtype == "auto"  # the default stays float32 on a CPU: asked for, not picked


def test_an_empty_attention_becomes_eager_only_for_a_cpu_run_of_short_sequences():
    """model.attn_implementation "" is resolved on the driver: eager where every sequence fits
    EAGER_ATTENTION_MAX_TOKENS and no actor asks for a GPU, else the model's default; a named one is kept."""
    import torch

    from opd_ray.models.loading import EAGER_ATTENTION_MAX_TOKENS

    lab = load_config(LAB_CFG)
    assert lab.data.max_prompt_tokens + lab.rollout.max_new_tokens <= EAGER_ATTENTION_MAX_TOKENS
    assert lab.model.attn_implementation == ("" if torch.cuda.is_available() else "eager")  # a GPU driver: default
    assert load_config(LAB_CFG, ["model.attn_implementation=sdpa"]).model.attn_implementation == "sdpa"
    # the lab models' context is 128 tokens: longer sequences only without the checks that read the models
    long_prompts = f"data.max_prompt_tokens={EAGER_ATTENTION_MAX_TOKENS}"
    assert load_config(LAB_CFG, [long_prompts], resolve_models=False).model.attn_implementation == ""
    long_cold_start = f"cold_start.max_new_tokens={EAGER_ATTENTION_MAX_TOKENS}"
    assert load_config(LAB_CFG, [long_cold_start], resolve_models=False).model.attn_implementation == ""
    assert load_config(LAB_CFG, ["placement.learner.num_gpus=1"]).model.attn_implementation == ""
