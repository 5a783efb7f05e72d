"""Rollout engines and teacher servers that die or hang are replaced; their shards are re-issued under the same
traj_ids; every id is consumed once; the final weights equal a fault-free run of the same seed (at one policy
version, a re-issued trajectory is sampled with the same seed: the same samples).

These run the strict loop (pipeline.max_staleness=0), where a re-issued shard is sampled at the version it was
launched at. Sampled ahead (max_staleness 1, the lab default), a shard on a replaced engine is re-sampled by the
replacement at the current version, so bit-equal weights are not expected there:
test_an_engine_killed_while_sampling_ahead_is_replaced_once checks that path's bookkeeping.

Faults go into the real actors: `kill -9` of the actor's process, or the fault hook's exit and sleep."""
import os
import signal

import numpy as np
import pytest
import ray

from tests.actors.loop import tiny_cfg, train_with_actors

STEPS, BATCH = 4, 8


def run(tiny_lab, tmp_path, prefix, *overrides, on_step=None):
    cfg = tiny_cfg(tiny_lab, f"run.steps={STEPS}", f"data.prompts_per_step={BATCH}", "learner.cpus_per_rank=0.5",
                   "rollout.cpus_per_engine=0.25", "teacher.cpus_per_server=0.25", "pipeline.max_staleness=0",
                   *overrides)
    actors, state, seen = train_with_actors(cfg, tmp_path / prefix, prefix, on_step=on_step)
    weights = ray.get(actors.rollouts[0].state_dict.remote())
    assert state.step == STEPS and state.consumed.count == STEPS * BATCH  # every id once (the controller checks)
    actors.kill()
    return state, seen, weights


def kill_after_step(step, role, index):
    def on_step(actors, state, metrics):
        if state.step == step:
            pool = actors.rollouts if role == "rollout" else actors.teachers
            os.kill(ray.get(pool[index].pid.remote()), signal.SIGKILL)
    return on_step


class FaultFreeWeights(dict):
    """Fault-free reference weights by engine count, each run on first use (a tier that only needs one engine's
    reference, like the slow tier, does not pay for the other)."""

    def __init__(self, tiny_lab, tmp):
        super().__init__()
        self.tiny_lab, self.tmp = tiny_lab, tmp

    def __missing__(self, engines: int):
        self[engines] = run(self.tiny_lab, self.tmp, f"clean{engines}-", f"rollout.num_engines={engines}")[2]
        return self[engines]


