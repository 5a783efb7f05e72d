"""`mopd.mode: ensemble`: the batches of one set of trajectories, each scored by another teacher, merged into one
(checked against float64 references on random inputs)."""
import numpy as np

from opd_ray.trajectory.batch import TrajectoryBatch, merge_teachers, merged_topk

B, R, K, V = 3, 5, 4, 11


def scored(rng, traj_ids, name, logp_BRV, student_ids_BRK, dtype=np.float32):
    teacher_ids = np.argsort(-logp_BRV, axis=-1)[..., :K].astype(np.int32)
    return TrajectoryBatch(
        traj_ids=traj_ids, policy_version=0, prompt_ids_BP=np.zeros((B, 2), np.int32), prompt_mask_BP=np.ones((B, 2), bool),
        response_ids_BR=rng.integers(0, V, (B, R)).astype(np.int32), response_mask_BR=np.ones((B, R), bool),
        student_logp_BR=np.zeros((B, R), np.float32), student_topk_ids_BRK=student_ids_BRK,
        student_topk_logp_BRK=np.zeros((B, R, K), np.float32), teacher_logp_BR=logp_BRV[..., 0].astype(dtype),
        teacher_logp_at_student_topk_BRK=np.take_along_axis(logp_BRV, student_ids_BRK, -1).astype(dtype),
        teacher_topk_ids_BRK=teacher_ids, teacher_topk_logp_BRK=np.take_along_axis(logp_BRV, teacher_ids, -1).astype(dtype),
        teacher_entropy_BR=-(np.exp(logp_BRV) * logp_BRV).sum(-1).astype(dtype), scored_by=name)


def log_softmax(x):
    return x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)


def test_an_ensemble_averages_the_teachers_log_probs_at_the_ids_every_teacher_scored():
    rng = np.random.default_rng(0)
    ids = [(0, i, 0) for i in range(B)]
    student_ids = np.stack([rng.permutation(V)[:K] for _ in range(B * R)]).reshape(B, R, K).astype(np.int32)
    logps = [log_softmax(rng.normal(size=(B, R, V)) * 2) for _ in range(3)]
    members = [scored(rng, ids, n, lp, student_ids) for n, lp in zip("abc", logps)]
    other = scored(rng, [(0, 9, 0)], "a", logps[0][:1], student_ids[:1])  # other trajectories: passed through
    other.traj_ids = [(0, 9, 0)]
    merged = merge_teachers([members[0], other, members[1], members[2]])
    assert [len(m) for m in merged] == [B, 1] and merged[1] is other and merged[0].scored_by == "a+b+c"
    mean = np.mean(logps, axis=0)  # float64 reference
    np.testing.assert_allclose(merged[0].teacher_logp_BR, mean[..., 0], rtol=1e-6)
    np.testing.assert_allclose(merged[0].teacher_logp_at_student_topk_BRK,
                               np.take_along_axis(mean, student_ids, -1), rtol=1e-6)


def test_the_merged_top_k_is_exact_where_the_teachers_share_their_top_k():
    rng = np.random.default_rng(1)
    logp = log_softmax(rng.normal(size=(B, R, V)) * 3)
    shifted = logp + rng.normal(size=(B, R, V)) * 1e-3  # the same ranking, nearly the same values
    lists = [np.argsort(-x, -1)[..., :K].astype(np.int32) for x in (logp, shifted)]
    ids, values = merged_topk(lists, [np.take_along_axis(x, i, -1) for x, i in zip((logp, shifted), lists)])
    mean = (logp + shifted) / 2
    want_ids = np.argsort(-mean, -1)[..., :K]
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(values, np.take_along_axis(mean, want_ids, -1), rtol=1e-5)
    assert all(len(set(row)) == K for row in ids.reshape(-1, K))  # no id twice


def test_an_id_outside_a_teachers_top_k_is_bounded_by_its_kth_value():
    ids_a, logp_a = np.array([[[0, 1]]], np.int32), np.array([[[-0.1, -3.0]]])
    ids_b, logp_b = np.array([[[2, 0]]], np.int32), np.array([[[-0.2, -2.0]]])
    ids, values = merged_topk([ids_a, ids_b], [logp_a, logp_b])
    # id 0: (-0.1 + -2.0) / 2 = -1.05; id 2: (a's bound -3.0 + -0.2) / 2 = -1.6; id 1: (-3.0 + b's bound -2.0) / 2
    assert ids.tolist() == [[[0, 2]]] and np.allclose(values, [[[-1.05, -1.6]]])
