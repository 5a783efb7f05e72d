"""A weight sync that times out marks that engine stale; the run goes on with the others and the stale
engine gets no rollouts until a later sync reaches it (fault: engine 1 sleeps 20 s in its v2 sync)."""
import ray

from actors.group import create_actors
from opd_ray import controller
from opd_ray.config import load_config
from opd_ray.data import PromptStream, lab_train_prompts
from opd_ray.hf_models import load_tokenizer
from opd_ray.metrics import MetricsSink
from tests.opd_ray.test_config import LAB_CFG


def test_sync_timeout_marks_engine_stale_and_routes_around_it(ray_cluster, tiny_lab, tmp_path):
    cfg = load_config(LAB_CFG, [
        f"model.student={tiny_lab / 'student'}", f"model.teacher={tiny_lab / 'teacher'}", "run.steps=4",
        "data.prompts_per_step=8", "rollout.num_engines=2", "learner.cpus_per_rank=0.5",
        "rollout.max_new_tokens=16", "pipeline.sync_timeout_s=5",
        "run.fault=rollout_sync:engine=1,version=2,action=sleep,seconds=20",
    ])
    actors = create_actors(cfg, name_prefix="stale-")
    controller.get(actors.ready_refs(), 600, "startup")
    seen = []
    sink = MetricsSink(tmp_path)
    state = controller.train(actors, PromptStream(lab_train_prompts(cfg.data, 0), 1, 0),
                             load_tokenizer(cfg.model.student), cfg, sink, controller.LoopState(),
                             on_step=lambda s, m: seen.append(m))
    sink.close()
    # a rollout sent to the stale engine would have raised StaleEngineError (it serves another version)
    assert state.step == 4 and len(state.consumed) == 4 * 8
    assert [m["engines_fresh"] for m in seen][:2] == [2, 1] and state.failed_syncs >= 1
    # the actor runs calls in order: this answers after the queued syncs caught up with the slow one
    assert ray.get(actors.rollouts[1].policy_version.remote(), timeout=60) == 4
