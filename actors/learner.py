"""LearnerRank actor: one DeepSpeed rank of the learner group (see actors/group.py for the group)."""
from __future__ import annotations

import ray

from opd_ray.config import teachers
from opd_ray.config.schema import OPDConfig
from opd_ray.engines.weight_sync import TrainerWeightTransfer
from opd_ray.learner.deepspeed_rank import DeepSpeedLearner
from opd_ray.models.folders import shared_logit_width
from opd_ray.models.loading import model_options
from opd_ray.runtime.process import limit_threads


@ray.remote
class LearnerRank:
    def __init__(self, cfg: OPDConfig, rank: int, world_size: int, master_addr: str, master_port: int,
                 generation: int = 0):
        limit_threads(cfg.learner.cpus_per_rank, cfg.learner.num_ranks, cfg.pipeline)
        self.learner = DeepSpeedLearner(cfg.model.student, cfg.learner, cfg.objective, rank=rank,
                                        world_size=world_size, master_addr=master_addr, master_port=master_port,
                                        temperature=cfg.rollout.temperature, seed=cfg.run.seed,
                                        fault=cfg.run.fault, generation=generation,
                                        model_options=model_options(cfg),
                                        vocab_limit=shared_logit_width(cfg.model.student, *teachers.models(cfg)))

    def ready(self) -> bool:
        return True

    def node_ip(self) -> str:
        """The address of the Ray node this rank runs on."""
        return ray.util.get_node_ip_address()

    def train_step(self, *batches):
        return self.learner.train_step(list(batches))

    def sft_step(self, batch):
        return self.learner.sft_step(batch)

    def full_state_dict(self):
        return self.learner.full_state_dict()

    def weights_digest(self):
        return self.learner.weights_digest()

    def save_pretrained(self, path, tokenizer_path):
        return self.learner.save_pretrained(path, tokenizer_path)

    def save_checkpoint(self, path):
        return self.learner.save_checkpoint(path)

    def load_checkpoint(self, path):
        return self.learner.load_checkpoint(path)

    def init_weight_transfer(self, mode, engines, engine_shapes, timeout_s, init_timeout_s):
        """rollout.weight_sync = nccl | ipc | gloo: join the engines through vLLM's weight-transfer API."""
        ds = self.learner
        self.weight_transfer = TrainerWeightTransfer(mode, ds.rank, ds.engine.module, ds.zero_stage, engines,
                                                     engine_shapes, timeout_s, init_timeout_s)

    def send_weights(self, policy_version):
        return self.weight_transfer.send(policy_version)

    def optimizer_steps(self) -> int:
        return self.learner.optimizer_steps
