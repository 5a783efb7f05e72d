"""Named teachers: `teachers:` in the config, or the one-teacher shorthand `model.teacher` + `teacher:`.

A run has one or more teachers, each a name bound to a model and its server settings. Code that serves or checks
one teacher (a teacher server, the contract check, the probe, a teacher evaluation) is handed a *view*: the run's
config with `model.teacher`, `teacher.*` and `placement.teacher` set to that teacher's. So the one-teacher code
paths serve every teacher unchanged, and a one-teacher config is the view of itself (a teacher named `default`).

    teachers:
      sum:    {model: opd_ray/lab/artifacts/teacher, num_servers: 1}
      digits: {model: opd_ray/lab/artifacts/teacher_digits}      # unset fields come from `teacher:`

Actor roles: "rollout", "teacher" (the one-teacher shorthand's servers, named teacher-0, ...) and
"teacher:<name>" for a named teacher's pool (servers named teacher-<name>-0, ...).
"""
from __future__ import annotations

import copy
from dataclasses import fields

from opd_ray.config.schema import OPDConfig, TeacherConfig

DEFAULT = "default"  # the name of the one teacher of the `model.teacher` shorthand
TEACHER_ROLE = "teacher"


def names(cfg: OPDConfig) -> list[str]:
    """The run's teacher names, in config order."""
    return list(cfg.teachers) if cfg.teachers else [DEFAULT]


def is_multi(cfg: OPDConfig) -> bool:
    return len(names(cfg)) > 1


def view(cfg: OPDConfig, name: str) -> OPDConfig:
    """The run's config as seen by teacher `name`: its model, its `teacher.*` settings (each unset field of
    `teachers.<name>` taken from `teacher:`) and its placement."""
    if not cfg.teachers:
        if name != DEFAULT:
            raise KeyError(f"no teacher named {name!r}; the run has only {DEFAULT!r} (model.teacher)")
        return cfg
    spec = cfg.teachers[name]
    out = copy.copy(cfg)
    out.model = copy.copy(cfg.model)
    out.model.teacher = spec.model
    out.teacher = TeacherConfig(**{f.name: first_set(getattr(spec, f.name), getattr(cfg.teacher, f.name))
                                   for f in fields(TeacherConfig)})
    out.placement = copy.copy(cfg.placement)
    out.placement.teacher = spec.placement if spec.placement is not None else cfg.placement.teacher
    return out


def first_set(value, default):
    return default if value is None else value


def views(cfg: OPDConfig) -> dict[str, OPDConfig]:
    return {name: view(cfg, name) for name in names(cfg)}


def models(cfg: OPDConfig) -> list[str]:
    """Every teacher's model path, in config order."""
    return [v.model.teacher for v in views(cfg).values()]


def role(name: str) -> str:
    """The actor role of teacher `name`'s pool."""
    return TEACHER_ROLE if name == DEFAULT else f"{TEACHER_ROLE}:{name}"


def name_of(teacher_role: str) -> str:
    """The teacher name of a teacher pool's role (the inverse of `role`)."""
    return teacher_role.split(":", 1)[1] if ":" in teacher_role else DEFAULT


def is_teacher_role(actor_role: str) -> bool:
    return actor_role == TEACHER_ROLE or actor_role.startswith(TEACHER_ROLE + ":")


def default_teacher(cfg: OPDConfig) -> str:
    """The teacher of a row that names none: the only teacher, or `mopd.default_teacher` ("" = none)."""
    return names(cfg)[0] if not is_multi(cfg) else cfg.mopd.default_teacher
