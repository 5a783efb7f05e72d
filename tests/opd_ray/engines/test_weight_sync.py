"""rollout.weight_sync on CPU: config validation, the `auto` choice, that CPU runs keep the object-store path,
and the pure logic the broadcast path checks before a transfer (parameter metadata, names and shapes, ranks).

The NCCL and IPC transfers themselves need GPUs and are not run here (docs/vllm.md); the gloo broadcast through
vLLM's weight-transfer API runs in tests/actors/test_weight_broadcast.py (make test-vllm).
"""
import pytest
import torch
from omegaconf import OmegaConf

from opd_ray.config.errors import ConfigError
from opd_ray.config.schema import OPDConfig
from opd_ray.engines import weight_sync
from opd_ray.run.preflight import load_config
from tests.conftest import LAB_CFG, ROOT


def cfg_with(**dotted) -> OPDConfig:
    """An OPDConfig object with dotted overrides, without load_config's file checks (pure logic only)."""
    dotted = {"model.student": "s", "model.teacher": "t", **dotted}
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(OPDConfig),
                                               OmegaConf.from_dotlist([f"{k}={v}" for k, v in dotted.items()])))


def test_default_is_object_store_and_cpu_configs_resolve_to_it():
    assert OPDConfig.__dataclass_fields__["rollout"].default_factory().weight_sync == "object_store"
    assert weight_sync.resolve(load_config(LAB_CFG)) == "object_store"
    # auto on a CPU config (no GPUs in placement) keeps the object store, whatever the backend
    assert weight_sync.resolve(load_config(LAB_CFG, ["rollout.weight_sync=auto"])) == "object_store"
    vllm_cfg = OmegaConf.load(ROOT / "configs" / "lab_cpu_vllm.yaml")
    assert vllm_cfg.rollout.get("weight_sync", "object_store") == "object_store"
    assert weight_sync.resolve(cfg_with(**{"rollout.backend": "vllm", "rollout.weight_sync": "auto"})) == "object_store"


@pytest.mark.parametrize("backend, rollout_gpus, learner_gpus, want", [
    ("vllm", 1, 1, "nccl"),
    ("vllm", 2, 1, "nccl"),
    ("vllm", 0, 0, "object_store"),  # CPU
    ("vllm", 1, 0, "object_store"),  # learner on CPU: nothing to broadcast from
    ("vllm", 0.5, 0.5, "object_store"),  # fractional GPUs may share a device: NCCL cannot; ipc only on request
    ("hf", 1, 1, "object_store"),  # the HF engine has no weight-transfer API
])
def test_auto_picks_nccl_only_for_vllm_on_whole_gpus(backend, rollout_gpus, learner_gpus, want):
    cfg = cfg_with(**{"rollout.backend": backend, "rollout.weight_sync": "auto",
                      "placement.rollout.num_gpus": rollout_gpus, "placement.learner.num_gpus": learner_gpus})
    assert weight_sync.resolve(cfg) == want
    assert weight_sync.problems(cfg) == []


@pytest.mark.parametrize("settings, message", [
    ({"rollout.weight_sync": "nccl"}, "needs rollout.backend=vllm"),
    ({"rollout.weight_sync": "ipc"}, "needs rollout.backend=vllm"),
    ({"rollout.weight_sync": "gloo"}, "needs rollout.backend=vllm"),
    ({"rollout.weight_sync": "nccl", "rollout.backend": "vllm"}, "'nccl' needs CUDA"),
    ({"rollout.weight_sync": "nccl", "rollout.backend": "vllm", "placement.rollout.num_gpus": 0.5,
      "placement.learner.num_gpus": 0.5}, "NCCL cannot join two processes on one GPU"),
    ({"rollout.weight_sync": "ipc", "rollout.backend": "vllm"}, "'ipc' needs CUDA and colocation"),
    ({"rollout.weight_sync": "ipc", "rollout.backend": "vllm", "placement.rollout.num_gpus": 1,
      "placement.learner.num_gpus": 1}, "'ipc' needs CUDA and colocation"),
    ({"rollout.weight_sync": "gloo", "rollout.backend": "vllm", "placement.learner.num_gpus": 1}, "CPU broadcast"),
    ({"rollout.weight_sync": "shm"}, "must be one of"),
])
def test_impossible_modes_are_explained(settings, message):
    found = weight_sync.problems(cfg_with(**settings))
    assert found and any(message in p for p in found), found


@pytest.mark.parametrize("settings", [
    {"rollout.weight_sync": "nccl", "rollout.backend": "vllm", "placement.rollout.num_gpus": 1,
     "placement.learner.num_gpus": 1},
    {"rollout.weight_sync": "ipc", "rollout.backend": "vllm", "placement.rollout.num_gpus": 0.4,
     "placement.learner.num_gpus": 0.5},
    {"rollout.weight_sync": "gloo", "rollout.backend": "vllm"},
    {"rollout.weight_sync": "object_store", "rollout.backend": "vllm", "placement.rollout.num_gpus": 1},
])
def test_possible_modes_pass(settings):
    assert weight_sync.problems(cfg_with(**settings)) == []


