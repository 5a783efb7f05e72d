"""Prompt stream ids and the trajectory queue's staleness rule (no Ray needed)."""
from types import SimpleNamespace

from opd_ray.controller import InFlight, TrajectoryQueue
from opd_ray.data import PromptStream


def test_stream_ids_are_unique_across_epochs():
    stream = PromptStream([f"p{i}" for i in range(5)], samples_per_prompt=2, seed=0)
    ids = [t for _ in range(7) for t, _ in stream.next_batch(3)]
    assert len(ids) == len(set(ids))
    assert {t[0] for t in ids} == {0, 1, 2, 3, 4}  # 42 trajectories over 10 per epoch


def test_given_back_prompts_come_first_under_the_same_ids():
    stream = PromptStream(["a", "b", "c"], samples_per_prompt=1, seed=0)
    first = stream.next_batch(2)
    stream.give_back(first)
    assert stream.next_batch(2) == first


def config(max_staleness, queue_size=4):
    return SimpleNamespace(pipeline=SimpleNamespace(max_staleness=max_staleness, queue_size=queue_size))


def test_queue_depth_is_staleness_plus_one():
    assert TrajectoryQueue(config(0)).depth == 1
    assert TrajectoryQueue(config(2)).depth == 3
    assert TrajectoryQueue(config(5, queue_size=2)).depth == 2


def test_stale_batches_are_refused_and_reported():
    queue, refused = TrajectoryQueue(config(1)), []
    for version in (3, 5, 6):
        queue.items.append(InFlight([], version))
    item = queue.pop_fresh(6, on_stale=refused.append)
    assert item.policy_version == 5 and [r.policy_version for r in refused] == [3]
