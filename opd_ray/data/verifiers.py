"""Verifiers: (response text, reference answer) -> reward 1.0 / 0.0, named by a spec string (`data.verifier`).

- `math`: the `math-verify` package, as the paper grades: the answer is extracted from the response (a
  `\\boxed{}` first, else the last answer-like expression) and compared with the reference by symbolic
  equivalence. math-verify's own timeouts score 0.0 and are counted (`error_count`, logged as
  `verifier/errors`); anything else (a broken install, a bug) raises: a grader that fails silently turns every
  answer wrong.
- `exact`: a normalised string match (see `exact_match`).
- `lab_arith`: the lab's verifier (`#<sum>` at the end of the response).
- `module:function` or `path/to/file.py:function`: your own function `f(response, answer) -> bool | float`.

Specs are checked before Ray starts with `check_verifier_spec` (cheap: nothing is imported or run); each
actor then builds its own callable with `get_verifier`.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
import re
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Callable

Verifier = Callable[[str, str], float]
VERIFIERS = ("math", "exact", "lab_arith")
FIELD = "data.verifier"
ERRORS: Counter = Counter()  # answers scored 0.0 because the grader gave up (math-verify's timeouts), this process
# math-verify's own per-call limits (seconds); enforced with SIGALRM, so only in the main thread.
MATH_PARSE_TIMEOUT_S = 5
MATH_VERIFY_TIMEOUT_S = 5


# ------------------------------------------------------------------------------------------------ math


def in_main_thread() -> bool:
    """True when signal.alarm may be used: math-verify's timeouts raise ValueError in any other thread."""
    return threading.current_thread() is threading.main_thread()


def math_timeouts() -> tuple[int | None, int | None]:
    """(parsing_timeout, timeout_seconds) for math-verify: its SIGALRM limits in the main thread, else None.

    Ray runs a threaded or async actor's methods off the main thread, where math-verify's signal-based
    timeout cannot work and raises; with None it runs without one (its documented threaded mode), so a
    pathological expression can take long there but never crashes the verifier.
    """
    if in_main_thread():
        return MATH_PARSE_TIMEOUT_S, MATH_VERIFY_TIMEOUT_S
    return None, None


def silence_math_verify_timeout_warning() -> None:
    """math-verify logs a warning the first time a timeout is disabled; here that is deliberate, not news."""
    import math_verify.grader
    import math_verify.parser
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True


@functools.lru_cache(maxsize=4096)
def parse_gold(answer: str, parsing_timeout: int | None) -> tuple:
    """The reference parsed once per answer (a prompt's n samples share it).

    A bare reference is wrapped as `$...$`: math-verify then reads LaTeX like `x^2+1` or `\\sqrt{2}`,
    which it does not find in bare text (`\\frac{1}{2}` and plain numbers parse either way). A reference
    already in `$...$` or `\\boxed{}` is parsed as written; if wrapping finds nothing, the bare text is tried.
    """
    from math_verify import parse
    if "$" in answer or "\\boxed" in answer:
        return tuple(parse(answer, parsing_timeout=parsing_timeout))
    wrapped = parse(f"${answer}$", parsing_timeout=parsing_timeout)
    return tuple(wrapped or parse(answer, parsing_timeout=parsing_timeout))


def error_count() -> int:
    """How many answers this process scored 0.0 because the grader gave up."""
    return sum(ERRORS.values())