@pytest.mark.parametrize("override", ["rollout.weight_sync=nccl", "rollout.weight_sync=bogus"])
def test_load_config_rejects_naming_the_field(override):
    with pytest.raises(ConfigError) as err:
        load_config(LAB_CFG, [override])  # before any actor starts
    assert str(err.value).startswith("rollout.weight_sync: "), str(err.value)


def test_object_store_needs_no_vllm_arguments():
    assert weight_sync.llm_kwargs("object_store") == {}


def lab_module_and_shapes(model_dir):
    from opd_ray.engines.vllm_engines import checkpoint_shapes
    from opd_ray.models.loading import load_model

    return load_model(str(model_dir)), checkpoint_shapes(str(model_dir))


@pytest.mark.parametrize("which", ["tiny", "lab"])
def test_learner_parameters_match_the_engine_checkpoint(which, tiny_lab):
    """What the learner would send (named_parameters) is exactly what the engine's checkpoint holds."""
    from tests.conftest import LAB

    module, shapes = lab_module_and_shapes((tiny_lab if which == "tiny" else LAB) / "student")
    meta = weight_sync.param_metadata(module)
    assert meta and weight_sync.check_metadata(meta, shapes) == []
    assert all(dtype == "float32" for _, dtype, _ in meta)
    # iteration yields the same names and shapes in the same order (vLLM sizes receive buffers from metadata)
    assert [(n, tuple(t.shape)) for n, t in weight_sync.iter_full_params(module)] == [(n, s) for n, _, s in meta]


def test_mismatches_are_found_before_a_transfer(tiny_lab):
    module, shapes = lab_module_and_shapes(tiny_lab / "student")
    meta = weight_sync.param_metadata(module)
    name, dtype, shape = meta[1]
    wrong = [*meta[:1], (name, dtype, (shape[0] + 1, *shape[1:])), *meta[2:]]
    assert any(name in p and "wrong shapes" in p for p in weight_sync.check_metadata(wrong, shapes))
    assert any("does not have" in p for p in weight_sync.check_metadata(meta + [("extra.weight", "float32", (2,))],
                                                                         shapes))
    assert any(name in p and "not be updated" in p for p in weight_sync.check_metadata(meta[:1] + meta[2:], shapes))
    # the lab models tie the output head: it is sent under both names (vLLM needs both), the checkpoint holds one
    assert "lm_head.weight" in [n for n, _, _ in meta] and "lm_head.weight" not in shapes
    assert weight_sync.check_metadata([m for m in meta if m[0] != "lm_head.weight"], shapes) == []


def test_each_engine_gets_its_own_rank_in_the_broadcast_group():
    nccl = {"master_address": "10.0.0.1", "master_port": 29500, "rank_offset": 1, "world_size": 4, "packed": True}
    infos = weight_sync.engine_init_infos(nccl, 3)
    assert [i["rank_offset"] for i in infos] == [1, 2, 3]
    assert all({k: v for k, v in i.items() if k != "rank_offset"} == {k: v for k, v in nccl.items()
                                                                      if k != "rank_offset"} for i in infos)
    assert weight_sync.group_world_size(3) == 4  # learner rank 0 + one worker per engine
    assert weight_sync.engine_init_infos({"packed": False}, 2) == [{"packed": False}, {"packed": False}]


@pytest.mark.parametrize("mode, zero_stage, ranks, want", [
    ("nccl", 1, 4, [0]), ("gloo", 2, 2, [0]), ("nccl", 3, 3, [0, 1, 2]), ("ipc", 1, 2, [0, 1]),
])
def test_ranks_that_join_a_send(mode, zero_stage, ranks, want):
    assert weight_sync.participating_ranks(mode, zero_stage, ranks) == want


def test_version_is_required_before_finish():
    client = weight_sync.EngineClient([], timeout_s=1, init_timeout_s=1)
    with pytest.raises(RuntimeError, match="version"):
        client.finish_weight_update()


def test_zero3_metadata_reads_full_shapes_without_gathering():
    p = torch.nn.Parameter(torch.empty(0))
    p.ds_shape = torch.Size([4, 3])  # what DeepSpeed ZeRO-3 leaves on a partitioned parameter
    module = torch.nn.Module()
    module.w = p
    assert weight_sync.param_metadata(module, zero_stage=3) == [("w", "float32", (4, 3))]
    assert weight_sync.param_metadata(module, zero_stage=1) == [("w", "float32", (0,))]
