"""Subcommands for trying and measuring spark_jql: demo (offline, tiny models) and bench (throughput)."""

from __future__ import annotations

import argparse

from spark_jql.cli.registry import Command


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--output", default="demo_output", help="where the demo writes data, models and results")
    demo.add_argument("--docs", type=int, default=2000, help="number of generated documents")


def _demo(args: argparse.Namespace) -> dict:
    from spark_jql.devtools.demo import run_demo

    return run_demo(args.output, args.docs, args.config, args.overrides)


def _bench(args: argparse.Namespace) -> int:
    from spark_jql.devtools.bench import main as bench_main

    return bench_main(args.passthrough_args) or 0


COMMANDS = [
    Command("demo", "offline demo: generate sample data and tiny random models, then run", _demo, _demo_arguments,
            description="Generate a multilingual sample and tiny models offline, then run the whole job on a\n"
                        "local Spark session. Needs no download."),
    Command("bench", "throughput benchmark (see docs/benchmarks.md); 'spark-jql bench --help' for its options", _bench,
            passthrough=True),
]
