"""Reading a run configuration: YAML (optionally on top of a `base:` file) + dotted overrides -> an OPDConfig,
with one-line errors that name the field. Range and cross-field checks are in `opd_ray.run.preflight`."""
from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from opd_ray.config.errors import ConfigError, closest_key_hint, yaml_error_line
from opd_ray.config.schema import OPDConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_KEY = "base"  # a config file may start from another: `base: lab_cpu.yaml` (relative to its own folder)


def read_config(path: str | Path, overrides: list[str] = ()) -> OPDConfig:
    """YAML file (and its `base:` chain) + `dotted.key=value` overrides -> an OPDConfig, typed but not yet
    checked against each other or the models (`opd_ray.run.preflight.load_config` does both)."""
    path = Path(path)
    schema = OmegaConf.structured(OPDConfig)
    layers = load_layers(path)
    try:
        merged = OmegaConf.merge(schema, *layers)
    except (OmegaConfBaseException, TypeError) as err:
        raise config_error(err, schema, path, "config") from None
    for override in overrides:
        try:
            apply_override(merged, override)
        except yaml.YAMLError as err:  # a value in a dotted override
            raise ConfigError(f"overrides: {yaml_error_line(err, 'a key=value override')}") from None
        except (OmegaConfBaseException, TypeError) as err:
            raise config_error(err, schema, path, override.split("=", 1)[0].strip()) from None
    try:
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise config_error(err, schema, path, "config") from None


def config_error(err: Exception, schema, path: Path, key: str) -> ConfigError:
    """What OmegaConf raised, as one line that names the field (`key` when OmegaConf names none)."""
    key = getattr(err, "full_key", None) or key
    message = str(getattr(err, "msg", err)).strip().splitlines()[0]  # OmegaConf appends a multi-line dump
    if isinstance(err, ConfigKeyError) and "Did you mean" not in message:
        message += closest_key_hint(schema, key)
    if isinstance(err, TypeError) or "incompatible container types" in message:
        message += " (a list where a mapping is expected, or the reverse)"
    return ConfigError(f"{key}: {message} (in {path} or overrides)")


def apply_override(cfg, override: str) -> None:
    """One `key=value` override. A mapping given for a mapping field (`data.eval_files={mine: [a.jsonl]}`)
    replaces the file's mapping, as a user who names the sets means; `data.eval_files.mine=a.jsonl` adds one.
    Everything else merges as OmegaConf does (a mapping into a section sets only the keys it names)."""
    given = OmegaConf.from_dotlist([override])
    key = override.split("=", 1)[0].strip()
    value = OmegaConf.select(given, key, default=None)
    current = OmegaConf.select(cfg, key, default=None)
    if OmegaConf.is_dict(value) and OmegaConf.is_dict(current) and OmegaConf.get_type(current) is dict:
        OmegaConf.update(cfg, key, value, merge=False)
    else:
        cfg.merge_with(given)


def load_layers(path: Path, seen: tuple[Path, ...] = ()) -> list:
    """The YAML layers to merge, base first: `path` and, through `base:` keys, the files it starts from."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (the base of {seen[-1]})" if seen else ""))
    if path.resolve() in seen:
        raise ConfigError(f"{BASE_KEY}: {path} is its own base (through {' -> '.join(map(str, seen))})")
    try:
        layer = OmegaConf.load(path)
    except yaml.YAMLError as err:
        raise ConfigError(yaml_error_line(err, path)) from None
    base = layer.pop(BASE_KEY, None) if OmegaConf.is_dict(layer) else None
    if base is None:
        return [layer]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{BASE_KEY}: must be a config file name, got {base!r} (in {path})")
    return load_layers(path.parent / base, seen + (path.resolve(),)) + [layer]


def as_list(value) -> list:
    return [] if value in (None, "") else ([value] if isinstance(value, str) else list(value))


def eval_source(spec) -> dict:
    """One `data.eval_files` entry as {files: [...], prompt_key, answer_key, teacher} (keys "" = data.prompt_key /
    data.answer_key; teacher "" = the default teacher)."""
    spec = dict(spec) if isinstance(spec, dict) else {"files": spec}
    unknown = set(spec) - {"files", "prompt_key", "answer_key", "teacher"}
    if unknown:
        raise ConfigError(f"data.eval_files: unknown key(s) {sorted(unknown)}; an entry is file(s) or "
                          "{files, prompt_key, answer_key, teacher}")
    return {"files": [local_or_given(f) for f in as_list(spec.get("files"))],
            "prompt_key": spec.get("prompt_key", ""), "answer_key": spec.get("answer_key", ""),
            "teacher": spec.get("teacher", "")}


def train_source(spec) -> str | dict:
    """One `data.train_files` entry: a path or hub id, or {files, teacher} (its rows' teacher, several teachers)."""
    if not isinstance(spec, dict):
        return local_or_given(spec)
    unknown = set(spec) - {"files", "teacher"}
    if unknown or not spec.get("files") or not spec.get("teacher"):
        raise ConfigError(f"data.train_files: an entry is a file, a list of files, or {{files, teacher}}; got {spec}")
    return {"files": [local_or_given(f) for f in as_list(spec["files"])], "teacher": str(spec["teacher"])}


def local_or_given(name) -> str:
    name = str(name)
    for base in (Path.cwd(), REPO_ROOT):
        if (base / name).exists():
            return str((base / name).resolve())
    return name  # a hub dataset id, or a missing file (the task names it)


def resolve_path(name: str) -> str:
    """Relative model paths are relative to the repository root, so `ray job submit` works from anywhere."""
    candidate = REPO_ROOT / name
    return str(candidate) if not Path(name).is_absolute() and candidate.exists() else name


def to_yaml(cfg: OPDConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))

