"""The bounded exactly-once ledger against a plain set of every consumed id, on the real prompt stream, with batches
consumed out of order and refused ones handed out again, as the controller does."""
import json
import random
from collections import deque

import pytest

from opd_ray.loop.prompt_stream import PromptStream
from opd_ray.loop.resume import consumed_ledger
from opd_ray.trajectory.ledger import ConsumedLedger, ConsumedTwice


def run_stream(steps: int, n_prompts: int = 50, samples: int = 2, per_step: int = 4, depth: int = 3, seed: int = 0):
    """Consume `steps` batches from a stream as the controller does: up to `depth` in flight, oldest first, one in
    five refused (too stale) and handed out again first, so ids are consumed out of order. Returns (stream, ledger, the set of consumed ids, every id handed out, the largest `above`)."""
    rng, stream = random.Random(seed), PromptStream(list(range(n_prompts)), samples, seed=3)
    ledger, consumed, handed, in_flight, widest = ConsumedLedger(), set(), set(), deque(), 0
    for _ in range(steps):
        while len(in_flight) < depth:
            in_flight.append(stream.next_batch(per_step))
            handed.update(t for t, _ in in_flight[-1])
        batch = in_flight.popleft()
        if rng.random() < 0.2:
            stream.give_back(batch)
            continue
        ids = [t for t, _ in batch]
        ledger.consume([stream.serial(t) for t in ids])
        consumed.update(ids)
        widest = max(widest, len(ledger.above))
    return stream, ledger, consumed, handed, widest


def test_serials_number_the_stream_in_order_and_invert():
    stream = PromptStream(list(range(7)), samples_per_prompt=3, seed=5)
    issued = [t for _ in range(10) for t, _ in stream.next_batch(2)]  # 60 ids: into the third epoch
    assert [stream.serial(t) for t in issued] == list(range(60))
    assert [stream.traj_id(s) for s in range(60)] == issued


def test_the_ledger_agrees_with_a_set_of_every_consumed_id():
    stream, ledger, consumed, handed, widest = run_stream(400)
    assert ledger.count == len(consumed) > 1000
    assert all((stream.serial(t) in ledger) == (t in consumed) for t in handed)
    assert handed - consumed and widest > 0  # some ids were in flight or refused: the test reorders for real
    # bounded by what is in flight (3 batches of 8 ids; a refused batch waits behind the ones launched after it,
    # longer when refused again), not by the 1,000+ ids consumed
    assert widest <= 2 * 3 * 4 * 2, widest


def test_an_id_consumed_twice_is_refused_and_nothing_is_recorded():
    stream, ledger, consumed, _, _ = run_stream(50)
    before = ledger.state_dict()
    old = stream.serial(sorted(consumed)[0])
    fresh = max(stream.serial(t) for t in consumed) + 1
    for serials in ([fresh, old], [fresh, fresh]):
        with pytest.raises(ConsumedTwice, match="consumed twice"):
            ledger.consume(serials)
        assert ledger.state_dict() == before


def test_state_json_does_not_grow_with_the_run():
    """The checkpoint's record after 20 and 2,000 steps: at most the ids in flight (48 serials of a few digits),
    where the listing of every consumed id grows by some 12 bytes per id."""
    for steps in (20, 2000):
        _, ledger, consumed, _, _ = run_stream(steps)
        size, listing = len(json.dumps(ledger.state_dict())), len(json.dumps(sorted(list(t) for t in consumed)))
        assert size <= 48 * len(f"{ledger.floor + 100}, ") + 50, (steps, size)
        assert listing >= 10 * ledger.count, (steps, listing)


def test_a_checkpoint_that_lists_every_id_still_resumes():
    """state.json written before the ledger listed every consumed traj_id; it loads into the same ledger."""
    stream, ledger, consumed, _, _ = run_stream(100)
    assert consumed_ledger(sorted(list(t) for t in consumed), stream) == ledger
    assert consumed_ledger(json.loads(json.dumps(ledger.state_dict())), stream) == ledger