@pytest.fixture(scope="module")
def clean(ray_cluster, tiny_lab, tmp_path_factory):
    """Fault-free references: one engine, and two engines."""
    return FaultFreeWeights(tiny_lab, tmp_path_factory.mktemp("fleet_clean"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("engines, victim", [(1, 0), (2, 1)], ids=["only-engine", "one-of-two"])
def test_a_killed_engine_is_replaced_and_its_shard_reissued(clean, tiny_lab, tmp_path, engines, victim):
    state, seen, weights = run(tiny_lab, tmp_path, f"kill-e{engines}-", f"rollout.num_engines={engines}",
                               on_step=kill_after_step(2, "rollout", victim))
    assert state.health.restarts == {f"kill-e{engines}-rollout-{victim}": 1}
    assert state.health.reissued == BATCH // engines and seen[-1]["fleet/restarts_rollout"] == 1
    print(f"kill -9 of rollout-{victim} ({engines} engine(s)): re-admitted in {state.health.readmit_s[0]:.2f} s")
    assert_same_weights(weights, clean[engines])
    from opd_ray.run.report import RunData, headline

    rows = dict(headline(RunData(tmp_path / f"kill-e{engines}-")))  # the report shows the replacement
    assert [v for k, v in rows.items() if k.startswith("replaced actors")][0].startswith(f"1, 0 ({BATCH // engines};")


def test_an_engine_killed_while_sampling_ahead_is_replaced_once(ray_cluster, tiny_lab, tmp_path):
    """max_staleness 1: killed after step 2, the engine holds a batch sampled ahead (or is handed one before
    anybody notices). Whoever notices first (the weight sync, or a failed shard) replaces it; a shard launched
    on the dead engine is then re-issued on the replacement without blaming the replacement a second time."""
    state, seen, _ = run(tiny_lab, tmp_path, "ahead-", "pipeline.max_staleness=1",
                         on_step=kill_after_step(2, "rollout", 0))
    assert state.health.restarts == {"ahead-rollout-0": 1} and seen[-1]["fleet/restarts_rollout"] == 1
    assert state.health.reissued in (BATCH, 2 * BATCH)  # step 4's batch, and step 3's if it was still sampling
    assert [m["staleness"] for m in seen[:2]] == [0, 1]  # it did sample ahead


def test_a_killed_teacher_is_replaced_and_only_rescoring_is_redone(clean, tiny_lab, tmp_path):
    state, seen, weights = run(tiny_lab, tmp_path, "kill-t-", on_step=kill_after_step(2, "teacher", 0))
    assert state.health.restarts == {"kill-t-teacher-0": 1} and seen[-1]["fleet/restarts_teacher"] == 1
    assert "kill-t-teacher-0 died" in state.health.last_failure["kill-t-teacher-0"]
    assert_same_weights(weights, clean[1])


@pytest.mark.parametrize("role, point, method, limit", [
    ("teacher", "teacher_score:server=0", "score", 12),
    pytest.param("rollout", "rollout_generate:engine=0", "generate", 8, marks=pytest.mark.slow)])  # 34 s: slow tier
def test_a_hung_actor_is_named_killed_and_replaced(clean, tiny_lab, tmp_path, role, point, method, limit):
    state, seen, weights = run(tiny_lab, tmp_path, f"hang-{role}-", "pipeline.rollout_timeout_s=8",
                               "pipeline.teacher_timeout_s=4", f"run.fault={point},gen=0,call=3,action=sleep,seconds=120")
    name = f"hang-{role}-{role}-0"
    assert state.health.last_failure == {name: f"{name} did not answer {method} within {limit} s"}
    assert seen[-1]["fleet/last_failure"] == state.health.last_failure[name]  # the metrics name it too
    assert_same_weights(weights, clean[1])


def test_an_engine_killed_during_a_weight_sync_is_replaced_and_refit(clean, tiny_lab, tmp_path):
    state, seen, weights = run(tiny_lab, tmp_path, "sync-e-", "run.fault=rollout_sync:engine=0,version=2,gen=0,action=exit")
    assert state.health.restarts == {"sync-e-rollout-0": 1} and state.failed_syncs == 0
    assert [m["engines_fresh"] for m in seen] == [1] * STEPS
    assert_same_weights(weights, clean[1])


def test_a_learner_killed_during_a_weight_sync_restarts_the_learners_not_the_engines(clean, tiny_lab, tmp_path):
    """Rank 0 exits while it gathers the weights after step 2: every engine's load_weights fails with the
    learner's death, which is the learner group's to recover from (no checkpoint here: it starts over), not the
    engines' (none is replaced or charged)."""
    fault = "run.fault=learner_weights:rank=0,step=2,gen=0,action=exit"
    state, seen, weights = run(tiny_lab, tmp_path, "syncl-", fault)
    assert len(seen) > STEPS  # the fault fired: the restarted group ran its first steps again
    assert state.health.restarts == {} and seen[-1]["fleet/restarts_rollout"] == 0
    assert_same_weights(weights, clean[1])  # the restarted group redid the steps from the start, exactly


def test_the_only_engine_hung_in_a_weight_sync_is_replaced(clean, tiny_lab, tmp_path):
    state, _, weights = run(tiny_lab, tmp_path, "synchang-", "pipeline.sync_timeout_s=3",
                            "run.fault=rollout_sync:engine=0,version=2,gen=0,action=sleep,seconds=120")
    assert state.health.last_failure == {
        "synchang-rollout-0": "synchang-rollout-0 did not answer load_weights within 3 s"}
    assert_same_weights(weights, clean[1])


def test_past_max_actor_restarts_the_run_stops_naming_the_actor(ray_cluster, tiny_lab, tmp_path):
    from opd_ray.loop.fleet import FleetError

    with pytest.raises(FleetError, match=r"^mx-rollout-0 failed 1 times, more than pipeline.max_actor_restarts=0; "
                                         r"last failure: mx-rollout-0 died"):
        run(tiny_lab, tmp_path, "mx-", "pipeline.max_actor_restarts=0", on_step=kill_after_step(1, "rollout", 0))


def test_a_replacement_pinned_to_no_alive_node_stops_the_run_at_once(ray_cluster):
    """wait_started: an actor whose node_labels no alive node has (its node died) can never start; the run stops
    with an error naming it at the first poll, not after pipeline.startup_timeout_s (tested across real nodes in
    tests/launch/test_slurm_two_nodes.py)."""
    import time

    from omegaconf import OmegaConf

    from opd_ray.loop.fleet import FleetError, wait_started

    @ray.remote(num_cpus=0)
    def ready():
        return True

    ref = ready.options(label_selector={"slurm-node": "gone"}).remote()  # pending: no node has the label
    cfg = OmegaConf.create({"pipeline": {"startup_timeout_s": 600}})
    t0 = time.monotonic()
    with pytest.raises(FleetError, match=r"teacher-0 cannot be replaced: no alive Ray node has its node_labels "
                                         r"\{'slurm-node': 'gone'\}"):
        wait_started("teacher-0", ref, {"slurm-node": "gone"}, cfg, poll_s=0.5)
    assert time.monotonic() - t0 < 10
    ray.cancel(ref)
    assert wait_started("teacher-0", ready.remote(), {}, cfg) is None  # a startable one: returns once it is up
