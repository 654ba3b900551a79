"""``spark-jql``: the JQL stages from a YAML config with ``--set key=value`` overrides.

    spark-jql -c conf/local.yaml run
    spark-jql run -c conf/local.yaml --set io.input='[data/*.parquet]'
    spark-jql demo                      # offline demo on generated data

Every subcommand takes ``-c/--config``, ``-s/--set`` and ``-v`` before or after its name;
``spark-jql <command> --help`` describes it. Exit codes: 0 success, 2 a problem with the
configuration or the input (one line on stderr), 1 anything else (a traceback).

For job tasks that must fail loudly (Databricks, Airflow), call :func:`run_job`, which
raises instead of returning an exit code (and returns the full summary dict).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from spark_jql import interrupts
from spark_jql.cli import (
    devtools_commands,
    job_commands,
    method_commands,
    model_commands,
    report_commands,
)
from spark_jql.cli.registry import Command
from spark_jql.config import ConfigError
from spark_jql.errors import SparkJQLError, worker_error
from spark_jql.interrupts import as_interrupted

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR = 0, 1, 2
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # one timestamp format for every line the CLI logs
SPARK_LOG_ENV = "SPARK_JQL_SPARK_LOG"  # spark/spark_log.py: where Spark's own log lines go (read when a session starts)


def all_commands() -> list[Command]:
    """The registry: every subcommand, in the order ``--help`` lists them (each imports its work lazily)."""
    return [*job_commands.COMMANDS, *method_commands.COMMANDS, *report_commands.COMMANDS, *model_commands.COMMANDS,
            *devtools_commands.COMMANDS]


def _global_options(parser: argparse.ArgumentParser, suffix: str = "", suppress: bool = False) -> None:
    """-c/--set/-v; on subcommands they land in ``*_after`` so values given on both sides merge."""
    default = (lambda d: argparse.SUPPRESS) if suppress else (lambda d: d)
    parser.add_argument("--config", "-c", dest="config" + suffix, action="append", default=default([]), metavar="PATH",
                        help="YAML config (see conf/); repeat to merge several, later files winning key by key; "
                             "${VAR} and ${VAR:-default} take values from the environment; defaults apply where all are silent")
    parser.add_argument("--set", "-s", dest="overrides" + suffix, action="append", default=default([]),
                        metavar="KEY=VALUE", help="override a config value, e.g. --set scorer.token_budget=32768 (repeatable)")
    parser.add_argument("--verbose", "-v", dest="verbose" + suffix, action="count", default=default(0),
                        help="more logging (-vv for debug)")
    parser.add_argument("--json", dest="json" + suffix, action="store_true", default=default(False),
                        help="print the full summary as JSON instead of the short human one")


DESCRIPTION = """\
The JQL stages from YAML configs with --set key=value overrides.

  spark-jql -c conf/local.yaml run
  spark-jql run -c conf/local.yaml -c site.yaml --set io.input='[data/*.parquet]'
  spark-jql demo                      # offline demo on generated data

Every subcommand takes -c/--config, -s/--set and -v before or after its name; 'spark-jql COMMAND --help'
describes it. Several -c files merge in order (later wins), then --set. Each stage prints a short summary;
--json prints the full summary (also in <io.output>/summary.json).
Exit codes: 0 success, 2 a problem with the configuration or the input (one line on stderr), 1 anything else."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; an option's default appended once, where its help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = not (action.default is None or isinstance(action.default, bool) or action.default == []
                     or action.default == argparse.SUPPRESS)
        if shown and "default" not in text and action.option_strings and action.nargs != 0:
            text += " (default: %(default)s)"
        return text


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("spark_jql")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, or spark_jql.zip on a cluster
        return "unknown (not installed)"


