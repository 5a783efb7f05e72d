"""TeacherServer actor: the frozen teacher, scoring student trajectories."""
from __future__ import annotations

import os
import time

import ray

from opd_ray.config import teachers
from opd_ray.config.schema import OPDConfig
from opd_ray.engines.hf_teacher import HFTeacher
from opd_ray.engines.vllm_engines import VLLMTeacher
from opd_ray.models.folders import shared_logit_width
from opd_ray.models.loading import model_options
from opd_ray.objective.losses import FULL_VOCAB_KINDS, payload_k
from opd_ray.runtime.faults import maybe_fault
from opd_ray.runtime.process import limit_threads


@ray.remote
class TeacherServer:
    def __init__(self, cfg: OPDConfig, index: int = 0, generation: int = 0, name: str = teachers.DEFAULT):
        """`cfg`: the teacher's view of the run's config (opd_ray/config/teachers.py); `name`: the teacher's."""
        limit_threads(cfg.teacher.cpus_per_server, cfg.teacher.num_servers, cfg.pipeline)
        self.index, self.generation, self.fault, self.calls, self.name = index, generation, cfg.run.fault, 0, name
        kwargs = dict(top_k=payload_k(cfg.objective), temperature=cfg.teacher.temperature,
                      max_new_tokens=cfg.rollout.max_new_tokens, logprob_dtype=cfg.teacher.logprob_dtype,
                      ship_full_vocab=cfg.objective.kind in FULL_VOCAB_KINDS, model_options=model_options(cfg),
                      vocab_limit=shared_logit_width(cfg.model.student, *teachers.models(cfg)), stop=cfg.rollout.stop,
                      micro_batch_tokens=cfg.teacher.micro_batch_tokens)
        if cfg.teacher.backend == "vllm":
            self.teacher = VLLMTeacher(cfg.model.teacher, max_model_len=cfg.data.max_prompt_tokens
                                       + cfg.rollout.max_new_tokens, **kwargs)
        else:
            self.teacher = HFTeacher(cfg.model.teacher, **kwargs)

    def ready(self) -> bool:
        return True

    def score(self, batch):
        self.calls += 1
        t0 = time.time()
        queued_s = max(0.0, t0 - batch.stage_s.get("sampled_at", t0))  # sampled -> a server takes it (one clock)
        maybe_fault(self.fault, "teacher_score", teacher=self.name, server=self.index, gen=self.generation,
                    call=self.calls, version=batch.policy_version)
        scored = self.teacher.score(batch)
        scored.scored_by = self.name
        scored.stage_s = {**scored.stage_s, "teacher_queue": queued_s, "teacher_call": time.time() - t0}
        return scored

    def pid(self) -> int:
        return os.getpid()

    def node_ip(self) -> str:
        """The address of the Ray node this actor runs on (summary.json records where each role ran)."""
        return ray.util.get_node_ip_address()

    def greedy(self, prompts):
        return self.teacher.greedy(prompts)

    def sample_texts(self, prompts, seeds, temperature, top_p):
        return self.teacher.sample_texts(prompts, seeds, temperature, top_p)
