"""The `opd-ray` command: `opd-ray report RUN_DIR`, `opd-ray probe ...`.

Each subcommand lives in its own module, which defines `add_arguments(parser)` and `main(args) -> int`;
modules are imported only when their subcommand runs, so `opd-ray --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

SUBCOMMANDS = {
    "report": ("opd_ray.run.report", "render a run directory's metrics as report/report.html + PNG figures"),
    "probe": ("opd_ray.run.probe", "pre-flight check of a student/teacher pair before spending compute on OPD"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opd-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(module_name=module_name)
        if module_available(module_name):
            importlib.import_module(module_name).add_arguments(sub_parser)
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args.module_name).main(args) or 0)
    except (FileNotFoundError, ValueError) as err:  # bad input: one line naming the problem, no traceback
        print(f"opd-ray {args.command}: error: {err}", file=sys.stderr)
        return 2


def module_available(module_name: str) -> bool:
    return importlib.util.find_spec(module_name) is not None


if __name__ == "__main__":
    sys.exit(main())
