"""The test-only fault hook: a spec fires only where every key matches the call site's context."""
import pytest

from opd_ray.runtime.faults import maybe_fault

SPEC = "teacher_score:teacher=digits,version=2-4,action=raise"


@pytest.mark.parametrize("context, fires", [
    (dict(teacher="digits", version=2), True), (dict(teacher="digits", version=4), True),
    (dict(teacher="digits", version=5), False), (dict(teacher="digits", version=1), False),
    (dict(teacher="sum", version=3), False), (dict(teacher="digits"), False),
])
def test_a_range_matches_the_integers_in_it(context, fires):
    if fires:
        with pytest.raises(RuntimeError, match="injected fault at teacher_score"):
            maybe_fault(SPEC, "teacher_score", **context)
    else:
        maybe_fault(SPEC, "teacher_score", **context)


def test_other_points_and_exact_values_are_unchanged():
    maybe_fault("teacher_score:server=0,call=3", "rollout_generate", server=0, call=3)
    maybe_fault("teacher_score:server=0,call=3", "teacher_score", server=0, call=13)
    with pytest.raises(RuntimeError):
        maybe_fault("teacher_score:server=0,call=3", "teacher_score", server=0, call=3)


def test_specs_joined_by_semicolons_each_fire_on_their_own_cue():
    spec = "rollout_eval:engine=0,gen=0,version=0,action=raise;rollout_eval:engine=0,gen=1,version=1,action=raise"
    for gen, version in ((0, 0), (1, 1)):
        with pytest.raises(RuntimeError, match=f"'gen': {gen}"):
            maybe_fault(spec, "rollout_eval", engine=0, gen=gen, version=version)
    for gen, version in ((0, 1), (1, 0), (2, 1)):
        maybe_fault(spec, "rollout_eval", engine=0, gen=gen, version=version)
    maybe_fault(spec + ";", "rollout_eval", engine=1, gen=0, version=0)  # an empty spec matches nothing
