"""TeacherServer actor: the frozen teacher, scoring student trajectories."""
from __future__ import annotations

import ray

from opd_ray.config import OPDConfig
from opd_ray.runtime import limit_threads
from opd_ray.teacher import HFTeacher


@ray.remote
class TeacherServer:
    def __init__(self, cfg: OPDConfig):
        limit_threads(cfg.teacher.cpus_per_server)
        self.teacher = HFTeacher(cfg.model.teacher, top_k=cfg.objective.k, temperature=cfg.teacher.temperature,
                                 max_new_tokens=cfg.rollout.max_new_tokens,
                                 trust_remote_code=cfg.model.trust_remote_code)

    def ready(self) -> bool:
        return True

    def score(self, batch):
        return self.teacher.score(batch)

    def greedy(self, prompts):
        return self.teacher.greedy(prompts)
