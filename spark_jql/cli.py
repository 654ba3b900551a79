"""``spark-jql``: run the JQL stages from a YAML config with ``--set key=value`` overrides.

    spark-jql --config conf/local.yaml run
    spark-jql --config conf/local.yaml --set io.input=data/*.parquet annotate
    spark-jql demo                      # offline pipeline demo on generated data
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .config import ConfigError, JobConfig, load_config
from .errors import SparkJQLError

STAGES = ("annotate", "thresholds", "filter", "run")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spark-jql", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", help="YAML config (see conf/); defaults apply where it is silent")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set scorer.token_budget=32768 (repeatable)")
    p.add_argument("--verbose", "-v", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("annotate", help="score every document; writes scored/ and stats/")
    sub.add_parser("thresholds", help="per-language quantiles of the scores; writes thresholds.json")
    sub.add_parser("filter", help="keep documents at or above their language's threshold; writes filtered/, dropped/")
    sub.add_parser("run", help="annotate, thresholds and filter")
    sub.add_parser("validate", help="check the config and print it with all defaults filled in")
    demo = sub.add_parser("demo", help="offline demo: generate sample data and tiny random models, then run")
    demo.add_argument("--output", default="demo_output", help="where the demo writes data, models and results")
    demo.add_argument("--docs", type=int, default=2000, help="number of generated documents")
    bench = sub.add_parser("bench", help="throughput benchmark (see docs/benchmarks.md)", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    from .method_cli import add_subcommands as add_method_subcommands  # embed, train, evaluate, rank-judges, judge

    add_method_subcommands(sub)
    from .user_cli import add_subcommands as add_user_subcommands  # report, langid

    add_user_subcommands(sub)
    return p


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _run_stage(command: str, config: JobConfig) -> dict:
    from .job import Job
    from .spark.session import build_session

    spark = build_session(config.spark.master, config.spark.app_name, config.spark.conf)
    job = Job(spark, config)
    if command == "annotate":
        job.annotate()
    elif command == "thresholds":
        job.thresholds()
    elif command == "filter":
        job.filter()
    else:
        job.run()
    return job.summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own options (and --help)
        from .bench import main as bench_main

        return bench_main(argv[1:]) or 0
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    from .method_cli import COMMANDS as METHOD_COMMANDS, run as run_method_command

    if args.command in METHOD_COMMANDS:
        return run_method_command(args)
    from .user_cli import COMMANDS as USER_COMMANDS, run as run_user_command

    if args.command in USER_COMMANDS:
        return run_user_command(args)
    if args.command == "bench":
        from .bench import main as bench_main

        return bench_main(args.bench_args) or 0
    try:
        if args.command == "demo":
            from .demo import run_demo

            summary = run_demo(args.output, args.docs, args.config, args.overrides)
        else:
            config = load_config(args.config, args.overrides)
            if args.command == "validate":
                print(config.model_dump_json(indent=2))
                return 0
            summary = _run_stage(args.command, config)
    except (ConfigError, SparkJQLError) as err:
        print(f"spark-jql: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
