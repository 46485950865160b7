"""`nexus` console script: parse the command line, load settings, dispatch.

Commands live in their own modules, each with `register(subparsers)`; add a new one to
`COMMAND_MODULES` (operator commands go under `cli/ops/`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from cli import dev, dev_token, migrate, ops, serve
from cli.common import EXIT_USAGE, Handler, err
from nexus.config import SettingsError, load_settings
from runtime.logs import configure_logging

COMMAND_MODULES: tuple[ModuleType, ...] = (dev, migrate, serve, ops, dev_token)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus",
        description="Nexus backend: run the stack, migrate the database, operate jobs.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings()
    except SettingsError as exc:
        err(str(exc))
        return EXIT_USAGE
    configure_logging(settings)
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
