"""RolloutEngine actor: hosts a student engine (HF backend) and serves one policy version at a time."""
from __future__ import annotations

import os

import ray

from opd_ray.config import teachers
from opd_ray.config.schema import OPDConfig
from opd_ray.data.task import verify_batch
from opd_ray.data.verifiers import get_verifier
from opd_ray.engines import weight_sync
from opd_ray.engines.hf_rollout import HFRollout
from opd_ray.engines.vllm_engines import VLLMRollout
from opd_ray.models.folders import shared_logit_width
from opd_ray.models.loading import model_options, state_dict_numpy
from opd_ray.objective.losses import payload_k
from opd_ray.runtime.faults import maybe_fault
from opd_ray.runtime.process import limit_threads


@ray.remote
class RolloutEngine:
    def __init__(self, cfg: OPDConfig, index: int = 0, generation: int = 0):
        limit_threads(cfg.rollout.cpus_per_engine, cfg.rollout.num_engines, cfg.pipeline)
        self.index, self.fault, self.generation = index, cfg.run.fault, generation  # generation: replacements
        self.calls = 0
        self.verify = get_verifier(cfg.data.verifier)
        kwargs = dict(max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
                      top_k=payload_k(cfg.objective), run_seed=cfg.run.seed, model_options=model_options(cfg),
                      vocab_limit=shared_logit_width(cfg.model.student, *teachers.models(cfg)), stop=cfg.rollout.stop)
        if cfg.rollout.backend == "vllm":
            self.engine = VLLMRollout(cfg.model.student, max_model_len=cfg.data.max_prompt_tokens
                                      + cfg.rollout.max_new_tokens, **kwargs,
                                      llm_kwargs=weight_sync.llm_kwargs(weight_sync.resolve(cfg),
                                                                        cfg.placement.rollout.num_gpus))
        else:
            # the prompt pass is a forward-only pass like the teacher's: the same budget
            self.engine = HFRollout(cfg.model.student, **kwargs, prefill_tokens=cfg.teacher.micro_batch_tokens)

    def generate(self, prompts, traj_ids, policy_version, answers=None):
        """Sampled trajectories; with the reference answers, the verifier's judgement of each one too."""
        self.calls += 1
        maybe_fault(self.fault, "rollout_generate", engine=self.index, gen=self.generation, call=self.calls)
        batch = self.engine.generate(prompts, traj_ids, policy_version)
        if answers is not None:
            batch.outcome_correct_B = verify_batch(self.verify, self.engine.tokenizer, batch, answers)
        return batch

    def greedy(self, prompts):
        maybe_fault(self.fault, "rollout_eval", engine=self.index, gen=self.generation,
                    version=self.engine.policy_version)
        return self.engine.greedy(prompts)

    def sample_texts(self, prompts, seeds, temperature, top_p):
        maybe_fault(self.fault, "rollout_eval", engine=self.index, gen=self.generation,
                    version=self.engine.policy_version)
        return self.engine.sample_texts(prompts, seeds, temperature, top_p)

    def load_weights(self, state_dict, policy_version):
        self.engine.policy_version = None  # stale from here until the load succeeds
        maybe_fault(self.fault, "rollout_sync", engine=self.index, version=policy_version, gen=self.generation)
        return self.engine.load_weights(state_dict, policy_version)

    # rollout.weight_sync = nccl | ipc | gloo: the engine side of vLLM's weight-transfer protocol, driven by learner
    # rank 0 (opd_ray/engines/weight_sync.py); the engine is stale from start_weight_update until finish_weight_update.
    def weight_shapes(self):
        return self.engine.shapes

    def init_weight_transfer_engine(self, init_info):
        self.engine.transfer.init(init_info)

    def start_weight_update(self):
        self.engine.transfer.start()

    def update_weights(self, update_info):
        self.engine.transfer.update(update_info)

    def finish_weight_update(self, policy_version):
        maybe_fault(self.fault, "rollout_sync", engine=self.index, version=policy_version)
        return self.engine.transfer.finish(policy_version)

    def policy_version(self) -> int:
        return self.engine.policy_version

    def pid(self) -> int:
        """The actor's process id (fault tests kill it; an operator can find it)."""
        return os.getpid()

    def node_ip(self) -> str:
        """The address of the Ray node this actor runs on (summary.json records where each role ran)."""
        return ray.util.get_node_ip_address()

    def state_dict(self):
        """The served weights (HF backend only: vLLM keeps its own, possibly repacked, layout)."""
        return state_dict_numpy(self.engine.model)