def build_parser(commands: list[Command] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spark-jql", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"spark-jql {version()}")
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in commands or all_commands():
        if cmd.passthrough:
            p = sub.add_parser(cmd.name, help=cmd.help, add_help=False)
            p.add_argument("passthrough_args", nargs=argparse.REMAINDER)
            continue
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help, formatter_class=HelpFormatter)
        _global_options(p, "_after", suppress=True)
        cmd.add_arguments(p)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    passthrough = {c.name for c in all_commands() if c.passthrough}
    if argv[:1] and argv[0] in passthrough:  # its own options, --help included, go to it untouched
        return argparse.Namespace(command=argv[0], passthrough_args=argv[1:], config=[], overrides=[], verbose=0, json=False)
    args = build_parser().parse_args(argv)
    args.config = list(args.config) + list(getattr(args, "config_after", []))
    args.overrides = list(args.overrides) + list(getattr(args, "overrides_after", []))
    args.verbose = args.verbose + getattr(args, "verbose_after", 0)
    args.json = args.json or getattr(args, "json_after", False)
    return args


class _NotAnInterrupt(logging.Filter):
    """Drops records of errors an interrupt caused (py4j logs its cut connections with their tracebacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        err, seen = record.exc_info[1] if record.exc_info else None, set()
        while err is not None and id(err) not in seen:
            if isinstance(err, KeyboardInterrupt):
                return False
            seen.add(id(err))
            err = err.__cause__ or err.__context__
        return True


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt=TIME_FORMAT)
    for handler in logging.getLogger().handlers:  # py4j logs an interrupted call with its traceback: the CLI's line says it
        if not any(isinstance(f, _NotAnInterrupt) for f in handler.filters):
            handler.addFilter(_NotAnInterrupt())
    # Scoring progress (docs done, docs/s, ETA every few seconds) shows at the default verbosity too.
    logging.getLogger("spark_jql.spark.progress").setLevel(min(level, logging.INFO))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def run_job(argv: list[str]) -> dict | None:
    """Run one subcommand and return its summary; raises on any failure (for job tasks)."""
    return _run(parse_args(list(argv)))


def _run(args: argparse.Namespace) -> dict | None:
    _setup_logging(args.verbose)
    command = {c.name: c for c in all_commands()}[args.command]
    try:
        return command.run(args)
    except SparkJQLError:
        raise
    except Exception as err:  # a model that failed to load on an executor: its one line, not Spark's traceback
        translated = worker_error(err)
        if translated is None:
            raise
        raise translated from None


def main(argv: list[str] | None = None) -> int:
    """The console script: prints a short summary (the JSON with --json); user errors are one line and exit code 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet = sum(len(a) - 1 for a in argv if a.startswith("-v") and set(a[1:]) == {"v"}) + argv.count("--verbose") < 2
    before = os.environ.get(SPARK_LOG_ENV)
    if quiet and before is None:  # Spark's own log lines to a file: the console keeps the one line that matters
        os.environ[SPARK_LOG_ENV] = str(Path(tempfile.gettempdir()) / f"spark_jql-{os.getpid()}.log")
    start = time.perf_counter()
    try:
        args = parse_args(argv)
        with as_interrupted():
            result = _run(args)
    except (ConfigError, SparkJQLError, KeyboardInterrupt) as err:
        signum = getattr(err, "signum", signal.SIGINT) if isinstance(err, KeyboardInterrupt) else interrupts.received()
        if signum is None:
            print(f"spark-jql: error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR
        # Ctrl-C or SIGTERM (also where the signal surfaced as another error): one line, the shell's exit code
        progress = getattr(err, "progress", "")
        print(f"spark-jql: interrupted ({signal.Signals(signum).name})" + (f"; {progress}" if progress else "")
              + "; rerun the same command to resume", file=sys.stderr)
        return 128 + signum
    finally:
        if before is None:
            os.environ.pop(SPARK_LOG_ENV, None)
    if isinstance(result, int):  # passthrough commands (bench) return their own exit code
        return result
    if result is not None:
        render = {c.name: c for c in all_commands()}[args.command].render
        if render is None or args.json:
            print(json.dumps(result, indent=2, default=str))
        else:
            print(render(result, args, time.perf_counter() - start))
    return EXIT_OK
