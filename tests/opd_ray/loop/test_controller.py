"""Prompt stream ids and the trajectory queue's staleness rule (no Ray needed)."""
from types import SimpleNamespace

from opd_ray.loop.controller import InFlight, TrajectoryQueue
from opd_ray.loop.prompt_stream import PromptStream


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


def config(max_staleness, queue_size=4, save_every=0):
    return SimpleNamespace(pipeline=SimpleNamespace(max_staleness=max_staleness, queue_size=queue_size),
                           ckpt=SimpleNamespace(save_every=save_every))


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


def launches(queue, steps):
    """For each step: how many batches the loop launches before training it (it trains the oldest)."""
    out = []
    for done in range(steps):
        n = 0
        while queue.has_room(done):
            queue.put(InFlight([], done))
            n += 1
        queue.items.popleft()
        out.append(n)
    return out


def test_no_batch_is_launched_ahead_across_a_checkpoint_step():
    # staleness 1, a checkpoint after steps 3 and 6: the batches for steps 4 and 7 wait for those checkpoints
    assert launches(TrajectoryQueue(config(1, save_every=3)), 8) == [2, 1, 0, 2, 1, 0, 2, 1]
    assert launches(TrajectoryQueue(config(1)), 5) == [2, 1, 1, 1, 1]
    assert launches(TrajectoryQueue(config(2, save_every=4)), 6) == [3, 1, 0, 0, 3, 1]
    assert launches(TrajectoryQueue(config(0, save_every=1)), 3) == [1, 1, 1]