def math_verify_reward(response: str, answer: str) -> float:
    """1.0 when math-verify finds the response's answer equivalent to the reference. Its timeouts give 0.0 and
    are counted in ERRORS; any other exception (an import that fails, a bug) is raised."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    silence_math_verify_timeout_warning()
    parsing_timeout, verify_timeout = math_timeouts()
    try:
        gold = parse_gold(str(answer).strip(), parsing_timeout)
        if not gold:
            return 0.0
        pred = parse(response, parsing_timeout=parsing_timeout)
        if not pred:
            return 0.0
        return 1.0 if verify(list(gold), pred, timeout_seconds=verify_timeout) else 0.0
    except TimeoutException:  # math-verify's own limit (a BaseException): a wrong answer, counted
        ERRORS["math_verify_timeout"] += 1
        return 0.0


# ----------------------------------------------------------------------------------------------- exact

ANSWER_MARKER_RE = re.compile(r"(?:answer\s+is|answer\s*:|####)", re.IGNORECASE)


def normalise(text: str) -> str:
    """Casefolded, whitespace collapsed, stripped, trailing periods dropped: `' The  Answer. '` -> `the answer`."""
    return re.sub(r"\s+", " ", str(text)).strip().casefold().rstrip(".").strip()


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth < 0:
            return text[begin:index]
    return None


def answer_candidates(response: str) -> list[str]:
    """Where an exact answer may sit: the whole response, the rest of the line after the last
    `answer is` / `answer:` / `####` marker (a leading ':' dropped), and the last `\\boxed{}` content."""
    candidates = [response]
    markers = list(ANSWER_MARKER_RE.finditer(response))
    if markers:
        tail = response[markers[-1].end():].lstrip().lstrip(":").strip()
        candidates.append(tail.splitlines()[0] if tail else "")
    boxed = last_boxed(response)
    if boxed is not None:
        candidates.append(boxed)
    return candidates


def exact_match(response: str, answer: str) -> float:
    """1.0 when the normalised reference equals one of the normalised `answer_candidates` of the response.

    Normalising: whitespace collapsed, stripped, casefolded, trailing periods removed. So for the answer
    "Paris": "paris." matches, "The answer is Paris." matches, "#### paris" and "\\boxed{Paris}" match,
    "Paris, France" does not, and an empty reference never matches.
    """
    reference = normalise(answer)
    if not reference:
        return 0.0
    return 1.0 if any(normalise(c) == reference for c in answer_candidates(str(response))) else 0.0


# ------------------------------------------------------------------------------------------------- lab


LAB_ANSWER_RE = re.compile(r"#(\d+)$")  # the lab's responses end in `#<sum>`


def extract_answer(response: str) -> int | None:
    """The lab's final answer: the integer after a trailing '#', or None."""
    match = LAB_ANSWER_RE.search(response.strip())
    return int(match.group(1)) if match else None


def lab_arith_reward(response: str, answer: str) -> float:
    """The lab's verifier: the integer after the final '#' equals the reference sum."""
    try:
        reference = int(str(answer).strip())
    except ValueError:
        raise ValueError(f"{FIELD}: lab_arith needs an integer reference answer, got {answer!r}") from None
    return 1.0 if extract_answer(response) == reference else 0.0


BUILTIN: dict[str, Verifier] = {"math": math_verify_reward, "exact": exact_match, "lab_arith": lab_arith_reward}


# --------------------------------------------------------------------------------------- module:function


def split_spec(spec: str) -> tuple[str, str]:
    """`module:function` / `path/to/file.py:function` -> (module or path, function); ValueError if neither."""
    target, sep, function = spec.rpartition(":")
    if not sep or not target or not function.isidentifier():
        raise ValueError(f"{FIELD}: {spec!r} is not a verifier: expected one of {', '.join(VERIFIERS)}, "
                         "module:function or path/to/file.py:function")
    return target, function


def is_file_target(target: str) -> bool:
    """A file path rather than a dotted module name."""
    return target.endswith(".py") or "/" in target or "\\" in target


def check_verifier_spec(spec: str) -> str | None:
    """The problem with a spec, or None; the message has no field prefix (the caller adds `data.verifier: `).

    Cheap and side-effect free, for config validation before Ray starts: a built-in name is accepted; for
    `module:function` the module is located (parents imported, not the module itself) and its source read
    for a top-level `function`; a file is checked the same way. Pass the resolved spec ("" is a problem).
    """
    if not isinstance(spec, str) or not spec.strip():
        return f"is empty; expected one of {', '.join(VERIFIERS)} or module:function"
    spec = spec.strip()
    if spec in BUILTIN:
        return None
    try:
        target, function = split_spec(spec)
    except ValueError as err:
        return str(err).removeprefix(f"{FIELD}: ")
    source_path = Path(target).expanduser() if is_file_target(target) else module_source(target)
    if isinstance(source_path, str):
        return source_path
    if source_path is None:
        return None  # a compiled or namespace module: only importing it can tell
    if not source_path.is_file():
        return f"{spec}: file {target} not found"
    return missing_name_problem(source_path, function, spec)


