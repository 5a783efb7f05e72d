"""objective.diagnostics_k: the overlap diagnostics at another k than the objective's.

On the lab models, 12 trajectories scored with top-8 payloads: a learner with k=4 and diagnostics_k=8 gives the loss
of a k=4 learner on top-4 payloads (the objective sees the first 4 entries only) and the top-8 overlap ratio,
checked against a plain-Python count over the ids.
"""
import numpy as np
import pytest

from tests.conftest import lab_learner, scored_lab_batch


@pytest.fixture(scope="module")
def scored():
    """The same trajectories shipped at k=8 and at k=4 (sampling does not depend on how many ids are recorded)."""
    return {k: scored_lab_batch(12, problem_seed=5, top_k=k, max_new_tokens=32)[1] for k in (4, 8)}


def learner(**objective):
    from opd_ray.config.schema import ObjectiveConfig

    return lab_learner(ObjectiveConfig(kind="topk", **objective))


def overlap_ratio_reference(batch) -> float:
    m = batch.response_mask_BR
    s_ids, t_ids = batch.student_topk_ids_BRK, batch.teacher_topk_ids_BRK
    ratios = [len(set(s_ids[b, r].tolist()) & set(t_ids[b, r].tolist())) / s_ids.shape[-1]
              for b, r in zip(*np.nonzero(m))]
    return float(np.mean(ratios))


def test_a_k8_payload_cut_to_4_is_the_k4_payload(scored):
    four, eight = scored[4], scored[8]
    np.testing.assert_array_equal(four.response_ids_BR, eight.response_ids_BR)
    cut, m = eight.topk_cut(4), four.response_mask_BR  # at padding the teacher's top-k of zeros is any order
    for name in ("student_topk_ids_BRK", "teacher_topk_ids_BRK"):
        np.testing.assert_array_equal(getattr(cut, name)[m], getattr(four, name)[m], err_msg=name)
    for name in ("student_topk_logp_BRK", "teacher_topk_logp_BRK", "teacher_logp_at_student_topk_BRK"):
        np.testing.assert_allclose(getattr(cut, name)[m], getattr(four, name)[m], atol=1e-6, err_msg=name)


def test_diagnostics_k_changes_the_diagnostics_not_the_objective(scored):
    n = float(scored[4].response_mask_BR.sum())
    loss4, sums4 = learner(k=4).opd_loss(scored[4], n)
    loss48, sums48 = learner(k=4, diagnostics_k=8).opd_loss(scored[8], n)
    np.testing.assert_allclose(float(loss48), float(loss4), rtol=1e-6)
    ratio = lambda sums: sums["overlap_ratio"][0] / sums["overlap_ratio"][1]  # noqa: E731
    np.testing.assert_allclose(ratio(sums4), overlap_ratio_reference(scored[4]), rtol=1e-6)
    np.testing.assert_allclose(ratio(sums48), overlap_ratio_reference(scored[8]), rtol=1e-6)
    assert abs(ratio(sums48) - ratio(sums4)) > 0.01  # the two k measure different things here
