"""Writing a bench result without overwriting evidence: docs cite result files, so a new measurement goes to a new
file (`name.json`, else `name_<date>.json`, else `name_<date>_2.json`, ...). Each script runs from bench/, so
`from evidence import write_new` finds this module."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path


def new_path(path: Path) -> Path:
    """`path` if it is free, else the first free dated variant of it."""
    path = Path(path)
    if not path.exists():
        return path
    stem = f"{path.stem}_{date.today():%Y%m%d}"
    candidate, n = path.with_name(stem + path.suffix), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{stem}_{n}{path.suffix}")
    return candidate


def write_new(path: Path, result) -> Path:
    """Write `result` as indented JSON to a free variant of `path`; print and return where it went."""
    out = new_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[bench] wrote {out}", flush=True)
    return out
