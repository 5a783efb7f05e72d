"""The broadcast weight-sync path against the installed vLLM (make test-vllm): the API it is written against
exists with the fields it uses, and a real round through vLLM's weight-transfer protocol -- trainer engine,
`WeightSource`, client, `LLM.init_weight_transfer_engine` / `start_weight_update` / `update_weights` /
`finish_weight_update` -- switches an engine's weights, over the gloo data plane (no GPU here: NCCL and CUDA IPC
are not run; docs/vllm.md).
"""
import dataclasses
import inspect

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.vllm
TOL = 1e-4


def test_the_vllm_api_used_by_the_nccl_and_ipc_paths_exists():
    from vllm import LLM
    from vllm.config import WeightTransferConfig
    from vllm.distributed.weight_transfer import (
        ParamMeta,
        WeightSource,
        WeightTransferEngineFactory,
        WeightTransferTrainerFactory,
    )
    from vllm.distributed.weight_transfer.base import WeightTransferInitRequest, WeightTransferUpdateRequest
    from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo, IPCTrainerWeightTransferEngine
    from vllm.distributed.weight_transfer.nccl_common import NCCLWeightTransferInitInfo
    from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo, NCCLTrainerWeightTransferEngine

    for method in ("init_weight_transfer_engine", "start_weight_update", "update_weights", "finish_weight_update",
                   "shutdown_weight_transfer_engine"):
        assert callable(getattr(LLM, method)), method
    assert [WeightTransferConfig(backend=b).backend for b in ("nccl", "ipc")] == ["nccl", "ipc"]
    fields = {f.name for f in dataclasses.fields(NCCLTrainerInitInfo)}
    assert {"master_address", "master_port", "world_size", "rank"} <= fields and NCCLTrainerInitInfo.backend == "nccl"
    assert {"master_address", "master_port", "rank_offset", "world_size"} <= {
        f.name for f in dataclasses.fields(NCCLWeightTransferInitInfo)}  # what engine_init_infos rewrites
    assert "rank" in {f.name for f in dataclasses.fields(IPCTrainerInitInfo)} and IPCTrainerInitInfo.backend == "ipc"
    for cls in (NCCLTrainerWeightTransferEngine, IPCTrainerWeightTransferEngine):
        assert set(inspect.signature(cls.trainer_init).parameters) >= {"init_info", "client", "source"}
        assert callable(cls.send_weights) and callable(cls.shutdown)
    assert set(inspect.signature(WeightTransferTrainerFactory.trainer_init).parameters) >= {"init_info", "client",
                                                                                            "source"}
    assert {"name", "dtype", "shape"} <= {f.name for f in dataclasses.fields(ParamMeta)}
    assert WeightSource.metadata and WeightTransferEngineFactory.register_engine
    assert WeightTransferInitRequest(init_info={}).init_info == {}
    assert WeightTransferUpdateRequest(update_info={}).update_info == {}


def test_nccl_trainer_accepts_our_source(tiny_lab):
    """vLLM's NCCL trainer checks, parameter by parameter, that a source's iteration matches its metadata (a
    mismatch would split the broadcast differently on the two sides); our learner source passes that check."""
    from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerWeightTransferEngine

    from opd_ray.engines import weight_sync
    from opd_ray.models.loading import load_model

    source = weight_sync.make_source(load_model(str(tiny_lab / "student")), zero_stage=1)
    meta = source.metadata()
    sent = list(NCCLTrainerWeightTransferEngine._checked_iter(source, meta))
    assert [n for n, _ in sent] == [m.name for m in meta] and len(meta) > 5


class InProcessClient:
    """The four-method client protocol straight into one in-process engine (tests/actors covers the Ray one)."""

    def __init__(self, transfer):
        self.transfer, self.version = transfer, None

    def init_weight_transfer_engine(self, init_info):
        from opd_ray.engines.weight_sync import engine_init_infos

        self.transfer.init(engine_init_infos(init_info, 1)[0])

    def start_weight_update(self):
        self.transfer.start()

    def update_weights(self, update_info):
        self.transfer.update(update_info)

    def finish_weight_update(self, weight_version=None):
        self.transfer.finish(self.version)


def test_gloo_round_through_vllm_switches_weights_and_version(tiny_lab):
    from vllm.distributed.weight_transfer import WeightTransferTrainerFactory

    from opd_ray.engines import weight_sync
    from opd_ray.engines.hf_rollout import StaleEngineError
    from opd_ray.engines.vllm_engines import VLLMRollout
    from opd_ray.lab.task import sample_problems, verify
    from opd_ray.models.loading import load_model
    from opd_ray.runtime.process import free_port
    from tests.conftest import LAB
    from tests.opd_ray.engines.test_vllm_engines import hf_logp, prompts

    rollout = VLLMRollout(str(LAB / "student"), max_new_tokens=40, temperature=1.0, top_k=4, run_seed=0,
                          llm_kwargs=weight_sync.llm_kwargs("gloo"))
    module = load_model(str(tiny_lab / "student"))  # the learner's module: same architecture, untrained
    assert weight_sync.check_metadata(weight_sync.param_metadata(module), rollout.shapes) == []
    client = InProcessClient(rollout.transfer)
    info = weight_sync.trainer_init_info("gloo", 0, 1, "127.0.0.1", free_port(), timeout_s=120)
    trainer = WeightTransferTrainerFactory.trainer_init(info, client=client,
                                                        source=weight_sync.make_source(module, 1))
    client.version = 5
    trainer.send_weights()
    assert rollout.policy_version == 5
    ps, ids = prompts(rollout.tokenizer, 8), [(1, i, 0) for i in range(8)]
    batch = rollout.generate(ps, ids, 5)
    m = batch.response_mask_BR
    index = torch.tensor(batch.response_ids_BR).long()[..., None]
    new = hf_logp(tiny_lab / "student", batch).gather(-1, index)[..., 0].numpy()
    old = hf_logp(LAB / "student", batch).gather(-1, index)[..., 0].numpy()
    np.testing.assert_allclose(batch.student_logp_BR[m], new[m], atol=TOL)  # the samples are the new model's
    assert np.abs(batch.student_logp_BR[m] - old[m]).max() > 0.1  # ... and not the old one's

    client.start_weight_update()  # a round that starts and never finishes: stale, refuses to sample
    assert rollout.policy_version is None
    with pytest.raises(StaleEngineError):
        rollout.generate(ps, ids, 5)
    module.load_state_dict(load_model(str(LAB / "student")).state_dict())  # the learner now holds trained weights
    client.version = 7
    trainer.send_weights()  # the next round closes the open one and goes through
    assert rollout.policy_version == 7
    easy = [p.prompt for p in sample_problems(9, 32, (2, 3))]
    responses = rollout.greedy([rollout.tokenizer(p)["input_ids"] for p in easy])
    assert np.mean([verify(p, r) for p, r in zip(easy, responses)]) > 0.9
    trainer.shutdown()