def module_source(module: str) -> Path | str | None:
    """The source file of an importable module, None when it has none, or a problem message."""
    try:
        module_spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as err:
        return f"module {module!r} not found ({type(err).__name__}: {one_line(err)})"
    if module_spec is None:
        return f"module {module!r} not found on sys.path"
    origin = module_spec.origin
    return Path(origin) if origin and origin.endswith(".py") else None


def missing_name_problem(source_path: Path, function: str, spec: str) -> str | None:
    """A problem when the source defines or imports no top-level `function` (a syntax error is one too)."""
    try:
        tree = ast.parse(source_path.read_text(encoding="utf-8"), filename=str(source_path))
    except (OSError, UnicodeDecodeError) as err:
        return f"{spec}: cannot read {source_path} ({one_line(err)})"
    except SyntaxError as err:
        return f"{spec}: {source_path} line {err.lineno}: syntax error ({err.msg})"
    names = top_level_names(tree)
    if function in names or "*" in names or "__getattr__" in names:
        return None
    return f"{spec}: no function {function!r} in {source_path}"


def top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level (defs, classes, assignments, imports; '*' for a star import)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try)):  # `try: from x import f` / `if ...: def f`
            names.update(top_level_names(ast.Module(body=nested_statements(node), type_ignores=[])))
    return names


def nested_statements(node: ast.If | ast.Try) -> list[ast.stmt]:
    """The statements inside an if/try at module level (every branch, every except handler)."""
    statements = list(node.body) + list(node.orelse)
    if isinstance(node, ast.Try):
        statements += list(node.finalbody) + [s for handler in node.handlers for s in handler.body]
    return statements


def one_line(err: object) -> str:
    """The first non-blank line of an exception's text, so every message stays one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def import_target(target: str, spec: str):
    """The module a spec names: imported by dotted name, or loaded from a .py file under a stable name."""
    if not is_file_target(target):
        try:
            return importlib.import_module(target)
        except ModuleNotFoundError as err:
            raise ValueError(f"{FIELD}: {spec}: module {err.name or target!r} not found") from None
        except Exception as err:
            raise ValueError(f"{FIELD}: {spec}: importing {target} failed ({type(err).__name__}: "
                             f"{one_line(err)})") from None
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"{FIELD}: {spec}: file {target} not found")
    # A stable name per file: loading the same file twice (two actors' threads) reuses one module.
    name = f"opd_user_verifier_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        raise ValueError(f"{FIELD}: {spec}: loading {target} failed ({type(err).__name__}: "
                         f"{one_line(err)})") from None
    sys.modules[name] = module
    return module


def user_verifier(spec: str) -> Verifier:
    """The user's function behind `module:function`, its result coerced to float (bool -> 1.0 / 0.0).

    Exceptions from the function propagate: a crashing verifier is a bug to see, not a silent 0.0.
    """
    target, function_name = split_spec(spec)
    module = import_target(target, spec)
    function = getattr(module, function_name, None)
    if function is None:
        raise ValueError(f"{FIELD}: {spec}: no function {function_name!r} in {target}")
    if not callable(function):
        raise ValueError(f"{FIELD}: {spec}: {function_name!r} in {target} is not callable "
                         f"(a {type(function).__name__})")

    @functools.wraps(function)
    def reward(response: str, answer: str) -> float:
        result = function(response, answer)
        try:
            return float(result)
        except (TypeError, ValueError):
            raise ValueError(f"{FIELD}: {spec} returned {type(result).__name__} {result!r:.40}, "
                             "expected bool or float") from None
    return reward


def get_verifier(spec: str) -> Verifier:
    """The reward function `spec` names (see the module docstring); a bad spec is a one-line ValueError."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{FIELD}: is empty; expected one of {', '.join(VERIFIERS)} or module:function")
    spec = spec.strip()
    if spec in BUILTIN:
        return BUILTIN[spec]
    return user_verifier(spec)
