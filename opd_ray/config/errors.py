"""Turning what OmegaConf and PyYAML raise into one-line errors that name the field (opd_ray/config/load.py)."""
from __future__ import annotations

import difflib
from pathlib import Path

import yaml
from omegaconf import OmegaConf


class ConfigError(ValueError):
    """A bad configuration value; the message starts with the dotted field name."""


def yaml_error_line(err: yaml.YAMLError, source) -> str:
    """`file:line:column: invalid YAML: problem`, one line (PyYAML's own message spans several)."""
    mark, context = getattr(err, "problem_mark", None), getattr(err, "context_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(source)
    message = f"{where}: invalid YAML: {getattr(err, 'problem', None) or str(err).splitlines()[0]}"
    if context is not None and getattr(err, "context", None):
        message += f" ({err.context} at line {context.line + 1}, column {context.column + 1})"
    lines = Path(source).read_text(errors="replace").splitlines() if Path(str(source)).is_file() else []
    if mark is not None and mark.line < len(lines) and lines[mark.line][mark.column: mark.column + 1] == "\t":
        message += " (a tab: YAML indents with spaces)"
    return message


def closest_key_hint(schema, full_key: str) -> str:
    """"; did you mean 'section.key'?" for an unknown key close to a key of its section (of the structured
    `schema`), else ""."""
    *parents, last = full_key.split(".")
    section = OmegaConf.select(schema, ".".join(parents)) if parents else schema
    keys = [str(k) for k in section.keys()] if hasattr(section, "keys") else []
    close = difflib.get_close_matches(last, keys, n=1, cutoff=0.5)
    return f"; did you mean {'.'.join(parents + close)!r}?" if close else ""
