"""What every command shares: the handler signature, output, error reporting."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeAlias, TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError

from nexus.config import Settings
from nexus.errors import NexusError

T = TypeVar("T")

# Exit statuses: 0 success, 1 a domain/runtime failure, 2 bad usage or configuration.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class Handler(Protocol):
    def __call__(self, args: argparse.Namespace, settings: Settings) -> int: ...


# Every command module has `register(subparsers: SubParsers) -> None`, which adds its parser
# and sets `handler` (a `Handler`) as a default; the dispatcher calls it with the settings.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def out(text: str = "") -> None:
    """One line for the user on stdout (the CLI's output, not a log line)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_service(factory: Callable[[], Coroutine[Any, Any, T] | Awaitable[T]]) -> T:
    """Run one async use case to completion from synchronous CLI code."""

    async def _main() -> T:
        return await factory()

    return asyncio.run(_main())


def guarded(handler: Handler) -> Handler:
    """Report NexusError and database failures as one stderr line and exit status 1."""

    def wrapper(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return handler(args, settings)
        except NexusError as exc:
            err(f"error: {exc.code}: {exc.message}")
            return EXIT_FAILURE
        except (DBAPIError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            err(f"error: database unavailable or refused the request: {exc}")
            return EXIT_FAILURE

    wrapper.__doc__ = handler.__doc__
    return wrapper


def usage(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command group called without a subcommand: its help, exit 2."""

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        parser.print_help()
        return EXIT_USAGE

    return handler
