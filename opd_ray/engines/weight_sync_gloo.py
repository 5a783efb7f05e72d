"""The `gloo` weight-sync mode's engine pair for vLLM's weight-transfer API (see opd_ray/engines/weight_sync.py).

Modeled on vLLM's NCCL pair and registered through vLLM's factories under the name "gloo": the same hooks,
client, `WeightSource`, `LLM` methods and worker lifecycle as `nccl`, over CPU tensors, so the broadcast path
runs on a machine without a GPU. vLLM is imported only when the classes are first built.
"""
from __future__ import annotations

import dataclasses
import datetime
import types
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import torch

_GLOO = None


def gloo_group(master_address: str, master_port: int, rank: int, world_size: int, timeout_s: float):
    """A standalone gloo group (TCPStore + ProcessGroupGloo): the engines are outside the learners' world, so
    `torch.distributed.new_group` cannot include them. Collectives time out instead of hanging."""
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(master_address, master_port, world_size, is_master=rank == 0, timeout=timeout)
    return dist.ProcessGroupGloo(dist.PrefixStore("opd_weight_sync", store), rank, world_size, timeout)


def gloo_classes():
    """The gloo backend's classes, built on vLLM's base classes (imported only when used)."""
    global _GLOO
    if _GLOO is not None:
        return _GLOO
    # lazy: vLLM is optional (GPU extra or .venv-vllm)
    from vllm.distributed.weight_transfer.base import (
        TrainerInitInfo,
        TrainerWeightTransferEngine,
        WeightTransferEngine,
        WeightTransferInitInfo,
        WeightTransferUpdateInfo,
    )

    @dataclasses.dataclass
    class GlooInitInfo(WeightTransferInitInfo):
        master_address: str
        master_port: int
        rank_offset: int
        world_size: int
        timeout_s: float = 300.0

    @dataclasses.dataclass
    class GlooUpdateInfo(WeightTransferUpdateInfo):
        names: list[str]
        dtype_names: list[str]
        shapes: list[list[int]]

    @dataclasses.dataclass
    class GlooTrainerInitInfo(TrainerInitInfo):
        backend: ClassVar[str] = "gloo"
        master_address: str
        master_port: int
        world_size: int
        timeout_s: float = 300.0

    class GlooWeightTransferEngine(WeightTransferEngine):
        """Worker side: receive each tensor by broadcast from rank 0 and load it between vLLM's layerwise-reload
        start and finish (the same calls as vLLM's NCCL engine and as `reload_weights`)."""
        init_info_cls = GlooInitInfo
        update_info_cls = GlooUpdateInfo

        def init_transfer_engine(self, init_info):
            pc = self.parallel_config
            rank = pc.data_parallel_index * pc.world_size + pc.rank + init_info.rank_offset
            self.group = gloo_group(init_info.master_address, init_info.master_port, rank, init_info.world_size,
                                    init_info.timeout_s)

        def start_weight_update(self):
            # lazy: vLLM is optional (GPU extra or .venv-vllm)
            from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

            initialize_layerwise_reload(self.model)

        def finish_weight_update(self):
            # lazy: vLLM is optional (GPU extra or .venv-vllm)
            from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

            finalize_layerwise_reload(self.model, self.model_config)

        def update_weights(self, update_info):  # no device to synchronize
            self.receive_weights(self.parse_update_info(update_info))

        def receive_weights(self, update_info):
            for name, dtype_name, shape in zip(update_info.names, update_info.dtype_names, update_info.shapes):
                weight = torch.empty(shape, dtype=getattr(torch, dtype_name))
                self.group.broadcast(weight, 0).wait()
                self.model.load_weights([(name, weight)])

        def shutdown(self):
            self.group = None

    class GlooTrainerWeightTransferEngine(TrainerWeightTransferEngine):
        """Trainer side, shaped like vLLM's `NCCLTrainerWeightTransferEngine`: rank 0 opens the group while the
        engines join it, then each round runs start -> (update_weights on the engines || broadcast) -> finish."""
        init_info_cls = GlooTrainerInitInfo

        @classmethod
        def trainer_init(cls, init_info, *, client, source=None):
            engine = cls(client=client, source=source, is_sender=init_info.is_sender)
            engine.group = None
            if not engine.is_sender:
                return engine
            worker_info = {"master_address": init_info.master_address, "master_port": init_info.master_port,
                           "rank_offset": 1, "world_size": init_info.world_size, "timeout_s": init_info.timeout_s}
            with ThreadPoolExecutor(max_workers=1) as pool:
                future = pool.submit(client.init_weight_transfer_engine, worker_info)
                engine.group = gloo_group(init_info.master_address, init_info.master_port, 0, init_info.world_size,
                                          init_info.timeout_s)
                future.result()
            return engine

        def send_weights(self):
            meta = self.source.metadata()
            if not self.is_sender:
                for _ in self.source:  # ZeRO-3: join the gathers
                    pass
                return
            info = {"names": [m.name for m in meta], "dtype_names": [str(m.dtype).removeprefix("torch.") for m in meta],
                    "shapes": [list(m.shape) for m in meta]}
            self.client.start_weight_update()
            pool = ThreadPoolExecutor(max_workers=1)
            try:
                future = pool.submit(self.client.update_weights, info)
                for (name, tensor), m in zip(self.source, meta):
                    if name != m.name or tuple(tensor.shape) != tuple(m.shape):
                        raise ValueError(f"source yielded {name} {tuple(tensor.shape)}, "
                                         f"metadata said {m.name} {m.shape}")
                    self.group.broadcast(tensor.detach().cpu().contiguous(), 0).wait()
                future.result()
            finally:
                pool.shutdown(wait=False)  # like vLLM's NCCL trainer: never join a thread stuck in a collective
            self.client.finish_weight_update()

        def shutdown(self):
            self.group = None

    _GLOO = types.SimpleNamespace(GlooInitInfo=GlooInitInfo, GlooUpdateInfo=GlooUpdateInfo,
                                  GlooTrainerInitInfo=GlooTrainerInitInfo,
                                  GlooWeightTransferEngine=GlooWeightTransferEngine,
                                  GlooTrainerWeightTransferEngine=GlooTrainerWeightTransferEngine)
    return _GLOO


def register_gloo_backend() -> None:
    """Register the gloo backend with vLLM's worker and trainer factories (once per process)."""
    # lazy: vLLM is optional (GPU extra or .venv-vllm)
    from vllm.distributed.weight_transfer import WeightTransferEngineFactory, WeightTransferTrainerFactory

    classes = gloo_classes()
    for factory, cls in ((WeightTransferEngineFactory, classes.GlooWeightTransferEngine),
                         (WeightTransferTrainerFactory, classes.GlooTrainerWeightTransferEngine)):
        try:
            factory.register_engine("gloo", cls)
        except ValueError:  # already registered in this process
            pass
