"""What a ``spark-jql`` subcommand is. Each command module lists its ``Command`` objects in ``COMMANDS``;
``spark_jql.cli.all_commands`` is the one registry that gathers them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, longer description, options and what it runs.

    ``run(args)`` returns a JSON-able summary (printed by the CLI) or ``None``; it raises
    ``ConfigError`` / ``SparkJQLError`` for problems the user can fix (exit code 2).
    ``passthrough`` commands parse their own options (``bench``). ``render(result, args, seconds)`` turns the
    summary into the few lines the CLI prints for people; without it (or with ``--json``) the CLI prints the JSON.
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace], dict | None]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    description: str = ""
    passthrough: bool = False
    aliases: tuple[str, ...] = field(default=())
    render: Callable[[dict, argparse.Namespace, float], str] | None = None

