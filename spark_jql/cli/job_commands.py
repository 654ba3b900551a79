"""The scoring job's subcommands: annotate, thresholds, filter, run, validate."""

from __future__ import annotations

import argparse

from spark_jql.cli import early
from spark_jql.cli.registry import Command
from spark_jql.config import load_config

_SUMMARY = """
Prints a short summary (rows, where each output is, the next command); --json prints the full
summary, which is also written to <io.output>/summary.json. See the README's "Outputs" section."""
_FROM_INPUT = "\nReads io.input (or io.input_table) and writes under io.output." + _SUMMARY
_FROM_SCORED = "\nReads <io.output>/scored/ (written by annotate or run), not io.input." + _SUMMARY


def _stage(name: str):
    def run(args: argparse.Namespace) -> dict:
        config = load_config(args.config, args.overrides)
        if name in ("annotate", "run"):  # before the JVM starts: a missing local input is one line at once
            early.inputs(config)
        else:
            early.earlier_outputs(config, name)
        from spark_jql.spark.job import Job
        from spark_jql.spark.session import session_for

        args.loaded_config = config
        job = Job(session_for(config), config)
        getattr(job, name)()
        return job.summary

    return run


def _render(name: str):
    def render(result: dict, args: argparse.Namespace, seconds: float) -> str:
        from spark_jql.cli.summary import job_summary

        config = getattr(args, "loaded_config", None) or load_config(args.config, args.overrides)
        return job_summary(name, result, config, args.config, args.overrides, seconds)

    return render


def _stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="the stream's checkpoint folder (default <io.output>/_jql_stream_checkpoint); keep it to resume")
    parser.add_argument("--every", default=None, metavar="INTERVAL",
                        help="run continuously, a micro-batch every INTERVAL (e.g. '1 minute'); default: score what "
                             "is there now and stop (availableNow)")
    parser.add_argument("--max-files-per-trigger", type=int, default=None, help="input files per micro-batch at most")
    parser.add_argument("--thresholds", default=None, metavar="FILE",
                        help="thresholds.json from a batch run (default <io.output>/thresholds.json)")


def _stream(args: argparse.Namespace) -> dict:
    from spark_jql.spark.session import session_for
    from spark_jql.spark.stream import default_checkpoint, start_stream, stream_summary

    config = load_config(args.config, args.overrides)
    spark = session_for(config)
    checkpoint = args.checkpoint or default_checkpoint(config)
    query = start_stream(spark, config, checkpoint, available_now=args.every is None, processing_time=args.every,
                         max_files_per_trigger=args.max_files_per_trigger, thresholds=args.thresholds)
    query.awaitTermination()
    return stream_summary(spark, checkpoint)


def _validate(args: argparse.Namespace) -> None:
    print(load_config(args.config, args.overrides).model_dump_json(indent=2))


COMMANDS = [
    Command("annotate", "score every document; writes scored/ and stats/", _stage("annotate"), render=_render("annotate"),
            description="Embed every document of io.input, score it with every head, and write scored/ (all input\n"
                        "columns plus score_<head>, jql_score, jql_tokens, jql_truncated) and stats/." + _FROM_INPUT),
    Command("thresholds", "per-language quantiles of the scores; writes thresholds.json", _stage("thresholds"), render=_render("thresholds"),
            description="Read scored/ back and compute each language's thresholds.quantiles of scorer.aggregate's\n"
                        "score in one pass (percentile_approx); writes thresholds.json." + _FROM_SCORED),
    Command("filter", "keep documents at or above their language's threshold; writes filtered/, dropped/", _stage("filter"), render=_render("filter"),
            description="Read scored/ and thresholds.json; keep each document at or above its language's\n"
                        "filter.quantile threshold (filtered/) and keep the rest with a reason (dropped/)." + _FROM_SCORED),
    Command("run", "annotate, thresholds and filter", _stage("run"), render=_render("run"),
            description="annotate, then thresholds, then filter; a rerun resumes finished units." + _FROM_INPUT),
    Command("stream", "score a stream (Delta table or a folder) into filtered/, dropped/ by frozen thresholds", _stream,
            _stream_arguments,
            description="Structured Streaming: read io.input (a Delta table, io.input_table, or one folder of files)\n"
                        "as a stream, score each micro-batch once and split it by <io.output>/thresholds.json (from a\n"
                        "batch run) into filtered/ and dropped/, exactly once across kills and restarts (Delta:\n"
                        "idempotent appends; files: one folder per micro-batch, jql_batch=N). Rerun to resume."),
    Command("validate", "check the config and print it with all defaults filled in", _validate,
            description="Load the config with its --set overrides, validate every value, and print the full\n"
                        "configuration as JSON. Unknown keys and bad values are errors naming the key."),
]
