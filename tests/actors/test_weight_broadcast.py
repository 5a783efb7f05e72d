"""rollout.weight_sync=gloo with real actors (make test-vllm): the learner broadcasts into vLLM engines through
vLLM's weight-transfer API -- the code path of `nccl`, with a gloo data plane, since this machine has no GPU.

Checked: the OPD loop runs on the broadcast path; a round that fails on one engine (fault: engine 1 raises in
`finish_weight_update` of v1) leaves that engine stale and unused while the other serves v1, and the next
round brings it back; at the end the engines sample from exactly the learner's weights.
"""
import numpy as np
import pytest
import ray
import torch

from tests.actors.loop import tiny_cfg, train_with_actors

pytestmark = pytest.mark.vllm
TOL = 1e-4


def engine_vs_learner_logp(actors, cfg, tiny_lab, engine: int, version: int):
    """Sampled-token log-probs of a batch from `engine` at `version`, and of the learner's weights (HF forward)
    and the initial weights on the same tokens."""
    from opd_ray.lab.task import sample_problems
    from opd_ray.models.loading import load_model, load_tokenizer
    from opd_ray.models.scoring import response_logits

    tok = load_tokenizer(cfg.model.student)
    prompts = [tok(p.prompt)["input_ids"] for p in sample_problems(3, 8, (2, 5))]
    batch = ray.get(actors.rollouts[engine].generate.remote(prompts, [(9, i, 0) for i in range(8)], version),
                    timeout=300)
    weights = ray.get(actors.learners.ranks[0].full_state_dict.remote(), timeout=300)
    out = []
    for state in (weights, None):
        model = load_model(str(tiny_lab / "student"))
        if state is not None:
            model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
        with torch.no_grad():
            logits = response_logits(model, batch.prompt_ids_BP, batch.prompt_mask_BP, batch.response_ids_BR,
                                     batch.response_mask_BR)
        index = torch.tensor(batch.response_ids_BR).long()[..., None]
        out.append(torch.log_softmax(logits, -1).gather(-1, index)[..., 0].numpy()[batch.response_mask_BR])
    return batch.student_logp_BR[batch.response_mask_BR], out[0], out[1]


def test_gloo_broadcast_runs_the_loop_and_a_failed_round_leaves_one_engine_stale(ray_cluster, tiny_lab, tmp_path):
    cfg = tiny_cfg(tiny_lab, "run.steps=3", "data.prompts_per_step=8", "rollout.backend=vllm",
                   "rollout.weight_sync=gloo", "rollout.num_engines=2", "rollout.cpus_per_engine=0.5",
                   "teacher.cpus_per_server=0.5", "learner.cpus_per_rank=0.5", "pipeline.sync_timeout_s=120",
                   "run.fault=rollout_sync:engine=1,version=1,action=raise")
    actors, state, seen = train_with_actors(cfg, tmp_path, "bcast-")
    assert state.step == 3 and state.consumed.count == 3 * 8
    assert [m["engines_fresh"] for m in seen] == [1, 2, 2] and state.failed_syncs == 1
    assert ray.get([e.policy_version.remote() for e in actors.rollouts], timeout=60) == [3, 3]
    for engine in (0, 1):
        got, learner, initial = engine_vs_learner_logp(actors, cfg, tiny_lab, engine, 3)
        np.testing.assert_allclose(got, learner, atol=TOL)  # the engine serves exactly the learner's weights
        assert np.abs(got - initial).max() > 1e-3  # ... which moved away from the initial ones


def test_gloo_broadcast_from_a_zero3_learner_group(ray_cluster, tiny_lab, tmp_path):
    """ZeRO-3, two ranks: every rank joins the per-parameter gathers while rank 0 broadcasts."""
    cfg = tiny_cfg(tiny_lab, "run.steps=2", "data.prompts_per_step=8", "rollout.backend=vllm",
                   "rollout.weight_sync=gloo", "rollout.cpus_per_engine=0.5", "teacher.cpus_per_server=0.5",
                   "learner.num_ranks=2", "learner.zero_stage=3", "learner.cpus_per_rank=0.5",
                   "pipeline.sync_timeout_s=120")
    actors, state, seen = train_with_actors(cfg, tmp_path, "bcast3-")
    assert state.step == 2 and [m["engines_fresh"] for m in seen] == [1, 1] and state.failed_syncs == 0
    assert actors.learners.weight_transfer_ranks == [0, 1]
    refs = [r.full_state_dict.remote() for r in actors.learners.ranks[1:]]  # ZeRO-3: rank 1 joins rank 0's gather
    got, learner, initial = engine_vs_learner_logp(actors, cfg, tiny_lab, 0, 2)
    ray.get(refs, timeout=300)
    np.testing.assert_allclose(got, learner, atol=TOL)
    assert np.abs(got - initial).max() > 1e-3
    actors.kill()  # and give back the learner's placement group
