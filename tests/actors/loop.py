"""Shared by the actor tests: a lab config on the tiny models, and 'start actors, train to run.steps'."""
from actors.group import create_actors
from opd_ray.loop import controller, resume
from opd_ray.loop.prompt_stream import PromptStream
from opd_ray.models.loading import load_tokenizer
from opd_ray.run.preflight import build_task, load_config
from opd_ray.runtime import remote
from opd_ray.runtime.metrics import MetricsSink
from tests.conftest import LAB_CFG


def tiny_cfg(tiny_lab, *overrides):
    return load_config(LAB_CFG, [f"model.student={tiny_lab / 'student'}", f"model.teacher={tiny_lab / 'teacher'}",
                                 "rollout.max_new_tokens=16", "learner.lr=1e-2", *overrides])


def train_with_actors(cfg, run_dir, prefix, prompts=None, ckpt=None, resume_from=None, on_step=None):
    """Fresh actors; optionally restore a checkpoint; train to cfg.run.steps on `prompts` (tasks.Examples; default:
    the task's training set). Returns (actors, state, metrics).

    `on_step(actors, state, metrics)` runs after every step.
    """
    actors = create_actors(cfg, name_prefix=prefix)
    remote.get(actors.ready_refs(), 600, "startup")
    prompts = prompts or build_task(cfg, load_tokenizer(cfg.model.student)).train
    stream = PromptStream(prompts, cfg.data.samples_per_prompt, 0)
    state, seen = controller.LoopState(), []
    if resume_from is not None:
        resume.restore(actors, resume_from, state, stream, cfg, remote.get)
        controller.sync_weights(actors, state.policy_version, cfg)

    def record(s, metrics):
        seen.append(metrics)
        if on_step is not None:
            on_step(actors, s, metrics)

    run_dir.mkdir(parents=True, exist_ok=True)
    sink = MetricsSink(run_dir)
    controller.train(actors, stream, cfg, sink, state, ckpt, on_step=record)
    sink.close()
    return actors, state, seen
