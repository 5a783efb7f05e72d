"""Verifiers: math-verify grading (also off the main thread), exact match, the lab's, and user functions."""
import threading

import pytest

from opd_ray.data.verifiers import VERIFIERS, check_verifier_spec, get_verifier


def test_builtin_names_are_all_accepted():
    assert VERIFIERS == ("math", "exact", "lab_arith")
    for name in VERIFIERS:
        assert check_verifier_spec(name) is None
        assert callable(get_verifier(name))


@pytest.mark.parametrize("response, answer, reward", [
    (r"The answer is \boxed{0.5}", r"\frac{1}{2}", 1.0),  # symbolic equivalence, boxed extraction
    (r"so we get \boxed{\frac{2}{4}}.", "0.5", 1.0),
    (r"Hence $x^2+1$ is it: \boxed{1+x^2}", "x^2+1", 1.0),  # a bare LaTeX reference is wrapped in $...$
    (r"\boxed{\sqrt{2}}", r"\sqrt{2}", 1.0),
    ("3 + 4 = 7, so the total is 42", "42", 1.0),  # no box: the last answer-like number
    (r"The answer is \boxed{3}", "4", 0.0),  # wrong boxed answer
    ("I do not know. }}}{{ $$ \\frac{", "42", 0.0),  # garbage
    ("", "42", 0.0),
    ("42", "", 0.0),  # an unparsable reference is 0.0, not an exception
])
def test_math_verifier(response, answer, reward):
    assert get_verifier("math")(response, answer) == reward


def test_math_verifier_works_off_the_main_thread():
    """math-verify's SIGALRM timeout raises in a thread; the verifier must grade there too, never raise."""
    verify = get_verifier("math")
    results = {}

    def grade():
        try:
            results["right"] = verify(r"The answer is \boxed{0.5}", r"\frac{1}{2}")
            results["wrong"] = verify(r"The answer is \boxed{3}", "4")
            results["fresh"] = verify(r"\boxed{\frac{6}{8}}", "0.75")  # a reference not parsed before
        except BaseException as err:  # pragma: no cover - the failure the test exists for
            results["error"] = repr(err)

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(timeout=60)
    assert results == {"right": 1.0, "wrong": 0.0, "fresh": 1.0}


def test_the_math_grader_counts_its_timeouts_and_raises_anything_else(monkeypatch):
    """A timeout of math-verify is a wrong answer, counted (verifier/errors); a broken grader is loud, not 0.0."""
    import math_verify
    from math_verify.errors import TimeoutException

    from opd_ray.data import verifiers

    verify = get_verifier("math")
    before = verifiers.error_count()

    def hangs(*args, **kwargs):
        raise TimeoutException("Operation timed out!")

    monkeypatch.setattr(math_verify, "parse", hangs)
    assert verify("The answer is 7.", "unique-answer-1") == 0.0
    assert verifiers.error_count() == before + 1

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the grader")

    monkeypatch.setattr(math_verify, "parse", broken)
    with pytest.raises(RuntimeError, match="a bug in the grader"):
        verify("The answer is 7.", "unique-answer-2")
    assert verifiers.error_count() == before + 1


@pytest.mark.parametrize("response, answer, reward", [
    ("Paris", "Paris", 1.0),
    ("  paris. ", "Paris", 1.0),  # whitespace, case, trailing period
    ("Thinking...\nThe answer is Paris.", "paris", 1.0),
    ("The answer is: New   York", "new york", 1.0),
    ("work\n#### 72", "72", 1.0),
    (r"so \boxed{Blue}", "blue", 1.0),
    ("The answer is Paris, France", "Paris", 0.0),
    ("I think it is Paris", "Paris", 0.0),  # no marker: the whole response must match
    ("The answer is Rome. Or maybe the answer is Paris", "paris", 1.0),  # the last marker counts
    ("anything", "", 0.0),
])
def test_exact_verifier(response, answer, reward):
    assert get_verifier("exact")(response, answer) == reward


def test_lab_arith_verifier():
    verify = get_verifier("lab_arith")
    assert verify("12+30=42 #42", "42") == 1.0
    assert verify("12+30=41 #41", "42") == 0.0
    assert verify("no answer", "42") == 0.0
    with pytest.raises(ValueError, match="data.verifier: lab_arith needs an integer reference answer"):
        verify("#42", "forty-two")


def write_user_module(tmp_path, name="my_reward"):
    path = tmp_path / f"{name}.py"
    path.write_text(
        "def contains(response, answer):\n    return answer in response\n\n"
        "def half(response, answer):\n    return 0.5\n\n"
        "def nothing(response, answer):\n    return None\n\n"
        "NOT_A_FUNCTION = 3\n", encoding="utf-8")
    return path


def test_user_function_from_a_file(tmp_path):
    path = write_user_module(tmp_path)
    assert check_verifier_spec(f"{path}:contains") is None
    contains = get_verifier(f"{path}:contains")
    assert contains("it is 42", "42") == 1.0 and contains("it is 41", "42") == 0.0  # bool -> float
    assert get_verifier(f"{path}:half")("x", "y") == 0.5
    with pytest.raises(ValueError, match="returned NoneType None, expected bool or float"):
        get_verifier(f"{path}:nothing")("x", "y")


def test_user_function_from_an_importable_module(tmp_path, monkeypatch):
    write_user_module(tmp_path, "opd_test_reward_module")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert check_verifier_spec("opd_test_reward_module:contains") is None
    assert get_verifier("opd_test_reward_module:contains")("a 42", "42") == 1.0


@pytest.mark.parametrize("spec, fragment", [
    ("", "is empty"),
    ("mathh", "'mathh' is not a verifier: expected one of math, exact, lab_arith"),
    ("no_such_module_xyz:f", "module 'no_such_module_xyz' not found"),
    ("{dir}/missing.py:f", "missing.py not found"),
    ("{path}:absent", "no function 'absent'"),
])
def test_bad_specs_are_one_line_and_name_the_field(tmp_path, spec, fragment):
    spec = spec.format(dir=tmp_path, path=write_user_module(tmp_path))
    problem = check_verifier_spec(spec)
    assert problem and fragment in problem and "\n" not in problem, problem
    with pytest.raises(ValueError) as info:
        get_verifier(spec)
    message = str(info.value)
    assert message.startswith("data.verifier: ") and "\n" not in message, message
    assert fragment in message, message


def test_not_callable_and_broken_files(tmp_path):
    path = write_user_module(tmp_path)
    with pytest.raises(ValueError, match=r"data.verifier: .*'NOT_A_FUNCTION' in .* is not callable \(a int\)"):
        get_verifier(f"{path}:NOT_A_FUNCTION")
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n    pass\n", encoding="utf-8")
    assert "line 1: syntax error" in check_verifier_spec(f"{broken}:f")
    with pytest.raises(ValueError, match=r"^data.verifier: .*loading .*broken.py failed \(SyntaxError"):
        get_verifier(f"{broken}:f")
