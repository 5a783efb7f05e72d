"""The README, docs, configs and docstrings name only files that exist: a path like `opd_ray/loop/controller.py`
or `bench/results/opd_step.json` in any of them must be in the checkout (a file moved without its mentions fails
here)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH_RE = re.compile(r"(?<![\w./-])((?:opd_ray|actors|launch|bench|tests|configs|docs)/[\w./-]*\w\.(?:py|yaml|md|json|sh|sbatch))(?![\w-]|\.\w)")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".toml", ".sh", ".sbatch"}


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if (Path(n).suffix in TEXT_SUFFIXES or Path(n).name in ("Makefile", "run"))
            and n != "tests/test_doc_paths.py"]  # this file names missing paths on purpose


def missing_paths() -> list[str]:
    missing = []
    for path in tracked_text_files():
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for mention in PATH_RE.findall(line):
                if not (ROOT / mention).exists():
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {mention}")
    return missing


def test_every_named_path_exists():
    missing = missing_paths()
    assert not missing, "paths named but not in the checkout:\n" + "\n".join(missing)


def test_the_check_sees_a_stale_path():
    assert PATH_RE.findall("see opd_ray/controller.py and `bench/results/x.json`.") == [
        "opd_ray/controller.py", "bench/results/x.json"]
    assert not (ROOT / "opd_ray" / "controller.py").exists()
