"""Subcommands for trying and measuring spark_jql: demo (offline, tiny models) and bench (throughput)."""

from __future__ import annotations

import argparse

from spark_jql.cli.registry import Command


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--output", default="demo_output", help="where the demo writes data, models and results")
    demo.add_argument("--docs", type=int, default=2000, help="number of generated documents (labelled set + corpus), at least 200")
    demo.add_argument("--labelled-share", type=float, default=0.3, help="share of the documents used to train the heads")


def _demo(args: argparse.Namespace) -> dict:
    from spark_jql.devtools.demo import run_demo

    return run_demo(args.output, args.docs, args.config, args.overrides, args.labelled_share)


def _demo_render(result: dict, args: argparse.Namespace, seconds: float) -> str:
    from spark_jql.devtools.demo import render

    return render(result, args, seconds)


def _bench(args: argparse.Namespace) -> int:
    from spark_jql.devtools.bench import main as bench_main

    return bench_main(args.passthrough_args) or 0


def _package_arguments(pkg: argparse.ArgumentParser) -> None:
    pkg.add_argument("--output", default="build/cluster", help="folder for spark_jql.zip, spark_jql_main.py, conf/, the wheel")
    pkg.add_argument("--no-wheel", action="store_true", help="skip building the wheel")


def _package(args: argparse.Namespace) -> dict:
    from spark_jql.devtools.package import build

    return build(args.output, wheel=not args.no_wheel)


COMMANDS = [
    Command("demo", "offline JQL demo: train heads on a labelled toy corpus, filter the rest, write the report",
            _demo, _demo_arguments, render=_demo_render,
            description="Generate a multilingual toy corpus with known educational value and a tiny bag-of-words\n"
                        "encoder offline; embed the labelled part and train heads on it (JQL step 3); annotate,\n"
                        "threshold and filter the rest with them (step 4) on a local Spark session; print how\n"
                        "well kept and dropped documents separate; write the HTML report. Needs no download.\n"
                        "Writes <output>/demo.yaml, the corpus run's config: 'spark-jql -c <output>/demo.yaml COMMAND'\n"
                        "continues from it. A rerun into the same folder reuses the data, the heads and the scored units."),
    Command("package", "write what a cluster job needs: spark_jql.zip, the run_job launcher, conf/, the wheel",
            _package, _package_arguments,
            description="Build the artifacts conf/emr-step.json, conf/emr-bootstrap.sh and submit.sh expect:\n"
                        "spark_jql.zip (--py-files), spark_jql_main.py (calls spark_jql.cli.run_job, which raises on\n"
                        "failure), conf/ (recipes, getGpusResources.sh) and, from a checkout, the wheel."),
    Command("bench", "throughput benchmark (see docs/benchmarks.md); 'spark-jql bench --help' for its options", _bench,
            passthrough=True),
]
