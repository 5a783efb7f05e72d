"""The package's floors, as a tested rule (docs/design.md, "Layout").

Every import in opd_ray/, actors/ and launch/ (at module level or inside a function) is read from the source
with `ast`, and checked against the floors below. A package imports only from the packages it may use, never
sideways on its floor or up; modules form no cycle, inside a package too; the project's own modules are imported
at the top of a file, never inside a function (a function-level import is how a cycle hides); and the lazy
imports of the heavy optional dependencies (vLLM, DeepSpeed) say so in a comment.

`python tests/test_layering.py` prints every violation, one line each.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = ("opd_ray", "actors", "launch")

# opd_ray's subpackages on their floors; what each may import (besides its own modules).
FLOOR_1 = {"config": set(), "runtime": set(), "trajectory": set(), "objective": set()}
FLOOR_2 = {"models": {"config"}, "data": {"config"}}
FLOOR_3 = {
    "engines": {"models", "trajectory", "objective", "runtime"},
    "learner": {"models", "trajectory", "objective", "runtime", "config"},
    "lab": {"data", "models", "config"},
}
FLOOR_4 = {"loop": {"engines", "data", "models", "objective", "trajectory", "runtime", "config"}}
BELOW_RUN = set(FLOOR_1) | set(FLOOR_2) | set(FLOOR_3) | set(FLOOR_4)
ALLOWED = {**FLOOR_1, **FLOOR_2, **FLOOR_3, **FLOOR_4, "run": BELOW_RUN,
           # outside the package: the actors host floors 1-3, never the loop or the run; launch may use anything
           "actors": set(FLOOR_1) | set(FLOOR_2) | set(FLOOR_3), "launch": BELOW_RUN | {"run", "actors"}}
LAZY_ON_PURPOSE = ("vllm", "deepspeed")  # heavy optional dependencies: imported where used, with a comment


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. opd_ray.loop.controller
    target: str  # the imported project module, e.g. opd_ray.loop.fleet
    path: Path
    line: int
    in_function: bool


def package_of(module: str) -> str:
    """opd_ray.loop.fleet -> loop; actors.rollout -> actors; launch.opd_job -> launch."""
    parts = module.split(".")
    return parts[1] if parts[0] == "opd_ray" and len(parts) > 1 else parts[0]


def project_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module in the three top folders."""
    files = {}
    for top in TOP:
        for path in sorted((root / top).rglob("*.py")):
            if "slurm" in path.parts:
                continue
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            files[module.removesuffix(".__init__")] = path
    return files


def resolve(node: ast.ImportFrom | ast.Import, modules: dict[str, Path]) -> list[str]:
    """The project modules an import statement loads (`from pkg import mod` names the module itself)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] in TOP]
    if not node.module or node.module.split(".")[0] not in TOP:
        return []
    return [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]


def imports(root: Path = ROOT) -> tuple[list[Import], list[str]]:
    """Every project import, and the lazy vLLM/DeepSpeed imports that carry no comment."""
    modules, found, uncommented = project_files(root), [], []
    for module, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            in_function = node.col_offset > 0
            for target in resolve(node, modules):
                found.append(Import(module, target, path, node.lineno, in_function))
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            heavy = any(n.split(".")[0] in LAZY_ON_PURPOSE for n in names)
            said = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
            if in_function and heavy and not said:
                uncommented.append(f"{path.relative_to(root)}:{node.lineno}: lazy import of {names[0]} without a "
                                   "comment saying why")
    return found, uncommented


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of the module graph as [a, b, ..., a], or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def violations(root: Path = ROOT) -> list[str]:
    found, problems = imports(root)
    edges: dict[str, set[str]] = {}
    for imp in found:
        where = f"{imp.path.relative_to(root)}:{imp.line}"
        src, dst = package_of(imp.source), package_of(imp.target)
        if imp.source.split(".")[0] == "opd_ray" and imp.target.split(".")[0] != "opd_ray":
            problems.append(f"{where}: opd_ray imports {imp.target}; the library never imports actors/ or launch/")
        elif src != dst and dst not in ALLOWED.get(src, set()):
            problems.append(f"{where}: {src} imports {dst} ({imp.target}); {src} may import only "
                            f"{', '.join(sorted(ALLOWED.get(src, ()))) or 'nothing of opd_ray'}")
        if imp.in_function:
            problems.append(f"{where}: {imp.target} is imported inside a function; the project's modules are "
                            "imported at the top of a file")
        if imp.target != imp.source:
            edges.setdefault(imp.source, set()).add(imp.target)
    if cycle := find_cycle(edges):
        problems.append("import cycle: " + " -> ".join(cycle))
    return problems


def test_floors_hold():
    problems = violations()
    assert not problems, "\n".join(problems)


def test_every_package_has_a_floor():
    packages = {package_of(m) for m in project_files() if m.startswith("opd_ray.") and m.count(".") >= 2}
    assert packages == set(ALLOWED) - {"actors", "launch"}, packages ^ (set(ALLOWED) - {"actors", "launch"})


def test_a_planted_back_import_fails(tmp_path):
    """The check can fail: a copy of the tree with config importing the loop breaks two rules."""
    for top in TOP:
        for path in (ROOT / top).rglob("*.py"):
            copy = tmp_path / path.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(path.read_text())
    schema = tmp_path / "opd_ray" / "config" / "schema.py"
    schema.write_text(schema.read_text() + "\n\ndef late():\n    from opd_ray.loop import controller\n")
    problems = violations(tmp_path)
    assert any("config imports loop (opd_ray.loop.controller)" in p for p in problems), problems
    assert any("imported inside a function" in p for p in problems), problems
    assert any(p.startswith("import cycle:") for p in problems), problems


def test_a_cycle_inside_a_package_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) == []


if __name__ == "__main__":
    found = violations()
    print("\n".join(found) or "the floors hold")
    sys.exit(1 if found else 0)
