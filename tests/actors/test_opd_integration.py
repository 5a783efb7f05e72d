"""A real OPD run on a local Ray: rollout engine, teacher server and 2 DeepSpeed ranks (ZeRO-1, gloo).

Checks after every step: the engine's weights equal the learner's and changed, every traj_id is consumed
exactly once, and the loss and metrics are finite.
"""
import math

import numpy as np
import ray

from opd_ray.loop import controller
from opd_ray.models.loading import load_model, load_tokenizer, state_dict_numpy
from opd_ray.run.preflight import build_task
from opd_ray.runtime import remote
from tests.actors.loop import tiny_cfg, train_with_actors


def test_opd_steps_through_all_actors(ray_cluster, tiny_lab, tmp_path):
    cfg = tiny_cfg(tiny_lab, "run.steps=3", "data.prompts_per_step=8", "data.samples_per_prompt=2",
                   "learner.num_ranks=2", "learner.cpus_per_rank=0.5", "objective.diagnostics_every=3")
    initial = state_dict_numpy(load_model(str(tiny_lab / "student")))  # what the engines start from

    def check(actors, state, metrics):
        engine_w = ray.get(actors.rollouts[0].state_dict.remote())
        learner_w = ray.get(actors.learners.ranks[1].full_state_dict.remote())
        assert engine_w.keys() == learner_w.keys()
        for name in engine_w:
            np.testing.assert_array_equal(engine_w[name], learner_w[name], err_msg=name)
        assert ray.get(actors.rollouts[0].policy_version.remote()) == state.policy_version
        assert any(not np.array_equal(initial[n], engine_w[n]) for n in engine_w), "weights never changed"
        # the reward AUROC is NaN when every rollout is right (or wrong): the tiny untrained model gets all wrong
        # an entropy band with no token has no mean (NaN); the shares of the bands add up to 1
        assert all(math.isfinite(v) for k, v in metrics.items() if isinstance(v, float) and k != "reward_auroc"
                   and "/teacher_entropy_" not in k)
        shares = [v for k, v in metrics.items() if k.startswith("teacher_entropy_share/")]
        assert len(shares) == 3 and math.isclose(sum(shares), 1.0, rel_tol=1e-9)
        assert any(math.isfinite(metrics[f"overlap_ratio/teacher_entropy_{band}"]) for band in ("lt0.1", "0.1to1",
                                                                                               "ge1"))

    prompts = build_task(cfg, load_tokenizer(cfg.model.student)).train[:12]  # 3 steps x 8 prompts x 2 samples > 1 epoch
    actors, state, seen = train_with_actors(cfg, tmp_path, "it-", prompts=prompts, on_step=check)
    assert state.step == 3 and len(seen) == 3
    # every id once (the controller raises on a repeat): the stream's first 48 ids, 24 of them in a second epoch
    assert state.consumed.state_dict() == {"floor": 3 * 8 * 2, "above": [], "count": 3 * 8 * 2}
    assert ray.get([r.optimizer_steps.remote() for r in actors.learners.ranks]) == [3, 3]
    assert 0 < seen[0]["overlap_ratio"] <= 1 and seen[0]["tokens"] > 0
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 3
    # the paper's diagnostics: Eq. 7 is -KL(p̄||q̄)/|∩| <= 0; heatmap rows and the AUROC every 3rd step only
    assert all(m["overlap_token_advantage"] <= 1e-6 and m["teacher_payload_bytes_per_token"] > 0 for m in seen)
    assert "entropy_student_by_position" not in seen[0] and "reward_auroc" not in seen[0]
    assert len(seen[2]["entropy_student_by_position"]) == len(seen[2]["entropy_teacher_by_position"]) <= 16
    assert "reward_auroc" in seen[2] and 0 <= seen[2]["train_accuracy"] <= 1

    # the HF export loads through from_pretrained and holds the weights the engine serves
    from transformers import AutoModelForCausalLM

    export = tmp_path / "export"
    remote.get(actors.learners.save_pretrained_refs(str(export), str(tiny_lab / "student")), 120, "learner")
    exported = AutoModelForCausalLM.from_pretrained(export).state_dict()
    served = ray.get(actors.rollouts[0].state_dict.remote())
    for name, value in served.items():
        np.testing.assert_array_equal(exported[name].numpy(), value, err_msg=name)
    actors.kill()  # and give back the learner's placement group (two ranks), which outlives the actors' handles


def test_pipelined_rollouts_respect_max_staleness(ray_cluster, tiny_lab, tmp_path):
    """max_staleness=1: the next batch is sampled while the learner trains, one version behind at most; two shards
    per engine, so the teacher scores the first while the engine samples the second."""
    cfg = tiny_cfg(tiny_lab, "run.steps=4", "data.prompts_per_step=8", "pipeline.max_staleness=1",
                   "learner.cpus_per_rank=0.5", "rollout.shards_per_engine=2")
    actors, state, seen = train_with_actors(cfg, tmp_path, "pipe-")
    assert [m["staleness"] for m in seen] == [0, 1, 1, 1]
    assert state.consumed.count == 4 * 8 and state.refused_stale == 0


def test_an_engine_samples_its_shards_in_turn_and_each_is_scored(ray_cluster, tiny_lab):
    """rollout.shards_per_engine=3: one engine's 8 prompts go out as shards of 3, 3 and 2, each chained into the
    teacher on its own; every trajectory is sampled exactly as in one whole batch (its seed, not its batch, decides)."""
    from actors.group import create_actors
    from opd_ray.loop import fleet
    from opd_ray.loop.prompt_stream import PromptStream

    one = tiny_cfg(tiny_lab, "data.prompts_per_step=8", "learner.cpus_per_rank=0.5")
    three = tiny_cfg(tiny_lab, "data.prompts_per_step=8", "learner.cpus_per_rank=0.5", "rollout.shards_per_engine=3")
    actors = create_actors(one, name_prefix="shards-")
    remote.get(actors.ready_refs(), 600, "startup")
    prompts = build_task(one, load_tokenizer(one.model.student)).train[:8]
    responses = {}
    for cfg in (one, three):
        item = controller.launch_rollouts(actors, PromptStream(prompts, 1, 0), cfg, 0)
        batches = fleet.collect(actors, item.shards, 0, fleet.FleetHealth(), set(), cfg)
        assert [len(b.traj_ids) for b in batches] == ([8] if cfg is one else [3, 3, 2])
        assert all(b.teacher_logp_BR is not None and "teacher" in b.stage_s for b in batches)
        responses[cfg.rollout.shards_per_engine] = {
            t: b.response_ids_BR[i][b.response_mask_BR[i]].tolist() for b in batches for i, t in enumerate(b.traj_ids)}
    assert len(responses[1]) == 8 and responses[3] == responses[1]
