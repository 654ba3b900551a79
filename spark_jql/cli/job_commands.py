"""The scoring job's subcommands: annotate, thresholds, filter, run, validate."""

from __future__ import annotations

import argparse

from spark_jql.cli.registry import Command
from spark_jql.config import load_config

_OUTPUTS = """
Reads io.input (files) and writes under io.output; see the README's "Outputs" section.
Progress and the row accounting are written to <io.output>/summary.json."""


def _stage(name: str):
    def run(args: argparse.Namespace) -> dict:
        from spark_jql.spark.job import Job
        from spark_jql.spark.session import session_for

        config = load_config(args.config, args.overrides)
        job = Job(session_for(config), config)
        getattr(job, name)()
        return job.summary

    return run


def _validate(args: argparse.Namespace) -> None:
    print(load_config(args.config, args.overrides).model_dump_json(indent=2))


COMMANDS = [
    Command("annotate", "score every document; writes scored/ and stats/", _stage("annotate"),
            description="Embed every document of io.input, score it with every head, and write scored/ (all input\n"
                        "columns plus score_<head>, jql_score, jql_tokens, jql_truncated) and stats/." + _OUTPUTS),
    Command("thresholds", "per-language quantiles of the scores; writes thresholds.json", _stage("thresholds"),
            description="Read scored/ back and compute each language's thresholds.quantiles of scorer.aggregate's\n"
                        "score in one pass (percentile_approx); writes thresholds.json." + _OUTPUTS),
    Command("filter", "keep documents at or above their language's threshold; writes filtered/, dropped/", _stage("filter"),
            description="Read scored/ and thresholds.json; keep each document at or above its language's\n"
                        "filter.quantile threshold (filtered/) and keep the rest with a reason (dropped/)." + _OUTPUTS),
    Command("run", "annotate, thresholds and filter", _stage("run"),
            description="annotate, then thresholds, then filter; a rerun resumes finished units." + _OUTPUTS),
    Command("validate", "check the config and print it with all defaults filled in", _validate,
            description="Load the config with its --set overrides, validate every value, and print the full\n"
                        "configuration as JSON. Unknown keys and bad values are errors naming the key."),
]
