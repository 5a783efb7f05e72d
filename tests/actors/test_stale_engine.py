"""A weight sync that times out marks that engine stale; the run goes on with the others and the stale
engine gets no rollouts until a later sync reaches it (fault: engine 1 sleeps 20 s in its v2 sync)."""
import ray

from tests.actors.loop import tiny_cfg, train_with_actors


def test_sync_timeout_marks_engine_stale_and_routes_around_it(ray_cluster, tiny_lab, tmp_path):
    cfg = tiny_cfg(tiny_lab, "run.steps=4", "data.prompts_per_step=8", "rollout.num_engines=2",
                   "learner.cpus_per_rank=0.5", "pipeline.sync_timeout_s=5",
                   "run.fault=rollout_sync:engine=1,version=2,action=sleep,seconds=20")
    actors, state, seen = train_with_actors(cfg, tmp_path, "stale-")
    # a rollout sent to the stale engine would have raised StaleEngineError (it serves another version)
    assert state.step == 4 and state.consumed.count == 4 * 8
    assert [m["engines_fresh"] for m in seen][:2] == [2, 1] and state.failed_syncs >= 1
    # the actor runs calls in order: this answers after the queued syncs caught up with the slow one
    assert ray.get(actors.rollouts[1].policy_version.remote(), timeout=60) == 4
